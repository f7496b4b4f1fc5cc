"""A teacher of K members (``kd-train train --teachers K``): the same encoder fine-tuned K times with seeds
seed, seed + 1, ..., on one validation split (or one set of folds), whose probabilities are averaged. The
averaged validation logits are judged by the teacher's own decision rule like a single teacher's, and the
members label together only where that beats the first member alone (kd_train/pipeline.py decides).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from kd_train import soft_labels, teacher
from kd_train.config import TeacherConfig
from kd_train.data import Table
from kd_train.encoder import softmax


def member_config(config: TeacherConfig, k: int) -> TeacherConfig:
    """The k-th member's settings (k = 0 is the single teacher): its own seed, the first member's split."""
    return config if k == 0 else replace(config, seed=config.seed + k, split_seed=config.splits_seed)


def member_name(name: str, k: int) -> str:
    """The k-th member's folder beside the first one's (``name``): teacher, teacher-seed2, teacher-seed3, ..."""
    return name if k == 0 else f"{name}-seed{k + 1}"


def averaged(probs: list[np.ndarray]) -> np.ndarray:
    return np.mean(probs, axis=0)


def averaged_logits(logits: list[np.ndarray]) -> np.ndarray:
    """Logits (log-probabilities) of the members' averaged softmax."""
    return np.log(np.clip(averaged([softmax(lg) for lg in logits]), 1e-30, None))


def label(dirs: list[Path], table: Table, out_path: Path, names: list[str] | None = None) -> soft_labels.SoftLabels:
    """``table``'s soft labels from the teachers in ``dirs``: one teacher's own (``teacher.label``), or the
    members' probabilities averaged, each member's kept beside ``out_path`` under its name (``names``, default
    the folders' names: soft-train.teacher-seed2.csv, ...)."""
    if len(dirs) == 1:
        return teacher.label(dirs[0], table, out_path)[0]
    names = names or [d.name for d in dirs]
    parts = [teacher.label(d, table, out_path.with_name(f"{out_path.stem}.{name}{out_path.suffix}"))[0]
             for d, name in zip(dirs, names)]
    labels = soft_labels.SoftLabels(parts[0].ids, parts[0].items, parts[0].score_values,
                                    averaged([p.lookup(parts[0].ids) for p in parts]),
                                    {"ensemble": [p.fingerprint for p in parts]})
    soft_labels.write(out_path, labels)
    return labels
