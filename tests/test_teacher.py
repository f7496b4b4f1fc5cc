"""Teacher fine-tuning and soft labels, on a tiny random BERT (seconds) and once on the real MiniLM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, toy_rows, write_csv
from kd_train import soft_labels, teacher
from kd_train.data import read_items, read_responses


def tiny_config(model, **kw) -> teacher.TeacherConfig:
    base = dict(model=str(model), epochs=2, lr=1e-3, batch_size=16, max_length=32, seed=0, val_fraction=0.2)
    return teacher.TeacherConfig(**(base | kw))


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
    config = teacher.TeacherConfig(epochs=1, batch_size=16, max_length=32, val_fraction=0.25)
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
           "--model", str(tiny_model), "--epochs", "2", "--lr", "1e-3", "--max-length", "32", "--batch-size", "8"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("teacher saved to") == 1  # only the main process writes and reports
    meta = json.loads((tmp_path / "t" / "teacher.json").read_text())
    assert meta["epochs_run"] == 2.0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
