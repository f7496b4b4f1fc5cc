"""The rows of the accuracy table that need no student training: teacher, human–human, hashing + LR,
and the TinyBERT-like stand-in when its outputs are cached."""

from __future__ import annotations

import json

from bench.cache import CachedItem
from kd_train import baselines
from kd_train.data import Dataset
from kd_train.metrics import score_metrics
from kd_train.teacher_judge import teacher_metrics

TINYBERT_DIR = "tinybert_like"


def teacher_test(item: CachedItem) -> dict:
    """The teacher's metrics on test_public: argmax of its cached soft labels (soft-test.csv)."""
    return teacher_metrics(item.soft, item.test, item.values)


def human_agreement(data: Dataset, item: CachedItem) -> dict:
    """Score1 vs Score2 on train.csv (test_public.csv has one score only): the practical ceiling."""
    rows = data.train.for_item(item.item).labelled()
    second = [int(s) for s in rows.extras["score2"]]
    return score_metrics(rows.scores, second, item.values)


def hashing_lr(data: Dataset, item: CachedItem) -> dict:
    """`kd_train.baselines.hashing_lr` on the pipeline's featurizer, C chosen on the student's seed-0 val split."""
    report = baselines.hashing_lr(data.train, item.item, item.values, item.featurizer, data.test, seed=0)
    return {"params": report["params"], "C": report["C"], **report["metrics"]}


def tinybert_cached(item: CachedItem) -> dict | None:
    """Metrics of the TinyBERT-like stand-in if `kd-train train ... --tinybert` left it in the cache."""
    meta = item.folder / TINYBERT_DIR / "teacher.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text(encoding="utf-8"))
    return {"params": info["params"], **info["metrics"]} if "test" in info.get("metrics", {}) else None
