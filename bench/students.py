"""The KD student and the ANN for many settings and seeds, each trained by `kd_train.distill.distill_item`.

Each item's answers are featurized once per featurizer config and handed to `distill_item` as
precomputed features (its ``features`` argument), so that a hundred students do not featurize the
same answers a hundred times; everything else is the pipeline's own code.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from bench.cache import CachedItem
from kd_train.config import FeaturizerConfig, StudentConfig
from kd_train.data import Table, concat
from kd_train.distill import distill_item
from kd_train.metrics import mean_metrics
from kd_train.student import featurize_all


@dataclass(frozen=True)
class Variant:
    """One student setting; ``None`` fields take the pipeline's value for the item."""

    kd: bool = True  # False: the ANN (human scores only)
    transfer: bool = True  # use the unlabeled answers (KD only)
    hidden: int | None = None
    buckets: int | None = None
    alpha: float | None = None
    temperature: float | None = None

    @property
    def name(self) -> str:
        parts = ["kd" if self.kd else "ann"]
        if self.kd and not self.transfer:
            parts.append("no-transfer")
        for key, label in (("buckets", "B"), ("hidden", "H"), ("alpha", "α"), ("temperature", "T")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{label}={value:g}")
        return " ".join(parts)

    def student_config(self, base: StudentConfig, seed: int) -> StudentConfig:
        keys = ("hidden", "alpha", "temperature")
        config = replace(base, seed=seed, **{k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        return config if self.kd else config.without_teacher()

    def featurizer(self, base: FeaturizerConfig) -> FeaturizerConfig:
        return base if self.buckets is None else replace(base, n_buckets=self.buckets)


class FeatureMatrix:
    """One item's answers (train, unlabeled, test) featurized once; called with a table, its rows in order
    (what `distill_item`'s ``features`` argument takes)."""

    def __init__(self, item: CachedItem, config: FeaturizerConfig):
        table = concat(concat(item.labelled, item.unlabeled), item.test)
        self.index = {rid: i for i, rid in enumerate(table.ids)}
        self.x = featurize_all(table.responses, config)

    def __call__(self, table: Table) -> np.ndarray:
        return self.x[[self.index[rid] for rid in table.ids]]


def fit_student(item: CachedItem, features: FeatureMatrix, variant: Variant, seed: int) -> dict:
    """Train one student (or ANN) with `distill_item`; returns params, best epoch, metrics on val and test, and the model."""
    transfer = item.unlabeled if variant.kd and variant.transfer else None
    model, report = distill_item(item.labelled, item.item, item.values, variant.featurizer(item.featurizer),
                                 variant.student_config(item.student_config, seed), item.soft, transfer, item.test,
                                 progress=False, features=features)
    return {"params": report["params"], "best_epoch": report["training"]["best_epoch"], "model": model,
            "val": report["metrics"]["val"], "test": report["metrics"]["test"]}


Results = dict  # {variant: {seed: {item: run}}}


def run_variants(items: list[CachedItem], plan: dict[Variant, list[int]], keep_models: set[tuple] = frozenset(),
                 log=print) -> Results:
    """Train every (variant, seed) of ``plan`` on every item; featurizes each item once per bucket count.
    (Each training runs on one thread, as `train_student` sets; `python -m bench` sets one thread for the rest.)"""
    results: Results = defaultdict(lambda: defaultdict(dict))
    total = len(items) * sum(len(seeds) for seeds in plan.values())
    # on a log file, one update a minute: each would be a line of its own
    bar = tqdm(total=total, desc="students", unit="fit", mininterval=0.1 if sys.stderr.isatty() else 60)
    for item in items:
        by_featurizer: dict[FeaturizerConfig, list[Variant]] = defaultdict(list)
        for variant in plan:
            by_featurizer[variant.featurizer(item.featurizer)].append(variant)
        for config, variants in by_featurizer.items():
            features = FeatureMatrix(item, config)
            for variant in variants:
                for seed in plan[variant]:
                    run = fit_student(item, features, variant, seed)
                    if (variant, seed, item.item) not in keep_models:
                        run.pop("model")
                    results[variant][seed][item.item] = run
                    bar.set_postfix_str(f"item {item.item} {variant.name} seed {seed}: test QWK {run['test']['qwk']:.3f}")
                    bar.update()
            del features
    bar.close()
    return results


def is_constant(metrics: dict) -> bool:
    """True when a model predicted one score value for every answer (a collapsed run)."""
    columns = [sum(col) for col in zip(*metrics["confusion"])]
    return sum(1 for c in columns if c) <= 1


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(by_seed: dict[int, dict[str, dict]], split: str = "test", seeds: list[int] | None = None) -> dict:
    """Per item mean (± std) over seeds, and the item means per seed, averaged (± std over seeds)."""
    seeds = [s for s in (seeds if seeds is not None else sorted(by_seed)) if s in by_seed]
    items = sorted(by_seed[seeds[0]], key=lambda s: (len(s), s))
    per_item = {}
    for item in items:
        runs = [by_seed[s][item] for s in seeds]
        entry = {"n": runs[0][split]["n"]}
        for k in ("acc", "qwk", "f1"):
            entry[k] = float(np.mean([r[split][k] for r in runs]))
            entry[f"{k}_std"] = _std([r[split][k] for r in runs])
        per_item[item] = entry
    per_seed = [mean_metrics([by_seed[s][i][split] for i in items]) for s in seeds]
    out = {"params": max(by_seed[seeds[0]][i]["params"] for i in items), "seeds": seeds}
    for key in ("mean_acc", "mean_qwk", "fisher_qwk", "mean_f1"):
        out[key] = float(np.mean([p[key] for p in per_seed]))
        out[f"{key}_std"] = _std([p[key] for p in per_seed])
    out["best_epochs"] = [by_seed[s][i]["best_epoch"] for s in seeds for i in items]
    out["constant_runs"] = [f"item {i} seed {s}" for s in seeds for i in items if is_constant(by_seed[s][i][split])]
    out["items"] = per_item
    return out
