"""The transformer rungs as candidates (kd_train/ladder.py): the small transformer student, started from the
fine-tuned teacher's first layers and distilled from it, exported int8 and shipped where it wins on validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from kd_train import data, scorer, teacher
from kd_train.cli import main
from kd_train.encoder import weights_sha256

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


def _train(tiny_model: Path, out: Path, *extra: str) -> int:
    return main(["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"),
                 "--test", str(DEMO / "test.csv"), "--out", str(out), "--model", str(tiny_model), "--epochs", "1",
                 "--lr", "1e-3", "--max-length", "48", "--student-epochs", "2", "--augment", "0", *extra])


def test_the_small_transformer_starts_from_the_teachers_layers_and_ships_as_a_transformer_scorer(tiny_model, tmp_path,
                                                                                                   capsys):
    out = tmp_path / "run"
    assert _train(tiny_model, out, "--candidates", "tinybert_like") == 0
    said = capsys.readouterr().out
    assert "tinybert_like: the teacher's first 1 layers" in said   # the tiny teacher has 2
    assert "candidate: tinybert_like, exported to ONNX with int8 weights" in said
    item = out / "demo-ice"
    small = teacher.read_meta(item / "tinybert_like")
    assert small["distilled"] and small["config"]["layers"] == 1
    assert Path(small["config"]["model"]) == (item / "teacher").resolve()
    assert small["base_weights_sha256"] == weights_sha256(item / "teacher")
    report = json.loads((item / "report.json").read_text())
    row = report["models"]["tinybert_like"]
    assert row["started_from"].startswith("the first 1 layers of the fine-tuned teacher") and row["exported"]["weights"] == "int8"
    assert 0 < row["exported"]["embedding_rows"] < row["exported"]["vocabulary"]   # the tokens it trained on
    assert "token embeddings kept: those of the answers it trained on" in said
    assert report["quality"]["shipped"] == "tinybert_like"
    loaded = scorer.Scorer(item / "scorer")
    assert loaded.info["featurizer"]["kind"] == "wordpiece"
    assert loaded.info["training"]["exported_small_transformer"]["layers"] == small["config"]["layers"]
    predicted = tmp_path / "predicted.csv"
    assert main(["predict", "--scorer", str(item / "scorer"), "--input", str(DEMO / "test.csv"), "--out",
                 str(predicted)]) == 0
    with open(predicted, newline="", encoding="utf-8") as f:
        got = [r for r in csv.DictReader(f) if r["score"]]
    text_of = dict(zip(*(lambda t: (t.ids, t.responses))(data.read_responses(DEMO / "test.csv"))))
    texts = [text_of[r["id"]] for r in got]
    assert len(texts) > 50 and [int(r["score"]) for r in got] == loaded.predict(texts)
    card = (item / "scorer" / "MODEL_CARD.md").read_text()
    assert "the small transformer student (the first 1 layers of the fine-tuned teacher" in card
    assert "distilled from the teacher's probabilities" in card


def test_a_cached_small_transformer_is_reused_only_while_its_teacher_is_the_same(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_model, out, "--candidates", "hashing_lr", "--tinybert") == 0
    first = teacher.read_meta(out / "demo-ice" / "tinybert_like")
    capsys.readouterr()
    assert _train(tiny_model, out, "--candidates", "hashing_lr", "--tinybert") == 0
    assert f"tinybert_like: reusing {out / 'demo-ice' / 'tinybert_like'}" in capsys.readouterr().out
    # a new teacher (another learning rate): the small student started from the old one is trained again
    assert _train(tiny_model, out, "--candidates", "hashing_lr", "--tinybert", "--lr", "2e-3") == 0
    said = capsys.readouterr().out
    assert "tinybert_like: reusing" not in said
    again = teacher.read_meta(out / "demo-ice" / "tinybert_like")
    assert again["base_weights_sha256"] == weights_sha256(out / "demo-ice" / "teacher") != first["base_weights_sha256"]
    report = json.loads((out / "demo-ice" / "report.json").read_text())
    assert {"tinybert_like", "hashing_lr"} <= set(report["quality"]["candidates"])
    assert np.isfinite(report["models"]["tinybert_like"]["val"]["qwk"])


def test_on_a_cross_validated_item_it_is_not_trained_and_says_why(tiny_model, toy_tables, tmp_path, capsys):
    """90 answers: a validation split would be too small, so every answer is fitted and none is left to judge it."""
    out = tmp_path / "run"
    assert main(["train", "--train", str(toy_tables["train"]), "--items", str(toy_tables["items"]), "--out", str(out),
                 "--model", str(tiny_model), "--epochs", "1", "--max-length", "32", "--student-epochs", "2",
                 "--no-frozen-teacher", "--candidates", "hashing_lr", "--tinybert"]) == 0
    said = capsys.readouterr().out
    assert "candidate: tinybert_like skipped: 90 scored answers are cross-validated" in said
    assert not (out / "q1" / "tinybert_like").exists()
    assert json.loads((out / "q1" / "report.json").read_text())["quality"]["shipped"] == "hashing_lr"
