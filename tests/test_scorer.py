"""Scorer directories: written atomically, byte-reproducible, refused when tampered with."""

from __future__ import annotations

import json

import pytest
import torch

from kd_train import featurize, scorer
from kd_train.data import UserError
from kd_train.student import Student


def write(folder, seed=0, **kw):
    torch.manual_seed(seed)
    model = Student(featurize.DEFAULT_CONFIG["n_buckets"], 3)
    args = dict(item="q1", question="Why?", score_values=[0, 1, 2], featurizer_config=featurize.DEFAULT_CONFIG,
                metrics={"test": {"n": 3, "acc": 0.5, "qwk": 0.4, "f1": 0.3}}, teacher=None,
                training={"labelled": 3, "fit": 2, "val": 1, "transfer": 0, "alpha": 0.0, "temperature": 2.0, "seed": 0})
    return scorer.write_scorer(folder, model, **(args | kw))


def test_scorer_directory_contents(tmp_path):
    info = write(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["MODEL_CARD.md", "model.onnx", "scorer.json"]
    assert info["featurize_sha256"] == scorer.featurize_sha256()
    assert info["model"]["params"] == 2048 * 14 + 14 + 14 * 3 + 3
    card = (tmp_path / "s" / "MODEL_CARD.md").read_text()
    assert "Not for high-stakes decisions" in card and "| test | 3 | 0.500 | 0.400 | 0.300 |" in card
    probs = scorer.Scorer(tmp_path / "s").predict_proba(["heat", ""])
    assert probs.shape == (2, 3)


def test_same_model_gives_identical_bytes(tmp_path):
    write(tmp_path / "a")
    write(tmp_path / "b")
    for name in ("model.onnx", "scorer.json", "MODEL_CARD.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_tampered_model_is_refused(tmp_path):
    write(tmp_path / "s")
    with open(tmp_path / "s" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(UserError, match="sha256 does not match"):
        scorer.read_scorer(tmp_path / "s")


def test_other_featurizer_is_refused(tmp_path):
    write(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "scorer.json").read_text())
    meta["featurize_sha256"] = "0" * 64
    (tmp_path / "s" / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="different featurize.py"):
        scorer.read_scorer(tmp_path / "s")


def test_failed_write_leaves_nothing_and_keeps_the_old_scorer(tmp_path):
    write(tmp_path / "s")
    before = (tmp_path / "s" / "model.onnx").read_bytes()
    with pytest.raises(Exception):
        write(tmp_path / "s", seed=1, featurizer_config={"n_buckets": -1})
    assert (tmp_path / "s" / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
