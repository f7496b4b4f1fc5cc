"""A teacher of several members (kd-train train --teachers K): one validation split, seeds in turn, labels
averaged only where that beats the first member alone on validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DEMO
from kd_train import ensemble, soft_labels
from kd_train.cli import main
from kd_train.config import TeacherConfig


def test_a_member_has_its_own_seed_and_the_first_ones_split():
    config = TeacherConfig(seed=7)
    assert ensemble.member_config(config, 0) is config
    second = ensemble.member_config(config, 1)
    assert (second.seed, second.splits_seed) == (8, 7)
    assert ensemble.member_config(second, 1).splits_seed == 7   # a member's member keeps the split too
    assert [ensemble.member_name("teacher", k) for k in range(3)] == ["teacher", "teacher-seed2", "teacher-seed3"]


def test_averaged_logits_are_the_log_of_the_mean_probabilities():
    a, b = np.log([[0.9, 0.1], [0.2, 0.8]]), np.log([[0.5, 0.5], [0.4, 0.6]]) + 3.0   # logits up to a constant
    np.testing.assert_allclose(np.exp(ensemble.averaged_logits([a, b])), [[0.7, 0.3], [0.3, 0.7]])


def test_members_label_with_their_probabilities_averaged(tmp_path, monkeypatch):
    """Each member's labels are kept beside the averaged ones, which list every member's fingerprint."""
    probs = {"teacher": [[0.8, 0.2], [0.1, 0.9]], "teacher-seed2": [[0.6, 0.4], [0.3, 0.7]]}
    made = []

    def member_labels(folder, table, path):
        made.append(path.name)
        labels = soft_labels.SoftLabels(["a", "b"], ["q", "q"], [0, 1], np.array(probs[folder.name]),
                                        {"teacher": folder.name})
        soft_labels.write(path, labels)
        return labels, False

    monkeypatch.setattr(ensemble.teacher, "label", member_labels)
    labels = ensemble.label([tmp_path / "teacher", tmp_path / "teacher-seed2"], None, tmp_path / "soft-train.csv")
    assert made == ["soft-train.teacher.csv", "soft-train.teacher-seed2.csv"]
    np.testing.assert_allclose(labels.probs, [[0.7, 0.3], [0.2, 0.8]])
    stored = soft_labels.read(tmp_path / "soft-train.csv")
    np.testing.assert_allclose(stored.probs, labels.probs)
    assert stored.fingerprint == {"ensemble": [{"teacher": "teacher"}, {"teacher": "teacher-seed2"}]}


def test_train_with_two_teachers_judges_them_on_one_split(tmp_path, tiny_model):
    out = tmp_path / "run"
    assert main(["train", "--train", str(DEMO / "responses.csv"), "--items", str(DEMO / "items.csv"), "--test",
                 str(DEMO / "test.csv"), "--out", str(out), "--model", str(tiny_model), "--epochs", "1",
                 "--max-length", "32", "--teacher-cv-below", "0", "--teachers", "2", "--augment", "0",
                 "--candidates", "hashing_lr"]) == 0
    folder = out / "demo-ice"
    members = json.loads((folder / "report.json").read_text())["models"]["teacher"]["members"]
    assert members["members"] == 2 and members["seeds"] == [0, 1] and len(members["val_qwk"]["each"]) == 2
    second = json.loads((folder / "teacher-seed2" / "teacher.json").read_text())
    assert (second["config"]["seed"], second["config"]["split_seed"]) == (1, 0)
    ids = [np.load(folder / name / "val-logits.npz")["ids"].tolist() for name in ("teacher", "teacher-seed2")]
    assert ids[0] == ids[1]
    together = members["val_qwk"]["averaged"] > members["val_qwk"]["each"][0]
    assert members["labels"] == ("all 2, averaged" if together else "the first alone")
    fingerprint = soft_labels.read(folder / "soft-train.csv").fingerprint
    assert ("ensemble" in fingerprint) == together
    assert "Teachers of several members" in (out / "report.md").read_text()


def test_teachers_below_one_is_refused(tmp_path, capsys):
    assert main(["train", "--train", str(DEMO / "responses.csv"), "--teachers", "0", "--out", str(tmp_path / "r")]) == 2
    assert "--teachers must be 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
