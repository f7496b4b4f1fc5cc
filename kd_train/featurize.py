"""Featurizer: a written answer -> a sparse, signed, hashed, L2-normalised vector.

This one file (standard library only) runs in CPython when training and, byte for byte, in
Pyodide inside the web page. For the same text and config it returns bit-identical output in
both, for ANY Python str (including control characters and lone surrogates). The file itself
is pure ASCII, so its bytes (and sha256) cannot change with a text encoding on the way.

Features
    1. Normalise: ``text.translate(_TABLE)`` maps ASCII ``A-Z`` to ``a-z`` and fullwidth
       digits and letters (U+FF10-FF19, U+FF21-FF3A, U+FF41-FF5A) to ASCII ``0-9 a-z``, and deletes
       apostrophes and invisible joiners (``_DELETE``). Nothing else changes case.
    2. Tokens: maximal runs of token characters. Separators are ASCII except letters/digits, plus
       the code points listed in ``_SEPARATORS`` (Latin-1 punctuation, general/CJK/fullwidth
       punctuation, arrows/maths/box/dingbat symbols, specials, surrogates, ...). Every other code
       point >= 0x80 (letters of any script, CJK, emoji, private use, unassigned ones) is a token
       character.
    3. Word n-grams: n consecutive tokens joined by one space, n in ``word_ngram_range``.
       Char n-grams: n consecutive code points of ``" " + token + " "`` for every token (they do
       not cross tokens, like scikit-learn's ``char_wb``), n in ``char_ngram_range``.
    4. Hash: ``h = zlib.crc32(prefix + gram.encode("utf-8", "surrogatepass"), seed)`` (standard
       CRC-32, unsigned 32 bit; prefix ``b"w\\x1f"`` for word, ``b"c\\x1f"`` for char n-grams).
       Bucket ``h % n_buckets``; sign ``-1`` if bit 31 of ``h`` is set else ``+1`` (signed hashing:
       collisions tend to cancel instead of piling up).
    5. Weights: each distinct n-gram adds ``sign * weight * sqrt(count)`` to its bucket
       (``weight`` = ``word_weight`` or ``char_weight``; for count 1 that is exactly ``weight``),
       word n-grams first, then char n-grams, each in first-occurrence order. Then the vector is
       L2-normalised (sum of squares in bucket order, ``/ sqrt``); buckets that end at exactly 0.0
       (signed collisions cancelled out) are dropped.
       On ASAP-SAS (train -> test_public, 10 items, logistic regression, C=10) the defaults gave
       mean QWK 0.673, accuracy 0.711; char n-grams across tokens 0.645-0.652, word/char blocks
       normalised separately 0.645-0.667, raw counts instead of sqrt 0.657.
    Output: ``[(bucket, value), ...]`` sorted by bucket, unique buckets, Python floats; the model
    input is that vector made dense as float32 of length ``n_buckets``. Empty text (or text with
    no token character) gives ``[]``.
    Speed: the char n-grams of up to 4,096 recent tokens are kept in memory between calls (a pure
    cache: the output is the same with or without it; answers to one question share most words).

Token ids (``token_ids``, the sequence student's input; config ``TOKENS_CONFIG``)
    The same tokens (steps 1-2), in order, the first ``max_tokens`` of them; each one's id is
    ``1 + zlib.crc32(b"t\\x1f" + token UTF-8, seed) % (n_buckets - 1)``, so 0 is left for padding,
    no vocabulary file is needed and an unseen word still gets an id. Integers only: bit-identical
    anywhere by the same argument as the hashes below. Keys: version 1, kind "tokens", n_buckets
    (2 .. 2**24, default 8192), max_tokens (1 .. 65536, default 256), seed (as below).

Config keys (``DEFAULT_CONFIG``; JSON-serialisable, stored in scorer.json)
    version           1 (format of these rules; any change of output must bump it)
    n_buckets         int, 1 .. 2**24 (default 2048): length of the dense vector
    word_ngram_range  [lo, hi], 1 <= lo <= hi <= 6 (default [1, 2])
    char_ngram_range  [lo, hi], 1 <= lo <= hi <= 10 (default [2, 5])
    word_weight       number >= 0 (default 1.0): weight of word n-grams (0 turns them off)
    char_weight       number >= 0 (default 1.0): weight of char n-grams; not both 0
    seed              int, 0 .. 2**32-1 (default 0): CRC-32 start value

Why the output is bit-identical in CPython 3.10+ and Pyodide (3.14, other Unicode tables)
    * No Unicode database is consulted: no ``lower/upper/casefold``, no ``unicodedata``, no
      ``\\w \\d \\s``, no ``str.split()`` without argument, no ``isalpha`` etc. Case folding and
      token characters are the explicit code-point tables below, and ``re`` only sees explicit
      code-point ranges (no IGNORECASE), so the tokens are a pure function of the code points.
    * The hash is CRC-32 over UTF-8 bytes (``surrogatepass``: a lone surrogate is a separator
      anyway, but encoding can never raise), a fixed algorithm; built-in ``hash()`` (salted)
      is never used.
    * Floats: only ``+ * /`` and ``math.sqrt``, which IEEE 754 requires to be correctly rounded,
      each as its own Python operation on doubles (no fused multiply-add can happen across
      Python operations). Accumulation runs in a fixed order (n-gram first-occurrence order,
      then bucket order) with explicit loops: not ``sum()``, whose float algorithm
      changed in 3.12 (compensated summation; using it for the norm changed 1,230 of the 5,200
      parity-test vectors in the last bit), not ``pow``/``exp``/``log``/``hypot``.
    * dict/Counter iteration order is insertion order in every supported Python; Python ints
      do not overflow on 32-bit wasm; doubles are IEEE 754 binary64 on both. Equal doubles give
      equal float32 when the vector is made dense (round to nearest even, numpy or JS alike).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from itertools import repeat
from math import sqrt

__all__ = ["DEFAULT_CONFIG", "TOKENS_CONFIG", "featurize", "token_ids", "tokens", "validate_config", "validate_tokens_config"]

DEFAULT_CONFIG: dict = {
    "version": 1,
    "n_buckets": 2048,
    "word_ngram_range": [1, 2],
    "char_ngram_range": [2, 5],
    "word_weight": 1.0,
    "char_weight": 1.0,
    "seed": 0,
}

# The sequence student's input (token_ids): the same tokens, each hashed to an id in 1 .. n_buckets - 1
# (0 is padding). No vocabulary file: an unseen word still gets an id.
TOKENS_CONFIG: dict = {
    "version": 1,
    "kind": "tokens",
    "n_buckets": 8192,
    "max_tokens": 256,
    "seed": 0,
}

# Deleted before tokenising: apostrophes ' ` U+00B4 U+2019 U+02BC (so don't = dont = don<U+2019>t),
# soft hyphen, zero-width non-joiner/joiner, word joiner, BOM, variation selectors 1-16.
_DELETE = [0x27, 0x60, 0xB4, 0x2019, 0x02BC, 0xAD, 0x200C, 0x200D, 0x2060, 0xFEFF,
           *range(0xFE00, 0xFE10)]

_TABLE: dict = {c: None for c in _DELETE}
_TABLE.update({c: c + 32 for c in range(0x41, 0x5B)})                  # A-Z -> a-z
_TABLE.update({c: c - 0xFEE0 for c in range(0xFF10, 0xFF1A)})          # fullwidth 0-9
_TABLE.update({c: c - 0xFEE0 + 32 for c in range(0xFF21, 0xFF3B)})     # fullwidth A-Z -> a-z
_TABLE.update({c: c - 0xFEE0 for c in range(0xFF41, 0xFF5B)})          # fullwidth a-z

# Separators (inclusive code-point ranges). Everything else is a token character.
_SEPARATORS = [
    (0x00, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7F),  # ASCII except 0-9 A-Z a-z
    (0x80, 0xA9), (0xAB, 0xB1), (0xB4, 0xB4), (0xB6, 0xB8),  # C1 controls, NBSP, Latin-1 punct.
    (0xBB, 0xBB), (0xBF, 0xBF), (0xD7, 0xD7), (0xF7, 0xF7),  # (keeps AA B2 B3 B5 B9 BA BC-BE)
    (0x37E, 0x37E), (0x387, 0x387),                          # Greek question mark, ano teleia
    (0x55A, 0x55F), (0x589, 0x58A),                          # Armenian punctuation
    (0x5BE, 0x5BE), (0x5C0, 0x5C0), (0x5C3, 0x5C3), (0x5C6, 0x5C6), (0x5F3, 0x5F4),  # Hebrew
    (0x609, 0x60D), (0x61B, 0x61F), (0x66A, 0x66D), (0x6D4, 0x6D4),  # Arabic punctuation
    (0x964, 0x965), (0xE4F, 0xE4F), (0xE5A, 0xE5B),          # Devanagari danda, Thai
    (0x10FB, 0x10FB), (0x1360, 0x1368), (0x1680, 0x1680), (0x180E, 0x180E),
    (0x2000, 0x206F),                                        # General Punctuation (spaces, dashes,
                                                             #   quotes, U+2028/9, bidi, ...)
    (0x20A0, 0x20CF),                                        # currency symbols
    (0x2190, 0x27FF), (0x2900, 0x2BFF),                      # arrows, maths, technical, boxes,
                                                             #   shapes, dingbats (not Braille)
    (0x2E00, 0x2E7F),                                        # supplemental punctuation
    (0x3000, 0x3004), (0x3008, 0x3020), (0x3030, 0x3030), (0x303D, 0x303D),  # CJK punctuation
    (0x30FB, 0x30FB), (0xD800, 0xDFFF),                      # katakana middle dot; surrogates
    (0xFD3E, 0xFD3F), (0xFE10, 0xFE19), (0xFE30, 0xFE6F),    # ornate parens, vertical/small forms
    (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65),  # fullwidth punct.
    (0xFFF0, 0xFFFF),                                        # specials (U+FFFC, U+FFFD, ...)
]
_TOKEN_RE = re.compile(
    "[^" + "".join("\\U%08x-\\U%08x" % r for r in _SEPARATORS) + "]+")
_find_tokens = _TOKEN_RE.findall

_WORD_PREFIX = b"w\x1f"
_TOKEN_PREFIX = b"t\x1f"
_CHAR_PREFIX = b"c\x1f"


def _range(config: dict, key: str, top: int) -> tuple[int, int]:
    r = config[key]
    if (not isinstance(r, (list, tuple)) or len(r) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            or not 1 <= r[0] <= r[1] <= top):
        raise ValueError(f"featurizer config {key!r} = {r!r}: use [lo, hi] with integers "
                         f"1 <= lo <= hi <= {top}, e.g. {DEFAULT_CONFIG[key]!r}")
    return r[0], r[1]


def _weight(config: dict, key: str) -> float:
    w = config[key]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w < float("inf"):
        raise ValueError(f"featurizer config {key!r} = {w!r}: use a finite number >= 0, "
                         f"e.g. {DEFAULT_CONFIG[key]!r}")
    return float(w)


def _int(config: dict, key: str, lo: int, hi: int) -> int:
    v = config[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"featurizer config {key!r} = {v!r}: use an integer in [{lo}, {hi}], "
                         f"e.g. {DEFAULT_CONFIG[key]!r}")
    return v


def _params(config: dict) -> tuple:
    if not isinstance(config, dict):
        raise ValueError(f"featurizer config must be a dict, got {type(config).__name__}; "
                         "start from a copy of DEFAULT_CONFIG")
    missing = [k for k in DEFAULT_CONFIG if k not in config]
    unknown = [k for k in config if k not in DEFAULT_CONFIG]
    if missing or unknown:
        raise ValueError(f"featurizer config: missing keys {missing}, unknown keys {unknown}; "
                         f"expected exactly {sorted(DEFAULT_CONFIG)} "
                         "(start from a copy of DEFAULT_CONFIG)")
    if config["version"] != 1 or isinstance(config["version"], bool):
        raise ValueError(f"featurizer config 'version' = {config['version']!r}: this "
                         "featurize.py implements version 1 only; use the featurize.py the "
                         "scorer was trained with, or set 'version': 1")
    ww, cw = _weight(config, "word_weight"), _weight(config, "char_weight")
    if ww == 0.0 and cw == 0.0:
        raise ValueError("featurizer config 'word_weight' and 'char_weight' are both 0: "
                         "set at least one > 0, e.g. 1.0")
    return (_int(config, "n_buckets", 1, 1 << 24), _range(config, "word_ngram_range", 6),
            _range(config, "char_ngram_range", 10), ww, cw, _int(config, "seed", 0, 0xFFFFFFFF))


def validate_config(config: dict) -> dict:
    """Check a featurizer config; return it unchanged, or raise ValueError naming the bad key."""
    _params(config)
    return config


def _add(acc: dict, grams: list, start: int, n_buckets: int, weight: float) -> None:
    """Add ``sign * weight * sqrt(count)`` of each distinct n-gram (UTF-8 bytes) to its bucket."""
    counts = Counter(grams)                          # insertion (first-occurrence) order
    get = acc.get
    neg = -weight
    for h, tf in zip(map(zlib.crc32, counts, repeat(start)), counts.values()):
        b = h % n_buckets
        if tf == 1:                                  # most n-grams: no sqrt, no multiply
            acc[b] = get(b, 0.0) + (neg if h & 0x80000000 else weight)
        else:
            v = weight * sqrt(tf)
            acc[b] = get(b, 0.0) + (-v if h & 0x80000000 else v)


# A token's char n-grams, kept across calls (answers to one question share most of their words).
# Bounded: at most _CACHE_TOKENS tokens of at most _CACHE_TOKEN_CHARS chars (a few MB), then cleared.
_CHAR_GRAMS: dict = {}                               # (lo, hi) -> {token: [gram bytes, ...]}
_CACHE_TOKENS = 4096
_CACHE_TOKEN_CHARS = 24


def _char_grams(tok: str, ns: range) -> list:
    """The char n-grams (UTF-8 bytes) of ``" " + tok + " "`` for n in ``ns``, n-major order."""
    s = " " + tok + " "
    if s.isascii():             # then slicing the UTF-8 bytes = encoding each str slice
        s = s.encode()
        return [s[i:i + n] for n in ns for i in range(len(s) - n + 1)]
    return [s[i:i + n].encode("utf-8", "surrogatepass") for n in ns for i in range(len(s) - n + 1)]


def featurize(text: str, config: dict) -> list[tuple[int, float]]:
    """Return the sparse feature vector of ``text``: sorted ``[(bucket, value), ...]``.

    Raises ValueError for an invalid config, TypeError if ``text`` is not a str.
    """
    n_buckets, (wlo, whi), (clo, chi), ww, cw, seed = _params(config)
    if not isinstance(text, str):
        raise TypeError(f"featurize expects str, got {type(text).__name__}")
    tokens = _find_tokens(text.translate(_TABLE))
    if not tokens:
        return []
    acc: dict = {}
    if ww > 0.0:
        grams = []
        for n in range(wlo, whi + 1):
            grams += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        grams = [g.encode("utf-8", "surrogatepass") for g in grams]
        _add(acc, grams, zlib.crc32(_WORD_PREFIX, seed), n_buckets, ww)
    if cw > 0.0:
        grams = []
        ns = range(clo, chi + 1)
        cache = _CHAR_GRAMS.setdefault((clo, chi), {})
        for tok, count in Counter(tokens).items():   # char n-grams inside " token "
            g = cache.get(tok)
            if g is None:
                g = _char_grams(tok, ns)
                if len(tok) <= _CACHE_TOKEN_CHARS:
                    if len(cache) >= _CACHE_TOKENS:
                        cache.clear()
                    cache[tok] = g
            grams += g if count == 1 else g * count
        _add(acc, grams, zlib.crc32(_CHAR_PREFIX, seed), n_buckets, cw)
    buckets = sorted(acc)                            # ints sort faster than (int, float) pairs
    values = [acc[b] for b in buckets]
    norm2 = 0.0
    for v in values:
        norm2 += v * v
    if norm2 == 0.0:                                 # everything cancelled out
        return []
    norm = sqrt(norm2)
    return [(b, v / norm) for b, v in zip(buckets, values) if v != 0.0]


def _tokens_params(config: dict) -> tuple:
    if not isinstance(config, dict) or config.keys() != TOKENS_CONFIG.keys():
        raise ValueError(f"token config must be a dict with exactly the keys {sorted(TOKENS_CONFIG)}, got "
                         f"{sorted(config) if isinstance(config, dict) else type(config).__name__} "
                         "(start from a copy of TOKENS_CONFIG)")
    if config["version"] != 1 or isinstance(config["version"], bool) or config["kind"] != "tokens":
        raise ValueError(f"token config version {config['version']!r}, kind {config['kind']!r}: this featurize.py "
                         "implements version 1 of kind 'tokens' only")
    values = []
    for key, lo, hi in (("n_buckets", 2, 1 << 24), ("max_tokens", 1, 1 << 16), ("seed", 0, 0xFFFFFFFF)):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"token config {key!r} = {v!r}: use an integer in [{lo}, {hi}], "
                             f"e.g. {TOKENS_CONFIG[key]!r}")
        values.append(v)
    return tuple(values)


def validate_tokens_config(config: dict) -> dict:
    """Check a token config (the sequence student's); return it unchanged, or raise ValueError naming the bad key."""
    _tokens_params(config)
    return config


def tokens(text: str) -> list:
    """The answer's tokens (steps 1-2: case-folded words), in order."""
    return _find_tokens(text.translate(_TABLE))


def token_ids(text: str, config: dict) -> list:
    """The sequence student's input: the first ``max_tokens`` tokens of ``text`` (the same tokens as
    :func:`featurize`'s), each ``1 + crc32(b"t\\x1f" + UTF-8, seed) % (n_buckets - 1)``; ``[]`` for no token.

    Raises ValueError for an invalid config, TypeError if ``text`` is not a str.
    """
    n_buckets, max_tokens, seed = _tokens_params(config)
    if not isinstance(text, str):
        raise TypeError(f"token_ids expects str, got {type(text).__name__}")
    start = zlib.crc32(_TOKEN_PREFIX, seed)
    size = n_buckets - 1
    return [1 + zlib.crc32(tok.encode("utf-8", "surrogatepass"), start) % size
            for tok in tokens(text)[:max_tokens]]
