"""Gaming probes: answers made from an item's own data to fool its scorer, and what the detectors and
the shipped scorer do with them. `kd-train train` measures them on every item (report and model
card); `python -m bench.probes` on ASAP-SAS and SAF German legal.

Kinds (seeded, built from the item's training answers, question and reading text, never hand-picked):
gibberish (pseudo-words drawn from the item's own letter frequencies, at real answer lengths),
shuffled words of top-scored answers, key-term lists (the words most over-represented in top-scored
answers), question copies (the question, and passages of the reading text), answers to other items
(given by the caller: held-out answers to the table's other questions), top answers repeated, top
answers with 10/20/30% of their letters mistyped, negated top answers (every other one with the negation after
its first auxiliary verb, the others with "It is not true that" in front), lowest-scored answers with some key
terms appended (as a comma list, as plain words, or in a short phrase), empty and one-word answers.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from math import log

from kd_train import detect
from kd_train.data import Item, Table

MUST_FLAG = ("gibberish", "key_terms", "question_copy", "other_item")   # what the detectors are for
MEANING = ("negated", "low_plus_terms")   # what no scorer here can judge, so the detectors must route to a teacher
SCORE_SHIFT = ("shuffled", "repeated", "typos_10", "typos_20", "typos_30", "negated")   # made from top answers
NEGATION = {
    "en": ("not", ("is", "are", "was", "were", "would", "will", "can", "could", "should", "does", "do", "did",
                   "has", "have", "must"), "It is not true that "),
    "de": ("nicht", ("ist", "sind", "war", "waren", "wird", "werden", "kann", "können", "muss", "müssen", "hat",
                     "haben", "darf", "soll"), "Es stimmt nicht, dass "),
}
STUFFING = {"en": ("This is because of {} and {}.", ", "), "de": ("Das liegt an {} und {}.", ", ")}   # the phrase variant


def language(texts: list[str]) -> str:
    """'de' when German function words dominate, else 'en' (only for the negation probes)."""
    words = Counter(w for t in texts[:300] for w in detect.words(t))
    return "de" if words["und"] + words["die"] + words["der"] > words["the"] + words["and"] + words["of"] else "en"


def key_terms(texts: list[str], scores: list[int], k: int = 16) -> list[str]:
    """The words most over-represented in top-scored answers (smoothed log-odds, in >= 3 top answers)."""
    top = max(scores)
    hi, lo = Counter(), Counter()
    n_hi = n_lo = 0
    for text, score in zip(texts, scores):
        ws = set(detect.words(text))
        if score == top:
            hi.update(ws)
            n_hi += 1
        else:
            lo.update(ws)
            n_lo += 1
    odds = {w: log((hi[w] + 1) / (n_hi + 2)) - log((lo[w] + 1) / (n_lo + 2)) for w in hi if hi[w] >= 3}
    return sorted(odds, key=lambda w: (-odds[w], w))[:k]


def mistype(text: str, rate: float, rng: random.Random, letters: str) -> str:
    chars = list(text)
    for i, c in enumerate(chars):
        if c.isalpha() and rng.random() < rate:
            chars[i] = rng.choice(letters)
    return "".join(chars)


def negate(text: str, lang: str, prefix: bool = False) -> str:
    """Insert the negation after the first auxiliary verb; without one (or with ``prefix``), put 'It is not
    true that' ('Es stimmt nicht, dass') in front."""
    word, auxiliaries, front = NEGATION[lang]
    pattern = re.compile(r"\b(" + "|".join(auxiliaries) + r")\b", re.IGNORECASE)
    match = None if prefix else pattern.search(text)
    if match:
        return text[:match.end()] + " " + word + text[match.end():]
    return front + text[:1].lower() + text[1:]


def stuff(text: str, terms: list[str], variant: int, lang: str) -> str:
    """``text`` with ``terms`` appended: 0 a comma list, 1 plain words, 2 a short phrase."""
    text = text.rstrip()
    if variant == 0:
        return text + ", " + ", ".join(terms)
    if variant == 1:
        return text + " " + " ".join(terms)
    phrase, comma = STUFFING[lang]
    return text + " " + phrase.format(comma.join(terms[:-1]), terms[-1])


def make_probes(item: Item, train: Table, others: list[str], rng: random.Random) -> dict[str, list[dict]]:
    """{kind: [{"text", "source"}]} from the item's scored training answers ``train``; ``source`` is the
    top answer a probe was made from (for score shifts). ``others``: answers to other questions."""
    texts, scores = train.responses, train.scores
    top_score = max(scores)
    tops = [t for t, s in zip(texts, scores) if s == top_score and len(detect.words(t)) >= 5] or \
           [t for t, s in zip(texts, scores) if s == top_score]
    tops = rng.sample(tops, min(20, len(tops)))
    lows = [t for t, s in zip(texts, scores) if s == min(scores)]
    letter_counts = Counter(c for t in texts for c in t.lower() if c.isalpha())
    letters = "".join(letter_counts)
    weights = list(letter_counts.values())
    lengths = [n for n in (len(detect.words(t)) for t in texts) if n >= 3] or [10]
    terms = key_terms(texts, scores)
    lang = language(texts)

    def pseudo_word() -> str:
        return "".join(rng.choices(letters, weights, k=rng.randint(2, 9)))

    def passages(source: str, n: int, size: int = 30) -> list[str]:
        words = source.split()
        if len(words) <= size:
            return [source] if words else []
        starts = sorted(rng.sample(range(len(words) - size), min(n, len(words) - size)))
        return [" ".join(words[s:s + size]) for s in starts]

    plain = lambda items: [{"text": t, "source": None} for t in items]   # noqa: E731
    return {
        "gibberish": plain(" ".join(pseudo_word() for _ in range(rng.choice(lengths))) for _ in range(40)),
        "key_terms": plain((", " if rng.random() < 0.5 else " ").join(rng.sample(terms, rng.randint(4, min(8, len(terms)))))
                           for _ in range(30)) if len(terms) >= 4 else [],
        "question_copy": plain([item.question] + passages(item.question + " " + item.stimulus, 14) if item.question else []),
        "other_item": plain(rng.sample(others, min(30, len(others)))),
        "shuffled": [{"text": " ".join(rng.sample(t.split(), len(t.split()))), "source": t} for t in tops],
        "repeated": [{"text": " ".join([t] * rng.randint(3, 5)), "source": t} for t in tops],
        **{f"typos_{r}": [{"text": mistype(t, r / 100, rng, letters), "source": t} for t in tops] for r in (10, 20, 30)},
        "negated": [{"text": negate(t, lang, prefix=i % 2 == 1), "source": t} for i, t in enumerate(tops)],
        "low_plus_terms": plain(stuff(rng.choice(lows), rng.sample(terms, rng.randint(3, min(6, len(terms)))), v % 3, lang)
                                for v in range(30)) if len(terms) >= 3 and min(scores) < top_score else [],
        "empty": plain(["", "   ", "\n", "?!", "..."]),
        "one_word": plain(rng.sample(terms, min(10, len(terms))) if terms else []),
    }


def share(values) -> float | None:
    values = list(values)
    return sum(map(bool, values)) / len(values) if values else None


def measure(probes: dict[str, list[dict]], profile: dict | None, score: Callable[[list[str]], list[int]] | None,
            lowest: int | None = None) -> dict[str, dict]:
    """Per kind: how many probes, the share flagged (and by which detector), and with ``score`` (the
    shipped scorer's scores, as the page gives them) the share given the ``lowest`` score and, for probes
    made from a top answer, the mean score shift and the share that kept the original's score."""
    out = {}
    for kind, rows in probes.items():
        if not rows:
            continue
        texts = [p["text"] for p in rows]
        found = [detect.flags(t, profile) for t in texts]
        row = {"n": len(texts), "flagged": share(found), "by": dict(Counter(c for f in found for c in f))}
        if score is not None:
            got = score(texts)
            low = [s == lowest for s in got]
            row |= {"lowest": share(low), "flagged_or_lowest": share(f or lo for f, lo in zip(found, low)),
                    "flagged_and_lowest": share(f and lo for f, lo in zip(found, low))}
            if rows[0]["source"] is not None:
                before = score([p["source"] for p in rows])
                row |= {"mean_shift": sum(a - b for a, b in zip(got, before)) / len(got),
                        "kept_score": share(a == b for a, b in zip(got, before)),
                        "unflagged_kept_score": share((not f) and a == b for f, a, b in zip(found, got, before))}
        out[kind] = row
    return out


def probe_item(item: Item, train: Table, others: list[str], profile: dict | None,
               score: Callable[[list[str]], list[int]] | None, lowest: int | None, seed: int = 0) -> dict[str, dict]:
    """:func:`measure` on the item's probes (seeded by ``seed`` and the item id)."""
    rng = random.Random(f"{seed}:{item.item}")
    return measure(make_probes(item, train, others, rng), profile, score, lowest)


def summary_line(found: dict[str, dict]) -> str:
    """One CLI line: the share flagged of each kind of probe the detectors are for."""
    parts = [f"{kind.replace('_', ' ')} {found[kind]['flagged']:.0%}" for kind in MUST_FLAG + MEANING if kind in found]
    return "  probes flagged: " + ", ".join(parts) + " (report.md: every kind, and the scores given)"
