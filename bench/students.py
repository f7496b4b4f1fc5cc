"""The KD student and the ANN, trained exactly as `kd_train.distill.distill_item` does, for many settings.

`distill_item` featurizes every answer on each call; here each item's answers are featurized once
per featurizer config and reused across seeds and settings. Everything else is the same: the
student's own seeded, stratified validation split of train.csv, `train_student` (AdamW, early
stopping on validation QWK), teacher probabilities for the fitting and transfer answers, and the
ANN as the same network on human scores only. `check_against_pipeline` confirms it: seed 0 with
the pipeline's settings gives the pipeline's scorer's test metrics.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.cache import CachedItem
from kd_train.data import concat, stratified_split
from kd_train.distill import StudentConfig, StudentData, predict_proba, train_student
from kd_train.metrics import fisher_mean, score_metrics
from kd_train.student import featurize_all, param_count
from kd_train.data import UNLABELED


@dataclass(frozen=True)
class Variant:
    """One student setting; ``None`` fields take the pipeline's value for the item."""

    kd: bool = True  # False: the ANN (human scores only)
    transfer: bool = True  # use the unlabeled answers (KD only)
    hidden: int | None = None
    buckets: int | None = None
    alpha: float | None = None
    temperature: float | None = None
    patience: int | None = None  # early-stopping patience in epochs

    @property
    def name(self) -> str:
        parts = ["kd" if self.kd else "ann"]
        if self.kd and not self.transfer:
            parts.append("no-transfer")
        for key, label in (("buckets", "B"), ("hidden", "H"), ("alpha", "α"), ("temperature", "T"), ("patience", "patience")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{label}={value:g}")
        return " ".join(parts)

    def student_config(self, base: StudentConfig, seed: int) -> StudentConfig:
        config = replace(base, seed=seed)
        if self.hidden is not None:
            config = replace(config, hidden=self.hidden)
        if self.patience is not None:
            config = replace(config, patience=self.patience)
        if not self.kd:
            return replace(config, alpha=0.0, lam=0.0)
        if self.alpha is not None:
            config = replace(config, alpha=self.alpha)
        if self.temperature is not None:
            config = replace(config, temperature=self.temperature)
        return config

    def featurizer(self, base: dict) -> dict:
        return base if self.buckets is None else {**base, "n_buckets": self.buckets}


class Features:
    """One item's answers (train, unlabeled, test) featurized once, looked up by answer id."""

    def __init__(self, item: CachedItem, config: dict):
        table = concat(concat(item.labelled, item.unlabeled), item.test)
        self.index = {rid: i for i, rid in enumerate(table.ids)}
        self.x = featurize_all(table.responses, config)

    def rows(self, ids: list[str]) -> np.ndarray:
        return self.x[[self.index[rid] for rid in ids]]


def fit_student(item: CachedItem, features: Features, variant: Variant, seed: int) -> dict:
    """Train one student (or ANN); returns params, best epoch and metrics on val and test."""
    config = variant.student_config(item.student_config, seed)
    fit, val = stratified_split(item.labelled, config.val_fraction, config.seed)
    to_index = {v: i for i, v in enumerate(item.values)}
    ids = fit.ids + (item.unlabeled.ids if variant.kd and variant.transfer else [])
    y = np.array([to_index[s] for s in fit.scores] + [UNLABELED] * (len(ids) - len(fit)), dtype=np.int64)
    probs = item.soft.lookup(ids) if variant.kd else None
    y_val = np.array([to_index[s] for s in val.scores], dtype=np.int64)
    model, history = train_student(StudentData(features.rows(ids), y, probs), StudentData(features.rows(val.ids), y_val),
                                   len(item.values), config, progress=False)
    out = {"params": param_count(model), "best_epoch": history["best_epoch"], "model": model}
    for name, table in (("val", val), ("test", item.test)):
        pred = [item.values[i] for i in predict_proba(model, features.rows(table.ids)).argmax(axis=1)]
        out[name] = score_metrics(table.scores, pred, item.values)
    return out


Results = dict  # {variant: {seed: {item: run}}}


def run_variants(items: list[CachedItem], plan: dict[Variant, list[int]], keep_models: set[tuple] = frozenset(),
                 log=print) -> Results:
    """Train every (variant, seed) of ``plan`` on every item; featurizes each item once per bucket count."""
    torch.set_num_threads(1)
    results: Results = defaultdict(lambda: defaultdict(dict))
    total = len(items) * sum(len(seeds) for seeds in plan.values())
    bar = tqdm(total=total, desc="students", unit="fit")
    for item in items:
        by_featurizer: dict[str, list[Variant]] = defaultdict(list)
        for variant in plan:
            by_featurizer[json.dumps(variant.featurizer(item.featurizer), sort_keys=True)].append(variant)
        for key, variants in by_featurizer.items():
            features = Features(item, json.loads(key))
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


def check_against_pipeline(results: Results, variant: Variant, items: list[CachedItem], name: str) -> dict[str, bool]:
    """Seed 0 of ``variant`` against the test metrics of model ``name`` in each item's pipeline report.json."""
    out = {}
    for item in items:
        saved = (((item.pipeline_report or {}).get("models") or {}).get(name) or {}).get("test")
        run = results.get(variant, {}).get(0, {}).get(item.item)
        if saved and run:
            out[item.item] = all(abs(saved[k] - run["test"][k]) < 1e-9 for k in ("acc", "qwk", "f1"))
    return out


def is_constant(metrics: dict) -> bool:
    """True when a model predicted one score value for every answer (a collapsed run)."""
    columns = [sum(col) for col in zip(*metrics["confusion"])]
    return sum(1 for c in columns if c) <= 1


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarize_metrics(per_item: dict[str, dict]) -> dict:
    """Means over items of acc/QWK/F1 and the Fisher-z mean QWK."""
    ms = list(per_item.values())
    return {"mean_acc": float(np.mean([m["acc"] for m in ms])), "mean_qwk": float(np.mean([m["qwk"] for m in ms])),
            "fisher_qwk": fisher_mean([m["qwk"] for m in ms]), "mean_f1": float(np.mean([m["f1"] for m in ms]))}


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
    per_seed = [summarize_metrics({i: by_seed[s][i][split] for i in items}) for s in seeds]
    out = {"params": max(by_seed[seeds[0]][i]["params"] for i in items), "seeds": seeds}
    for key in ("mean_acc", "mean_qwk", "fisher_qwk", "mean_f1"):
        out[key] = float(np.mean([p[key] for p in per_seed]))
        out[f"{key}_std"] = _std([p[key] for p in per_seed])
    out["best_epochs"] = [by_seed[s][i]["best_epoch"] for s in seeds for i in items]
    out["constant_runs"] = [f"item {i} seed {s}" for s in seeds for i in items if is_constant(by_seed[s][i][split])]
    out["items"] = per_item
    return out
