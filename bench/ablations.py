"""Student-side ablations: size (buckets × hidden width) for KD and ANN, α × T, the transfer set, and
students distilled from other cached teachers (cross-fitted, question-paired, bigger) when present.

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
PATIENCES = (8, 30)  # beside the pipeline's (StudentConfig.patience)
PARAM_BUDGET = 30_000  # the goal's "≤ 0.03M parameters"

STUDENT, ANN = Variant(), Variant(kd=False)


def canonical(variant: Variant, item: CachedItem) -> Variant:
    """Drop settings equal to the pipeline's, so that equal settings share one key (and one training)."""
    base = {"hidden": item.student_config.hidden, "buckets": item.featurizer.n_buckets,
            "alpha": item.student_config.alpha, "temperature": item.student_config.temperature,
        "patience": item.student_config.patience}
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


def patience_variants(item: CachedItem) -> dict[int, dict[str, Variant]]:
    """{patience: {"kd", "kd no-transfer", "ann"}}, the pipeline's patience first."""
    out = {}
    for p in (item.student_config.patience, *PATIENCES):
        out[p] = {"kd": canonical(Variant(patience=p), item), "kd no-transfer": canonical(Variant(transfer=False, patience=p), item),
                  "ann": canonical(Variant(kd=False, patience=p), item)}
    return out


def plan(item: CachedItem, quick: bool, main_seeds: list[int], ablation_seeds: list[int]) -> dict[Variant, list[int]]:
    """Every (variant, seeds) to train: the main table's two, and the ablations'."""
    out: dict[Variant, set[int]] = {STUDENT: set(main_seeds), ANN: set(main_seeds)}
    ablation = [v for pair in size_variants(item, quick).values() for v in pair]
    ablation += list(alpha_t_variants(item, quick).values()) + [Variant(transfer=False)]
    ablation += [v for pair in patience_variants(item).values() for v in pair.values()]
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


def patience(results: Results, item: CachedItem, seeds: list[int]) -> dict:
    rows = [{"patience": p} | {k: _row(results, v, seeds) for k, v in vs.items()} for p, vs in patience_variants(item).items()]
    return {"rows": rows, "default": item.student_config.patience,
            "val_choice": max(rows, key=lambda r: r["kd"]["val_qwk"])["patience"]}


def transfer(results: Results, seeds: list[int]) -> dict:
    return {"with": _row(results, STUDENT, seeds), "without": _row(results, Variant(transfer=False), seeds)}


# Teachers the benchmark compares with the main one when another `kd-train train` run left them in a cache.
ALT_TEACHERS = {
    "crossfit": {
        "title": "soft labels cross-fitted (5 folds) instead of in-sample",
        "cache": "runs/asap-crossfit",
        "command": "kd-train train --asap --out runs/asap-crossfit --folds 5",
        "needs": "fine-tuning 5 more teachers per item (≈ 15–18 min per item with the full teacher on this CPU; "
                 "a GPU machine does it in minutes)",
    },
    "question": {
        "title": "teacher reads the question paired with the answer",
        "cache": "runs/asap-question",
        "command": "kd-train train --asap --out runs/asap-question --with-question",
        "needs": "fine-tuning another teacher per item (≈ 5 min per item on this CPU: 43 min for the ten)",
    },
    "mpnet": {
        "title": "bigger teacher: all-mpnet-base-v2 (109M parameters, BERT-base size)",
        "cache": "runs/asap-mpnet",
        "command": "kd-train train --asap --out runs/asap-mpnet --model <folder of all-mpnet-base-v2>",
        "needs": "a GPU machine (on this CPU it fine-tunes at ≈ 2.5 answers/s and predicts ≈ 9/s: about 40 min per item)",
    },
}


def alt_teacher(alt_items: list[CachedItem], main_items: list[CachedItem], alt_results: Results, main_results: Results,
                seeds: list[int], teacher_test) -> dict:
    """Teacher and KD student (pipeline settings) from the other cache, beside the main ones, on the same items."""
    ids = [i.item for i in alt_items]
    main = {s: {i: r for i, r in runs.items() if i in ids} for s, runs in main_results[STUDENT].items()}
    teacher_alt = {i.item: teacher_test(i) for i in alt_items}
    teacher_main = {i.item: teacher_test(i) for i in main_items if i.item in ids}
    mean = lambda d: sum(m["qwk"] for m in d.values()) / len(d)  # noqa: E731
    return {"items": ids, "teacher_qwk": {"main": mean(teacher_main), "alt": mean(teacher_alt)},
            "student": {"main": _row({STUDENT: main}, STUDENT, seeds), "alt": _row(alt_results, STUDENT, seeds)}}
