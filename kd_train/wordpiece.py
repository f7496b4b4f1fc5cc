"""The teacher's WordPiece tokenizer (uncased BERT), in the standard library, for the page's top rung.

This one file runs in CPython and, byte for byte, in Pyodide inside the web page, where it turns an
answer into the token ids a transformer scorer (the fine-tuned teacher exported to ONNX) reads. It
reproduces what the teacher read in training: Hugging Face's fast BERT tokenizer (BertNormalizer,
BertPreTokenizer, WordPiece, the [CLS] ... [SEP] template) and kd_train/encoder.py's head+tail
truncation. The file is pure ASCII (non-ASCII code points are written as escapes).

Steps (``tokenize``), in the fast tokenizer's order:
    0. Special tokens: exact, case-sensitive occurrences of ``specials`` (e.g. "[SEP]") in the raw
       text are those tokens (leftmost, longest first); the text between them goes through 1-5.
    1. Clean: whitespace (TAB, LF, CR and the other White_Space code points: ``_SPACES``) becomes a
       space; U+0000, U+FFFD, lone surrogates and the code points of ``_DROP`` (controls, format
       characters, private use) are dropped.
    2. CJK: a space on either side of every code point of ``_CJK``.
    3. Accents, then case: NFD (``unicodedata``), drop the marks of ``_MARKS``; then each code point
       lower-cased alone (``_LOWER`` where it has one, else ``str.lower``; no context: capital sigma
       is always small sigma, as Rust's ``char::to_lowercase``).
    4. Words: split on spaces and around every code point of ``_PUNCT``, each one a word of its own.
    5. WordPiece: per word, greedy longest match from the vocabulary, continuation pieces prefixed
       "##"; a word with no full match, or longer than ``max_chars_per_word`` code points, is [UNK].

``encode`` adds [CLS] and [SEP] and cuts an answer longer than ``max_length`` tokens as encoder.py
does: "head+tail" keeps the first int(budget * head_share) tokens and the rest from the end
(budget = max_length - 2), "end" keeps the first budget tokens. A teacher that reads the question
with the answer (``with_question``) is not this file's business: the transformer scorer refuses it.

Unicode versions. The character classes are tables of the teacher's tokenizer (read from it code
point by code point), not ``unicodedata``'s categories: Hugging Face's tokenizer keeps unassigned code
points (as [UNK]), its mark and punctuation tables are older than CPython's and its lower-casing is
newer (Unicode 16), so categories would differ from it on thousands of code points and from one Python
to the next. Only NFD comes from ``unicodedata``: CPython 3.11 (Unicode 14) and Pyodide's 3.14
(Unicode 16) can differ there only on code points that were unassigned in 14 and decompose in 16.
tests/test_wordpiece.py checks the tables against the tokenizer and measures the ids against it and
in Pyodide.

Config keys (``DEFAULT_CONFIG``; scorer.json's "featurizer" for a transformer scorer):
    version 1, kind "wordpiece", vocab_file (the vocabulary's file name in the scorer directory),
    max_length (3 .. 4096), truncation ("head+tail" or "end"), head_share (0 .. 1), unk, cls, sep,
    pad (tokens of the vocabulary), specials (list of tokens split out of the raw text),
    max_chars_per_word (>= 1), prefix (the continuation prefix, "##").
"""

from __future__ import annotations

import bisect
import unicodedata

DEFAULT_CONFIG = {
    "version": 1,
    "kind": "wordpiece",
    "vocab_file": "vocab.txt",
    "max_length": 128,
    "truncation": "head+tail",
    "head_share": 0.25,
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "pad": "[PAD]",
    "specials": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "max_chars_per_word": 100,
    "prefix": "##",
}

# White_Space code points (unchanged since Unicode 6.3) that survive step 1's filter: the teacher's
# tokenizer maps them to a space (Rust's char::is_whitespace).
_SPACES = frozenset([0x09, 0x0A, 0x0D, 0x20, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
                     0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

# The tables below are the teacher's tokenizer's own (Hugging Face tokenizers, read code point by code
# point; tests/test_wordpiece.py reads them again and compares), not this Python's unicodedata: the two
# disagree on thousands of code points (it keeps unassigned ones, its mark and punctuation tables are
# older, its lower-casing newer), and a table cannot change with the Python that runs this file.
# Step 1: code points the teacher's tokenizer drops (its control, format and private-use table), as [lo, hi] pairs.
_DROP = (
    0x0, 0x8, 0xB, 0xC, 0xE, 0x1F, 0x7F, 0x9F, 0xAD, 0xAD, 0x600, 0x605, 0x61C, 0x61C, 0x6DD, 0x6DD, 0x70F, 0x70F,
    0x180E, 0x180E, 0x200B, 0x200F, 0x202A, 0x202E, 0x2060, 0x2064, 0x2066, 0x206F, 0xE000, 0xF8FF, 0xFEFF, 0xFEFF,
    0xFFF9, 0xFFFB, 0xFFFD, 0xFFFD, 0x110BD, 0x110BD, 0x1BCA0, 0x1BCA3, 0x1D173, 0x1D17A, 0xE0001, 0xE0001, 0xE0020,
    0xE007F, 0xF0000, 0xFFFFD, 0x100000, 0x10FFFD,
)

# Step 3: non-spacing marks (its Mn table), dropped after NFD, as [lo, hi] pairs.
_MARKS = (
    0x300, 0x33F, 0x342, 0x342, 0x345, 0x36F, 0x483, 0x487, 0x591, 0x5BD, 0x5BF, 0x5BF, 0x5C1, 0x5C2, 0x5C4, 0x5C5,
    0x5C7, 0x5C7, 0x610, 0x61A, 0x64B, 0x65F, 0x670, 0x670, 0x6D6, 0x6DC, 0x6DF, 0x6E4, 0x6E7, 0x6E8, 0x6EA, 0x6ED,
    0x711, 0x711, 0x730, 0x74A, 0x7A6, 0x7B0, 0x7EB, 0x7F3, 0x816, 0x819, 0x81B, 0x823, 0x825, 0x827, 0x829, 0x82D,
    0x859, 0x85B, 0x8E3, 0x902, 0x93A, 0x93A, 0x93C, 0x93C, 0x941, 0x948, 0x94D, 0x94D, 0x951, 0x957, 0x962, 0x963,
    0x981, 0x981, 0x9BC, 0x9BC, 0x9C1, 0x9C4, 0x9CD, 0x9CD, 0x9E2, 0x9E3, 0xA01, 0xA02, 0xA3C, 0xA3C, 0xA41, 0xA42,
    0xA47, 0xA48, 0xA4B, 0xA4D, 0xA51, 0xA51, 0xA70, 0xA71, 0xA75, 0xA75, 0xA81, 0xA82, 0xABC, 0xABC, 0xAC1, 0xAC5,
    0xAC7, 0xAC8, 0xACD, 0xACD, 0xAE2, 0xAE3, 0xB01, 0xB01, 0xB3C, 0xB3C, 0xB3F, 0xB3F, 0xB41, 0xB44, 0xB4D, 0xB4D,
    0xB56, 0xB56, 0xB62, 0xB63, 0xB82, 0xB82, 0xBC0, 0xBC0, 0xBCD, 0xBCD, 0xC00, 0xC00, 0xC3E, 0xC40, 0xC46, 0xC47,
    0xC4A, 0xC4D, 0xC55, 0xC56, 0xC62, 0xC63, 0xC81, 0xC81, 0xCBC, 0xCBC, 0xCBF, 0xCBF, 0xCC6, 0xCC6, 0xCCC, 0xCCD,
    0xCE2, 0xCE3, 0xD01, 0xD01, 0xD41, 0xD44, 0xD4D, 0xD4D, 0xD62, 0xD63, 0xDCA, 0xDCA, 0xDD2, 0xDD4, 0xDD6, 0xDD6,
    0xE31, 0xE31, 0xE34, 0xE3A, 0xE47, 0xE4E, 0xEB1, 0xEB1, 0xEB4, 0xEB9, 0xEBB, 0xEBC, 0xEC8, 0xECD, 0xF18, 0xF19,
    0xF35, 0xF35, 0xF37, 0xF37, 0xF39, 0xF39, 0xF71, 0xF72, 0xF74, 0xF74, 0xF77, 0xF77, 0xF79, 0xF7E, 0xF80, 0xF80,
    0xF82, 0xF84, 0xF86, 0xF87, 0xF8D, 0xF92, 0xF94, 0xF97, 0xF99, 0xF9C, 0xF9E, 0xFA1, 0xFA3, 0xFA6, 0xFA8, 0xFAB,
    0xFAD, 0xFB8, 0xFBA, 0xFBC, 0xFC6, 0xFC6, 0x102D, 0x1030, 0x1032, 0x1037, 0x1039, 0x103A, 0x103D, 0x103E, 0x1058,
    0x1059, 0x105E, 0x1060, 0x1071, 0x1074, 0x1082, 0x1082, 0x1085, 0x1086, 0x108D, 0x108D, 0x109D, 0x109D, 0x135D,
    0x135F, 0x1712, 0x1714, 0x1732, 0x1734, 0x1752, 0x1753, 0x1772, 0x1773, 0x17B4, 0x17B5, 0x17B7, 0x17BD, 0x17C6,
    0x17C6, 0x17C9, 0x17D3, 0x17DD, 0x17DD, 0x180B, 0x180D, 0x18A9, 0x18A9, 0x1920, 0x1922, 0x1927, 0x1928, 0x1932,
    0x1932, 0x1939, 0x193B, 0x1A17, 0x1A18, 0x1A1B, 0x1A1B, 0x1A56, 0x1A56, 0x1A58, 0x1A5E, 0x1A60, 0x1A60, 0x1A62,
    0x1A62, 0x1A65, 0x1A6C, 0x1A73, 0x1A7C, 0x1A7F, 0x1A7F, 0x1AB0, 0x1ABD, 0x1B00, 0x1B03, 0x1B34, 0x1B34, 0x1B36,
    0x1B3A, 0x1B3C, 0x1B3C, 0x1B42, 0x1B42, 0x1B6B, 0x1B73, 0x1B80, 0x1B81, 0x1BA2, 0x1BA5, 0x1BA8, 0x1BA9, 0x1BAB,
    0x1BAD, 0x1BE6, 0x1BE6, 0x1BE8, 0x1BE9, 0x1BED, 0x1BED, 0x1BEF, 0x1BF1, 0x1C2C, 0x1C33, 0x1C36, 0x1C37, 0x1CD0,
    0x1CD2, 0x1CD4, 0x1CE0, 0x1CE2, 0x1CE8, 0x1CED, 0x1CED, 0x1CF4, 0x1CF4, 0x1CF8, 0x1CF9, 0x1DC0, 0x1DF5, 0x1DFC,
    0x1DFF, 0x20D0, 0x20DC, 0x20E1, 0x20E1, 0x20E5, 0x20F0, 0x2CEF, 0x2CF1, 0x2D7F, 0x2D7F, 0x2DE0, 0x2DFF, 0x302A,
    0x302D, 0x3099, 0x309A, 0xA66F, 0xA66F, 0xA674, 0xA67D, 0xA69E, 0xA69F, 0xA6F0, 0xA6F1, 0xA802, 0xA802, 0xA806,
    0xA806, 0xA80B, 0xA80B, 0xA825, 0xA826, 0xA8C4, 0xA8C4, 0xA8E0, 0xA8F1, 0xA926, 0xA92D, 0xA947, 0xA951, 0xA980,
    0xA982, 0xA9B3, 0xA9B3, 0xA9B6, 0xA9B9, 0xA9BC, 0xA9BC, 0xA9E5, 0xA9E5, 0xAA29, 0xAA2E, 0xAA31, 0xAA32, 0xAA35,
    0xAA36, 0xAA43, 0xAA43, 0xAA4C, 0xAA4C, 0xAA7C, 0xAA7C, 0xAAB0, 0xAAB0, 0xAAB2, 0xAAB4, 0xAAB7, 0xAAB8, 0xAABE,
    0xAABF, 0xAAC1, 0xAAC1, 0xAAEC, 0xAAED, 0xAAF6, 0xAAF6, 0xABE5, 0xABE5, 0xABE8, 0xABE8, 0xABED, 0xABED, 0xFB1E,
    0xFB1E, 0xFE00, 0xFE0F, 0xFE20, 0xFE2F, 0x101FD, 0x101FD, 0x102E0, 0x102E0, 0x10376, 0x1037A, 0x10A01, 0x10A03,
    0x10A05, 0x10A06, 0x10A0C, 0x10A0F, 0x10A38, 0x10A3A, 0x10A3F, 0x10A3F, 0x10AE5, 0x10AE6, 0x11001, 0x11001,
    0x11038, 0x11046, 0x1107F, 0x11081, 0x110B3, 0x110B6, 0x110B9, 0x110BA, 0x11100, 0x11102, 0x11127, 0x1112B,
    0x1112D, 0x1112D, 0x11130, 0x11134, 0x11173, 0x11173, 0x11180, 0x11181, 0x111B6, 0x111BE, 0x111CA, 0x111CC,
    0x1122F, 0x11231, 0x11234, 0x11234, 0x11236, 0x11237, 0x112DF, 0x112DF, 0x112E3, 0x112EA, 0x11300, 0x11301,
    0x1133C, 0x1133C, 0x11340, 0x11340, 0x11366, 0x1136C, 0x11370, 0x11374, 0x114B3, 0x114B8, 0x114BA, 0x114BA,
    0x114BF, 0x114C0, 0x114C2, 0x114C3, 0x115B2, 0x115B5, 0x115BC, 0x115BD, 0x115BF, 0x115C0, 0x115DC, 0x115DD,
    0x11633, 0x1163A, 0x1163D, 0x1163D, 0x1163F, 0x11640, 0x116AB, 0x116AB, 0x116AD, 0x116AD, 0x116B0, 0x116B5,
    0x116B7, 0x116B7, 0x1171D, 0x1171F, 0x11722, 0x11725, 0x11727, 0x1172B, 0x16AF0, 0x16AF4, 0x16B30, 0x16B36,
    0x16F8F, 0x16F92, 0x1BC9D, 0x1BC9E, 0x1D167, 0x1D169, 0x1D17B, 0x1D182, 0x1D185, 0x1D18B, 0x1D1AA, 0x1D1AD,
    0x1D242, 0x1D244, 0x1DA00, 0x1DA36, 0x1DA3B, 0x1DA6C, 0x1DA75, 0x1DA75, 0x1DA84, 0x1DA84, 0x1DA9B, 0x1DA9F,
    0x1DAA1, 0x1DAAF, 0x1E8D0, 0x1E8D6, 0xE0100, 0xE01EF,
)

# Step 4: punctuation (ASCII punctuation and its P* table), as [lo, hi] pairs.
_PUNCT = (
    0x21, 0x2F, 0x3A, 0x40, 0x5B, 0x60, 0x7B, 0x7E, 0xA1, 0xA1, 0xA7, 0xA7, 0xAB, 0xAB, 0xB6, 0xB7, 0xBB, 0xBB, 0xBF,
    0xBF, 0x37E, 0x37E, 0x387, 0x387, 0x55A, 0x55F, 0x589, 0x58A, 0x5BE, 0x5BE, 0x5C0, 0x5C0, 0x5C3, 0x5C3, 0x5C6,
    0x5C6, 0x5F3, 0x5F4, 0x609, 0x60A, 0x60C, 0x60D, 0x61B, 0x61B, 0x61E, 0x61F, 0x66A, 0x66D, 0x6D4, 0x6D4, 0x700,
    0x70D, 0x7F7, 0x7F9, 0x830, 0x83E, 0x85E, 0x85E, 0x964, 0x965, 0x970, 0x970, 0xAF0, 0xAF0, 0xDF4, 0xDF4, 0xE4F,
    0xE4F, 0xE5A, 0xE5B, 0xF04, 0xF12, 0xF14, 0xF14, 0xF3A, 0xF3D, 0xF85, 0xF85, 0xFD0, 0xFD4, 0xFD9, 0xFDA, 0x104A,
    0x104F, 0x10FB, 0x10FB, 0x1360, 0x1368, 0x1400, 0x1400, 0x166D, 0x166E, 0x169B, 0x169C, 0x16EB, 0x16ED, 0x1735,
    0x1736, 0x17D4, 0x17D6, 0x17D8, 0x17DA, 0x1800, 0x180A, 0x1944, 0x1945, 0x1A1E, 0x1A1F, 0x1AA0, 0x1AA6, 0x1AA8,
    0x1AAD, 0x1B5A, 0x1B60, 0x1BFC, 0x1BFF, 0x1C3B, 0x1C3F, 0x1C7E, 0x1C7F, 0x1CC0, 0x1CC7, 0x1CD3, 0x1CD3, 0x2010,
    0x2027, 0x2030, 0x2043, 0x2045, 0x2051, 0x2053, 0x205E, 0x207D, 0x207E, 0x208D, 0x208E, 0x2308, 0x230B, 0x2329,
    0x232A, 0x2768, 0x2775, 0x27C5, 0x27C6, 0x27E6, 0x27EF, 0x2983, 0x2998, 0x29D8, 0x29DB, 0x29FC, 0x29FD, 0x2CF9,
    0x2CFC, 0x2CFE, 0x2CFF, 0x2D70, 0x2D70, 0x2E00, 0x2E2E, 0x2E30, 0x2E42, 0x3001, 0x3003, 0x3008, 0x3011, 0x3014,
    0x301F, 0x3030, 0x3030, 0x303D, 0x303D, 0x30A0, 0x30A0, 0x30FB, 0x30FB, 0xA4FE, 0xA4FF, 0xA60D, 0xA60F, 0xA673,
    0xA673, 0xA67E, 0xA67E, 0xA6F2, 0xA6F7, 0xA874, 0xA877, 0xA8CE, 0xA8CF, 0xA8F8, 0xA8FA, 0xA8FC, 0xA8FC, 0xA92E,
    0xA92F, 0xA95F, 0xA95F, 0xA9C1, 0xA9CD, 0xA9DE, 0xA9DF, 0xAA5C, 0xAA5F, 0xAADE, 0xAADF, 0xAAF0, 0xAAF1, 0xABEB,
    0xABEB, 0xFD3E, 0xFD3F, 0xFE10, 0xFE19, 0xFE30, 0xFE52, 0xFE54, 0xFE61, 0xFE63, 0xFE63, 0xFE68, 0xFE68, 0xFE6A,
    0xFE6B, 0xFF01, 0xFF03, 0xFF05, 0xFF0A, 0xFF0C, 0xFF0F, 0xFF1A, 0xFF1B, 0xFF1F, 0xFF20, 0xFF3B, 0xFF3D, 0xFF3F,
    0xFF3F, 0xFF5B, 0xFF5B, 0xFF5D, 0xFF5D, 0xFF5F, 0xFF65, 0x10100, 0x10102, 0x1039F, 0x1039F, 0x103D0, 0x103D0,
    0x1056F, 0x1056F, 0x10857, 0x10857, 0x1091F, 0x1091F, 0x1093F, 0x1093F, 0x10A50, 0x10A58, 0x10A7F, 0x10A7F,
    0x10AF0, 0x10AF6, 0x10B39, 0x10B3F, 0x10B99, 0x10B9C, 0x11047, 0x1104D, 0x110BB, 0x110BC, 0x110BE, 0x110C1,
    0x11140, 0x11143, 0x11174, 0x11175, 0x111C5, 0x111C9, 0x111CD, 0x111CD, 0x111DB, 0x111DB, 0x111DD, 0x111DF,
    0x11238, 0x1123D, 0x112A9, 0x112A9, 0x114C6, 0x114C6, 0x115C1, 0x115D7, 0x11641, 0x11643, 0x1173C, 0x1173E,
    0x12470, 0x12474, 0x16A6E, 0x16A6F, 0x16AF5, 0x16AF5, 0x16B37, 0x16B3B, 0x16B44, 0x16B44, 0x1BC9F, 0x1BC9F,
    0x1DA87, 0x1DA8B,
)

# Step 2: CJK ideographs (its ranges: 0x2B820-0x2B91F is not among them), as [lo, hi] pairs.
_CJK = (
    0x3400, 0x4DBF, 0x4E00, 0x9FFF, 0xF900, 0xFAFF, 0x20000, 0x2A6DF, 0x2A700, 0x2B81F, 0x2B920, 0x2CEAF, 0x2F800,
    0x2FA1F,
)

# Step 3: where its lower-casing (Unicode 16) differs from CPython 3.11's str.lower (Unicode 14).
_LOWER = {
    0x1C89: "\u1c8a", 0xA7CB: "\u0264", 0xA7CC: "\ua7cd", 0xA7CE: "\ua7cf", 0xA7D2: "\ua7d3", 0xA7D4: "\ua7d5",
    0xA7DA: "\ua7db", 0xA7DC: "\u019b", 0x10D50: "\U00010d70", 0x10D51: "\U00010d71", 0x10D52: "\U00010d72", 0x10D53:
    "\U00010d73", 0x10D54: "\U00010d74", 0x10D55: "\U00010d75", 0x10D56: "\U00010d76", 0x10D57: "\U00010d77", 0x10D58:
    "\U00010d78", 0x10D59: "\U00010d79", 0x10D5A: "\U00010d7a", 0x10D5B: "\U00010d7b", 0x10D5C: "\U00010d7c", 0x10D5D:
    "\U00010d7d", 0x10D5E: "\U00010d7e", 0x10D5F: "\U00010d7f", 0x10D60: "\U00010d80", 0x10D61: "\U00010d81", 0x10D62:
    "\U00010d82", 0x10D63: "\U00010d83", 0x10D64: "\U00010d84", 0x10D65: "\U00010d85", 0x16EA0: "\U00016ebb", 0x16EA1:
    "\U00016ebc", 0x16EA2: "\U00016ebd", 0x16EA3: "\U00016ebe", 0x16EA4: "\U00016ebf", 0x16EA5: "\U00016ec0", 0x16EA6:
    "\U00016ec1", 0x16EA7: "\U00016ec2", 0x16EA8: "\U00016ec3", 0x16EA9: "\U00016ec4", 0x16EAA: "\U00016ec5", 0x16EAB:
    "\U00016ec6", 0x16EAC: "\U00016ec7", 0x16EAD: "\U00016ec8", 0x16EAE: "\U00016ec9", 0x16EAF: "\U00016eca", 0x16EB0:
    "\U00016ecb", 0x16EB1: "\U00016ecc", 0x16EB2: "\U00016ecd", 0x16EB3: "\U00016ece", 0x16EB4: "\U00016ecf", 0x16EB5:
    "\U00016ed0", 0x16EB6: "\U00016ed1", 0x16EB7: "\U00016ed2", 0x16EB8: "\U00016ed3"
}


def _in(table: tuple, cp: int) -> bool:
    """``cp`` is in one of ``table``'s [lo, hi] pairs (sorted, disjoint)."""
    k = bisect.bisect_right(table, cp)
    return k % 2 == 1 or (k > 0 and table[k - 1] == cp)


def _is_punct(ch: str) -> bool:
    return _in(_PUNCT, ord(ch))


def validate_config(config: dict) -> dict:
    """``config`` if it is a wordpiece config, else ValueError naming the bad key (TypeError: not a dict)."""
    if not isinstance(config, dict):
        raise TypeError("wordpiece config must be a dict")
    if set(config) != set(DEFAULT_CONFIG):
        odd = sorted(set(config) ^ set(DEFAULT_CONFIG))
        raise ValueError("wordpiece config keys: missing or unknown " + ", ".join(odd))
    if config["version"] != 1 or type(config["version"]) is not int:
        raise ValueError("wordpiece config version must be 1, got %r" % (config["version"],))
    if config["kind"] != "wordpiece":
        raise ValueError("wordpiece config kind must be 'wordpiece', got %r" % (config["kind"],))
    name = config["vocab_file"]
    if not (isinstance(name, str) and name and name.isascii() and "/" not in name and "\\" not in name
            and not name.startswith(".") and name not in ("model.onnx", "scorer.json", "MODEL_CARD.md")):
        raise ValueError("wordpiece config vocab_file must be a plain file name, got %r" % (name,))
    n = config["max_length"]
    if type(n) is not int or not 3 <= n <= 4096:
        raise ValueError("wordpiece config max_length must be an int from 3 to 4096, got %r" % (n,))
    if config["truncation"] not in ("head+tail", "end"):
        raise ValueError("wordpiece config truncation must be 'head+tail' or 'end', got %r" % (config["truncation"],))
    share = config["head_share"]
    if type(share) not in (int, float) or not 0 <= share <= 1:
        raise ValueError("wordpiece config head_share must be a number from 0 to 1, got %r" % (share,))
    for key in ("unk", "cls", "sep", "pad", "prefix"):
        if not isinstance(config[key], str) or not config[key]:
            raise ValueError("wordpiece config %s must be a non-empty string, got %r" % (key, config[key]))
    specials = config["specials"]
    if not (isinstance(specials, list) and all(isinstance(s, str) and s for s in specials)):
        raise ValueError("wordpiece config specials must be a list of non-empty strings, got %r" % (specials,))
    m = config["max_chars_per_word"]
    if type(m) is not int or m < 1:
        raise ValueError("wordpiece config max_chars_per_word must be an int >= 1, got %r" % (m,))
    return config


_VOCAB_CACHE = {}


def read_vocab(text: str) -> dict:
    """The vocabulary of a vocab.txt's text: {token: id}, id = line number from 0 (the last one of a
    token listed twice wins, as in Hugging Face's loader). Cached per text (the page reads one per scorer)."""
    if not isinstance(text, str):
        raise TypeError("the vocabulary must be the text of vocab.txt (str)")
    vocab = _VOCAB_CACHE.get(text)
    if vocab is None:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {}
        for i, line in enumerate(lines):
            vocab[line.rstrip("\r")] = i
        if len(_VOCAB_CACHE) >= 8:
            _VOCAB_CACHE.clear()
        _VOCAB_CACHE[text] = vocab
    return vocab


def _vocab(vocab) -> dict:
    return vocab if isinstance(vocab, dict) else read_vocab(vocab)


def _split_specials(text: str, specials: list) -> list:
    """[(segment, is_special)]: leftmost, then longest, exact matches of ``specials``."""
    out = []
    start = i = 0
    n = len(text)
    firsts = set(s[0] for s in specials)
    ordered = sorted(specials, key=len, reverse=True)
    while i < n:
        if text[i] in firsts:
            hit = None
            for s in ordered:
                if text.startswith(s, i):
                    hit = s
                    break
            if hit is not None:
                if start < i:
                    out.append((text[start:i], False))
                out.append((hit, True))
                i += len(hit)
                start = i
                continue
        i += 1
    if start < n:
        out.append((text[start:], False))
    return out


def normalize(text: str) -> str:
    """Steps 1-3: clean, space around CJK ideographs, strip accents, lower-case."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp in _SPACES:
            chars.append(" ")
        elif cp == 0 or cp == 0xFFFD or _in(_DROP, cp) or 0xD800 <= cp <= 0xDFFF:
            continue
        elif _in(_CJK, cp):
            chars.append(" ")
            chars.append(ch)
            chars.append(" ")
        else:
            chars.append(ch)
    out = []
    for ch in unicodedata.normalize("NFD", "".join(chars)):
        cp = ord(ch)
        if cp < 0x80:
            out.append(ch.lower())
        elif not _in(_MARKS, cp):
            out.append(_LOWER.get(cp) or ch.lower())
    return "".join(out)


def words(text: str) -> list:
    """Step 4: the normalized text's words and punctuation marks."""
    out = []
    current = []
    for ch in text:
        if ch == " ":
            if current:
                out.append("".join(current))
                current = []
        elif _is_punct(ch):
            if current:
                out.append("".join(current))
                current = []
            out.append(ch)
        else:
            current.append(ch)
    if current:
        out.append("".join(current))
    return out


def wordpiece(word: str, vocab, config: dict) -> list:
    """Step 5: the pieces of one word (the unk token alone when it cannot be split)."""
    vocab = _vocab(vocab)
    unk = config["unk"]
    if len(word) > config["max_chars_per_word"]:
        return [unk]
    prefix = config["prefix"]
    pieces = []
    start, n = 0, len(word)
    while start < n:
        end = n
        found = None
        while start < end:
            piece = word[start:end]
            if start > 0:
                piece = prefix + piece
            if piece in vocab:
                found = piece
                break
            end -= 1
        if found is None:
            return [unk]
        pieces.append(found)
        start = end
    return pieces


def tokenize(text: str, vocab, config: dict) -> list:
    """The answer's tokens (strings), uncut, without [CLS]/[SEP]."""
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    validate_config(config)
    vocab = _vocab(vocab)
    out = []
    for segment, special in _split_specials(text, config["specials"]):
        if special:
            out.append(segment)
            continue
        for word in words(normalize(segment)):
            out.extend(wordpiece(word, vocab, config))
    return out


def encode(text: str, vocab, config: dict) -> list:
    """The ids the teacher reads for one answer: [CLS] pieces [SEP], cut to ``max_length`` by the
    config's truncation rule (as kd_train/encoder.py's ``encode`` with no question)."""
    vocab = _vocab(vocab)
    tokens = tokenize(text, vocab, config)
    unk = vocab[config["unk"]]
    ids = [vocab.get(t, unk) for t in tokens]
    budget = config["max_length"] - 2
    if len(ids) > budget:
        if config["truncation"] == "head+tail":
            head = int(budget * config["head_share"])
            ids = ids[:head] + ids[len(ids) - (budget - head):]
        else:
            ids = ids[:budget]
    return [vocab[config["cls"]]] + ids + [vocab[config["sep"]]]
