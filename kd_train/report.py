"""The run's report: report.md, report.json and the plots of `kd-train train` / `kd-train report` (every item's
models, the shipped scorer, the quality gate, the validity table, the detectors), written together."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from kd_train.data import UserError, _natural_key
from kd_train.files import publish_files
from kd_train.metrics import MODEL_NAMES, summarize
from kd_train.temps import atomic_write_bytes, atomic_write_text, discard_temp, make_temp_dir, remove_leftovers
from kd_train.validity import validity_markdown

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
          *_candidates_section(item_reports),
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


def candidate_rows(quality: dict) -> list[list[str]]:
    """One item's candidates as selection saw them (a report.json's "quality"): [name, validation QWK, test QWK,
    model.onnx MB, ms per answer (student.answer_ms; "—" where not timed), decision rule, "shipped" or ""] each."""
    return [[name, f"{c['val_qwk']:.3f}", f"{c['test_qwk']:.3f}" if c.get("test_qwk") is not None else "—",
             f"{c['bytes'] / 1e6:.2f}" if c.get("bytes") is not None else "—",
             f"{c['ms_per_answer']:.2f}" if c.get("ms_per_answer") is not None else "—", c.get("decision", ""),
             "shipped" if name == quality["shipped"] else ""]
            for name, c in quality.get("candidates", {}).items()]


def _candidates_section(item_reports: list[dict]) -> list[str]:
    """Every candidate of every item, as selection saw it: what a school's budget (--max-model-mb,
    --max-ms-per-answer) buys."""
    rows = [[r["item"], *row] for r in item_reports if r.get("quality") for row in candidate_rows(r["quality"])]
    if not rows:
        return []
    lines = ["## Every candidate", "", "What each item's shipped scorer was chosen from: validation QWK (what selection "
             "compared), test QWK (held out, never used to choose), each by its own decision rule, and the size of "
             "its model.onnx, which the page downloads (plus a transformer's vocab.txt), and the time it took to score "
             "one answer while training (the median over up to 40 validation answers, one at a time: the page's own "
             "featurizer and model.onnx in onnxruntime on one thread, in CPython on the training machine; the page "
             "in a browser is slower, as the repository's `python bench/browser.py SCORER_DIR` measures).", "",
             "| item | candidate | validation QWK | test QWK | model.onnx (MB) | ms per answer | decision rule | |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows] + [""]


def _validity_section(item_reports: list[dict], split: str) -> list[str]:
    rows = {r["item"]: r["validity"][split] for r in item_reports if split in r.get("validity", {})}
    if not rows:
        return []
    return [f"## Validity of the shipped scorers ({'test' if split == 'test' else 'validation'})", "",
            validity_markdown(rows)]


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
