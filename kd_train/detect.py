"""Answers the scorer should not judge: detectors that run beside the model, in the page and the CLI.

This file (standard library only, pure ASCII) runs in CPython for ``kd-train predict`` and, byte
for byte, in Pyodide inside the web page, so both flag the same answers. It reads the answer with
featurize.py's own rules (its case table and token pattern), so the detectors see the words the
model sees.

What is measured (every value is "higher = stranger"; all but off_topic are shares, 0 to 1)
    unknown       words the item's training answers do not use (a word counts as known when at
                  least ``min_count`` training answers contain it): misspelt, gibberish, another
                  language or another topic.
    unseen_pairs  adjacent word pairs that no two training answers contain: a list of key words
                  instead of sentences, shuffled words, text about something else.
    copied        word 4-grams found in the question, the reading text (stimulus) or the
                  reference answer.
    repeated      word 4-grams that repeat an earlier 4-gram of the answer. A fixed rule, not a fitted
                  threshold: at least ``REPEATED_RULE`` of them (the same passage written three times or
                  more, or most of a long answer written twice). Real answers repeat sentence frames
                  ("You would need to know ... You would also need to know ..."): a threshold set on
                  their tail flagged only such answers, out of fold, on ASAP-SAS. No ASAP-SAS or SAF
                  answer, training or test, comes above 0.37.
    off_topic     how far the answer's unknown words and unseen pairs exceed what a real answer of
                  its length has: the binomial z-scores of the two counts against the item's median
                  rates (out of fold), added. Long answers to another question have ordinary
                  shares of common words but far more unknown ones than their length allows.
    other_question  (only when the training table holds answers to other questions) how much more
                  the answer's words are those of answers to the table's other questions than of
                  answers to this one: the summed log-odds of its distinct words, divided by the
                  square root of their number. It tells apart answers to two questions on one
                  subject (two biology items), where every word is known to both.
    negated       (only when the training answers are scored; flag ``negated``) a negation cue (``NEGATIONS``:
                  not, n't, no, never, nicht, kein..., nie, nichts ...) between two words that top-scored
                  answers often write side by side and answers rarely write around a negation: how many
                  levels (about log2 of the numbers of answers) the first count is above the second, plus
                  the share of the answer's pairs that top-scored answers use. A top-scored answer with
                  "not" after its first auxiliary verb reads, word by word, as the answer it negates.
                  (Here "top-scored" is the top score's answers, or the top scores' where the top one
                  holds under detect_fit.py's ``TOP_MIN_SHARE`` of the answers.)
    negated_head  (the same; flag ``negated``) a negation among the first ``HEAD_WORDS`` words that
                  top-scored answers do not write (the cue and its next word), followed by word pairs of
                  top-scored answers: "It is not true that" in front of a top-scored answer.
    stuffed       (the same) the answer's tail after its last glue words: how many of its words are
                  the item's key terms (words top-scored answers use much more than others), times the
                  share of unseen pairs there. A poor answer with the words that earn points appended.
                  Neither the scorers nor the fine-tuned teachers tell these three from real top-scored
                  answers (measured), so a flag routes the answer to a teacher.
    The shares of words, pairs and 4-grams are smoothed by the answer's length (``count / (n + 2)``),
    so one rare word in a two-word answer does not read as gibberish, nor one quoted phrase as a copy.
    Four fixed rules need no threshold: ``empty`` (no word at all), ``too_long`` (more than twice
    the words of the longest training answer), ``repeated`` (above) and ``listed``: four words or more, most of them known,
    none of them one of the item's glue words, and at least half of its word pairs unseen. Glue words are the item's
    most common words that top-scored and other answers use alike ("the", "to", "it", and the topic
    words everyone writes); a list of the words that earn points has none of them, on items whose
    real answers are lists of steps as much as on items of full sentences, and its pairs are not
    ones students write (a list students often write, like the phases of mitosis, is left to the
    scorer, which learned its score from people). An answer over ``max_chars`` characters is refused
    before anything else runs.

The profile (scorer.json ``detectors``) holds the CRC-32 of each glue word and (``keys``) of each key term,
the CRC-32 and log-odds
(int8, eighths) of each word of ``other_question`` that at least detect_fit.py's ``OTHER_MIN_COUNT`` answers use, one bitset of hashed words, word pairs and source
4-grams (CRC-32 of ``prefix + UTF-8``, modulo 2**bits: no answer text is stored; with scores also the
word pairs of top-scored answers and every answer's negations in context, each under one prefix per level:
used by at least 1, 2, 4 ... answers) and one threshold per measure. Profiles written before off_topic,
listed, other_question, negated or stuffed existed still load, with those checks off. kd_train/detect_fit.py's ``fit`` builds the profile (it is not in the page); it chooses the thresholds on answers the profile was not built from (k-fold over
the training answers), jointly, so that at most ``share`` of those answers gets any flag.
"""

from __future__ import annotations

import base64
import zlib
from math import sqrt

try:
    from kd_train import featurize as _featurize
except ImportError:  # in the page, featurize.py is a top-level module
    import featurize as _featurize

__all__ = ["VERSION", "MEASURES", "REASONS", "MAX_CHARS", "measure", "flags", "check_profile", "words"]

VERSION = 1
MEASURES = ("unknown", "unseen_pairs", "copied", "off_topic", "other_question", "negated", "negated_head",
            "stuffed")   # those with a fitted threshold
_CORE = MEASURES[:3]   # every profile has these; off_topic (with "rates") only those fitted since it was added,
                       # other_question (with "other") only those fitted beside answers to other questions,
                       # negated, negated_head and stuffed (with "keys") only those fitted with scores since they were added
_CODE = {"negated_head": "negated"}   # measures whose flag goes by another code
_RETIRED = ("repeated",)   # thresholds that profiles fitted by earlier versions hold and flags() ignores
REPEATED_RULE = 0.5    # share of repeated word 4-grams from which an answer is flagged "repeated"
MAX_CHARS = 20000  # longer answers are refused, not scored (the longest ASAP-SAS answer has 1,819)
KEY_TERMS = 60          # how many key terms (words over-represented in top-scored answers) an item has at most
NEGATIONS = frozenset((   # negation cues, as words() reads them (apostrophes dropped: "don't" is "dont")
    "not", "no", "never", "nothing", "none", "nor", "neither", "cannot", "nobody", "nowhere", "dont", "doesnt",
    "didnt", "isnt", "arent", "wasnt", "werent", "cant", "couldnt", "wont", "wouldnt", "shouldnt", "hasnt",
    "havent", "hadnt", "mustnt", "neednt",
    "nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals", "nichts", "niemand",
    "weder", "nirgends"))
_NEG_LEVELS = (1, 2, 4, 8, 16, 32, 64, 128, 256)   # counts are stored as levels: level k = used by >= LEVELS[k-1]
_TOP_LEVELS = (2, 4, 8, 16, 32, 64, 128, 256)      # answers (a pair of one top-scored answer is not stored)
HEAD_WORDS = 4          # negated_head looks for a negation among the answer's first words
REASONS = {
    "empty": "There is no answer to score.",
    "too_long": "This answer is far longer than any answer the scorer learned from.",
    "refused": "This answer is too long to score here (over {max_chars:,} characters).",
    "unknown": "Many of these words never appear in answers to this question (misspelt, another language, "
               "or not about this question).",
    "unseen_pairs": "This looks like a list of words or text about something else, not an explanation of "
                    "this question.",
    "copied": "Much of this answer is copied from the question or the reading text.",
    "repeated": "The same words are repeated many times.",
    "off_topic": "This does not seem to answer this question: many of its words and word pairs are not used in "
                 "answers to it.",
    "other_question": "This looks like an answer to another question, not to this one.",
    "listed": "This looks like a list of key words, not sentences that explain the answer.",
    "negated": "This answer negates something that top-scored answers to this question say; the scorer cannot "
               "tell a negated answer from the answer it negates.",
    "stuffed": "This answer ends with a list of the words that earn points, added to an answer that does not "
               "explain them.",
}

_UNIGRAM, _PAIR, _SOURCE, _GLUE, _OTHER, _KEY = b"u\x1f", b"p\x1f", b"s\x1f", b"g\x1f", b"o\x1f", b"k\x1f"
_TOP = tuple(b"t%d\x1f" % k for k in _TOP_LEVELS)   # word pairs of top-scored answers, by level
_NEG = tuple(b"n%d\x1f" % k for k in _NEG_LEVELS)   # negation contexts "before cue after" of any answer, by level


def words(text: str) -> list:
    """The answer's words, exactly as featurize.py tokenises it (case-folded)."""
    return _featurize._find_tokens(text.translate(_featurize._TABLE))


def _hashes(prefix: bytes, grams, mask: int) -> list:
    start = zlib.crc32(prefix)
    return [zlib.crc32(g.encode("utf-8", "surrogatepass"), start) & mask for g in grams]


def _pairs(tokens: list) -> list:
    return [a + " " + b for a, b in zip(tokens, tokens[1:])]


def _ngrams(tokens: list, n: int) -> list:
    return [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


class _Table:
    """A bitset of hashed grams."""

    def __init__(self, bits: int, data: bytes | None = None):
        self.bits, self.mask = bits, (1 << bits) - 1
        self.data = bytearray(data) if data is not None else bytearray(1 << max(bits - 3, 0))

    def add(self, prefix: bytes, grams) -> None:
        for h in _hashes(prefix, grams, self.mask):
            self.data[h >> 3] |= 1 << (h & 7)

    def unseen(self, prefix: bytes, grams) -> int:
        data = self.data
        return sum(1 for h in _hashes(prefix, grams, self.mask) if not data[h >> 3] >> (h & 7) & 1)

    def level(self, prefixes: tuple, gram: str) -> int:
        """How many of the levels ``prefixes`` (lowest first) hold ``gram``, counted up to the first that does not."""
        data, k = self.data, 0
        for prefix in prefixes:
            h = _hashes(prefix, [gram], self.mask)[0]
            if not data[h >> 3] >> (h & 7) & 1:
                break
            k += 1
        return k


def _z(count: int, n: int, rate: float) -> float:
    """Binomial z-score of ``count`` out of ``n`` at ``rate`` (0 for n = 0)."""
    return (count - n * rate) / sqrt(n * rate * (1.0 - rate)) if n else 0.0


def _glue_count(tokens: list, glue) -> int:
    return sum(1 for h in _hashes(_GLUE, tokens, 0xFFFFFFFF) if h in glue)


def _elsewhere(tokens: list, weights: dict) -> float:
    """other_question: the log-odds (other questions' answers : this one's) of the distinct words, summed,
    over the square root of their number (words without a weight count 0)."""
    distinct = set(tokens)
    if not distinct:
        return 0.0
    return sum(weights.get(h, 0) for h in _hashes(_OTHER, distinct, 0xFFFFFFFF)) / 8.0 / sqrt(len(distinct))


def _negated(tokens: list, table: _Table) -> float:
    """negated: for each negation cue between two words, how much more often top-scored answers write those two
    words side by side (the statement without the negation) than any answer writes them around the cue
    (levels, about log2 of the numbers of answers); the largest, when above 0, plus the share of the answer's
    word pairs that 2 or more top-scored answers use (smoothed, below 1: of two answers with the same negation,
    the one that otherwise reads more like a top-scored answer is the stranger); else 0."""
    best = 0
    for i in range(1, len(tokens) - 1):
        if tokens[i] in NEGATIONS:
            a, b = tokens[i - 1], tokens[i + 1]
            best = max(best, table.level(_TOP, a + " " + b) - table.level(_NEG, a + " " + tokens[i] + " " + b))
    if not best:
        return 0.0
    pairs = _pairs(tokens)
    return best + (len(pairs) - table.unseen(_TOP[0], pairs)) / (len(pairs) + 2)


def _negated_head(tokens: list, table: _Table) -> float:
    """negated_head: an answer that opens with a negation (among its first HEAD_WORDS words) that top-scored
    answers do not write (the cue and the next word, in fewer than 2 of them), followed by words that read like a
    top-scored answer: the share of the word pairs after it that at least 2 top-scored answers use (smoothed);
    0 otherwise."""
    for i, w in enumerate(tokens[:HEAD_WORDS]):
        if w in NEGATIONS:
            if i + 1 < len(tokens) and table.level(_TOP, w + " " + tokens[i + 1]):
                return 0.0
            pairs = _pairs(tokens[i + 2:])
            return (len(pairs) - table.unseen(_TOP[0], pairs)) / (len(pairs) + 2) if len(pairs) >= 3 else 0.0
    return 0.0


def _stuffed(tokens: list, table: _Table, glue, keys) -> float:
    """stuffed: the answer's tail, the words after its last glue word (or after the one before it, so that an
    "and" inside a list of terms does not end it), when two or more: the number of them that are key terms times
    the share of unseen word pairs among them (the pair that joins them to the rest included); the larger."""
    starts, i = [], len(tokens)
    glued = _hashes(_GLUE, tokens, 0xFFFFFFFF)
    while i and len(starts) < 2:
        if glued[i - 1] in glue:
            starts.append(i)
        i -= 1
    if len(starts) < 2:
        starts.append(0)
    is_key = [h in keys for h in _hashes(_KEY, tokens, 0xFFFFFFFF)]
    best = 0.0
    for i in starts:
        if len(tokens) - i >= 2:
            pairs = _pairs(tokens[max(i - 1, 0):])
            best = max(best, sum(is_key[i:]) * table.unseen(_PAIR, pairs) / len(pairs))
    return best


def _measures(tokens: list, table: _Table, rates: dict | None = None, other: dict | None = None,
              negation: bool = False, glue=None, keys=None) -> dict:
    n = len(tokens)
    pairs = _pairs(tokens)
    fours = _ngrams(tokens, 4)
    unknown = table.unseen(_UNIGRAM, tokens)
    unseen = table.unseen(_PAIR, pairs)
    values = {
        "unknown": unknown / (n + 2),
        "unseen_pairs": unseen / (len(pairs) + 2),
        "copied": (len(fours) - table.unseen(_SOURCE, fours)) / (len(fours) + 2),
        "repeated": 1.0 - len(set(fours)) / len(fours) if fours else 0.0,
    }
    if rates is not None:
        values["off_topic"] = _z(unknown, n, rates["unknown"]) + _z(unseen, len(pairs), rates["unseen_pairs"])
    if other is not None:
        values["other_question"] = _elsewhere(tokens, other)
    if negation:
        values["negated"] = _negated(tokens, table)
        values["negated_head"] = _negated_head(tokens, table)
    if keys is not None and glue is not None:
        values["stuffed"] = _stuffed(tokens, table, glue, keys)
    return values


def _listed(tokens: list, table: _Table, glue) -> bool:
    """Four words or more, most of them known, none of them glue, half of the pairs or more unseen."""
    if glue is None or len(tokens) < 4 or _glue_count(tokens, glue) or 2 * table.unseen(_UNIGRAM, tokens) > len(tokens):
        return False
    pairs = _pairs(tokens)
    return 2 * table.unseen(_PAIR, pairs) >= len(pairs)


_TABLES: dict = {}  # id(profile) -> (profile, _Table, glue set, weights, key set): the page and predict decode a profile once


def _pack_weights(weights: dict) -> dict:
    """{crc: int8} as two base64 strings: the CRCs (4 bytes each, big-endian, ascending) and the weights."""
    keys = sorted(weights)
    return {"hashes": base64.b64encode(b"".join(k.to_bytes(4, "big") for k in keys)).decode("ascii"),
            "weights": base64.b64encode(bytes(weights[k] & 0xFF for k in keys)).decode("ascii")}


def _unpack_weights(packed: dict) -> dict:
    keys, values = base64.b64decode(packed["hashes"]), base64.b64decode(packed["weights"])
    return {int.from_bytes(keys[4 * i:4 * i + 4], "big"): v - 256 if v > 127 else v for i, v in enumerate(values)}


def _decoded(profile: dict) -> tuple:
    cached = _TABLES.get(id(profile))
    if cached is None or cached[0] is not profile:
        if len(_TABLES) > 64:
            _TABLES.clear()
        glue = frozenset(profile["glue"]) if "glue" in profile else None
        other = _unpack_weights(profile["other"]) if "other" in profile else None
        keys = frozenset(profile["keys"]) if "keys" in profile else None
        cached = (profile, _Table(profile["bits"], base64.b64decode(profile["table"])), glue, other, keys)
        _TABLES[id(profile)] = cached
    return cached[1:]


def measure(text: str, profile: dict) -> dict:
    """The answer's measures under ``profile`` (plus ``words``, its word count, and ``listed``)."""
    tokens = words(text)
    table, glue, other, keys = _decoded(profile)
    return {"words": len(tokens), "listed": _listed(tokens, table, glue),
            **_measures(tokens, table, profile.get("rates"), other, "negated" in profile["thresholds"], glue, keys)}


def flags(text: str, profile: dict | None) -> list:
    """Why the scorer should not judge ``text`` (codes of REASONS; [] when nothing is wrong).

    ``refused`` (too many characters to score) comes alone; so does ``empty``.
    """
    if profile is None:
        return []
    if len(text) > profile["max_chars"]:
        return ["refused"]
    tokens = words(text)
    if not tokens:
        return ["empty"]
    table, glue, other, keys = _decoded(profile)
    found = ["too_long"] if len(tokens) > profile["max_words"] else []
    thresholds = profile["thresholds"]
    values = _measures(tokens, table, profile.get("rates"), other, "negated" in thresholds, glue, keys)
    for m in MEASURES:
        code = _CODE.get(m, m)
        if m in thresholds and values[m] > thresholds[m] and code not in found:
            found.append(code)
    found += ["repeated"] if values["repeated"] >= REPEATED_RULE else []
    return found + ["listed"] if _listed(tokens, table, glue) else found


def reason(code: str, profile: dict | None = None) -> str:
    """The plain sentence for a flag code."""
    return REASONS[code].format(max_chars=(profile or {}).get("max_chars", MAX_CHARS))


def _crc_list(values, most: int) -> bool:
    return isinstance(values, list) and len(values) <= most and all(
        isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 0xFFFFFFFF for h in values)


def check_profile(profile) -> None:
    """Raise ValueError naming what is wrong with a scorer.json ``detectors`` section."""
    if not isinstance(profile, dict):
        raise ValueError("'detectors' must be an object")
    if profile.get("version") != VERSION:
        raise ValueError(f"'detectors' version {profile.get('version')!r}: this detect.py reads version {VERSION}")
    bits = profile.get("bits")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 3 <= bits <= 24:
        raise ValueError(f"'detectors' bits {bits!r}: use an integer in [3, 24]")
    try:
        size = len(base64.b64decode(profile.get("table", ""), validate=True))
    except (TypeError, ValueError):
        raise ValueError("'detectors' table is not base64") from None
    if size != 1 << (bits - 3):
        raise ValueError(f"'detectors' table holds {size} bytes; {bits} bits need {1 << (bits - 3)}")
    thresholds = profile.get("thresholds")
    if not isinstance(thresholds, dict) or not set(_CORE) <= set(thresholds) <= {*MEASURES, *_RETIRED} or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in thresholds.values()):
        raise ValueError(f"'detectors' thresholds must give a number for each of {list(_CORE)} "
                         "(and off_topic, other_question, negated with negated_head, and stuffed, optionally)")
    if ("negated" in thresholds) != ("negated_head" in thresholds):
        raise ValueError("'detectors' thresholds must give negated and negated_head together, or neither")
    rates = profile.get("rates")
    if ("off_topic" in thresholds) != (rates is not None) or rates is not None and not (
            isinstance(rates, dict) and all(isinstance(rates.get(k), float) and 0.0 < rates[k] < 1.0
                                            for k in ("unknown", "unseen_pairs"))):
        raise ValueError("'detectors' rates must give unknown and unseen_pairs rates between 0 and 1, "
                         "exactly when thresholds has off_topic")
    other = profile.get("other")
    if ("other_question" in thresholds) != (other is not None):
        raise ValueError("'detectors' other must be there exactly when thresholds has other_question")
    if other is not None:
        try:
            sizes = [len(base64.b64decode(other[k], validate=True)) for k in ("hashes", "weights")]
        except (TypeError, ValueError, KeyError):
            raise ValueError("'detectors' other must hold base64 'hashes' and 'weights'") from None
        if sizes[0] != 4 * sizes[1]:
            raise ValueError(f"'detectors' other holds {sizes[0]} bytes of hashes for {sizes[1]} weights; "
                             "each weight needs 4")
    glue = profile.get("glue")
    if glue is not None and not _crc_list(glue, 1000):
        raise ValueError("'detectors' glue must be a list of at most 1,000 CRC-32 values (integers)")
    keys = profile.get("keys")
    if ("stuffed" in thresholds) != (keys is not None) or keys is not None and glue is None:
        raise ValueError("'detectors' keys must be there exactly when thresholds has stuffed (and glue with them)")
    if keys is not None and not _crc_list(keys, KEY_TERMS):
        raise ValueError(f"'detectors' keys must be a list of at most {KEY_TERMS} CRC-32 values (integers)")
    for key in ("max_words", "max_chars"):
        value = profile.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"'detectors' {key} {value!r}: use a positive integer")
