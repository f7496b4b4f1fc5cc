"""Scoring metrics: accuracy, quadratic weighted kappa (QWK), macro-F1, and the Fisher-z mean."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kd_train.data import UserError, _natural_key
from kd_train.files import publish_files
from kd_train.temps import atomic_write_bytes, atomic_write_text, discard_temp, make_temp_dir, remove_leftovers


def qwk(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Quadratic weighted kappa; 0.0 where it is undefined (e.g. both raters constant and equal).

    Rounded to 12 decimals: a kappa that is 0 in exact arithmetic can come out as 1e-16, and the
    early-stopping rules ("patience counts once QWK is above 0") must read it as 0. A SAF teacher
    stopped after 4 of 20 epochs, still at chance, on such a 1.1e-16.
    """
    from sklearn.metrics import cohen_kappa_score   # here: scoring answers (kd_train.scorer) needs no sklearn

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    return 0.0 if math.isnan(k) else round(float(k), 12) + 0.0   # + 0.0: no -0.0


def decide(probs: np.ndarray, cutpoints: Sequence[float] | None = None) -> np.ndarray:
    """The index of the score given to each row of probabilities: the most probable score, or, with
    ``cutpoints`` (k − 1 increasing numbers), how many of them the expected score index Σ p_i·i exceeds.

    The sum runs in float64 from index 0 up, one term at a time, as the page's main.js adds it, so both
    give the same score for the same float32 probabilities.
    """
    probs = np.asarray(probs)
    if not cutpoints:
        return probs.argmax(axis=1)
    return np.searchsorted(np.asarray(cutpoints, dtype=np.float64), expected_index(probs), side="left")


def expected_index(probs: np.ndarray) -> np.ndarray:
    """Σ p_i·i of each row, in float64, added term by term from i = 0 (see ``decide``)."""
    probs = np.asarray(probs)
    expected = np.zeros(len(probs))
    for i in range(probs.shape[1]):
        expected += probs[:, i].astype(np.float64) * i
    return expected


def fisher_mean(kappas: Sequence[float]) -> float:
    """Mean of kappas through Fisher's z (the Kaggle ASAP-SAS average), clipped at |k| < 0.999."""
    if not kappas:
        return float("nan")
    z = [math.atanh(max(-0.999, min(0.999, k))) for k in kappas]
    return math.tanh(sum(z) / len(z))


def score_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> dict:
    """Accuracy, QWK, macro-F1 and the confusion matrix (rows: true, columns: predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {
        "n": len(y_true),
        "acc": float(accuracy_score(y_true, y_pred)),
        "qwk": qwk(y_true, y_pred, labels),
        "f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }


MODEL_NAMES = {
    "teacher": "Teacher (the pretrained encoder fine-tuned, or frozen + logistic regression on small items)",
    "student": "KD student",
    "ann": "ANN (same network, human scores only)",
    "tinybert_like": "Small transformer student (the teacher's first layers distilled from it; a TinyBERT stand-in)",
    "hashing_lr": "Hashing + logistic regression",
    "sequence": "KD sequence student (hashed words in order, embeddings from the teacher's encoder, convolutions)",
    "shipped": "Shipped scorer (the best candidate on validation, scoring by its own rule: most probable score or cutpoints)",
}


def mean_metrics(per_item: list[dict]) -> dict:
    """One model's means over items ({acc, qwk, f1} each): mean_acc, mean_qwk, fisher_qwk (Fisher-z), mean_f1."""
    return {"mean_acc": float(np.mean([m["acc"] for m in per_item])),
            "mean_qwk": float(np.mean([m["qwk"] for m in per_item])),
            "fisher_qwk": fisher_mean([m["qwk"] for m in per_item]),
            "mean_f1": float(np.mean([m["f1"] for m in per_item]))}


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
        entry |= mean_metrics(list(entry["items"].values()))
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


def pyplot():
    """matplotlib.pyplot drawing to files only (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _without_glyph_warnings(plot):
    """Item ids in scripts the plot's font lacks (CJK, Arabic, ...) draw as boxes; matplotlib's warning
    per missing glyph (dozens of lines for one id) says nothing the user can act on."""
    import functools

    @functools.wraps(plot)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
            return plot(*args, **kwargs)
    return quiet


@_without_glyph_warnings
def plot_qwk_vs_params(models: dict, path: str) -> None:
    plt = pyplot()
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
    save_figure(fig, path)


def _panels(n: int):
    """A figure with n small square panels, at most 5 a row: (fig, axes as a 2-D array)."""
    plt = pyplot()
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    return plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)


@_without_glyph_warnings
def plot_confusions(confusions: dict[str, list[list[int]]], labels: dict[str, list[int]], path: str) -> None:
    """One confusion matrix per panel (rows: human score, columns: predicted)."""
    n = len(confusions)
    fig, axes = _panels(n)
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
    save_figure(fig, path)


@_without_glyph_warnings
def plot_reliability(curves: dict[str, dict[str, list[dict]]], path: str) -> None:
    """Reliability diagrams: per panel, accuracy against mean confidence of each confidence bin, before
    and after calibration (``curves``: {panel: {"before": bins, "after": bins}}, bins as
    quality.reliability gives them)."""
    n = len(curves)
    fig, axes = _panels(n)
    for ax, (name, by_when) in zip(axes.flat, curves.items()):
        ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
        for when, style in (("before", "o--"), ("after", "s-")):
            points = [(b["confidence"], b["accuracy"]) for b in by_when[when] if b["n"]]
            if points:
                ax.plot(*zip(*points), style, markersize=3, linewidth=1, label=when)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("confidence", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str) -> None:
    """PNG written whole or not at all (a temporary file renamed into place)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(item_reports: list[dict], out: str | Path, command: str, wall_s: float,
                 failures: list[dict] | None = None, run: dict | None = None) -> dict:
    """report.json (the shape of bench/results), report.md and the plots, for all items trained or evaluated.

    Without test answers the tables show validation figures (and say so); every item also gets its
    shipped scorer, the quality gate's verdict, its validity table, class balance, time and (when
    recorded) the worker that trained it. ``failures`` ({item, error, wall_s, worker}) and ``run`` (how
    an item bank ran: kd_train/bank.py) are added when given. The files are made beside each other in a
    temporary folder inside ``out`` and moved in together (files.publish_files): report.md and report.json
    always come from the same run."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out / "report")   # of a run killed while it wrote the report
    tmp = make_temp_dir(out / "report")
    try:
        result = _write_report(item_reports, tmp, command, wall_s, failures, run)
        publish_files(tmp, out)
    finally:
        discard_temp(tmp)
    return result


def _write_report(item_reports: list[dict], out: Path, command: str, wall_s: float,
                  failures: list[dict] | None, run: dict | None) -> dict:
    split = "test" if any("test" in m for r in item_reports for m in r["models"].values()) else "val"
    models = summarize(item_reports, split)
    result = {"command": command, "wall_s": round(wall_s, 1), "split": split, "models": models,
              "per_item": {r["item"]: r for r in item_reports}}
    if run is not None:
        result["run"] = run
    if failures is not None:
        result["failures"] = failures
    atomic_write_text(out / "report.json", json.dumps(result, indent=2) + "\n")
    title = "Test set" if split == "test" else "Validation split (no --test answers were given)"
    md = ["# kd-train report", "", f"Command: `{command}`", "", f"Wall time: {wall_s:.0f} s", "",
          *_run_section(run, failures), markdown_report(models, title), *_shipped_section(item_reports),
          *_validity_section(item_reports, split), *_detectors_section(item_reports), *_items_section(item_reports)]
    if models:
        plot_qwk_vs_params(models, str(out / "qwk_vs_params.png"))
        md += ["![QWK against parameters](qwk_vs_params.png)", ""]
    shown = "shipped" if all("shipped" in r["models"] for r in item_reports) else "student"
    confusions = {f"item {r['item']}": r["models"][shown][split]["confusion"]
                  for r in item_reports if split in r["models"].get(shown, {})}
    if confusions:
        labels = {f"item {r['item']}": r["score_values"] for r in item_reports}
        plot_confusions(confusions, labels, str(out / f"confusion_{shown}.png"))
        md += [f"![Confusion matrices of the {shown} scorers ({split})](confusion_{shown}.png)", ""]
    curves = {f"item {r['item']}": {"before": r["quality"]["calibration"]["reliability_val_before"],
                                     "after": r["quality"]["calibration"]["reliability_val_after"]}
              for r in item_reports if r.get("quality")}
    if curves:
        plot_reliability(curves, str(out / "reliability.png"))
        md += ["![Reliability of the shipped scorers on validation, before and after calibration](reliability.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    return result


def _shipped_section(item_reports: list[dict]) -> list[str]:
    rows = [r for r in item_reports if r.get("quality")]
    if not rows:
        return []
    lines = ["## The shipped scorers", "",
             "Each item's scorer directory holds the candidate with the best validation QWK; the quality gate "
             "marks it unfit when it " + rows[0]["quality"]["gate_rule"] + ".", "",
             "| item | shipped | chosen on | why | calibration T | ECE (validation) before → after | score given by | "
             "review below | fit for use |", "|---|---|---|---|---:|---|---|---:|---|"]
    for r in rows:
        q, c = r["quality"], r["quality"]["calibration"]
        verdict = "yes" if q["fit_for_use"] else "**NO**: " + "; ".join(q["unfit_reasons"])
        decision = c.get("decision") or {"rule": "most probable score", "cutpoints": None}
        given = decision["rule"] + (f" ({', '.join(f'{x:.2f}' for x in decision['cutpoints'])})" if decision["cutpoints"] else "")
        lines.append(f"| {r['item']} | {q['shipped']} | {q.get('selection', 'validation split')} | {q['why']} | "
                     f"{c['temperature']:.3g} | {c['ece_val_before']:.3f} → {c['ece_val_after']:.3f} | {given} | "
                     f"{c['review_threshold']:.2f} ({c['review_share_val']:.0%} of validation) | {verdict} |")
    notes = [f"item {r['item']}: {r['quality']['calibration']['temperature_note']}" for r in rows
             if r["quality"]["calibration"].get("temperature_note")]
    if notes:
        lines += ["", "Calibration: " + "; ".join(notes) + "."]
    cut = [r["item"] for r in rows
           if ((r["models"].get("teacher", {}).get("decided") or {}).get("decision") or {}).get("cutpoints")]
    lines += ["", "The per-model rows above are each model's most probable score. The quality gate judges every "
                  "model by the scores its own decision rule, chosen on validation, gives: the candidates' as in "
                  "this table, the teacher's " + (f"cutpoints on item(s) {', '.join(cut)} and " if cut else "") +
                  "the most probable score elsewhere (report.json: `decided`)."]
    paired = {r["item"]: r["models"]["teacher"]["pairing"] for r in rows if r["models"].get("teacher", {}).get("pairing")}
    if paired:
        lines += ["", "Question pairing (`--with-question auto`), chosen on each teacher's validation QWK by its rule: " +
                  "; ".join(f"item {item}: {'question + answer' if p['with_question'] else 'answer alone'} "
                            f"({p['val_qwk']['question + answer']:.3f} with the question, "
                            f"{p['val_qwk']['answer alone']:.3f} without)" for item, p in paired.items()) + "."]
    members = {r["item"]: r["models"]["teacher"]["members"] for r in rows
               if "val_qwk" in r["models"].get("teacher", {}).get("members", {})}
    if members:
        lines += ["", "Teachers of several members (`--teachers`: seeds, one validation split), judged on validation "
                  "by the teacher's rule: " + "; ".join(
                      f"item {item}: {m['labels']} label ({', '.join(f'{q:.3f}' for q in m['val_qwk']['each'])} alone, "
                      f"{m['val_qwk']['averaged']:.3f} averaged; {sum(t or 0 for t in m['wall_s']) / 60:.0f} min of "
                      "fine-tuning in all)" for item, m in members.items()) + " (the teacher's rows above are those that label)."]
    frozen = {r["item"]: r["models"]["teacher"]["frozen_candidate"] for r in rows
              if r["models"].get("teacher", {}).get("frozen_candidate")}
    if frozen:
        lines += ["", "Teacher on small items (cross-validated), out of fold on the same folds: " +
                  "; ".join(f"item {item}: {'the encoder frozen + logistic regression labels' if f['kept'] else 'fine-tuned labels'} "
                            f"({f['oof_qwk']:.3f} frozen, {f['fine_tuned_oof_qwk']:.3f} fine-tuned)" for item, f in frozen.items())
                  + " (the teacher's rows above are the one that labels)."]
    cautions = [f"item {r['item']}: {r['quality']['caution']}" for r in rows if r["quality"].get("caution")]
    if cautions:
        lines += ["", "**Exact scores.** " + " ".join(cautions)]
    unfit = [r["item"] for r in rows if not r["quality"]["fit_for_use"]]
    if unfit:
        lines += ["", f"**Do not use the scorers of item(s) {', '.join(unfit)}**: they failed the quality check, and "
                      "`kd-train build` refuses them unless `--allow-unfit`."]
    degenerate = sorted({name for r in rows for name, reasons in r["quality"]["gates"].items() if reasons})
    if degenerate:
        lines += ["", "Degenerate models (not necessarily shipped): " + "; ".join(
            f"{name} on item(s) {', '.join(r['item'] for r in rows if r['quality']['gates'].get(name))}"
            for name in degenerate) + "."]
    return lines + [""]


def _validity_section(item_reports: list[dict], split: str) -> list[str]:
    rows = {r["item"]: r["validity"][split] for r in item_reports if split in r.get("validity", {})}
    if not rows:
        return []
    return [f"## Validity of the shipped scorers ({'test' if split == 'test' else 'validation'})", "",
            validity_markdown(rows)]


def flag_shares(found: list[list[str]]) -> dict:
    """{n, flagged, flagged_by: {code: share}} of per-answer detector flags (kd_train/detect.py codes)."""
    n = max(len(found), 1)
    codes = sorted({code for codes in found for code in codes})
    return {"n": len(found), "flagged": sum(map(bool, found)) / n,
            "flagged_by": {code: sum(code in f for f in found) / n for code in codes}}


def _detectors_section(item_reports: list[dict]) -> list[str]:
    rows = [r for r in item_reports if r.get("detectors")]
    if not rows:
        return []
    lines = ["## Answers the scorers do not judge", "",
             "Share of real answers that kd_train/detect.py flags (any reason): on the training answers out of fold "
             "(where the thresholds were set) and on the test answers.", "",
             "| item | training (out of fold) | test | test, by reason |", "|---|---:|---:|---|"]
    for r in rows:
        d = r["detectors"]
        test = d.get("test")
        by = ", ".join(f"{code} {share:.1%}" for code, share in (test or {}).get("flagged_by", {}).items() if share)
        on_test = f"{test['flagged']:.1%} of {test['n']}" if test else "—"
        on_val = f"{d['val']['flagged']:.1%} of {d['val']['n']}" if "val" in d else "—"
        lines.append(f"| {r['item']} | {on_val} | {on_test} | {by or '—'} |")
    probed = [r for r in rows if r.get("probes")]
    if probed:
        kinds = list(dict.fromkeys(k for r in probed for k in r["probes"]))
        lines += ["", "Gaming probes made from each item's own training answers (kd_train/probes.py): share flagged, "
                      "and in brackets share given the item's lowest score by the shipped scorer.", "",
                  "| item | " + " | ".join(k.replace("_", " ") for k in kinds) + " |", "|---|" + "---:|" * len(kinds)]
        for r in probed:
            cells = [f"{p['flagged']:.0%} ({p['lowest']:.0%})" if (p := r["probes"].get(k)) else "—" for k in kinds]
            lines.append(f"| {r['item']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _worker(w: dict | None) -> str:
    if not w:
        return "—"
    return f"{w.get('host')}:{w.get('pid')}" + (f" (node {w['node'][:8]})" if w.get("node") else "")


def _run_section(run: dict | None, failures: list[dict] | None) -> list[str]:
    lines = []
    if run:
        cluster = run.get("cluster") or {}
        lines += [f"Ran as Ray tasks ({run.get('address')}): {run.get('workers', 0)} item(s) at a time, "
                  f"{run.get('cpus_per_item', 0)} CPU(s) each"
                  + (f", on {cluster.get('nodes')} node(s) with {cluster.get('CPU', 0):g} CPUs" if cluster else "")
                  + (f"; {len(run['skipped'])} item(s) done in an earlier run were skipped ({', '.join(run['skipped'][:20])})"
                     if run.get("skipped") else "") + ".", ""]
    if failures:
        lines += [f"## Failed items ({len(failures)})", "",
                  "These items have no scorer from this run; the others are reported below. Running the same "
                  "command again retries only them.", "", "| item | reason | after | worker |", "|---|---|---:|---|"]
        for f in failures:
            wall = f"{f['wall_s']:.0f} s" if f.get("wall_s") is not None else "—"
            reason = str(f.get("error", "")).replace("|", "\\|")
            lines.append(f"| {f['item']} | {reason} | {wall} | {_worker(f.get('worker'))} |")
        lines.append("")
    return lines


def _items_section(item_reports: list[dict]) -> list[str]:
    rows = [r for r in item_reports if r.get("class_balance")]
    if not rows:
        return []
    workers = any(r.get("worker") for r in rows)
    lines = ["## Items", "", "| item | scored answers | class balance (score: answers) | majority-class accuracy "
             "(validation) | time |" + (" worker |" if workers else ""), "|---|---:|---|---:|---:|" + ("---|" if workers else "")]
    for r in rows:
        balance = r["class_balance"]
        confusion = np.asarray(r.get("quality", {}).get("metrics", {}).get("val", {}).get("confusion") or [[0]])
        majority = confusion.sum(axis=1).max() / confusion.sum() if confusion.sum() else float("nan")
        lines.append(f"| {r['item']} | {sum(balance.values())} | "
                     f"{', '.join(f'{k}: {v}' for k, v in balance.items())} | {majority:.3f} | {r.get('wall_s', 0):.0f} s |"
                     + (f" {_worker(r.get('worker'))} |" if workers else ""))
    return lines + [""]


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


# --- Validity table for automated scores (Williamson, Xi & Breyer 2012, as reported by ETS's RSMTool) ---

# Williamson, Xi & Breyer (2012), "A framework for evaluation and use of automated scoring": human-machine
# QWK and Pearson r at least 0.70, |SMD| at most 0.15, and human-machine QWK at most 0.10 below human-human QWK.
ETS_THRESHOLDS = {"qwk": 0.70, "r": 0.70, "smd": 0.15, "degradation": -0.10}
SMALL_SAMPLE_N = 50
# RSMTool 12 (rsmtool/analyzer.py, utils/metrics.py standardized_mean_difference) reports, by default, SMD with
# method "unpooled" = (mean_sys - mean_h) / sd_h (ddof=1) in its human-system evaluation table; its consistency
# (human-human) table uses "pooled" = sqrt((sd_h1^2 + sd_h2^2)/2) (ddof=1); its "williamson" option pools the
# human and system SDs of the whole test set (for subgroup SMDs). Here: pooled over human and machine on the
# same answers with ddof=0: an SD sqrt((n-1)/n) times RSMTool's "pooled" one.
SMD_SD = "pooled: sqrt((sd_h^2 + sd_m^2)/2), ddof=0"


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r; None where undefined (fewer than 2 answers or a constant side), as RSMTool's NaN."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import pearsonr

    return float(pearsonr(a, b).statistic)


def _smd(human: np.ndarray, machine: np.ndarray) -> float | None:
    """(mean machine - mean human) / pooled SD (see SMD_SD); None where both sides are constant."""
    sd = math.sqrt((np.var(human) + np.var(machine)) / 2)
    return None if sd == 0 else float((machine.mean() - human.mean()) / sd)


def _agreement(a: np.ndarray, b: np.ndarray, labels: Sequence[int]) -> dict:
    return {"n": len(a), "qwk": qwk(a.tolist(), b.tolist(), labels),
            "exact": float(np.mean(a == b)), "adjacent": float(np.mean(np.abs(a - b) <= 1)), "r": _pearson(a, b)}


def qwk_rows(h: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """QWK of each row of ``h`` and ``m`` (label indices 0..k-1, shape (B, n)), as qwk() computes it with k
    sorted labels; NaN where undefined. Vectorised so that a 1000-resample bootstrap takes milliseconds."""
    b, n = h.shape
    cells = (h * k + m + (np.arange(b) * k * k)[:, None]).ravel()
    obs = np.bincount(cells, minlength=b * k * k).reshape(b, k, k).astype(float)
    expected = obs.sum(2)[:, :, None] * obs.sum(1)[:, None, :] / n
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2.0
    num, den = (w * obs).sum((1, 2)), (w * expected).sum((1, 2))
    return 1.0 - np.divide(num, den, out=np.full(b, np.nan), where=den > 0)


def _qwk_ci(h: np.ndarray, m: np.ndarray, k: int, n_boot: int, seed: int) -> list[float] | None:
    """Percentile bootstrap 95% CI of QWK over answers; resamples where QWK is undefined (both sides constant)
    are dropped; None when none is left."""
    rng = np.random.default_rng(seed)
    n = len(h)
    kappas = []
    chunk = max(1, 2_000_000 // n)  # bounds the (resamples x answers) index array
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        kappas.append(qwk_rows(h[idx], m[idx], k))
    kappas = np.concatenate(kappas) if kappas else np.empty(0)
    kappas = kappas[~np.isnan(kappas)]
    if not len(kappas):
        return None
    lo, hi = np.percentile(kappas, [2.5, 97.5])
    return [float(lo), float(hi)]


def _verdicts(qwk_: float, r: float | None, smd: float | None, degradation: float | None) -> dict:
    """Booleans against ETS_THRESHOLDS; None where the statistic is undefined (a constant side also gives
    QWK <= 0, so meets_all cannot pass through a None)."""
    t = ETS_THRESHOLDS
    oks = {"qwk_ok": qwk_ >= t["qwk"],
           "r_ok": None if r is None else r >= t["r"],
           "smd_ok": None if smd is None else abs(smd) <= t["smd"],
           "degradation_ok": None if degradation is None else degradation >= t["degradation"]}
    return oks | {"meets_all": all(v for v in oks.values() if v is not None)}


def validity(human: Sequence[int], machine: Sequence[int], score_values: Sequence[int],
             human2: Sequence[int | None] | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """ETS-style validity statistics of machine against human scores for one item (JSON-serialisable).

    Keys: n, qwk, qwk_ci ([lo, hi], seeded percentile bootstrap over answers; None if undefined), exact,
    adjacent, r (None where a side is constant), smd, smd_sd (SMD_SD), human_human ({n, qwk, exact, adjacent,
    r} of human vs human2 on the double-scored rows; None without them), degradation (QWK machine vs human
    minus QWK human vs human2, both on the double-scored rows; None without them), thresholds (see
    _verdicts) and small_sample: n < SMALL_SAMPLE_N, where the 95% CI of QWK is wide (about 0.2 at n = 50,
    more below), so a pass or fail against the 0.70 line says little.
    """
    h, m = np.asarray(human, dtype=int), np.asarray(machine, dtype=int)
    if len(h) != len(m) or not len(h):
        raise ValueError(f"human and machine need the same, non-zero length (got {len(h)} and {len(m)})")
    labels = sorted(score_values)
    pos = {v: i for i, v in enumerate(labels)}
    if bad := sorted((set(h.tolist()) | set(m.tolist())) - pos.keys()):
        raise ValueError(f"scores {bad} are not among score_values {labels}")
    out = _agreement(h, m, labels)
    to_idx = np.vectorize(pos.__getitem__, otypes=[int])
    out["qwk_ci"] = _qwk_ci(to_idx(h), to_idx(m), len(labels), n_boot, seed)
    out["smd"], out["smd_sd"] = _smd(h, m), SMD_SD
    out["human_human"] = out["degradation"] = None
    if human2 is not None:
        if len(human2) != len(h):
            raise ValueError(f"human2 has {len(human2)} scores for {len(h)} answers")
        rows = np.array([not _is_missing(v) for v in human2])
        if rows.any():
            h2 = np.array([int(v) for v in human2 if not _is_missing(v)])
            # RSMTool's degradation table (use_all_responses=True) takes human-system on all answers; here
            # both sides use the same double-scored answers, so the difference is not a sample artefact.
            out["human_human"] = _agreement(h[rows], h2, labels)
            out["degradation"] = qwk(h[rows].tolist(), m[rows].tolist(), labels) - out["human_human"]["qwk"]
    out["thresholds"] = _verdicts(out["qwk"], out["r"], out["smd"], out["degradation"])
    out["small_sample"] = out["n"] < SMALL_SAMPLE_N
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _failed(thresholds: dict) -> str:
    names = {"qwk_ok": "QWK", "r_ok": "r", "smd_ok": "SMD", "degradation_ok": "degradation"}
    if thresholds["meets_all"]:
        return "yes"
    return "no: " + ", ".join(name for key, name in names.items() if thresholds[key] is False)


def validity_markdown(rows: dict[str, dict]) -> str:
    """A Markdown table of validity() results, one row per item id (in the dict's order), the thresholds and
    the SD the SMD uses below it, and a line naming the items with small samples and their QWK CI."""
    lines = ["| item | N | QWK [95% CI] | exact | adjacent | r | SMD | degradation | meets ETS thresholds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for item, v in rows.items():
        ci = "" if v["qwk_ci"] is None else f" [{v['qwk_ci'][0]:.2f}, {v['qwk_ci'][1]:.2f}]"
        lines.append(f"| {item} | {v['n']} | {v['qwk']:.3f}{ci} | {_fmt(v['exact'])} | {_fmt(v['adjacent'])} "
                     f"| {_fmt(v['r'])} | {_fmt(v['smd'])} | {_fmt(v['degradation'])} | {_failed(v['thresholds'])} |")
    t = ETS_THRESHOLDS
    lines += ["", f"Thresholds (Williamson, Xi & Breyer 2012): QWK ≥ {t['qwk']:.2f}, r ≥ {t['r']:.2f}, "
                  f"|SMD| ≤ {t['smd']:.2f}, degradation (human–machine QWK − human–human QWK, on the double-scored "
                  f"answers) ≥ {t['degradation']:.2f}. SMD = (mean machine − mean human) / SD, {SMD_SD}."]
    small = [f"item {item}: QWK on {v['n']} answers: "
             + ("no CI" if v["qwk_ci"] is None else f"95% CI {v['qwk_ci'][0]:.2f}–{v['qwk_ci'][1]:.2f}")
             for item, v in rows.items() if v["n"] < SMALL_SAMPLE_N]
    if small:
        lines += ["", f"Small samples (n < {SMALL_SAMPLE_N}; the CI is wide, read the verdict with care): "
                  + "; ".join(small) + "."]
    return "\n".join(lines) + "\n"
