"""Fitting the detectors of kd_train/detect.py: one item's profile from its training answers (``kd-train train``).

detect.py is what runs beside the model, in the page (byte for byte, in Pyodide) and in ``kd-train predict``;
this module builds what it reads, the profile (scorer.json ``detectors``), and never goes into the page. It
reads answers with detect.py's own functions, so a profile measures new answers exactly as it measured the
training answers its thresholds were chosen on.
"""

from __future__ import annotations

import base64
import random
from math import log

from kd_train.detect import (_CORE, _GLUE, _KEY, _NEG, _NEG_LEVELS, _OTHER, _PAIR, _SOURCE, _TOP, _TOP_LEVELS, _UNIGRAM,
                             KEY_TERMS, MAX_CHARS, MEASURES, NEGATIONS, REPEATED_RULE, VERSION, _hashes, _listed,
                             _measures, _ngrams, _pack_weights, _pairs, _Table, words)

__all__ = ["fit", "GLUE_WORDS", "MEANING_MIN_ANSWERS", "OTHER_MIN_ANSWERS"]

GLUE_WORDS = 100       # how many glue words an item has at most (100 flags fewer real answers than 25 or 50,
                       # out of fold on ASAP-SAS's training answers; the key-word lists are flagged alike)
GLUE_BIAS = 0.7        # a word whose log-odds between top-scored and other answers is above this is no glue
OTHER_MIN_ANSWERS = 20  # fewer answers to other questions than this: no other_question measure
MEANING_MIN_ANSWERS = 1000   # scored training answers from which negated and stuffed are fitted (see fit)
OTHER_MIN_COUNT = 3     # a word gets an other_question weight when this many answers (both sides) use it
TOP_MIN_SHARE = 0.05   # the top-scored answers of negated and negated_head: at least this share of them (see _top_floor)


def _bits_for(entries: int) -> int:
    """The smallest table with >= 16 bits per entry (about 6% of unknown grams read as known)."""
    bits = 12
    while (1 << bits) < 16 * entries and bits < 22:
        bits += 1
    return bits


def _answer_counts(answers: list) -> dict:
    """How many answers use each word (or each gram, given lists of grams)."""
    counts = {}
    for tokens in answers:
        for w in set(tokens):
            counts[w] = counts.get(w, 0) + 1
    return counts


def _contexts(tokens: list) -> list:
    """Each negation cue between two words, as "before cue after"."""
    return [" ".join(tokens[i - 1:i + 2]) for i in range(1, len(tokens) - 1) if tokens[i] in NEGATIONS]


def _levelled(counts: dict, levels: tuple, prefixes: tuple) -> list:
    """(prefix, grams) for each level: the grams whose count reaches it."""
    return [(prefix, sorted(g for g, c in counts.items() if c >= least)) for least, prefix in zip(levels, prefixes)]


def _build(answers: list, sources: list, min_count: int, bits: int | None = None, scores: list | None = None) -> _Table:
    """The bitset: known words, pairs of 2+ answers, source 4-grams; with ``scores``, also the word pairs of
    top-scored answers and the negation contexts of all answers, by level (for negated and negated_head)."""
    counts_u, counts_p = _answer_counts(answers), _answer_counts([_pairs(tokens) for tokens in answers])
    known_u = [w for w, c in counts_u.items() if c >= min_count]
    known_p = [p for p, c in counts_p.items() if c >= 2]
    source = sorted({g for tokens in sources for g in _ngrams(tokens, 4)})
    entries = [(_UNIGRAM, known_u), (_PAIR, known_p), (_SOURCE, source)]
    if scores is not None and any(s is not None for s in scores):
        top = _top_floor(scores)
        top_pairs = _answer_counts([_pairs(t) for t, s in zip(answers, scores) if s is not None and s >= top])
        entries += _levelled(top_pairs, _TOP_LEVELS, _TOP)
        entries += _levelled(_answer_counts([_contexts(t) for t in answers]), _NEG_LEVELS, _NEG)
    table = _Table(bits or _bits_for(sum(len(grams) for _, grams in entries)))
    for prefix, grams in entries:
        table.add(prefix, grams)
    return table


def _top_floor(scores: list) -> int:
    """The lowest score of the "top-scored" answers whose word pairs negated and negated_head read: the top
    score, lowered until those answers are at least ``TOP_MIN_SHARE`` of the scored ones. Where the top score
    is rare (2% of ASAP-SAS item 5's answers) its few answers hold too few of the statements that a negation
    turns around; the next score's answers make most of them too."""
    scored = sorted((s for s in scores if s is not None), reverse=True)
    return scored[min(int(TOP_MIN_SHARE * len(scored)), len(scored) - 1)]


def _min_count(n_answers: int) -> int:
    """A word is known when this many training answers use it: 2, or 0.5% of them on large items."""
    return max(2, round(0.005 * n_answers))


def _threshold(ranked: list, share: float) -> float:
    """The smallest threshold t with at most ``share`` of the values above it (``ranked``: sorted, largest first)."""
    k = int(share * len(ranked))
    return ranked[k] if k < len(ranked) else 0.0


def _joint_thresholds(oof: list, share: float, fixed: list | None = None) -> dict:
    """Per-measure thresholds at a common tail share p, with p as large as keeps the union <= share
    (answers a fixed rule flags, ``fixed``, count towards the union)."""
    fixed = fixed or [False] * len(oof)
    names = [m for m in MEASURES if m in oof[0]] if oof else list(_CORE)
    ranked = {m: sorted((v[m] for v in oof), reverse=True) for m in names}   # sorted once, not per step

    def union(p: float) -> tuple:
        t = {m: _threshold(ranked[m], p) for m in names}
        flagged = sum(1 for v, f in zip(oof, fixed) if f or any(v[m] > t[m] for m in names))
        return flagged / max(len(oof), 1), t

    lo, hi = 0.0, share
    for _ in range(30):
        mid = (lo + hi) / 2
        if union(mid)[0] > share:
            hi = mid
        else:
            lo = mid
    return union(lo)[1]


def _glue_words(answers: list, scores: list | None) -> list:
    """The item's glue words: its GLUE_WORDS most common words (by answers using them) that top-scored
    and other scored answers use alike (smoothed log-odds within GLUE_BIAS); without scores, the most
    common words."""
    scored = [s for s in scores if s is not None] if scores else []
    top = max(scored) if scored else None
    used, top_used, rest_used = {}, {}, {}
    for i, tokens in enumerate(answers):
        s = scores[i] if scores else None
        for w in set(tokens):
            used[w] = used.get(w, 0) + 1
            if s is not None:
                counts = top_used if s == top else rest_used
                counts[w] = counts.get(w, 0) + 1
    n_top = sum(1 for s in scored if s == top)
    n_rest = len(scored) - n_top
    glue = []
    for w in sorted(used, key=lambda w: (-used[w], w)):
        if used[w] < 2 or len(glue) >= GLUE_WORDS:
            break
        if n_top and n_rest and abs(log((top_used.get(w, 0) + 1) / (n_top + 2))
                                    - log((rest_used.get(w, 0) + 1) / (n_rest + 2))) > GLUE_BIAS:
            continue
        glue.append(w)
    return glue


def _glue_set(words_: list) -> frozenset:
    return frozenset(_hashes(_GLUE, words_, 0xFFFFFFFF))


def _key_terms(answers: list, scores: list) -> list:
    """The item's key terms: at most KEY_TERMS words that at least 3 top-scored answers use and that top-scored
    answers use more than other scored answers by a smoothed log-odds above GLUE_BIAS (most over-represented first)."""
    scored = [s for s in scores if s is not None]
    if not scored:
        return []
    top = max(scored)
    top_used, rest_used = _answer_counts([t for t, s in zip(answers, scores) if s == top]), \
        _answer_counts([t for t, s in zip(answers, scores) if s is not None and s != top])
    n_top = sum(1 for s in scored if s == top)
    n_rest = len(scored) - n_top
    if not n_rest:
        return []
    odds = {w: log((c + 1) / (n_top + 2)) - log((rest_used.get(w, 0) + 1) / (n_rest + 2))
            for w, c in top_used.items() if c >= 3}
    return sorted((w for w in odds if odds[w] > GLUE_BIAS), key=lambda w: (-odds[w], w))[:KEY_TERMS]


def _key_set(words_: list) -> frozenset:
    return frozenset(_hashes(_KEY, words_, 0xFFFFFFFF))


def _median_rates(answers: list, tables: list) -> dict:
    """The median out-of-fold share of unknown words and of unseen pairs over answers of 3+ words,
    kept inside [0.02, 0.98] (the off_topic z-scores divide by rate * (1 - rate))."""
    unknown, unseen = [], []
    for tokens, table in zip(answers, tables):
        if len(tokens) >= 3:
            unknown.append(table.unseen(_UNIGRAM, tokens) / len(tokens))
            unseen.append(table.unseen(_PAIR, _pairs(tokens)) / (len(tokens) - 1))

    def median(values: list) -> float:
        values = sorted(values)
        return min(0.98, max(0.02, values[len(values) // 2] if values else 0.5))
    return {"unknown": median(unknown), "unseen_pairs": median(unseen)}


def _other_weights(answers: list, other_counts: dict, n_other: int) -> dict:
    """other_question's weights: {CRC-32 of a word: log-odds, in eighths, of an answer to another question
    using it against an answer to this one} (Bernoulli naive Bayes, add-0.5), for the words that at least
    OTHER_MIN_COUNT answers on both sides together use."""
    counts = _answer_counts(answers)
    n_item = len(answers)
    weights = {}
    for w in set(counts) | set(other_counts):
        here, there = counts.get(w, 0), other_counts.get(w, 0)
        if here + there < OTHER_MIN_COUNT:
            continue
        odds = log((there + 0.5) / (n_other + 1)) - log((here + 0.5) / (n_item + 1))
        q = max(-127, min(127, round(8 * odds)))
        if q:
            weights[_hashes(_OTHER, [w], 0xFFFFFFFF)[0]] = q
    return weights


def fit(texts: list, sources: list, share: float = 0.03, folds: int = 5, seed: int = 0,
        scores: list | None = None, others: list | None = None) -> dict:
    """A detector profile for one item from its training answers (``texts``, with their human
    ``scores`` where known: they keep the words that earn points out of the glue words) and the
    question, reading text and reference answer (``sources``). ``others``: answers to the training
    table's other questions; with at least OTHER_MIN_ANSWERS of them the profile has other_question.

    Thresholds are chosen on out-of-fold measures (``folds``-fold: each answer measured against a
    profile built without it) so that at most ``share`` of them gets any flag; the profile shipped is
    then built from all answers (so on new answers it flags about ``share`` or a little less).
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share {share!r}: use a number between 0 and 1, e.g. 0.03")
    answers = [words(t) for t in texts]
    source_words = [words(s) for s in sources if s]
    order = list(range(len(answers)))
    random.Random(seed).shuffle(order)
    k = max(2, min(folds, len(answers)))
    if scores is not None and len(scores) != len(answers):
        raise ValueError(f"{len(scores)} scores for {len(answers)} answers")
    other_answers = [words(t) for t in others] if others and len(others) >= OTHER_MIN_ANSWERS else None
    other_counts = _answer_counts(other_answers) if other_answers else None
    scored = [s for s in scores if s is not None] if scores is not None else []
    # negated and stuffed need scores, and enough answers: the 3% budget is shared by every measure, and
    # below MEANING_MIN_ANSWERS two more measures left each of the others too few answers to flag
    graded = len(set(scored)) >= 2 and len(scored) >= MEANING_MIN_ANSWERS
    held_out, held_glue = [None] * len(answers), [None] * len(answers)   # what each answer is measured against
    held_other, held_keys = [None] * len(answers), [None] * len(answers)
    for f in range(k):
        held = set(order[f::k])
        keep = [i for i in order if i not in held]
        fit_part = [answers[i] for i in keep]
        fit_scores = [scores[i] for i in keep] if graded else None
        table = _build(fit_part, source_words, _min_count(len(fit_part)), scores=fit_scores)
        glue = _glue_set(_glue_words(fit_part, [scores[i] for i in keep] if scores is not None else None))
        weights = _other_weights(fit_part, other_counts, len(other_answers)) if other_answers else None
        keys = _key_set(_key_terms(fit_part, fit_scores)) if graded else None
        for i in held:
            held_out[i], held_glue[i], held_other[i], held_keys[i] = table, glue, weights, keys
    rates = _median_rates(answers, held_out)
    oof = [_measures(a, t, rates, o, graded, g, ks)
           for a, t, o, g, ks in zip(answers, held_out, held_other, held_glue, held_keys)]
    listed = [_listed(a, t, g) for a, t, g in zip(answers, held_out, held_glue)]
    repeated = [v["repeated"] >= REPEATED_RULE for v in oof]
    thresholds = _joint_thresholds(oof, share, [a or b for a, b in zip(listed, repeated)])
    table = _build(answers, source_words, _min_count(len(answers)), scores=scores if graded else None)
    glue = sorted(_glue_set(_glue_words(answers, scores)))
    keys = sorted(_key_set(_key_terms(answers, scores))) if graded else None
    other = _pack_weights(_other_weights(answers, other_counts, len(other_answers))) if other_answers else None
    names = list(thresholds)
    flagged = {m: sum(1 for v in oof if v[m] > thresholds[m]) / max(len(oof), 1) for m in names}
    flagged["repeated"] = sum(repeated) / max(len(oof), 1)
    flagged["listed"] = sum(listed) / max(len(oof), 1)
    any_flag = sum(1 for v, f, r in zip(oof, listed, repeated) if f or r or any(v[m] > thresholds[m] for m in names)) \
        / max(len(oof), 1)
    return {
        "version": VERSION,
        "bits": table.bits,
        "table": base64.b64encode(bytes(table.data)).decode("ascii"),
        "min_count": _min_count(len(answers)),
        "max_words": max(50, 2 * max((len(a) for a in answers), default=0)),
        "max_chars": MAX_CHARS,
        "thresholds": thresholds,
        "rates": rates,
        "glue": glue,
        **({"other": other} if other else {}),
        **({"keys": keys} if keys is not None else {}),
        "fitted_on": {"answers": len(answers), "folds": k, "seed": seed, "share": share,
                      "flagged": any_flag, "flagged_by": flagged,
                      "other_answers": len(other_answers) if other_answers else 0},
    }
