"""kd_train/detect.py: answers the scorer should not judge, flagged the same way in the page and the CLI."""

from __future__ import annotations

import ast
import copy
import json
import random
from pathlib import Path

import pytest

from kd_train import data, detect, detect_fit

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


@pytest.fixture(scope="module")
def demo():
    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    item = items["demo-ice"]
    profile = detect_fit.fit(train.responses, [item.question, item.reference_answer])
    return item, train, test, profile


def test_source_is_ascii_and_standard_library_only():
    source = Path(detect.__file__).read_bytes()
    source.decode("ascii")   # the page checks its bytes; no encoding may change them
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "base64", "math", "random", "zlib", "kd_train", "featurize"}


def test_fit_flags_at_most_the_stated_share_of_real_answers(demo):
    _, train, test, profile = demo
    detect.check_profile(profile)
    assert profile["fitted_on"]["answers"] == len(train)
    assert profile["fitted_on"]["flagged"] <= 0.03
    json.dumps(profile)                                   # it goes into scorer.json as is
    flagged = sum(bool(detect.flags(t, profile)) for t in test.responses) / len(test)
    assert flagged <= 0.10, flagged                     # 100 answers the profile never saw


def test_each_detector_catches_its_kind(demo):
    item, train, _, profile = demo
    rng = random.Random(0)
    gibberish = " ".join("".join(rng.choice("qxzvkjwpfy") for _ in range(6)) for _ in range(12))
    assert "unknown" in detect.flags(gibberish, profile)
    assert "copied" in detect.flags(item.question, profile)
    good = max((r for r, s in zip(train.responses, train.scores) if s == 3), key=len)
    assert detect.flags(good, profile) == []
    assert "repeated" in detect.flags(" ".join([good] * 4), profile)
    assert detect.flags("", profile) == ["empty"] and detect.flags(" ?! ", profile) == ["empty"]
    assert detect.flags("x" * (detect.MAX_CHARS + 1), profile) == ["refused"]
    assert "too_long" in detect.flags(" ".join(f"w{i}" for i in range(profile["max_words"] + 1)), profile)
    assert detect.flags("anything", None) == []         # a scorer written before the detectors


def test_a_list_of_words_is_flagged_where_answers_are_sentences():
    rng = random.Random(1)
    subjects = ["the metal plate", "the metal", "metal", "the plate"]
    verbs = ["conducts heat", "moves heat", "passes heat", "gives heat"]
    ends = ["into the ice faster than the plastic", "to the ice more quickly", "from the room into the ice"]
    answers = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(ends)} because plastic is an insulator"
               for _ in range(200)]
    profile = detect_fit.fit(answers, ["Why does the ice on the metal plate melt faster?"])
    assert detect.flags("the metal conducts heat into the ice faster than the plastic because plastic is an insulator",
                        profile) == []
    assert "unseen_pairs" in detect.flags("insulator plastic heat metal faster conducts ice room plate", profile)


def _list_item(seed: int = 2) -> tuple[list[str], list[int]]:
    """An item whose top answers use the words that earn points, always between glue words."""
    rng = random.Random(seed)
    answers, scores = [], []
    for _ in range(300):
        score = rng.randint(0, 2)
        points = rng.sample(["conducts", "insulator", "transfers", "energy", "faster"], score * 2)
        filler = ["the", "ice", "melts", "on", "it", "because", "plate", "is", "a", "metal"]
        rng.shuffle(filler)
        answers.append(" ".join(w for i, f in enumerate(filler) for w in ([f, points[i]] if i < len(points) else [f])))
        scores.append(score)
    return answers, scores


def test_a_list_of_the_words_that_earn_points_is_listed():
    answers, scores = _list_item()
    profile = detect_fit.fit(answers, ["Why does the ice melt?"], scores=scores)
    detect.check_profile(profile)
    assert 0 < len(profile["glue"]) <= detect_fit.GLUE_WORDS
    assert "listed" in detect.flags("conducts insulator transfers energy faster", profile)
    assert "listed" not in detect.flags("the metal conducts energy faster because it is a plate", profile)
    assert "listed" not in detect.flags("conducts insulator", profile)          # fewer than four words
    assert profile["fitted_on"]["flagged_by"]["listed"] == 0.0                 # no real answer is a bare list
    # Without scores the words that earn points are common enough to be glue, and nothing is listed.
    unscored = detect_fit.fit(answers, ["Why does the ice melt?"])
    assert "listed" not in detect.flags("conducts insulator transfers energy faster", unscored)


def test_listed_answers_count_towards_the_flagged_share():
    answers, scores = _list_item(3)
    rng = random.Random(4)
    answers += [" ".join(rng.sample([f"term{j}" for j in range(20)], 5)) for _ in range(30)]   # known words, bare lists
    scores += [0] * 30
    profile = detect_fit.fit(answers, [], scores=scores)
    assert profile["fitted_on"]["flagged_by"]["listed"] > 0.03
    assert all(v == 0.0 for m, v in profile["fitted_on"]["flagged_by"].items() if m != "listed")


def test_profiles_without_glue_still_work(demo):
    profile = copy.deepcopy(demo[3])
    del profile["glue"]
    detect.check_profile(profile)                       # written before listed existed
    assert "listed" not in detect.flags("qzx vvk plorb wuv", profile)
    profile["glue"] = ["the"]
    with pytest.raises(ValueError, match="glue"):
        detect.check_profile(profile)


def test_reasons_are_plain_sentences_for_every_code(demo):
    *_, profile = demo
    for code in detect.REASONS:
        text = detect.reason(code, profile)
        assert text.endswith(".") and "{" not in text
    assert "20,000" in detect.reason("refused", profile)


def test_shares_are_between_0_and_1_and_off_topic_is_a_z_score(demo):
    *_, profile = demo
    for text in ["a", "the metal", "🔥🧊 heat", "Die Wärme fließt schneller", "x " * 500]:
        values = detect.measure(text, profile)
        assert all(0.0 <= values[m] <= 1.0 for m in ("unknown", "unseen_pairs", "copied", "repeated")), values
    assert detect.measure("", profile)["off_topic"] == 0.0
    assert 0.02 <= profile["rates"]["unknown"] < 0.5 and 0.02 <= profile["rates"]["unseen_pairs"] < 0.9


def test_a_long_answer_to_another_question_is_off_topic():
    rng = random.Random(2)
    common = "the of and to is it in that because".split()
    topic = "metal plate conducts heat ice melts faster plastic insulator energy warm room".split()
    answers = [" ".join(rng.choice(common + topic) for _ in range(rng.randint(8, 30))) for _ in range(300)]
    profile = detect_fit.fit(answers, ["Why does the ice melt faster on the metal plate?"])
    other = " ".join(rng.choice(common + "panda bamboo koala eucalyptus china australia".split()) for _ in range(60))
    assert "off_topic" in detect.flags(other, profile)
    assert detect.flags(answers[0], profile) == []


def test_repeated_is_a_fixed_rule_that_spares_sentence_frames(demo):
    item, train, _, profile = demo
    assert "repeated" not in profile["thresholds"]
    frames = ("You would need to know how much ice there was. You would need to know how warm the room was. "
              "You would also need to know what the plates were made of.")
    assert detect.measure(frames, profile)["repeated"] < detect.REPEATED_RULE
    assert "repeated" not in detect.flags(frames, profile)
    good = max((r for r, s in zip(train.responses, train.scores) if s == 3), key=len)
    assert detect.measure(good, profile)["repeated"] < 0.1
    assert "repeated" in detect.flags(" ".join([good] * 3), profile)
    assert "repeated" in detect.flags("ice ice ice ice ice", profile)


def test_a_repeated_threshold_of_an_earlier_version_is_read_and_ignored(demo):
    profile = copy.deepcopy(demo[3])
    profile["thresholds"]["repeated"] = 0.0             # fitted before the fixed rule: flagged any repeat
    detect.check_profile(profile)
    frames = "I would need to know the mass. I would need to know the size. I would need to know the time."
    assert "repeated" not in detect.flags(frames, profile)
    profile["thresholds"]["spelling"] = 0.5
    with pytest.raises(ValueError, match="thresholds"):
        detect.check_profile(profile)


def test_profiles_without_off_topic_still_work(demo):
    profile = copy.deepcopy(demo[3])
    del profile["rates"], profile["thresholds"]["off_topic"]
    detect.check_profile(profile)                       # written before off_topic existed
    assert "off_topic" not in detect.flags("qzx vvk plorb " * 30, profile)
    profile["rates"] = {"unknown": 0.1, "unseen_pairs": 0.3}
    with pytest.raises(ValueError, match="rates"):
        detect.check_profile(profile)                   # rates without an off_topic threshold


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(version=2), "version"),
    (lambda p: p.update(bits=30), "bits"),
    (lambda p: p.update(table=p["table"][:-8]), "table"),
    (lambda p: p.update(table="not base64!"), "base64"),
    (lambda p: p["thresholds"].pop("copied"), "thresholds"),
    (lambda p: p.update(max_chars=0), "max_chars"),
])
def test_check_profile_names_what_is_wrong(demo, change, message):
    profile = copy.deepcopy(demo[3])
    change(profile)
    with pytest.raises(ValueError, match=message):
        detect.check_profile(profile)


def test_fit_is_deterministic_and_validates_share(demo):
    item, train, _, profile = demo
    again = detect_fit.fit(train.responses, [item.question, item.reference_answer])
    assert again == profile
    with pytest.raises(ValueError, match="share"):
        detect_fit.fit(train.responses, [], share=0.0)


def test_few_answers_still_fit():
    profile = detect_fit.fit(["heat flows into the ice", "metal conducts heat"], ["Why does ice melt?"])
    detect.check_profile(profile)
    assert profile["fitted_on"]["folds"] == 2


def _two_questions(seed: int = 5) -> tuple[list[str], list[str]]:
    """Answers to two questions on one subject: most of their words are common to both."""
    rng = random.Random(seed)
    shared = "the heat ice water metal plate room it is because and faster".split()
    melting = "melts conducts plate insulator plastic solid".split()
    boiling = "boils evaporates vapour steam bubbles kettle".split()
    make = lambda own: " ".join(rng.choice(shared + own) for _ in range(rng.randint(10, 25)))   # noqa: E731
    return [make(melting) for _ in range(300)], [make(boiling) for _ in range(300)]


def test_an_answer_to_another_question_on_the_same_subject_is_other_question():
    melting, boiling = _two_questions()
    profile = detect_fit.fit(melting, ["Why does the ice melt faster on the metal plate?"], others=boiling)
    detect.check_profile(profile)
    assert profile["fitted_on"]["other_answers"] == 300 and "other_question" in profile["thresholds"]
    json.dumps(profile)
    answer_to_other = _two_questions(6)[1][:50]
    assert sum("other_question" in detect.flags(a, profile) for a in answer_to_other) >= 45
    assert sum(bool(detect.flags(a, profile)) for a in _two_questions(6)[0][:100]) <= 10
    alone = detect_fit.fit(melting, ["Why does the ice melt faster on the metal plate?"])
    assert "other" not in alone and "other_question" not in alone["thresholds"]


def test_other_question_weights_survive_packing():
    weights = {0: -127, 7: 127, 2**32 - 1: -1, 12345: 3}
    assert detect._unpack_weights(detect._pack_weights(weights)) == weights


def test_too_few_answers_to_other_questions_give_no_other_question():
    melting, boiling = _two_questions()
    profile = detect_fit.fit(melting, [], others=boiling[:detect_fit.OTHER_MIN_ANSWERS - 1])
    assert "other" not in profile and profile["fitted_on"]["other_answers"] == 0


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("other"), "other must be there"),
    (lambda p: p["thresholds"].pop("other_question"), "other must be there"),
    (lambda p: p["other"].update(hashes=p["other"]["hashes"][:-8]), "each weight needs 4"),
    (lambda p: p["other"].update(weights="not base64!"), "base64"),
])
def test_check_profile_names_what_is_wrong_with_other(change, message):
    melting, boiling = _two_questions()
    profile = detect_fit.fit(melting, [], others=boiling)
    change(profile)
    with pytest.raises(ValueError, match=message):
        detect.check_profile(profile)


def _graded_item(seed: int = 7) -> tuple[list[str], list[int]]:
    """Top answers say the metal conducts heat (some with the negation they use: the plastic does not); low
    answers say something else, some with negations of their own."""
    rng = random.Random(seed)
    answers, scores = [], []
    for _ in range(detect_fit.MEANING_MIN_ANSWERS):
        score = rng.randint(0, 2)
        if score == 2:
            text = (f"{rng.choice(['the metal', 'metal', 'the metal plate'])} is a {rng.choice(['good', 'better'])} "
                    f"conductor so heat {rng.choice(['flows', 'moves', 'goes'])} into the ice "
                    f"{rng.choice(['faster', 'more quickly', 'quickly'])}")
            if rng.random() < 0.4:
                text += " and the plastic does not conduct heat"
        elif score == 1:
            text = f"the metal {rng.choice(['gets', 'feels'])} {rng.choice(['warm', 'cold', 'hot'])} so the ice melts"
        else:
            text = rng.choice(["i think it is magic", "the ice is cold", "i dont know why", "it melts because of the sun",
                               "the plates are different colours", "nobody knows", "it is not fair"])
            text += rng.choice(["", " maybe", " i guess", " and that is it"])
        answers.append(text)
        scores.append(score)
    return answers, scores


@pytest.fixture(scope="module")
def graded():
    answers, scores = _graded_item()
    return answers, scores, detect_fit.fit(answers, ["Why does the ice melt faster on the metal plate?"], scores=scores)


def test_a_negated_top_answer_is_negated(graded):
    answers, scores, profile = graded
    detect.check_profile(profile)
    assert {"negated", "negated_head", "stuffed"} <= set(profile["thresholds"]) and profile["keys"]
    top = "the metal is a good conductor so heat flows into the ice faster"
    assert detect.flags(top, profile) == []
    assert detect.flags(top + " and the plastic does not conduct heat", profile) == []   # a negation top answers use
    assert "negated" in detect.flags("the metal is not a good conductor so heat flows into the ice faster", profile)
    assert "negated" in detect.flags("It is not true that " + top, profile)
    assert "negated" not in detect.flags("i dont know why", profile)
    assert profile["fitted_on"]["flagged"] <= 0.03


def test_a_low_answer_with_key_terms_appended_is_stuffed(graded):
    answers, scores, profile = graded
    for tail in (", conductor, flows, faster", " conductor flows faster", " This is because of conductor and faster."):
        assert "stuffed" in detect.flags("the ice is cold" + tail, profile), tail
    assert detect.flags("the ice is cold maybe", profile) == []
    assert "stuffed" not in detect.flags("the metal plate is a better conductor so heat moves into the ice quickly",
                                         profile)
    unseen = _graded_item(8)[0]
    flagged = sum(bool(detect.flags(a, profile)) for a in unseen) / len(unseen)
    assert flagged <= 0.05, flagged                        # answers the profile never saw


def test_profiles_without_negated_or_stuffed_still_work(graded):
    profile = copy.deepcopy(graded[2])
    for key in ("negated", "negated_head", "stuffed"):
        del profile["thresholds"][key]
    del profile["keys"]
    detect.check_profile(profile)                          # written before negated and stuffed existed
    assert "negated" not in detect.measure("anything", profile)
    assert "negated" not in detect.flags("the metal is not a good conductor so heat flows into the ice faster", profile)
    assert "stuffed" not in detect.flags("the ice is cold, conductor, flows, faster", profile)
    unscored = detect_fit.fit(graded[0], ["Why does the ice melt?"])        # no scores: no top answers to read
    assert "keys" not in unscored and not {"negated", "stuffed"} & set(unscored["thresholds"])


@pytest.mark.parametrize("change, message", [
    (lambda p: p.pop("keys"), "keys must be there"),
    (lambda p: p["thresholds"].pop("stuffed"), "keys must be there"),
    (lambda p: p.update(keys=["conductor"]), "keys must be a list"),
    (lambda p: p.update(keys=list(range(detect.KEY_TERMS + 1))), "keys must be a list"),
    (lambda p: p.pop("glue"), "glue with them"),
    (lambda p: p["thresholds"].pop("negated_head"), "negated and negated_head together"),
    (lambda p: p["thresholds"].update(negated="high"), "thresholds"),
])
def test_check_profile_names_what_is_wrong_with_negated_and_stuffed(graded, change, message):
    profile = copy.deepcopy(graded[2])
    change(profile)
    with pytest.raises(ValueError, match=message):
        detect.check_profile(profile)


def test_negated_and_stuffed_are_fitted_only_from_enough_scored_answers(graded):
    answers, scores, _ = graded
    n = detect_fit.MEANING_MIN_ANSWERS - 1   # the 3% budget over eight measures would leave each too few answers
    few = detect_fit.fit(answers[:n], ["Why does the ice melt?"], scores=scores[:n])
    assert not {"negated", "negated_head", "stuffed"} & set(few["thresholds"])
    assert "negated" not in detect.flags("It is not true that the metal is a good conductor", few)


def test_negated_reads_the_top_scores_together_where_the_top_one_is_rare():
    """ASAP-SAS item 5: 2% of the answers have the top score; negated reads the statements of the top scores
    that hold at least TOP_MIN_SHARE of the answers, and only the top score's where it is common enough."""
    assert detect_fit._top_floor([3] * 2 + [2] * 10 + [0] * 88) == 2
    assert detect_fit._top_floor([3] * 10 + [1] * 90) == 3
    assert detect_fit._top_floor([None, 1, None, 0]) == 1
