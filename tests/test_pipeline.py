"""The whole training side on a tiny teacher, in seconds: teacher -> soft labels -> student -> scorer."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import DEMO
from kd_train import data, detect, pipeline, quality, teacher
from kd_train.cli import main
from kd_train.distill import StudentConfig
from kd_train.pipeline import PipelineConfig, run_item


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("train")
    args = ["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
            "--test", str(DEMO / "test.csv"), "--unlabeled", str(DEMO / "unlabeled.csv"), "--out", str(out),
            "--model", str(tiny_model), "--epochs", "1", "--lr", "1e-3", "--max-length", "48",
            "--student-epochs", "12", "--baselines"]
    assert main(args) == 0
    return out


def test_train_writes_scorer_soft_labels_and_report(trained):
    item = trained / "demo-ice"
    assert sorted(p.name for p in (item / "scorer").iterdir()) == ["MODEL_CARD.md", "kd-train.json", "model.onnx", "scorer.json"]
    for name in ("train", "unlabeled", "test"):
        assert (item / f"soft-{name}.csv").is_file() and (item / f"soft-{name}.json").is_file()
    report = json.loads((trained / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "ann", "hashing_lr", "sequence", "shipped"}
    student = report["models"]["student"]
    assert student["params"] == 28746 and set(student["items"]["demo-ice"]) == {"acc", "qwk", "f1", "n"}
    assert {"mean_acc", "mean_qwk", "fisher_qwk", "mean_f1"} <= set(student)
    info = json.loads((item / "scorer" / "scorer.json").read_text())
    assert info["training"]["transfer"] == 100 + 2 * info["training"]["fit"] and info["teacher"]["weights_sha256"]
    quality = info["quality"]
    assert set(quality["candidates"]) == {"student", "ann", "hashing_lr", "sequence"} and quality["shipped"] in quality["candidates"]
    best = max(c["val_qwk"] for c in quality["candidates"].values())
    assert quality["candidates"][quality["shipped"]]["val_qwk"] == best       # chosen on validation, not test
    assert info["fit_for_use"] is True and info["unfit_reasons"] == []
    common = quality["against_common"]                                   # beside always giving the most common score
    assert common["acc"] == info["metrics"]["val"]["acc"] and common["worse"] is False
    assert (quality["caution"] != "") == (common["acc"] < common["common_acc"])
    assert 0 < info["review_threshold"] < 1 and quality["calibration"]["ece_val_after"] <= quality["calibration"]["ece_val_before"]
    assert ("teacher_agreement" in info["metrics"]["test"]) == (quality["shipped"] in ("student", "ann"))
    card = (item / "scorer" / "MODEL_CARD.md").read_text()
    assert "passed kd-train's quality check" in card and "Which model was shipped" in card
    assert (trained / "qwk_vs_params.png").stat().st_size > 1000 and (trained / "report.md").is_file()
    detectors = report["per_item"]["demo-ice"]["detectors"]              # fitted on the training answers
    assert info["detectors"]["fitted_on"]["answers"] == detectors["val"]["n"] == 320
    assert detectors["val"]["flagged"] <= 0.03 and detectors["test"]["n"] == 100
    assert "## Answers it does not judge" in card
    assert "## Answers the scorers do not judge" in (trained / "report.md").read_text()
    probed = report["per_item"]["demo-ice"]["probes"]                    # the item's own gaming probes
    assert info["probes"] == probed and "other_item" not in probed       # one item: no other question's answers
    assert probed["gibberish"]["n"] == 40 and probed["empty"]["flagged"] == 1.0
    assert all(0.0 <= row["lowest"] <= 1.0 for row in probed.values()) and "mean_shift" in probed["negated"]
    assert "| gibberish | 40 |" in card and "Gaming probes made from" in (trained / "report.md").read_text()


def test_augmented_copies_come_from_the_answers_the_student_fits_on_only(trained):
    from kd_train import data
    from kd_train.pipeline import validation_split

    train = data.read_responses(DEMO / "responses.csv", data.read_items(DEMO / "items.csv"))
    fit, val = validation_split(train, "demo-ice", StudentConfig())
    copies = list(csv.DictReader(open(trained / "demo-ice" / "augmented.csv", encoding="utf-8")))
    originals = {row["id"].rsplit("~aug", 1)[0] for row in copies}
    assert len(copies) == 2 * len(fit) and originals == set(fit.ids) and not originals & set(val.ids)
    labelled = list(csv.DictReader(open(trained / "demo-ice" / "soft-augmented.csv", encoding="utf-8")))
    assert [r["id"] for r in labelled] == [r["id"] for r in copies]


def test_the_teachers_figures_are_for_its_own_decision_rule_on_its_kept_validation_logits(trained, tmp_path):
    import shutil

    from kd_train import data, soft_labels
    from kd_train.teacher_judge import decide_teacher, teacher_validation

    report = json.loads((trained / "report.json").read_text())["per_item"]["demo-ice"]["models"]["teacher"]
    meta = teacher.read_meta(trained / "demo-ice" / "teacher")
    decided = report["decided"]
    assert report["val"] == meta["metrics"]["val"] and decided["val"]["n"] == meta["val_rows"]
    assert decided["decision"]["rule"] in ("most probable score", "cutpoints on the expected score")
    if decided["decision"]["rule"] == "most probable score":
        assert decided["val"] == report["val"] and decided["test"] == report["test"]
    gates = json.loads((trained / "demo-ice" / "scorer" / "scorer.json").read_text())["quality"]["gates"]
    assert gates["teacher"] == quality.degenerate_reasons(decided["val"], meta["score_values"])
    # a teacher saved before val-logits.npz existed: its validation split is redrawn, to the same answers and logits
    train = data.read_responses(DEMO / "responses.csv", data.read_items(DEMO / "items.csv")).for_item("demo-ice")
    soft = soft_labels.read(trained / "demo-ice" / "soft-train.csv")
    old = tmp_path / "teacher"
    shutil.copytree(trained / "demo-ice" / "teacher", old)
    (old / teacher.VAL_LOGITS_FILE).unlink()
    (kept_val, kept), (redrawn_val, redrawn) = teacher_validation(trained / "demo-ice" / "teacher", meta, soft, train), \
        teacher_validation(old, meta, soft, train)
    assert redrawn_val.ids == kept_val.ids and np.allclose(redrawn - redrawn.max(1, keepdims=True),
                                                           kept - kept.max(1, keepdims=True), atol=1e-4)
    # ... but a cross-validated one's out-of-fold logits cannot be redrawn: it keeps its most probable score
    cross_validated = meta | {"cross_validation": {"folds": 5}}
    assert teacher_validation(old, cross_validated, soft, train) is None
    kept_rule = decide_teacher(old, cross_validated, soft, None, train, None, meta["score_values"])["decided"]
    assert kept_rule["val"] == meta["metrics"]["val"] and kept_rule["decision"]["rule"] == "most probable score"


def test_question_pairing_auto_labels_with_the_teacher_better_on_validation(tmp_path, tiny_model, capsys):
    out = tmp_path / "run"
    assert main(["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"), "--out", str(out),
                 "--model", str(tiny_model), "--epochs", "1", "--lr", "1e-3", "--max-length", "48",
                 "--student-epochs", "2", "--augment", "0", "--with-question", "auto"]) == 0
    assert "question pairing, chosen on validation QWK" in capsys.readouterr().out
    pairing = json.loads((out / "report.json").read_text())["per_item"]["demo-ice"]["models"]["teacher"]["pairing"]
    qwks = pairing["val_qwk"]
    assert pairing["with_question"] == (qwks["question + answer"] > qwks["answer alone"])
    alone, paired = (teacher.read_meta(out / "demo-ice" / name) for name in ("teacher", "teacher-question"))
    assert not alone["config"]["with_question"] and paired["config"]["with_question"]
    chosen = paired if pairing["with_question"] else alone
    soft = json.loads((out / "demo-ice" / "soft-train.json").read_text())
    assert soft["weights_sha256"] == chosen["weights_sha256"]   # the chosen teacher labelled
    assert "Question pairing (`--with-question auto`)" in (out / "report.md").read_text()


def test_question_pairing_auto_is_refused_by_the_teacher_verb(tmp_path, capsys):
    assert main(["teacher", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--out", str(tmp_path / "t"), "--with-question", "auto"]) == 2
    assert "--with-question auto is for kd-train train" in capsys.readouterr().err


def test_rerun_reuses_the_teacher_and_gives_identical_onnx_bytes(trained, tiny_model, capsys):
    from kd_train import data

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    unlabeled = data.read_responses(DEMO / "unlabeled.csv", items)
    before = (trained / "demo-ice" / "scorer" / "model.onnx").read_bytes()
    config = PipelineConfig(
        teacher=teacher.TeacherConfig(model=str(tiny_model), epochs=1, lr=1e-3, max_length=48),
        student=StudentConfig(epochs=12),
    )
    logs = []
    run_item(items["demo-ice"], [0, 1, 2, 3], train, test, unlabeled, trained, config, log=logs.append)
    assert any("reusing" in line for line in logs)
    assert (trained / "demo-ice" / "scorer" / "model.onnx").read_bytes() == before


def test_predict_and_evaluate_verbs(trained, tmp_path, capsys):
    scorer_dir = trained / "demo-ice" / "scorer"
    out = tmp_path / "scores.csv"
    assert main(["predict", "--scorer", str(scorer_dir), "--input", str(DEMO / "unlabeled.csv"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert len(rows) == 100 and set(rows[0]) == {"id", "item", "score", "p_0", "p_1", "p_2", "p_3", "flagged", "flags"}
    assert main(["evaluate", "--scorer", str(scorer_dir), "--test", str(DEMO / "test.csv"), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    saved = json.loads((scorer_dir / "scorer.json").read_text())["metrics"]["test"]
    assert report["models"]["shipped"]["items"]["demo-ice"]["qwk"] == pytest.approx(saved["qwk"])
    assert (tmp_path / "ev" / "confusion_shipped.png").is_file()
    detectors = report["per_item"]["demo-ice"]["detectors"]["test"]          # what the detectors flag on test
    train_report = json.loads((trained / "report.json").read_text())["per_item"]["demo-ice"]["detectors"]["test"]
    assert detectors["n"] == 100 and detectors["flagged"] == pytest.approx(train_report["flagged"])
    printed = capsys.readouterr().out
    assert "detectors flag" in printed and "probes flagged: gibberish" in printed
    assert "## Answers the scorers do not judge" in (tmp_path / "ev" / "report.md").read_text()
    probed = report["per_item"]["demo-ice"]["probes"]                  # made from the 100 scored test answers
    assert probed["gibberish"]["n"] == 40 and probed["empty"]["flagged"] == 1.0 and "lowest" in probed["negated"]


def test_distill_verb_from_soft_label_files(trained, tmp_path, capsys):
    item = trained / "demo-ice"
    args = ["distill", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
            "--soft", str(item / "soft-train.csv"), str(item / "soft-unlabeled.csv"),
            "--transfer", str(DEMO / "unlabeled.csv"), "--out", str(tmp_path / "s"), "--student-epochs", "3",
            "--hidden", "8", "--alpha", "1"]
    assert main(args) == 0
    info = json.loads((tmp_path / "s" / "scorer.json").read_text())
    assert info["model"]["hidden"] == 8 and info["training"]["alpha"] == 1.0 and info["training"]["transfer"] == 100


def test_tinybert_like_stand_in_is_a_smaller_distilled_transformer(tiny_model, tmp_path):
    from kd_train import data

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    config = PipelineConfig(
        teacher=teacher.TeacherConfig(model=str(tiny_model), epochs=1, lr=1e-3, max_length=48),
        student=StudentConfig(epochs=2), tinybert=True, tinybert_layers=1,
    )
    report = run_item(items["demo-ice"], [0, 1, 2, 3], train, test, None, tmp_path, config, log=lambda _: None)
    tiny, full = report["models"]["tinybert_like"], report["models"]["teacher"]
    assert tiny["params"] < full["params"] and tiny["test"]["n"] == 100
    meta = json.loads((tmp_path / "demo-ice" / "tinybert_like" / "teacher.json").read_text())
    assert meta["distilled"] and meta["config"]["layers"] == 1


def test_the_report_lists_every_candidate_with_its_size_and_time(trained, capsys):
    # report.md from the item's report.json as it is now (an earlier test re-ran the item: new timings)
    assert main(["report", str(trained)]) == 0
    report = json.loads((trained / "demo-ice" / "report.json").read_text())
    md = (trained / "report.md").read_text()
    assert "## Every candidate" in md
    for name, c in report["quality"]["candidates"].items():
        assert c["ms_per_answer"] > 0   # every candidate timed on the validation answers
        row = (f"| demo-ice | {name} | {c['val_qwk']:.3f} | {c['test_qwk']:.3f} | {c['bytes'] / 1e6:.2f} | "
               f"{c['ms_per_answer']:.2f} |")
        assert row in md, row
    card = (trained / "demo-ice" / "scorer" / "MODEL_CARD.md").read_text(encoding="utf-8")
    for name, c in report["quality"]["candidates"].items():
        assert f"| {name} | {c['params']:,} | {c['bytes']:,} | {c['ms_per_answer']:.2f} |" in card
    section = md.split("## Every candidate", 1)[1].split("\n## ", 1)[0]
    shipped = [line for line in section.splitlines() if line.endswith("| shipped |")]
    assert len(shipped) == 1 and f"| {report['quality']['shipped']} |" in shipped[0]


def test_report_verb_collects_the_per_item_results(trained, capsys):
    (trained / "report.json").unlink()
    assert main(["report", str(trained)]) == 0
    report = json.loads((trained / "report.json").read_text())
    assert report["command"] == f"kd-train report {trained}" and "student" in report["models"]
    assert main(["report", str(trained / "nowhere")]) == 2


def test_predict_takes_answers_without_a_score_column_and_checks_them(trained, tmp_path, capsys):
    scorer_dir = trained / "demo-ice" / "scorer"
    answers = tmp_path / "answers.csv"
    answers.write_text("id,item,response\na1,demo-ice,Ice floats because it is less dense.\n"
                       "a2,demo-ice,\n", encoding="utf-8")
    out = tmp_path / "scores.csv"
    assert main(["predict", "--scorer", str(scorer_dir), "--input", str(answers), "--out", str(out)]) == 0
    assert [r["id"] for r in csv.DictReader(open(out, encoding="utf-8"))] == ["a1", "a2"]
    answers.write_text("id,item,response\na1,demo-ice,one\na1,demo-ice,two\n", encoding="utf-8")
    assert main(["predict", "--scorer", str(scorer_dir), "--input", str(answers), "--out", str(tmp_path / "x.csv")]) == 2
    assert "row 3" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_a_small_item_is_chosen_and_checked_by_cross_validation(tmp_path, tiny_model):
    import csv

    with open(DEMO / "responses.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    small = tmp_path / "small.csv"
    with open(small, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows[:121])                           # header + 120 answers: val split of 12
    out = tmp_path / "run"
    assert main(["train", "--train", str(small), "--items", str(DEMO / "items.csv"), "--test", str(DEMO / "test.csv"),
                 "--out", str(out), "--model", str(tiny_model), "--epochs", "1", "--max-length", "32",
                 "--student-epochs", "8"]) == 0
    info = json.loads((out / "demo-ice" / "scorer" / "scorer.json").read_text())
    assert info["quality"]["selection"].startswith("5-fold cross-validation")
    assert info["metrics"]["val"]["n"] == 120
    assert "5-fold cross-validation" in (out / "demo-ice" / "scorer" / "MODEL_CARD.md").read_text()
    # the distilled students learnt, fold by fold, from teachers that never saw the fold's scores
    report = json.loads((out / "demo-ice" / "report.json").read_text())
    assert report["fold_teachers"]["used"] and report["fold_teachers"]["folds"] == 5
    assert info["quality"]["selection"].endswith("the distilled students learnt each fold from a teacher that never "
                                                 "saw its scores")
    held = [rid for _, ids in teacher.fold_teachers(out / "demo-ice" / "teacher") for rid in ids]
    assert sorted(held) == sorted(row[0] for row in rows[1:121])
    assert all((out / "demo-ice" / "folds" / str(k) / "soft-train.csv").is_file() for k in range(5))
    # what selection saw, answer by answer, is kept in report.json (not in the scorer)
    seen = report["validation_predictions"]
    assert len(seen["ids"]) == len(seen["scores"]) == 120 and "validation_predictions" not in json.dumps(info)
    from kd_train.metrics import qwk
    for name, row in report["quality"]["candidates"].items():
        assert qwk(seen["scores"], seen["by_candidate"][name], [0, 1, 2, 3]) == pytest.approx(row["val_qwk"], abs=1e-9)


def test_a_run_without_test_answers_reports_validation_balance_and_time(tmp_path, tiny_model):
    import re

    out = tmp_path / "run"
    assert main(["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"), "--out", str(out),
                 "--model", str(tiny_model), "--epochs", "1", "--max-length", "32", "--student-epochs", "4"]) == 0
    md = (out / "report.md").read_text()
    assert "Validation split (no --test answers were given)" in md and "| demo-ice | 320 |" in md
    assert "majority-class accuracy" in md and "## The shipped scorers" in md and "## Validity" in md
    for image in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / image).is_file(), image
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "val" and report["models"]["shipped"]["mean_qwk"] > 0


def test_detectors_learn_other_question_from_the_tables_other_items():
    from web_support import other_question_answers

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    puddle = other_question_answers()
    both = data.concat(train, data.Table(path="other.csv", ids=[f"p{i}" for i in range(len(puddle))],
                                         items=["puddle"] * len(puddle), responses=puddle,
                                         scores=[1] * len(puddle), rows=list(range(2, len(puddle) + 2))))
    alone, _ = pipeline.fit_detectors(items["demo-ice"], train, None)
    profile, _ = pipeline.fit_detectors(items["demo-ice"], both, None)
    assert "other" not in alone and profile["fitted_on"]["other_answers"] == len(puddle)
    assert profile["fitted_on"]["answers"] == alone["fitted_on"]["answers"] == 320   # the item's own answers only
    assert "other_question" in detect.flags("The puddle dries up because the sun heats it.", profile)


def test_the_end_of_run_note_names_the_items_whose_scorer_passed_with_a_caution():
    from kd_train.pipeline import ranking_note

    reports = [{"item": "a", "quality": {"caution": "Its exact score is right less often."}},
               {"item": "b", "quality": {"caution": ""}}, {"item": "c", "quality": {}}]
    assert ranking_note(reports).startswith("note: 1 of 3 item(s) pass the quality check but their exact scores are "
                                            "right less often than always giving the most common score (a):")
    assert ranking_note(reports[1:]) == ""


def test_train_with_only_the_sequence_candidate_ships_a_token_scorer_that_predict_runs(tmp_path, tiny_model, capsys):
    with open(DEMO / "responses.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    small = tmp_path / "small.csv"
    with open(small, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows[:121])                           # cross-validated: the sequence student's k folds too
    out = tmp_path / "run"
    assert main(["train", "--train", str(small), "--items", str(DEMO / "items.csv"), "--test", str(DEMO / "test.csv"),
                 "--out", str(out), "--model", str(tiny_model), "--epochs", "1", "--max-length", "32",
                 "--student-epochs", "4", "--candidates", "sequence"]) == 0
    scorer_dir = out / "demo-ice" / "scorer"
    info = json.loads((scorer_dir / "scorer.json").read_text())
    assert info["quality"]["shipped"] == "sequence" and set(info["quality"]["candidates"]) == {"sequence"}
    assert info["model"]["input"] == "token_ids" and info["featurizer"]["kind"] == "tokens"
    # a small item may be labelled by the frozen encoder + regression: its embeddings then come from the base encoder
    assert info["training"]["embeddings"].endswith((" fine-tuned as the teacher", ", the teacher's base encoder"))
    capsys.readouterr()
    predictions = tmp_path / "predicted.csv"
    assert main(["predict", "--scorer", str(scorer_dir), "--input", str(DEMO / "test.csv"), "--out", str(predictions)]) == 0
    with open(predictions, encoding="utf-8", newline="") as fh:
        predicted = list(csv.DictReader(fh))
    assert len(predicted) == 100 and {int(r["score"]) for r in predicted} <= {0, 1, 2, 3}


def test_a_size_budget_ships_the_best_candidate_that_fits_and_names_the_others():
    from kd_train.data import UserError
    from kd_train.quality import Candidate
    from kd_train.student import SequenceStudent, Student, logits, model_inputs, onnx_bytes
    from kd_train.config import FeaturizerConfig, SequenceConfig

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    val = pipeline.validation_split(train, "demo-ice", StudentConfig())[1]
    big, small = SequenceStudent(SequenceConfig(), 4).eval(), Student(2048, 4).eval()
    # the big one made best on validation: its logits are the human scores themselves
    perfect = np.eye(4)[[s for s in val.scores]] * 10
    candidates = [Candidate("sequence", big, perfect),
                  Candidate("student", small, logits(small, model_inputs(small, val.responses, FeaturizerConfig())))]
    _, free = pipeline.ship(candidates, val, None, [0, 1, 2, 3])
    assert free["shipped"] == "sequence"
    budget = (onnx_bytes(small) + onnx_bytes(big)) // 2
    _, tight = pipeline.ship(candidates, val, None, [0, 1, 2, 3], max_bytes=budget)
    assert tight["shipped"] == "student" and "over the" in tight["why"] and "sequence" in tight["why"]
    assert tight["candidates"]["sequence"]["bytes"] > budget >= tight["candidates"]["student"]["bytes"]
    with pytest.raises(UserError, match="max-model-mb"):
        pipeline.ship(candidates, val, None, [0, 1, 2, 3], max_bytes=1000)


def test_a_time_budget_ships_the_best_candidate_fast_enough_and_names_the_others():
    from dataclasses import replace

    from kd_train.data import UserError
    from kd_train.quality import Candidate
    from kd_train.student import SequenceStudent, Student, logits, model_inputs
    from kd_train.config import FeaturizerConfig, SequenceConfig

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    val = pipeline.validation_split(train, "demo-ice", StudentConfig())[1]
    slow, fast = SequenceStudent(SequenceConfig(), 4).eval(), Student(2048, 4).eval()
    perfect = np.eye(4)[[s for s in val.scores]] * 10   # the slow one best on validation
    candidates = [Candidate("sequence", slow, perfect, ms_per_answer=3.0),
                  Candidate("student", fast, logits(fast, model_inputs(fast, val.responses, FeaturizerConfig())),
                            ms_per_answer=0.5)]
    _, free = pipeline.ship(candidates, val, None, [0, 1, 2, 3])
    assert free["shipped"] == "sequence" and free["candidates"]["sequence"]["ms_per_answer"] == 3.0
    _, tight = pipeline.ship(candidates, val, None, [0, 1, 2, 3], max_ms=1.0)
    assert tight["shipped"] == "student" and "3.00 ms per answer > 1 ms" in tight["why"]
    with pytest.raises(UserError, match="max-ms-per-answer"):
        pipeline.ship(candidates, val, None, [0, 1, 2, 3], max_ms=0.1)
    with pytest.raises(ValueError, match="timed"):
        pipeline.ship([replace(candidates[0], ms_per_answer=None)], val, None, [0, 1, 2, 3], max_ms=1.0)


@pytest.mark.parametrize("option, value, message", [
    ("--max-ms-per-answer", "-1", "--max-ms-per-answer must be a time in milliseconds above 0"),
    ("--max-model-mb", "0", "--max-model-mb must be a size in megabytes above 0"),
])
def test_a_budget_must_be_positive(tmp_path, capsys, option, value, message):
    args = ["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"), "--out",
            str(tmp_path / "run"), option, value]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
