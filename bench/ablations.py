"""Student-side ablations: size (buckets × hidden width) for KD and ANN, α × T and the transfer set.
(Another teacher is benchmarked by pointing `python -m bench --cache` at its run.)

Choices are made on the mean validation QWK (the student's own split of train.csv, which is also the
split it early-stops on); their test_public score is reported separately, never used to choose.
"""

from __future__ import annotations

from dataclasses import fields, replace

from bench.cache import CachedItem
from bench.students import Results, Variant, aggregate

SIZES = [(512, 8), (1024, 14), (2048, 14), (4096, 7), (2048, 32), (4096, 32), (8192, 64)]  # (buckets, hidden): 4k ... 525k params
QUICK_SIZES = [(512, 8), (2048, 14), (8192, 64)]
ALPHAS, TEMPERATURES = (0.25, 0.5, 0.75, 1.0), (1.0, 2.0, 4.0)
QUICK_ALPHAS, QUICK_TEMPERATURES = (0.5, 1.0), (1.0, 2.0)
PARAM_BUDGET = 30_000  # the goal's "≤ 0.03M parameters"

STUDENT, ANN = Variant(), Variant(kd=False)


def canonical(variant: Variant, item: CachedItem) -> Variant:
    """Drop settings equal to the pipeline's, so that equal settings share one key (and one training)."""
    base = {"hidden": item.student_config.hidden, "buckets": item.featurizer.n_buckets,
            "alpha": item.student_config.alpha, "temperature": item.student_config.temperature}
    changes = {f.name: None for f in fields(Variant) if f.name in base and getattr(variant, f.name) == base[f.name]}
    if not variant.kd:
        changes |= {"alpha": None, "temperature": None, "transfer": True}
    return replace(variant, **changes)


def size_variants(item: CachedItem, quick: bool) -> dict[tuple[int, int], tuple[Variant, Variant]]:
    """{(buckets, hidden): (KD variant, ANN variant)}."""
    return {(b, h): (canonical(Variant(buckets=b, hidden=h), item), canonical(Variant(kd=False, buckets=b, hidden=h), item))
            for b, h in (QUICK_SIZES if quick else SIZES)}


def alpha_t_variants(item: CachedItem, quick: bool) -> dict[tuple[float, float], Variant]:
    alphas, temps = (QUICK_ALPHAS, QUICK_TEMPERATURES) if quick else (ALPHAS, TEMPERATURES)
    return {(a, t): canonical(Variant(alpha=a, temperature=t), item) for a in alphas for t in temps}


def plan(item: CachedItem, quick: bool, main_seeds: list[int], ablation_seeds: list[int]) -> dict[Variant, list[int]]:
    """Every (variant, seeds) to train: the main table's two, and the ablations'."""
    out: dict[Variant, set[int]] = {STUDENT: set(main_seeds), ANN: set(main_seeds)}
    ablation = [v for pair in size_variants(item, quick).values() for v in pair]
    ablation += list(alpha_t_variants(item, quick).values()) + [Variant(transfer=False)]
    for variant in ablation:
        out.setdefault(variant, set()).update(ablation_seeds)
    return {v: sorted(s) for v, s in out.items()}


def _row(results: Results, variant: Variant, seeds: list[int]) -> dict:
    val, test = aggregate(results[variant], "val", seeds), aggregate(results[variant], "test", seeds)
    return {"variant": variant.name, "params": test["params"], "val_qwk": val["mean_qwk"], "val_qwk_std": val["mean_qwk_std"],
            "test_qwk": test["mean_qwk"], "test_qwk_std": test["mean_qwk_std"], "test_acc": test["mean_acc"],
            "test_fisher_qwk": test["fisher_qwk"], "best_epoch_median": float(sorted(test["best_epochs"])[len(test["best_epochs"]) // 2]),
            "best_epoch_range": [min(test["best_epochs"]), max(test["best_epochs"])],
            "constant_runs": test["constant_runs"], "runs": len(test["best_epochs"])}


def _chosen(rows: list[dict], key: str = "val_qwk") -> dict:
    return max(rows, key=lambda r: r[key])


def sizes(results: Results, item: CachedItem, quick: bool, seeds: list[int]) -> dict:
    rows = []
    for (b, h), (kd, ann) in size_variants(item, quick).items():
        rows.append({"buckets": b, "hidden": h, "kd": _row(results, kd, seeds), "ann": _row(results, ann, seeds)})
    kd_rows = [r["kd"] | {"buckets": r["buckets"], "hidden": r["hidden"]} for r in rows]
    small = [r for r in kd_rows if r["params"] <= PARAM_BUDGET]
    return {"rows": rows, "val_choice": _chosen(kd_rows), "val_choice_within_budget": _chosen(small) if small else None,
            "param_budget": PARAM_BUDGET}


def alpha_t(results: Results, item: CachedItem, quick: bool, seeds: list[int]) -> dict:
    rows = [{"alpha": a, "temperature": t} | _row(results, v, seeds) for (a, t), v in alpha_t_variants(item, quick).items()]
    return {"rows": rows, "ann": _row(results, ANN, seeds), "val_choice": _chosen(rows),
            "default": {"alpha": item.student_config.alpha, "temperature": item.student_config.temperature}}


def transfer(results: Results, seeds: list[int]) -> dict:
    return {"with": _row(results, STUDENT, seeds), "without": _row(results, Variant(transfer=False), seeds)}

