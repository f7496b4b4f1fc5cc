"""The quality gate, the choice of the shipped scorer, and calibration folded into model.onnx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DEMO, write_csv
from kd_train import quality
from kd_train.cli import main
from kd_train.metrics import decide, score_metrics
from kd_train.scorer import onnx_session
from kd_train.student import Student, export_onnx, logits

VALUES = [0, 1, 2]


def metrics(y_true, y_pred):
    return score_metrics(y_true, y_pred, VALUES)


def test_a_constant_model_is_degenerate():
    y = [0, 1, 2, 1, 0, 2, 1, 1, 0, 2]
    reasons = quality.degenerate_reasons(metrics(y, [1] * 10), VALUES)
    assert any("gives the score 1 to 100%" in r for r in reasons)
    assert any("QWK is 0.00" in r for r in reasons)


def test_worse_than_the_majority_class_beyond_chance_is_degenerate():
    y = [0] * 80 + [1] * 10 + [2] * 10        # always 0 would be right 80% of the time
    pred = [0] * 45 + [1] * 35 + [1] * 10 + [2] * 5 + [1] * 5   # 60% right: 15 wins, 35 losses against always 0
    reasons = quality.degenerate_reasons(metrics(y, pred), VALUES)
    assert len(reasons) == 1 and reasons[0].startswith(
        "it is less accurate on validation (0.60) than always giving the most common score 0 (0.80), by more than "
        "chance explains: of the 50 answers where only one of the two is right, it is right on 15 (sign test p = 0.00")


def test_less_accurate_than_the_majority_class_by_chance_is_fit():
    # 168 of 201 right against always-0's 169 (ASAP-SAS item 6 at 201 answers): one answer is not evidence.
    y = [0] * 169 + [1] * 32
    pred = [0] * 150 + [1] * 19 + [1] * 18 + [0] * 14
    m = metrics(y, pred)
    assert m["acc"] < 169 / 201 and m["qwk"] > quality.MIN_QWK
    assert quality.degenerate_reasons(m, VALUES) == []
    worse, wins, losses, p = quality.worse_than_majority(m["confusion"])
    assert (worse, wins, losses) == (False, 18, 19) and p > 0.4


def test_a_scorer_less_accurate_than_the_majority_class_by_chance_passes_with_a_plain_caution():
    y = [0] * 169 + [1] * 32
    pred = [0] * 150 + [1] * 19 + [1] * 18 + [0] * 14
    m = metrics(y, pred)
    text = quality.caution(quality.against_common(m, VALUES), m["qwk"])
    assert text.startswith("Its exact score is right on fewer validation answers (83.6%) than always giving 0 would "
                           "be (84.1%), a difference chance explains (sign test p = 0.")
    assert quality.caution(quality.against_common(metrics(y, y), VALUES), 1.0) == ""   # as accurate: nothing to say
    empty = {"qwk": 0.0, "confusion": [[0, 0, 0]] * 3}
    assert quality.caution(quality.against_common(empty, VALUES), 0.0) == ""          # no answers: nothing to say
    assert quality.against_common(metrics(y, pred), VALUES) | {"p": None} == {
        "score": 0, "common_acc": 169 / 201, "acc": 168 / 201, "wins": 18, "losses": 19, "p": None, "worse": False}


def test_a_good_model_passes():
    y = [0, 1, 2, 1, 0, 2, 1, 1, 0, 2]
    assert quality.degenerate_reasons(metrics(y, y), VALUES) == []


def one_hot_logits(pred: list[int], margin: float = 3.0) -> np.ndarray:
    return np.eye(len(VALUES))[[VALUES.index(p) for p in pred]] * margin


def test_the_candidate_with_the_best_validation_qwk_is_chosen():
    y = [0, 1, 2, 1, 0, 2]
    student = quality.Candidate("student", None, one_hot_logits([0, 1, 1, 1, 0, 1]))
    lr = quality.Candidate("hashing_lr", None, one_hot_logits(y))
    chosen, why = quality.choose([student, lr], y, VALUES)
    assert chosen is lr and why.startswith("best validation QWK: hashing_lr 1.000 (others: student")


def test_ties_go_to_the_kd_student():
    y = [0, 1, 2, 1]
    lr, student = (quality.Candidate(n, None, one_hot_logits(y)) for n in ("hashing_lr", "student"))
    assert quality.choose([lr, student], y, VALUES)[0] is student


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2]])
    y = np.array([0, 1, 1, 1])
    # bin 0.8-0.9: confidence 0.9, accuracy 0.5 -> |0.4| x 2/4; bin 0.5-0.6: confidence 0.6, accuracy 1 -> 0.4 x 2/4
    assert quality.ece(probs, y) == pytest.approx(0.4)


def test_calibration_folded_into_onnx_equals_scaled_logits(tmp_path):
    torch.manual_seed(0)
    model = Student(64, 3, hidden=5, dropout=0.0).eval()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 64)).astype(np.float32)
    raw = logits(model, x)
    folded = quality.fold_temperature(model, 2.5)
    export_onnx(folded, tmp_path / "m.onnx")
    probs = onnx_session(tmp_path / "m.onnx").run(["probs"], {"features": x})[0]
    np.testing.assert_allclose(probs, quality.softmax(raw, 2.5), atol=1e-5)
    np.testing.assert_array_equal(logits(model, x), raw)           # the original is untouched


def test_calibration_lowers_ece_of_an_overconfident_model_and_sets_the_review_line():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=300)
    noisy = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, size=300))   # right about 77% of the time
    sure = np.eye(3)[noisy] * rng.uniform(4, 12, size=(300, 1))                  # 98-100% sure
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), sure)
    report = quality.calibrate(candidate, y)
    assert report["temperature"] > 1 and report["ece_val_after"] < report["ece_val_before"]
    assert candidate.temperature == report["temperature"]
    calibrated = quality.softmax(candidate.val_logits, report["temperature"])
    flagged = (calibrated.max(axis=1) < report["review_threshold"]).mean()
    assert abs(flagged - quality.REVIEW_SHARE) < 0.01


def test_calibration_that_would_not_lower_ece_is_not_applied(monkeypatch):
    y = np.array([0, 1, 2, 0, 1, 2])
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), np.eye(3)[y] * 30.0)   # always right, sure
    monkeypatch.setattr(quality, "fit_temperature", lambda logits, y, **kw: 5.0)            # softening: worse ECE
    report = quality.calibrate(candidate, y)
    assert report["temperature"] == 1.0 and quality.shipped_model(candidate) is candidate.model


def test_no_sharpening_on_a_validation_set_without_errors():
    # 49 answers, every one right (the ASAP-SAS small-data case): log-loss alone drives T to the grid's edge.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=49)
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), np.eye(3)[y] * rng.uniform(1, 3, size=(49, 1)))
    assert quality.fit_temperature(candidate.val_logits, y) < 0.06          # what the unguarded fit did
    report = quality.calibrate(candidate, y)
    assert report["temperature"] >= 1.0
    assert "too few to fit" in report["temperature_note"]


def test_a_temperature_at_the_edge_of_its_range_is_not_kept(monkeypatch):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=200)
    noisy = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, size=200))
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), np.eye(3)[noisy] * 5.0)
    monkeypatch.setattr(quality, "fit_temperature", lambda logits, y, **kw: quality.T_RANGE[1])
    report = quality.calibrate(candidate, y)
    assert report["temperature"] == 1.0 and "edge" in report["temperature_note"]


def test_decide_by_cutpoints_on_the_expected_score():
    probs = np.array([[0.5, 0.1, 0.4],     # expected index 0.9: most probable 0
                      [0.1, 0.45, 0.45],   # 1.35: most probable 1 (the first of equals)
                      [0.0, 0.3, 0.7]])    # 1.7
    assert decide(probs).tolist() == [0, 1, 2]
    assert decide(probs, [0.8, 1.5]).tolist() == [1, 1, 2]
    assert decide(probs, [0.9, 1.7]).tolist() == [0, 1, 1]     # at a cutpoint: not above it


def test_cutpoints_are_fitted_to_the_qwk_of_the_validation_answers():
    # Scores 0-2 whose expected index is biased low by a third of a point: rounding it misses many 1s
    # and 2s; cutpoints fitted on these answers move down and recover them.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=400)
    target = np.clip(y - 0.35 + rng.normal(0, 0.2, size=400), 0, 2)
    probs = np.stack([np.clip(1 - target, 0, 1), 1 - np.abs(1 - target), np.clip(target - 1, 0, 1)], axis=1)
    cuts = quality.fit_cutpoints(probs, y)
    assert cuts == sorted(cuts) and cuts[0] < 0.5 and cuts[1] < 1.5
    assert score_metrics(y, decide(probs, cuts), VALUES)["qwk"] > score_metrics(y, np.rint(target), VALUES)["qwk"] + 0.05


def test_tune_keeps_the_most_probable_score_where_cutpoints_do_not_help():
    y = np.array([0, 1, 2, 0, 1, 2, 1, 0])
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), np.eye(3)[y] * 5.0)   # always right
    report = quality.tune(candidate, y, VALUES)
    assert candidate.cutpoints is None and report["decision"]["rule"] == "most probable score"
    assert report["decision"]["val_qwk_most_probable"] == 1.0


def test_tune_uses_cutpoints_where_they_raise_the_validation_qwk():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=300)
    logits = np.stack([-(np.arange(3) - (y[:, None] - 0.6 + rng.normal(0, 0.3, (300, 1))).clip(0, 2)) ** 2 * 3][0])
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), logits, logits)
    report = quality.tune(candidate, y, VALUES)
    d = report["decision"]
    assert candidate.cutpoints == d["cutpoints"] and d["val_qwk_cutpoints"] > d["val_qwk_most_probable"]
    held_out = candidate.predict_val(VALUES)           # each answer scored by cutpoints fitted without it
    assert score_metrics(y, held_out, VALUES)["qwk"] == pytest.approx(d["val_qwk_cutpoints"])
    given = candidate.predict(candidate.val_logits, VALUES)
    assert score_metrics(y, given, VALUES)["qwk"] >= d["val_qwk_cutpoints"]   # in sample: flattering
    # the review line is a quantile of the probability of the score given, not of the top one
    probs = quality.softmax(logits, candidate.temperature)
    p_given = probs[np.arange(300), decide(probs, candidate.cutpoints)]
    assert abs((p_given < report["review_threshold"]).mean() - quality.REVIEW_SHARE) < 0.01


def test_cutpoints_fitted_to_noise_do_not_pass_the_gate():
    # An almost constant model (score 1 for every answer) whose expected score carries no information:
    # cutpoints fitted on these 90 answers find a flattering QWK in sample, but the gate judges the
    # cutpoints out of fold, so the candidate stays degenerate.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=90)
    logits = np.stack([rng.normal(0, 0.3, 90), np.full(90, 2.0), rng.normal(0, 0.3, 90)], axis=1)
    probs = quality.softmax(logits)
    in_sample = score_metrics(y, decide(probs, quality.fit_cutpoints(probs, y)), VALUES)["qwk"]
    assert in_sample > quality.MIN_QWK                 # in sample, the gate's QWK rule would pass it
    candidate = quality.Candidate("hashing_lr", Student(8, 3, hidden=0), logits)
    report = quality.tune(candidate, y, VALUES)
    assert report["decision"]["val_qwk_cutpoints"] <= quality.MIN_QWK      # out of fold: no better than chance
    reasons = quality.degenerate_reasons(score_metrics(y, candidate.predict_val(VALUES), VALUES), VALUES)
    assert any("QWK" in r for r in reasons)


def test_every_model_is_gated_by_the_scores_its_own_decision_rule_gives():
    # A model tilted towards the rare scores (as a class-weighted teacher is): its most probable score is
    # exactly right less often than always giving the common score, but cutpoints on its expected score,
    # judged out of fold, are not. The gate reads the rule's scores for a candidate and for the teacher.
    from kd_train.data import Table
    from kd_train.pipeline import ship

    rng = np.random.default_rng(1)
    y = rng.choice(3, size=200, p=[0.15, 0.7, 0.15])
    target = y + rng.normal(0, 0.25, 200)
    logits = -(np.arange(3) - target[:, None]) ** 2 * 2 + np.array([0.0, -1.6, 0.0])   # pushed off the middle score
    val = Table("val.csv", [str(i) for i in range(200)], ["q"] * 200, ["x"] * 200, y.tolist(), list(range(200)))
    most_probable = metrics(y.tolist(), logits.argmax(axis=1).tolist())
    assert quality.degenerate_reasons(most_probable, VALUES)                 # less accurate than the majority class
    candidate = quality.Candidate("student", Student(8, 3, hidden=0), logits)
    teacher = quality.Candidate("teacher", None, logits)
    quality.tune(teacher, y, VALUES)
    decided = metrics(y.tolist(), teacher.predict_val(VALUES))
    assert teacher.cutpoints is not None and not quality.degenerate_reasons(decided, VALUES)
    models = {"student": {"val": most_probable}, "teacher": {"val": most_probable, "decided": {"val": decided}},
              "ann": {"val": most_probable}}
    _, report = ship([candidate], val, None, VALUES, models)
    assert report["gates"]["student"] == [] and report["gates"]["teacher"] == []
    assert report["gates"]["ann"] == quality.degenerate_reasons(most_probable, VALUES)   # no rule of its own here


@pytest.fixture(scope="module")
def unfit_scorer(tmp_path_factory):
    """A real scorer trained on answers whose scores have nothing to do with their text."""
    tmp = tmp_path_factory.mktemp("unfit")
    rng = np.random.default_rng(0)
    rows = [[f"r{i}", "noise", f"answer number {i} about {rng.choice(['heat', 'ice', 'metal', 'plates'])}",
             int(rng.integers(0, 3))] for i in range(200)]
    train = write_csv(tmp / "train.csv", ["id", "item", "response", "score"], rows)
    out = tmp / "scorer"
    assert main(["distill", "--train", str(train), "--student-epochs", "5", "--out", str(out)]) == 0
    return out


def test_the_gate_marks_a_scorer_trained_on_noise_unfit(unfit_scorer, capsys):
    info = json.loads((unfit_scorer / "scorer.json").read_text())
    assert info["fit_for_use"] is False and info["unfit_reasons"]
    card = (unfit_scorer / "MODEL_CARD.md").read_text()
    assert card.splitlines()[2] == "**Do not use this scorer.** It did not pass kd-train's quality check on the validation answers:"
    assert "**Exact scores.**" not in card


def test_the_model_card_of_a_fit_scorer_says_its_caution_plainly(unfit_scorer):
    from kd_train.scorer import _render_card

    info = json.loads((unfit_scorer / "scorer.json").read_text())
    info["fit_for_use"], info["unfit_reasons"] = True, []
    info["quality"] |= {"fit_for_use": True, "unfit_reasons": [], "caution": "Its exact score is right less often."}
    card = _render_card(info)
    assert "passed kd-train's quality check" in card and "**Exact scores.** Its exact score is right less often." in card


def test_build_refuses_an_unfit_scorer_unless_allowed_and_then_the_page_warns(unfit_scorer, tmp_path, capsys):
    from web_support import need_node_modules

    need_node_modules()
    assert main(["build", str(unfit_scorer), "--out", str(tmp_path / "dist")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not fit for use" in err and "--allow-unfit" in err
    assert not (tmp_path / "dist").exists()
    assert main(["build", str(unfit_scorer), "--out", str(tmp_path / "dist"), "--allow-unfit"]) == 0
    page = (tmp_path / "dist" / "index.html").read_text()
    assert 'class="unfit" role="alert"' in page and "Do not rely on these scores" in page
    assert 'class="caution"' not in page


def test_the_page_calls_the_scores_of_a_scorer_that_passed_with_a_caution_a_rough_guide(unfit_scorer, tmp_path):
    import shutil

    from web_support import need_node_modules

    from kd_train.files import write_marker

    need_node_modules()
    scorer = Path(shutil.copytree(unfit_scorer, tmp_path / "scorer"))
    info = json.loads((scorer / "scorer.json").read_text())
    info["fit_for_use"], info["unfit_reasons"] = True, []
    info["quality"] |= {"fit_for_use": True, "unfit_reasons": [], "caution": "Its exact score is right less often."}
    (scorer / "scorer.json").write_text(json.dumps(info))
    write_marker(scorer, "scorer")
    assert main(["build", str(scorer), "--out", str(tmp_path / "dist")]) == 0
    page = (tmp_path / "dist" / "index.html").read_text()
    assert '<p class="caution"><strong>A rough guide.</strong>' in page and 'class="unfit"' not in page


def test_a_fit_scorer_builds_without_a_warning(tmp_path, capsys):
    from web_support import need_node_modules

    need_node_modules()
    out = tmp_path / "scorer"
    assert main(["distill", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--student-epochs", "20", "--out", str(out)]) == 0
    info = json.loads((out / "scorer.json").read_text())
    assert info["fit_for_use"] is True
    assert main(["build", str(out), "--out", str(tmp_path / "dist")]) == 0
    page = (tmp_path / "dist" / "index.html").read_text()
    assert 'class="unfit"' not in page and f'data-review="{info["review_threshold"]:.4f}"' in page


def test_evaluate_on_three_answers_says_it_is_a_small_sample(unfit_scorer, tmp_path, capsys):
    test = write_csv(tmp_path / "t.csv", ["id", "item", "response", "score"],
                     [["t1", "noise", "answer about heat", 1], ["t2", "noise", "answer about ice", 0],
                      ["t3", "noise", "answer about metal", 2]])
    assert main(["evaluate", "--scorer", str(unfit_scorer), "--test", str(test), "--out", str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err
    assert "3 answers are a small sample" in err and "failed kd-train's quality check" in err
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "Small samples" in report and "QWK on 3 answers" in report
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["per_item"]["noise"]["validity"]["test"]["n"] == 3
