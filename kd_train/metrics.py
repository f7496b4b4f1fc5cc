"""Scoring metrics: accuracy, quadratic weighted kappa (QWK), macro-F1, and the Fisher-z mean."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

from kd_train.data import UserError, _natural_key
from kd_train.files import atomic_write_bytes, atomic_write_text


def qwk(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Quadratic weighted kappa; 0.0 where it is undefined (e.g. both raters constant and equal)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    return 0.0 if math.isnan(k) else float(k)


def fisher_mean(kappas: Sequence[float]) -> float:
    """Mean of kappas through Fisher's z (the Kaggle ASAP-SAS average), clipped at |k| < 0.999."""
    if not kappas:
        return float("nan")
    z = [math.atanh(max(-0.999, min(0.999, k))) for k in kappas]
    return math.tanh(sum(z) / len(z))


def score_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> dict:
    """Accuracy, QWK, macro-F1 and the confusion matrix (rows: true, columns: predicted)."""
    return {
        "n": len(y_true),
        "acc": float(accuracy_score(y_true, y_pred)),
        "qwk": qwk(y_true, y_pred, labels),
        "f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }


MODEL_NAMES = {
    "teacher": "Teacher (fine-tuned all-MiniLM-L6-v2)",
    "student": "KD student",
    "ann": "ANN (same network, human scores only)",
    "tinybert_like": "TinyBERT-like stand-in (3 layers, distilled)",
    "hashing_lr": "Hashing + logistic regression",
}


def summarize(item_reports: list[dict], split: str = "test") -> dict:
    """Per-model means over items: {name: {params, mean_acc, mean_qwk, fisher_qwk, mean_f1, items}}."""
    models: dict[str, dict] = {}
    for report in item_reports:
        for name, m in report["models"].items():
            if split not in m:
                continue
            entry = models.setdefault(name, {"params": 0, "items": {}})
            entry["params"] = max(entry["params"], int(m.get("params") or 0))
            entry["items"][str(report["item"])] = {k: m[split][k] for k in ("acc", "qwk", "f1")} | {"n": m[split]["n"]}
    for entry in models.values():
        per_item = list(entry["items"].values())
        entry["mean_acc"] = float(np.mean([m["acc"] for m in per_item]))
        entry["mean_qwk"] = float(np.mean([m["qwk"] for m in per_item]))
        entry["fisher_qwk"] = fisher_mean([m["qwk"] for m in per_item])
        entry["mean_f1"] = float(np.mean([m["f1"] for m in per_item]))
    order = [n for n in MODEL_NAMES if n in models] + sorted(n for n in models if n not in MODEL_NAMES)
    return {n: models[n] for n in order}


def markdown_report(models: dict, title: str = "Results") -> str:
    """The comparison table (means) and the QWK of every model on every item."""
    items = sorted({i for m in models.values() for i in m["items"]}, key=lambda s: (len(s), s))
    lines = [f"## {title}", "", "| model | items | parameters | mean accuracy | mean QWK | Fisher-z QWK | mean macro-F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        lines.append(f"| {MODEL_NAMES.get(name, name)} | {len(m['items'])} of {len(items)} | {m['params']:,} "
                     f"| {m['mean_acc']:.3f} | {m['mean_qwk']:.3f} | {m['fisher_qwk']:.3f} | {m['mean_f1']:.3f} |")
    if any(len(m["items"]) < len(items) for m in models.values()):
        lines += ["", "A model run on fewer items is averaged over those items only: compare it item by item below."]
    lines += ["", "QWK per item:", "", "| model | " + " | ".join(items) + " |", "|---|" + "---:|" * len(items)]
    for name, m in models.items():
        cells = [f"{m['items'][i]['qwk']:.3f}" if i in m["items"] else "—" for i in items]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_qwk_vs_params(models: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in models.items():
        if m["params"]:
            ax.scatter(m["params"], m["mean_qwk"], s=40)
            ax.annotate(name, (m["params"], m["mean_qwk"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("mean QWK (test)")
    ax.set_title("Accuracy against size")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_confusions(confusions: dict[str, list[list[int]]], labels: dict[str, list[int]], path: str) -> None:
    """One confusion matrix per panel (rows: human score, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(confusions)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, cm) in zip(axes.flat, confusions.items()):
        cm = np.asarray(cm)
        ax.imshow(cm, cmap="Blues")
        ticks = range(len(labels[name]))
        ax.set_xticks(ticks, labels[name])
        ax.set_yticks(ticks, labels[name])
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("human", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str) -> None:
    """PNG written whole or not at all (a temporary file renamed into place)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(item_reports: list[dict], out: str | Path, command: str, wall_s: float) -> dict:
    """report.json (the shape of bench/results), report.md and the plots, for all items trained."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    models = summarize(item_reports)
    result = {"command": command, "wall_s": round(wall_s, 1), "models": models,
              "per_item": {r["item"]: r for r in item_reports}}
    atomic_write_text(out / "report.json", json.dumps(result, indent=2) + "\n")
    md = ["# kd-train report", "", f"Command: `{command}`", "", f"Wall time: {wall_s:.0f} s", "",
          markdown_report(models, "Test set"), "![QWK against parameters](qwk_vs_params.png)", "",
          "![Student confusion matrices](confusion_student.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    plot_qwk_vs_params(models, str(out / "qwk_vs_params.png"))
    confusions = {f"item {r['item']}": r["models"]["student"]["test"]["confusion"]
                  for r in item_reports if "test" in r["models"]["student"]}
    labels = {f"item {r['item']}": r["score_values"] for r in item_reports}
    if confusions:
        plot_confusions(confusions, labels, str(out / "confusion_student.png"))
    return result


def collect_reports(out: str | Path) -> list[dict]:
    """The per-item report.json files under ``out`` (as kd-train train wrote them), in item order."""
    reports = []
    for path in sorted(Path(out).glob("*/report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            report["item"], report["models"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: not a per-item report of kd-train train ({err}); remove it or re-run "
                            "kd-train train for that item") from None
        reports.append(report)
    if not reports:
        raise UserError(f"{out}: no <item>/report.json here; run kd-train train --out {out} first")
    return sorted(reports, key=lambda r: _natural_key(str(r["item"])))
