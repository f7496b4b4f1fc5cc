"""bench/results/asap-sas.{md,json} and the plots, from what `python -m bench` measured."""

from __future__ import annotations

from pathlib import Path

from bench import table
from kd_train.report import pyplot, save_figure

MODEL_ORDER = ["teacher", "student", "ann", "tinybert_like", "hashing_lr", "fasttext", "fasttext_ftz", "human"]
LABELS = {
    "teacher": "Teacher: all-MiniLM-L6-v2 fine-tuned",
    "student": "KD student (default settings)",
    "ann": "ANN: same network, human scores only",
    "tinybert_like": "TinyBERT-like stand-in (3 layers)",
    "hashing_lr": "Hashing + logistic regression",
    "fasttext": "fastText supervised (.bin)",
    "fasttext_ftz": "fastText quantized (.ftz)",
    "human": "Human–human (score vs score2, train.csv)",
}


def label(models: dict, name: str) -> str:
    return models[name].get("label") or LABELS[name]   # the teacher's row names its base model (older results: none)


def _f(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _pm(m: dict, key: str) -> str:
    std = m.get(f"{key}_std")
    return _f(m.get(key)) + (f" ± {std:.3f}" if std is not None else "")


def _ratio(x: float) -> str:
    return f"{x:,.0f}×" if x >= 10 else f"{x:.2g}×"


def accuracy_section(models: dict, items: list[str], notes: list[str]) -> list[str]:
    lines = ["## 1. Accuracy on test_public", "", *table(
        ["model", "mean accuracy", "mean QWK", "Fisher-z QWK", "mean macro-F1"],
        ([label(models, name), *(["not run"] * 4 if models[name].get("not_run") else
                          [_pm(models[name], key) for key in ("mean_acc", "mean_qwk", "fisher_qwk", "mean_f1")])]
         for name in MODEL_ORDER))]
    for metric, title in (("qwk", "QWK"), ("acc", "Accuracy"), ("f1", "Macro-F1")):
        lines += ["", f"{title} per item (student and ANN: mean ± std over seeds):", "", *table(
            ["model", *items], ([name, *(_pm(models[name]["items"][i], metric) if i in models[name].get("items", {})
                                         else "—" for i in items)] for name in MODEL_ORDER))]
    return lines + ["", "![QWK per item](asap-sas-items.png)", ""] + [f"- {n}" for n in notes] + [""]


def size_section(models: dict) -> list[str]:
    teacher, sized = models["teacher"]["params"], [(label(models, n), models[n]) for n in MODEL_ORDER if models[n].get("params")]
    lines = ["## 2. Size", "", *table(["model", "parameters", "on disk", "teacher params / model params"],
                                      ([label, f"{m['params']:,}", "—" if m.get("bytes") is None else f"{m['bytes']:,} B",
                                        _ratio(teacher / m["params"])] for label, m in sized))]
    return lines + ["", "- Sizes are the largest over the included items (items scored 0–3 have one more output than 0–2).",
                    "- " + models["hashing_lr"].get("bytes_note", ""), "- " + models["tinybert_like"].get("size_note", ""), ""]


def speed_section(speed: dict) -> list[str]:
    if speed.get("not_run"):
        return ["## 3. CPU speed", "", f"Not run: {speed['not_run']}", ""]
    lines = ["## 3. CPU speed (answers per second, same answers, one run)", "",
             *table(["scorer", "batch 1", "batch 64"],
                    ([name, f"{r['batch_1']:,.0f}", f"{r['batch_64']:,.0f}"] for name, r in speed["measured"].items())), "",
             *table(["ratio", "batch 1", "batch 64"],
                    ([name, _ratio(r["batch_1"]), _ratio(r["batch_64"])] for name, r in speed["ratios"].items()))]
    return lines + [""] + [f"- {n}" for n in speed["notes"]] + [""]


def browser_section(browser: dict) -> list[str]:
    rows = [("page usable", f"{browser['usable_ms']:.0f} ms"), ("first score possible", f"{browser['first_score_ms']:.0f} ms"),
            ("bare loadPyodide() page, same run (the floor)", f"{browser['bare_pyodide_ms']:.0f} ms"),
            ("one answer, median / p90", f"{browser['per_answer_ms_p50']:.1f} / {browser['per_answer_ms_p90']:.1f} ms"),
            ("per answer in batches of 200, median / p90",
             f"{browser['batch200_per_answer_ms_p50']:.2f} / {browser['batch200_per_answer_ms_p90']:.2f} ms"),
            ("5,000 answers end to end", f"{browser['batch5000_s']:.1f} s"),
            ("bundle raw / gzip / brotli", f"{browser['bundle_bytes'] / 1e6:.1f} / {browser['bundle_gzip_bytes'] / 1e6:.1f} / "
                                           f"{browser['bundle_brotli_bytes'] / 1e6:.1f} MB")]
    return ["## 4. Browser (headless Chromium)", "", *table(["measure", "value"], rows), "", f"- {browser['source']}", ""]


def _size_rows(sizes: dict) -> list[str]:
    return table(["buckets", "hidden", "params", "KD val QWK", "KD test QWK", "ANN val QWK", "ANN test QWK", "KD − ANN (test)"],
                 ([f"{r['buckets']:,}", r["hidden"], f"{kd['params']:,}", _f(kd["val_qwk"]), _pm(kd, "test_qwk"),
                   _f(ann["val_qwk"]), _pm(ann, "test_qwk"), f"{kd['test_qwk'] - ann['test_qwk']:+.3f}"]
                  for r in sizes["rows"] for kd, ann in [(r["kd"], r["ann"])]), "r" * 8)


def _choice(label: str, row: dict | None, default_test: float, keys: tuple[str, ...]) -> str:
    if row is None:
        return f"- {label}: none"
    setting = ", ".join(f"{k} {row[k]:g}" for k in keys)
    return (f"- {label}: {setting} (val QWK {row['val_qwk']:.3f}); its test QWK {row['test_qwk']:.3f} "
            f"vs the default's {default_test:.3f}")


def ablation_section(abl: dict, seeds: list[int], student_config: dict) -> list[str]:
    sizes, at, tr = abl["sizes"], abl["alpha_t"], abl["transfer"]
    default_test = tr["with"]["test_qwk"]
    lines = ["## 5. Ablations (student side)", "",
             f"Means over the included items and seeds {seeds}; the val split is the student's own "
             f"{student_config['val_fraction']:.0%} of train.csv "
             "(also its early-stopping split, so val QWK flatters every setting alike). Choices by val, test shown beside.", "",
             "### KD vs ANN across student sizes", "", *_size_rows(sizes), "",
             "![QWK against parameters, KD and ANN](asap-sas-sizes.png)", "",
             _choice("val-selected size", sizes["val_choice"], default_test, ("buckets", "hidden")),
             _choice(f"val-selected size within {sizes['param_budget']:,} parameters", sizes["val_choice_within_budget"],
                     default_test, ("buckets", "hidden")), "",
             "### α (weight of the distillation term) × T (temperature)", "",
             *table(["α", "T", "val QWK", "test QWK", "test Fisher-z QWK"],
                    ([f"{r['alpha']:g}", f"{r['temperature']:g}", _f(r["val_qwk"]), _pm(r, "test_qwk"), _f(r["test_fisher_qwk"])]
                     for r in at["rows"]), "r" * 5),
             f"| 0 (ANN) | — | {_f(at['ann']['val_qwk'])} | {_pm(at['ann'], 'test_qwk')} | {_f(at['ann']['test_fisher_qwk'])} |", "",
             "![α × T](asap-sas-alpha-T.png)", "",
             _choice("val-selected α, T", at["val_choice"], default_test, ("alpha", "temperature")), "",
             "### Unlabeled transfer set (test_private_unlabeled.csv, scored by the teacher only)", "",
             *table(["student", "val QWK", "test QWK", "test accuracy"],
                    ([label, _f(tr[key]["val_qwk"]), _pm(tr[key], "test_qwk"), _f(tr[key]["test_acc"])]
                     for key, label in (("with", "with the transfer set (default)"), ("without", "without"))))]
    d = tr["with"]
    lines += ["", f"Epochs: early stopping on val QWK picked epoch {d['best_epoch_median']:.0f} (median; range "
              f"{d['best_epoch_range'][0]}–{d['best_epoch_range'][1]}) for the default student, of at most "
              f"{abl['max_epochs']} with patience {abl['patience']}."]
    return lines + [""]


def goal_section(goal: list[tuple[str, str, str]]) -> list[str]:
    return ["## Against the goal", "", *table(["goal", "measured", "met"], goal, "lll"), ""]


def markdown(result: dict) -> str:
    inc, miss = result["items_included"], result["items_missing"]
    head = ["# ASAP-SAS: teacher, KD student and baselines — accuracy, size, speed, browser, ablations", "",
            f"Command (repo root): `{result['command']}`  ", f"Date: {result['date']}; wall time {result['wall_s']:.0f} s; "
            f"{result['machine']}.", "",
            "## Items", "", f"Included ({len(inc)} of 10): **{', '.join(inc)}**"
            + (" — every mean below is over these items only, so it is not comparable with a 10-item mean." if len(inc) < 10
               else "."), ""]
    if miss:
        head += ["Missing:", ""] + [f"- item {i}: {why}" for i, why in miss.items()] + [""]
    if result.get("quick"):
        head += ["**Quick run** (`--quick`): one seed, small grids — a smoke test, not the benchmark.", ""]
    body = (head + accuracy_section(result["models"], inc, result["notes"]["accuracy"]) + size_section(result["models"])
            + speed_section(result["speed"]) + browser_section(result["browser"])
            + ablation_section(result["ablations"], result["settings"]["ablation_seeds"],
                               result["settings"]["student_config"])
            + goal_section(result["goal"]) + ["## Not run", ""] + [f"- {n}" for n in result["not_run"]] + [""])
    return "\n".join(body)


def plot_sizes(sizes: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label, style in (("kd", "KD student", "o-"), ("ann", "ANN (human scores only)", "s--")):
        rows = sorted(sizes["rows"], key=lambda r: r[key]["params"])
        x = [r[key]["params"] for r in rows]
        y = [r[key]["test_qwk"] for r in rows]
        err = [r[key]["test_qwk_std"] or 0.0 for r in rows]
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=label)
    ax.axvline(sizes["param_budget"], color="grey", lw=0.8, ls=":")
    ax.annotate(f"{sizes['param_budget'] // 1000}k-parameter goal", (sizes["param_budget"], ax.get_ylim()[0]),
                textcoords="offset points", xytext=(4, 4), fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale; buckets × hidden width)")
    ax.set_ylabel("mean QWK on test_public")
    ax.set_title("KD vs ANN across student sizes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_alpha_t(at: dict, path: Path) -> None:
    plt = pyplot()
    alphas = sorted({r["alpha"] for r in at["rows"]})
    temps = sorted({r["temperature"] for r in at["rows"]})
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    for ax, key, title in zip(axes, ("val_qwk", "test_qwk"), ("val (selects)", "test_public (reported)")):
        grid = [[next(r[key] for r in at["rows"] if r["alpha"] == a and r["temperature"] == t) for t in temps] for a in alphas]
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(temps)), [f"{t:g}" for t in temps])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("T")
        ax.set_ylabel("α")
        ax.set_title(f"mean QWK, {title}", fontsize=9)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                dark = v < (min(map(min, grid)) + max(map(max, grid))) / 2
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_items(models: dict, items: list[str], path: Path) -> None:
    plt = pyplot()
    names = [n for n in MODEL_ORDER if not models[n].get("not_run")]
    groups = items + ["mean"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 3), 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        y = [models[name]["items"].get(i, {}).get("qwk", float("nan")) for i in items] + [models[name]["mean_qwk"]]
        ax.bar([j + k * width for j in range(len(groups))], y, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], [f"item {i}" for i in items] + ["mean"])
    ax.set_ylabel("QWK on test_public (human: train.csv)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def readme_results(result: dict) -> str:
    """A short "Results" section for the README: the headline table, the command, what it shows."""
    m, sp = result["models"], result["speed"]
    lines = ["## Results", "",
             f"ASAP-SAS, train.csv → test_public.csv, items {', '.join(result['items_included'])} "
             f"({len(result['items_included'])} of 10); student and ANN: mean ± std over seeds {result['settings']['seeds']}. "
             "Full tables, sizes, browser timings, ablations and what was not run: "
             "[bench/results/asap-sas.md](bench/results/asap-sas.md).", "",
             *table(["model", "parameters", "mean QWK", "Fisher-z QWK", "mean accuracy",
                     "CPU answers/s (1 thread, batches of 64)"],
                    ([label(m, name), f"{m[name]['params']:,}" if m[name].get("params") else "—",
                      *(["not run"] * 3 if m[name].get("not_run") else
                        [_pm(m[name], key) for key in ("mean_qwk", "fisher_qwk", "mean_acc")]),
                      "—" if sp.get(f"{name}_per_s") is None else f"{sp[f'{name}_per_s']:,.0f}"] for name in MODEL_ORDER)),
             "", "```sh", result["command"], "```", "", *(f"- {a}: {b} — {c}." for a, b, c in result["goal"])]
    return "\n".join(lines) + "\n"
