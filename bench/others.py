"""The rows of the accuracy table that need no student training: teacher, human–human, hashing + LR,
the TinyBERT-like stand-in when its outputs are cached, and what the in-sample soft labels look like."""

from __future__ import annotations

import json

from bench.cache import CachedItem
from kd_train import baselines
from kd_train.data import Dataset, stratified_split
from kd_train.metrics import score_metrics
from kd_train.pipeline import teacher_metrics

TINYBERT_DIR = "tinybert_like"


def teacher_test(item: CachedItem) -> dict:
    """The teacher's metrics on test_public: argmax of its cached soft labels (soft-test.csv)."""
    return teacher_metrics(item.soft, item.test, item.values)


def human_agreement(data: Dataset, item: CachedItem) -> dict:
    """Score1 vs Score2 on train.csv (test_public.csv has one score only): the practical ceiling."""
    rows = data.train.for_item(item.item).labelled()
    second = [int(s) for s in rows.extras["score2"]]
    return score_metrics(rows.scores, second, item.values)


def hashing_lr(data: Dataset, item: CachedItem, seed: int = 0) -> dict:
    """`kd_train.baselines.hashing_lr` on the pipeline's featurizer, C chosen on the student's val split; read from the
    pipeline's report.json when `kd-train train --baselines` already ran it (same function, split and seed)."""
    cached = ((item.pipeline_report or {}).get("models") or {}).get("hashing_lr")
    if seed == 0 and cached and "test" in cached:
        return {"params": cached["params"], "C": None, "source": "pipeline report.json", **cached}
    report = baselines.hashing_lr(data.train, item.item, item.values, item.featurizer, data.test, seed=seed)
    return {"params": report["params"], "C": report["C"], "source": "trained here", **report["metrics"]}


def tinybert_cached(item: CachedItem) -> dict | None:
    """Metrics of the TinyBERT-like stand-in if `kd-train train ... --tinybert` left it in the cache."""
    meta = item.folder / TINYBERT_DIR / "teacher.json"
    if not meta.is_file():
        return None
    info = json.loads(meta.read_text(encoding="utf-8"))
    return {"params": info["params"], **info["metrics"]} if "test" in info.get("metrics", {}) else None


def in_sample_gap(item: CachedItem) -> dict:
    """Teacher's soft-train labels against human scores on the answers it was fine-tuned on and on its own
    validation split (the same seeded split as the student's seed 0): how much it memorised."""
    fit, val = stratified_split(item.labelled, item.teacher_meta["config"]["val_fraction"],
                                item.teacher_meta["config"]["seed"])
    out = {}
    for name, table in (("fit (seen in training)", fit), ("val (held out)", val)):
        probs, m = item.soft_train.lookup(table.ids), teacher_metrics(item.soft_train, table, item.values)
        out[name] = {"n": m["n"], "acc": m["acc"], "qwk": m["qwk"], "mean_max_prob": float(probs.max(axis=1).mean())}
    return out
