"""kd_train/probes.py: gaming probes made from an item's own answers, and what detectors and scorer do with them."""

from __future__ import annotations

import random

from conftest import DEMO
from kd_train import data, detect, detect_fit, probes


def _demo():
    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items).for_item("demo-ice").labelled()
    return items["demo-ice"], train


def test_probes_are_made_from_the_items_own_answers_and_are_seeded():
    item, train = _demo()
    made = probes.make_probes(item, train, ["an answer to another question about puddles drying"] * 40, random.Random(1))
    assert made == probes.make_probes(item, train, ["an answer to another question about puddles drying"] * 40,
                                      random.Random(1))
    assert set(made) == {"gibberish", "key_terms", "question_copy", "other_item", "shuffled", "repeated", "typos_10",
                         "typos_20", "typos_30", "negated", "low_plus_terms", "empty", "one_word"}
    top = max(train.scores)
    tops = {t for t, s in zip(train.responses, train.scores) if s == top}
    assert all(p["source"] in tops for kind in probes.SCORE_SHIFT for p in made[kind])
    terms = set(probes.key_terms(train.responses, train.scores))
    assert all(set(detect.words(p["text"])) <= terms for p in made["key_terms"])
    assert made["question_copy"][0]["text"] == item.question and len(made["other_item"]) == 30
    assert all(" not " in p["text"] or p["text"].startswith("It is not true that") for p in made["negated"])
    assert sum(p["text"].startswith("It is not true that") for p in made["negated"]) >= len(made["negated"]) // 2
    assert any(" not " in p["text"] and not p["text"].startswith("It is") for p in made["negated"])
    lows = [t for t, s in zip(train.responses, train.scores) if s == min(train.scores)]
    stuffed = made["low_plus_terms"]
    assert len(stuffed) == 30 and not set(probes.MEANING) & set(probes.MUST_FLAG)
    for p in stuffed:
        base = max((t for t in lows if p["text"].startswith(t.rstrip())), key=len)
        added = detect.words(p["text"][len(base.rstrip()):])
        assert 3 <= len(set(added) & terms) <= 6 and set(added) - terms <= set(detect.words("This is because of and"))
    assert {p["text"].count(", ") > 0 for p in stuffed} == {True, False}       # comma lists and plain words
    assert any("This is because of" in p["text"] for p in stuffed)           # and the phrase


def test_measure_counts_flags_lowest_scores_and_score_shifts():
    item, train = _demo()
    profile = detect_fit.fit(train.responses, [item.question, item.reference_answer], scores=train.scores)
    made = probes.make_probes(item, train, [], random.Random(0))
    assert "other_item" not in probes.measure(made, profile, None)          # no answers to other questions
    constant = probes.measure(made, profile, lambda texts: [0] * len(texts), lowest=0)
    assert constant["gibberish"]["lowest"] == 1.0 and constant["negated"]["mean_shift"] == 0.0
    assert constant["empty"]["flagged"] == 1.0 and constant["empty"]["by"] == {"empty": 5}
    assert constant["gibberish"]["flagged"] > 0.5
    unscored = probes.measure(made, profile, None)
    assert "lowest" not in unscored["gibberish"] and unscored["gibberish"]["flagged"] == constant["gibberish"]["flagged"]


def test_negation_goes_after_the_first_auxiliary_or_in_front():
    assert probes.negate("The metal is a conductor.", "en") == "The metal is not a conductor."
    assert probes.negate("Metal conducts heat.", "en") == "It is not true that metal conducts heat."
    assert probes.negate("Der Vertrag ist gültig.", "de") == "Der Vertrag ist nicht gültig."
    assert probes.negate("The metal is a conductor.", "en", prefix=True) == "It is not true that the metal is a conductor."
    assert probes.negate("Der Vertrag ist gültig.", "de", prefix=True) == "Es stimmt nicht, dass der Vertrag ist gültig."


def test_stuffing_appends_terms_three_ways():
    assert probes.stuff("It melts. ", ["heat", "metal", "conducts"], 0, "en") == "It melts., heat, metal, conducts"
    assert probes.stuff("It melts.", ["heat", "metal", "conducts"], 1, "en") == "It melts. heat metal conducts"
    assert probes.stuff("It melts.", ["heat", "metal", "conducts"], 2, "en") == \
        "It melts. This is because of heat, metal and conducts."
