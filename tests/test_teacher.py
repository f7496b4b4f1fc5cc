"""Teacher fine-tuning and soft labels, on a tiny random BERT (seconds) and once on the real MiniLM."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, toy_rows, write_csv
from kd_train import encoder, soft_labels, teacher, teacher_frozen, teacher_trainer
from kd_train.data import read_items, read_responses


def tiny_config(model, **kw) -> teacher.TeacherConfig:
    # cv_below=0: the validation-split path (cross-validation has its own tests below)
    # frozen=False: these test fine-tuning (the frozen encoder beside it has its own tests below)
    base = dict(model=str(model), epochs=2, lr=1e-3, batch_size=16, max_length=32, seed=0, val_fraction=0.2, cv_below=0,
                frozen=False)
    return teacher.TeacherConfig(**(base | kw))


def _argmax_confusion(kept, tables, values) -> list[list[int]]:
    """The confusion matrix of the most probable scores of kept validation logits against the human scores."""
    from kd_train.metrics import score_metrics

    train = read_responses(tables["train"], read_items(tables["items"]))
    human = dict(zip(train.ids, train.scores))
    truth = [human[rid] for rid in kept["ids"].tolist()]
    return score_metrics(truth, [values[i] for i in kept["logits"].argmax(axis=1)], values)["confusion"]


def fine_tune(tables, out, model, **kw):
    items = read_items(tables["items"])
    train = read_responses(tables["train"], items)
    test = read_responses(tables["test"], items)
    return teacher.fine_tune(train, "q1", [0, 1, 2], out, tiny_config(model, **kw), question=items["q1"].question, test=test)


def test_fine_tune_saves_teacher_with_metrics(tmp_path, toy_tables, tiny_model):
    meta = fine_tune(toy_tables, tmp_path / "t", tiny_model)
    saved = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert saved == meta
    assert set(meta["metrics"]) == {"val", "test"}
    assert meta["metrics"]["test"]["n"] == 30 and 0 <= meta["metrics"]["test"]["acc"] <= 1
    assert meta["score_values"] == [0, 1, 2] and meta["train_rows"] + meta["val_rows"] == 90
    assert (tmp_path / "t" / "model.safetensors").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folders left behind
    assert meta["max_length"] == 32 and meta["max_length_auto"] is None  # given: used as given
    assert meta["epochs_run"] == 2.0 and meta["best_epoch"] in (1.0, 2.0) and len(meta["val_qwk_by_epoch"]) == 2
    assert set(meta["class_weights"]) == {"0", "1", "2"} and meta["wall_s"] >= 0
    kept = np.load(tmp_path / "t" / teacher.VAL_LOGITS_FILE)             # the logits the "val" metrics came from
    assert len(kept["ids"]) == meta["val_rows"] == meta["metrics"]["val"]["n"]
    assert _argmax_confusion(kept, toy_tables, meta["score_values"]) == meta["metrics"]["val"]["confusion"]


def test_fine_tune_is_reproducible(tmp_path, toy_tables, tiny_model):
    a = fine_tune(toy_tables, tmp_path / "a", tiny_model, epochs=1)
    b = fine_tune(toy_tables, tmp_path / "b", tiny_model, epochs=1)
    assert a["weights_sha256"] == b["weights_sha256"]


def test_label_caches_and_refreshes_on_fingerprint_change(tmp_path, toy_tables, tiny_model):
    fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1)
    table = read_responses(toy_tables["unlabeled"])
    out = tmp_path / "soft.csv"
    first, cached = teacher.label(tmp_path / "t", table, out)
    assert not cached and len(first.ids) == 20
    np.testing.assert_allclose(first.probs.sum(axis=1), 1.0)
    again, cached = teacher.label(tmp_path / "t", table, out)
    assert cached
    np.testing.assert_array_equal(again.probs, first.probs)
    hotter, cached = teacher.label(tmp_path / "t", table, out, temperature=4.0)
    assert not cached and soft_labels.read(out).fingerprint["temperature"] == 4.0
    assert hotter.probs.max() < first.probs.max()  # a higher temperature softens


def test_cross_fitted_labels_for_training_rows(tmp_path, toy_tables, tiny_model):
    meta = fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1, folds=2)
    assert meta["metrics"]["crossfit"]["n"] == 90
    train = read_responses(toy_tables["train"])
    crossed, _ = teacher.label(tmp_path / "t", train, tmp_path / "cf.csv")
    plain, _ = teacher.label(tmp_path / "t", train, tmp_path / "plain.csv", cross_fit=False)
    assert crossed.fingerprint["folds"] == 2 and plain.fingerprint["folds"] == 0
    stored = np.load(tmp_path / "t" / teacher.CROSSFIT_FILE)
    np.testing.assert_allclose(crossed.probs, teacher.softmax(stored["logits"]), rtol=1e-6)
    assert not np.allclose(crossed.probs, plain.probs)


def test_unknown_model_is_a_clear_error(tmp_path, toy_tables):
    with pytest.raises(teacher.ModelError, match="not a model folder"):
        fine_tune(toy_tables, tmp_path / "t", tmp_path)


@pytest.mark.slow
def test_real_packaged_minilm_fine_tunes_offline(tmp_path):
    rows = toy_rows(48)
    write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows)
    train = read_responses(tmp_path / "train.csv")
    config = teacher.TeacherConfig(epochs=1, batch_size=16, max_length=32, val_fraction=0.25, frozen=False)
    meta = teacher.fine_tune(train, "q1", [0, 1, 2], tmp_path / "t", config)
    assert "all-MiniLM-L6-v2" in meta["base_model"]
    assert json.loads((tmp_path / "t" / "config.json").read_text())["num_hidden_layers"] == 6
    probs = teacher.softmax(teacher.predict_logits(tmp_path / "t", ["heat conducts metal", ""], progress=False))
    assert probs.shape == (2, 3)


@pytest.mark.slow
def test_torchrun_two_processes_train_one_teacher(tmp_path, toy_tables, tiny_model):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "kd_train.cli", "teacher",
           "--train", str(toy_tables["train"]), "--items", str(toy_tables["items"]), "--out", str(tmp_path / "t"),
           "--model", str(tiny_model), "--epochs", "2", "--lr", "1e-3", "--max-length", "32", "--batch-size", "8",
           "--no-frozen-teacher"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("teacher saved to") == 1  # only the main process writes and reports
    meta = json.loads((tmp_path / "t" / "teacher.json").read_text())
    # 90 answers: 9 would validate, so the epochs are chosen by cross-validation, in both processes alike
    assert meta["cross_validation"]["folds"] == 5 and meta["epochs_run"] == meta["best_epoch"] in (1, 2)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- the recipe for real item sizes: auto max_length, head+tail truncation, class weights, patience ---


def long_rows(n: int, seed: int = 0) -> list[list]:
    """Answers of 4 to 80 words, learnable from their first word, so lengths vary widely."""
    import random

    rng = random.Random(seed)
    filler = ["the", "ice", "melts", "because", "metal", "plate", "heat", "flows", "into", "it", "faster", "than", "air"]
    rows = []
    for i in range(n):
        score = i % 3
        words = [["banana", "dunno", "energy"][score]] + [rng.choice(filler) for _ in range(rng.randint(3, 79))]
        rows.append([f"a{i}", "q1", " ".join(words), score])
    return rows


def test_auto_max_length_resolves_from_the_answers_and_predict_uses_it(tmp_path, toy_tables, tiny_model):
    write_csv(toy_tables["train"], ["id", "item", "response", "score"], long_rows(90))
    meta = fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1, max_length=0)
    train = read_responses(toy_tables["train"])
    tokenizer, limit = encoder.load_tokenizer(str(tiny_model))
    assert limit == 128  # the tiny BERT has 128 positions
    counts = encoder.token_counts(tokenizer, train.responses, None)
    expected = max(32, 8 * int(np.ceil(np.percentile(counts, 95) / 8)))
    assert 32 < expected < 128
    assert meta["max_length"] == expected and meta["config"]["max_length"] == 0  # config kept as given
    assert meta["max_length_auto"]["answers"] == 90 and meta["max_length_auto"]["percentile"] == 95
    assert meta["truncation"]["rule"] == "head+tail" and meta["truncation"]["head_share"] == 0.25
    assert meta["truncation"]["train_answers_cut"] == sum(c > expected for c in counts)
    # an answer far longer than the model's 128 positions is cut to the recorded length, not to config's 0
    long_answer = " ".join(["heat"] * 600)
    assert teacher.predict_logits(tmp_path / "t", [long_answer, ""], progress=False).shape == (2, 3)
    # a folder made before max_length and truncation were recorded predicts with config's max_length
    saved = json.loads((tmp_path / "t" / "teacher.json").read_text())
    for key in ("max_length", "max_length_auto", "truncation"):
        del saved[key]
    saved["config"]["max_length"] = 32
    (tmp_path / "t" / "teacher.json").write_text(json.dumps(saved))
    assert teacher.predict_logits(tmp_path / "t", [long_answer], progress=False).shape == (1, 3)


def test_resolve_max_length_bounds():
    assert encoder.resolve_max_length([5, 6, 7], 0, 512)[0] == 32  # at least 32
    length, auto = encoder.resolve_max_length(list(range(1, 101)), 0, 512)
    assert length == 96 and auto["tokens_at_percentile"] == 95.0  # 95th percentile 95.05, up to a multiple of 8
    assert encoder.resolve_max_length([41] * 20, 0, 512)[0] == 48
    assert encoder.resolve_max_length([900] * 20, 0, 512)[0] == 512
    assert encoder.resolve_max_length([900] * 20, 0, 128)[0] == 128
    assert encoder.resolve_max_length([900] * 20, 64, 512) == (64, None)  # given: used as given
    assert encoder.resolve_max_length([900] * 20, 1024, 512) == (512, None)  # but never beyond the model


def test_head_tail_truncation_keeps_the_first_and_last_tokens(tiny_model):
    tokenizer, _ = encoder.load_tokenizer(str(tiny_model))
    answer = "first " + " ".join(f"word{i}" for i in range(100)) + " final"
    tokens = tokenizer(answer, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    [row] = encoder.encode(tokenizer, [answer], None, 32)
    budget = 32 - 2
    head = budget // 4
    assert row["input_ids"] == [cls] + tokens[:head] + tokens[-(budget - head):] + [sep]
    assert row["input_ids"][1] == tokenizer.convert_tokens_to_ids("first")
    assert row["input_ids"][-2] == tokenizer.convert_tokens_to_ids("final")
    assert len(row["attention_mask"]) == len(row["token_type_ids"]) == 32
    # paired with a question: the question stays whole, the answer's budget shrinks
    question = "why does ice melt faster on metal?"
    q_tokens = tokenizer(question, add_special_tokens=False)["input_ids"]
    [pair] = encoder.encode(tokenizer, [answer], question, 32)
    budget = 32 - 3 - len(q_tokens)
    head = budget // 4
    assert pair["input_ids"] == [cls] + tokens[:head] + tokens[-(budget - head):] + [sep] + q_tokens + [sep]
    assert pair["token_type_ids"] == [0] * (budget + 2) + [1] * (len(q_tokens) + 1)
    # short inputs are left alone, exactly as the tokenizer makes them
    [short] = encoder.encode(tokenizer, ["heat conducts"], question, 32)
    assert short == {k: v for k, v in tokenizer("heat conducts", question).items()}
    # a question longer than the room keeps at most half of it; the answer keeps its head and tail
    keep = encoder.head_tail_positions([None] + [0] * 50 + [None] + [1] * 50 + [None], 23)
    assert len(keep) == 23 and keep[:3] == [0, 1, 2] and keep[-1] == 102
    assert sum(1 for j in keep if 52 <= j <= 101) == 10 and 50 in keep  # half of 20 for the question; answer's tail


def test_balanced_class_weights_on_an_imbalanced_table(tmp_path):
    import torch

    rows = [[f"a{i}", "q1", f"answer {i}", s] for i, s in enumerate([0] * 6 + [1] * 3 + [2] * 1)] + [["u", "q1", "x", ""]]
    table = read_responses(write_csv(tmp_path / "t.csv", ["id", "item", "response", "score"], rows))
    weights = teacher_trainer.balanced_class_weights(table.scores, [0, 1, 2, 3])
    # n / (classes present * count); score 3 has no answers: weight 0
    assert weights == pytest.approx([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1), 0.0])
    assert sum(w * c for w, c in zip(weights, [6, 3, 1, 0])) == pytest.approx(10)  # they average 1 per answer
    w = torch.tensor(weights)
    logits = torch.zeros(3, 4)  # cross-entropy log(4) for every answer
    labels = torch.tensor([0, 2, teacher_trainer.UNLABELED])
    expected = (weights[0] + weights[2]) * np.log(4) / 2
    assert teacher_trainer.weighted_cross_entropy(logits, labels, w).item() == pytest.approx(expected, rel=1e-5)
    assert teacher_trainer.weighted_cross_entropy(logits[:2], torch.tensor([3, teacher_trainer.UNLABELED]), w).item() == 0.0  # no NaN


def test_patience_does_not_count_while_validation_qwk_is_not_above_zero():
    from types import SimpleNamespace

    from transformers import TrainerControl

    def run(qwks, patience=3):
        callback, control = teacher_trainer.patience_callback(patience), TrainerControl()
        for epoch, q in enumerate(qwks, start=1):
            callback.on_evaluate(None, SimpleNamespace(epoch=float(epoch)), control, metrics={"eval_qwk": q, "eval_loss": 1.0})
            if control.should_training_stop:
                return epoch, callback.rule.best_epoch
        return None, callback.rule.best_epoch

    assert run([0.0] * 20) == (None, 1.0)  # a constant teacher trains up to the most epochs
    assert run([-0.1, 0.0, 0.0, -0.2, 0.0, 0.0, 0.0]) == (None, 2.0)
    assert run([0.0] * 8 + [0.3, 0.2, 0.3, 0.1]) == (12, 9.0)  # counting starts at the first QWK above 0
    assert run([0.0, 0.2, 0.1, 0.25, 0.2, 0.2, 0.25]) == (7, 4.0)  # a better QWK resets; ties do not
    assert run([0.5, 0.4], patience=1) == (2, 1.0)
    callback, control = teacher_trainer.patience_callback(1), TrainerControl()
    callback.on_evaluate(None, SimpleNamespace(epoch=1.0), control, metrics={"eval_loss": 1.0})  # no QWK: ignored
    assert not control.should_training_stop and callback.rule.history == []


def test_patience_waits_for_the_teachers_minimum_steps():
    from types import SimpleNamespace

    from transformers import TrainerControl

    # 5 optimizer steps an epoch (80 answers, batch 16): with 20 minimum steps, patience 2 counts from epoch 4
    callback, control = teacher_trainer.patience_callback(2, min_steps=20), TrainerControl()
    stopped = None
    for epoch, q in enumerate([0.3, 0.2, 0.1, 0.2, 0.5, 0.4, 0.4, 0.3], start=1):
        callback.on_evaluate(None, SimpleNamespace(epoch=float(epoch), global_step=5 * epoch), control,
                             metrics={"eval_qwk": q})
        if control.should_training_stop:
            stopped = epoch
            break
    assert stopped == 7 and callback.rule.best_epoch == 5.0     # without the minimum it would have stopped at 3
    assert teacher_trainer.patience_callback(2).rule.min_steps == 0
    with pytest.raises(teacher.UserError, match="minimum steps"):
        teacher.check_config(teacher.TeacherConfig(min_steps=-1))


def test_early_stopping_keeps_the_best_epoch(tmp_path, toy_tables, tiny_model):
    # on the toy table this tiny BERT predicts one score for several epochs (QWK 0), then learns, then stalls
    meta = fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=12, patience=2, lr=1e-3)
    history, best = meta["val_qwk_by_epoch"], int(meta["best_epoch"])
    assert meta["epochs_run"] == len(history) == best + 2 < 12  # stopped 2 epochs after the best one
    assert history[best - 1] == max(history) > 0 and all(q < max(history) for q in history[:best - 1])
    assert meta["metrics"]["val"]["qwk"] == pytest.approx(max(history), abs=1e-4)  # the best checkpoint was kept
    assert meta["class_weights"] == {"0": 1.0, "1": 1.0, "2": 1.0}  # the toy table is balanced
    assert fine_tune(toy_tables, tmp_path / "n", tiny_model, epochs=1, class_weights="none")["class_weights"] is None


def test_warmup_is_a_share_of_all_steps(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), warmup_steps=teacher.TeacherConfig().warmup_ratio, use_cpu=True,
                             report_to=[])
    assert args.get_warmup_steps(60) == 6 and args.get_warmup_steps(3) == 1  # 50 answers, 3 steps an epoch


def test_cli_defaults_are_teacher_config_defaults(capsys):
    from kd_train.cli import build_parser, main
    from kd_train.cli_inputs import teacher_config_of

    with pytest.raises(SystemExit):
        main(["teacher", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(--patience) (default: 20)" in help_text
    assert "whose validation QWK is above 0; the best epoch is kept (default: 3)" in help_text
    assert "--class-weights {balanced,none}" in help_text and "(default: balanced)" in help_text
    assert "95th percentile" in help_text and "(default: 0, auto)" in help_text
    assert "first 10% of the steps (default: 5e-5)" in help_text
    for verb in ("teacher", "train"):
        args = build_parser().parse_args([verb, "--out", "x"])
        assert teacher_config_of(args) == teacher.TeacherConfig()
    assert main(["teacher", "--train", "examples/demo/responses.csv", "--out", "x", "--patience", "0"]) == 2
    assert "--patience must be at least 1" in capsys.readouterr().err


# --- small items: the teacher's epochs are chosen by cross-validation ---


def test_a_small_item_chooses_the_teachers_epochs_by_cross_validation(tmp_path, toy_tables, tiny_model, capsys):
    # 90 answers: a 20% split would hold 18 (< 30), so 5 folds choose the epochs and the teacher then trains on all 90
    meta = fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=12, patience=2, lr=1e-3, cv_below=30, folds=5)
    cv, history = meta["cross_validation"], meta["val_qwk_by_epoch"]
    assert cv["folds"] == 5 and len(cv["fold_epochs_run"]) == 5 and len(history) == max(cv["fold_epochs_run"]) < 12
    assert meta["train_rows"] == 90 and meta["val_rows"] == 0
    best = meta["best_epoch"]
    assert history[best - 1] == max(history) > 0 and all(q < max(history) for q in history[:best - 1])
    assert meta["epochs_run"] == best  # the final teacher trained for the chosen epochs, no more
    val = meta["metrics"]["val"]
    assert val["n"] == 90 and val["cross_validated"] and val["qwk"] == pytest.approx(max(history), abs=1e-4)
    # with as many cross-fitting folds, the out-of-fold logits are the cross-fitted ones: no 5 more fine-tunings
    out = capsys.readouterr().out
    assert "cross-fitting" not in out
    assert "{'loss'" not in out and "{'eval_loss'" not in out                  # no raw log dicts: one line an epoch
    assert re.search(r"^    epoch 1/12: training loss \d\.\d{3}; validation QWK -?\d\.\d{3}, accuracy \d\.\d{3}$", out, re.M)
    assert meta["metrics"]["crossfit"] == {k: v for k, v in val.items() if k != "cross_validated"}
    kept = np.load(tmp_path / "t" / teacher.VAL_LOGITS_FILE)             # out of fold, over all 90 answers
    assert len(set(kept["ids"].tolist())) == 90
    assert _argmax_confusion(kept, toy_tables, meta["score_values"]) == val["confusion"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    _check_fold_teachers(tmp_path / "t", toy_tables, tmp_path)


def _check_fold_teachers(folder, toy_tables, tmp_path):
    """A cross-validated teacher keeps one teacher per fold, each a teacher folder that labels, and their held-out
    answers are the teacher's training answers, each once; the teacher's own weights are unchanged by them."""
    train = read_responses(toy_tables["train"])
    folds = teacher.fold_teachers(folder)
    assert len(folds) == 5 and [f.name for f, _ in folds] == ["0", "1", "2", "3", "4"]
    held = [rid for _, ids in folds for rid in ids]
    assert sorted(held) == sorted(train.ids)
    meta = teacher.read_meta(folder)
    assert meta["weights_sha256"] == teacher.weights_sha256(folder)
    fold, ids = folds[0]
    labels, _ = teacher.label(fold, train, tmp_path / "fold0.csv")
    assert len(labels.ids) == len(train) and np.allclose(labels.probs.sum(axis=1), 1)
    assert labels.fingerprint["weights_sha256"] == teacher.read_meta(fold)["weights_sha256"] != meta["weights_sha256"]


def test_a_linear_head_gives_the_regressions_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    for classes in ([0, 1, 3], [1, 2]):                      # three of four scores; two (the binary case)
        y = np.array([classes[i % len(classes)] for i in range(60)])
        fitted = LogisticRegression(C=1.0, max_iter=1000).fit(x + 0.5 * y[:, None], y)
        weights, bias = teacher_frozen.linear_head(fitted, 4)
        probs = teacher.softmax(x @ weights.T + bias)
        assert np.allclose(probs[:, classes], fitted.predict_proba(x), atol=1e-5)
        assert probs[:, [v for v in range(4) if v not in classes]].max() < 1e-12


@pytest.mark.slow
def test_a_small_item_keeps_the_frozen_encoder_when_it_is_better_out_of_fold(tmp_path, capsys):
    rows = toy_rows(48)
    write_csv(tmp_path / "train.csv", ["id", "item", "response", "score"], rows[:40])
    write_csv(tmp_path / "test.csv", ["id", "item", "response", "score"], rows[40:])
    train, test = read_responses(tmp_path / "train.csv"), read_responses(tmp_path / "test.csv")
    config = teacher.TeacherConfig(epochs=1, batch_size=16, max_length=32)      # 40 answers: cross-validated
    meta = teacher.fine_tune(train, "q1", [0, 1, 2], tmp_path / "t", config, test=test)
    found = meta["frozen_candidate"]
    assert found["kept"] and found["oof_qwk"] > found["fine_tuned_oof_qwk"], found  # the toy answers name their score
    assert "the frozen encoder labels" in capsys.readouterr().out
    folder = tmp_path / "t"
    assert meta["kind"] == teacher.FROZEN_KIND and (folder / teacher.FROZEN_HEAD_FILE).is_file()
    assert not list(folder.glob("*.safetensors"))                              # no fine-tuned weights to ship around
    assert meta["metrics"]["val"]["qwk"] == pytest.approx(found["oof_qwk"], abs=1e-4)
    logits = teacher.predict_logits(folder, test.responses, progress=False)
    assert meta["metrics"]["test"]["acc"] == pytest.approx(np.mean(np.array([0, 1, 2])[logits.argmax(axis=1)] ==
                                                                   np.array(test.scores)))
    labels, _ = teacher.label(folder, test, tmp_path / "soft.csv")
    assert np.allclose(labels.probs.sum(axis=1), 1) and labels.fingerprint["weights_sha256"] == meta["weights_sha256"]
    folds = teacher.fold_teachers(folder)                                      # the regression fitted without each fold
    assert sorted(rid for _, ids in folds for rid in ids) == sorted(train.ids)
    assert all(teacher.read_meta(f)["kind"] == teacher.FROZEN_KIND and not list(f.glob("*.safetensors")) for f, _ in folds)
    fold_labels, _ = teacher.label(folds[0][0], test, tmp_path / "fold0.csv")
    assert np.allclose(fold_labels.probs.sum(axis=1), 1) and not np.allclose(fold_labels.probs, labels.probs)
    meta["base_weights_sha256"] = "0" * 64                                     # the base encoder is not the one fitted on
    (folder / "teacher.json").write_text(json.dumps(meta))
    with pytest.raises(teacher.ModelError, match="base encoder"):
        teacher.predict_logits(folder, ["x"], progress=False)


def test_the_cross_validation_rule_is_the_students():
    from kd_train.config import StudentConfig
    from kd_train.distill import uses_cross_validation as student_rule

    t, s = teacher.TeacherConfig(), StudentConfig()
    assert (t.cv_below, t.cv_folds, t.val_fraction) == (s.cv_below, s.cv_folds, s.val_fraction)
    for n in (50, 294, 295, 296, 400, 2000):
        assert teacher.uses_cross_validation(n, t) == student_rule(n, s)
    assert teacher.uses_cross_validation(294, t) and not teacher.uses_cross_validation(296, t)  # 29 or 30 to validate
    assert not teacher.uses_cross_validation(50, teacher.TeacherConfig(cv_below=0))
    with pytest.raises(teacher.UserError, match="at least 2 folds"):
        teacher.check_config(teacher.TeacherConfig(cv_folds=1))


def test_a_teacher_saved_before_cross_validation_is_reused_only_where_it_would_not_apply(tmp_path, toy_tables, tiny_model):
    from kd_train.pipeline import _cached_teacher

    fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1, val_fraction=0.4)
    path = tmp_path / "t" / "teacher.json"
    old = json.loads(path.read_text())
    for key in ("cv_below", "cv_folds"):
        del old["config"][key]  # as teacher.json was written before these settings existed
    del old["cross_validation"]
    path.write_text(json.dumps(old))
    train = read_responses(toy_tables["train"])
    split = tiny_config(tiny_model, epochs=1, val_fraction=0.4, cv_below=30)  # 36 would validate: a split, as it was
    assert _cached_teacher(tmp_path / "t", split, train) is not None
    small = tiny_config(tiny_model, epochs=1, val_fraction=0.2, cv_below=30)
    old["config"]["val_fraction"] = 0.2
    path.write_text(json.dumps(old))
    assert _cached_teacher(tmp_path / "t", small, train) is None  # 18 would validate: now cross-validated, so retrain


def test_the_epoch_lines_say_the_loss_the_validation_figures_and_the_time():
    assert teacher_trainer.epoch_line({"loss": 0.6512, "grad_norm": 2.2, "epoch": 4.0}, 20) == "    epoch 4/20: training loss 0.651"
    assert teacher_trainer.epoch_line({"eval_loss": 0.67, "eval_qwk": 0.7787, "eval_acc": 0.8, "epoch": 4.0}, 20, 0.6512) == \
        "    epoch 4/20: training loss 0.651; validation QWK 0.779, accuracy 0.800"
    assert teacher_trainer.epoch_line({"train_runtime": 370.2, "train_loss": 0.63, "epoch": 8.0}, 20) == "    trained in 370 s"
    assert teacher_trainer.epoch_line({"total_flos": 1.0}, 20) is None


def test_label_relabels_a_cut_csv_and_says_how_many_rows_of_other_items_it_skipped(tmp_path, toy_tables,
                                                                                   tiny_model, capsys):
    from conftest import toy_rows, write_csv
    from kd_train.cli import main

    fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1)
    mixed = write_csv(tmp_path / "mixed.csv", ["id", "item", "response", "score"],
                      toy_rows(12, seed=3, prefix="m") + toy_rows(5, seed=4, item="q2", prefix="o"))
    out = tmp_path / "soft.csv"
    args = ["label", "--teacher", str(tmp_path / "t"), "--input", str(mixed), "--out", str(out)]
    assert main(args) == 0
    assert "wrote 12 soft labels for item q1" in capsys.readouterr().out
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "reused cached 12 soft labels" in said and "(5 rows of other items skipped" in said
    out.write_text("\n".join(out.read_text().splitlines()[:7]) + "\n")   # half its rows lost
    assert main(args) == 0
    assert "wrote 12 soft labels" in capsys.readouterr().out and len(soft_labels.read(out).ids) == 12


def test_training_says_how_far_it_is_without_a_terminal(tmp_path, toy_tables, tiny_model, capsys, monkeypatch):
    monkeypatch.setattr(teacher_trainer, "PROGRESS_EVERY_S", 0.0)
    fine_tune(toy_tables, tmp_path / "t", tiny_model, epochs=1)
    out = capsys.readouterr().out
    assert "optimizer steps at most (1 epochs); a line an epoch and one every 0 s" in out
    assert re.search(r"    step 1/\d+ \(epoch 0\.\d\d\), \d+ s", out)


def test_the_teacher_verb_says_what_it_does_before_it_loads_the_model(tmp_path, toy_tables, tiny_model, capsys):
    from kd_train.cli import main

    assert main(["teacher", "--train", str(toy_tables["train"]), "--model", str(tiny_model), "--epochs", "1",
                 "--max-length", "16", "--teacher-cv-below", "0", "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (f"fine-tuning a teacher for item 'q1' on 90 scored answers ({tiny_model}; "
                                   "loading it takes seconds, training minutes)")
    assert main(["label", "--teacher", str(tmp_path / "t"), "--input", str(toy_tables["test"]),
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert "teacher predicts 30 answers" in capsys.readouterr().err
