"""The small-data curve: ASAP-SAS items subsampled (stratified, seeded) to a few hundred scored
answers or fewer, trained end to end; every model's test QWK, the shipped scorer and the gate.

    python -m bench.small_data [--items 1 2 ...] [--sizes 50 100 200 400] [--seed 0]
                               [--run runs/small-data] [--out bench/results] [-- extra kd-train train options]

For each size, the training answers of each item are subsampled from ASAP-SAS train.csv (the
subsample lives under --run, outside the repository) and `kd-train train` trains on it; the test
answers are the item's test_public.csv. Writes small-data.md and small-data.json to --out.
"""

from __future__ import annotations

import argparse
import json
import functools
import sys
import time
from pathlib import Path

from bench import (add_out, command, split_extra, table, teacher_labels, teacher_labels_line, teacher_rule, train,
                   write_result)
from kd_train.data import concat, load_asap, stratified_split
from kd_train.report import candidate_rows

MODELS = ("teacher", "student", "ann", "hashing_lr", "sequence", "shipped")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = split_extra(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(prog="python -m bench.small_data", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--items", nargs="+", default=[str(i) for i in range(1, 11)], help="ASAP-SAS items (default: 1-10)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[50, 100, 200, 400], help="training answers per item")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subsample (default: 0)")
    ap.add_argument("--run", type=Path, default=Path("runs/small-data"), help="where the runs go (default: %(default)s)")
    ap.add_argument("--render", action="store_true",
                    help="train nothing: summarize the runs already in --run (RUN/n<size>/out/report.json)")
    add_out(ap)
    return ap.parse_args(argv), extra


def subsample(train, item: str, size: int, seed: int):
    rows = train.for_item(item).labelled()
    if size >= len(rows):
        return rows
    return stratified_split(rows, size / len(rows), seed)[1]


def run_size(ds, args, size: int, extra: list[str]) -> dict:
    """Train every item on `size` answers; returns the run's report.json."""
    folder = args.run / f"n{size}"
    parts = [subsample(ds.train, item, size, args.seed) for item in args.items]
    train_csv = folder / "train.csv"
    folder.mkdir(parents=True, exist_ok=True)
    train_csv.write_text(functools.reduce(concat, parts).to_csv(), encoding="utf-8")
    data = args.data or Path(ds.train.path).parent.parent
    return train(["--train", str(train_csv), "--items", str(data / "asap-sas" / "items.csv"),
                  "--test", str(data / "asap-sas" / "test_public.csv"), "--item", *args.items, *extra], folder / "out")


def summarize(reports: dict[int, dict]) -> dict:
    rows: dict = {}
    for size, report in reports.items():
        for item, r in report["per_item"].items():
            q = r["quality"]
            rows.setdefault(item, {})[str(size)] = {
                "answers": sum(r["class_balance"].values()),
                "test_qwk": {name: r["models"][name]["test"]["qwk"] for name in MODELS if "test" in r["models"].get(name, {})},
                "teacher_rule": (teacher_rule(r) or {}).get("decision", {}).get("rule"),
                "teacher_rule_test_qwk": (teacher_rule(r) or {}).get("test", {}).get("qwk"),
                "shipped": q["shipped"], "fit_for_use": q["fit_for_use"],
                "degenerate": sorted(name for name, reasons in q["gates"].items() if reasons),
                "selection": q.get("selection"), "wall_s": r.get("wall_s"), "teacher_labels": teacher_labels(r),
                "candidates": candidate_rows(q)}
            members = r["models"]["teacher"].get("members", {})
            if "val_qwk" in members:
                rows[item][str(size)]["members"] = members
    return rows


def member_test_qwks(run: Path, size: int, item: str, members: int) -> list[float | None]:
    """Each member's own test QWK (its teacher.json), beside the averaged teacher's in report.json."""
    from kd_train import data, ensemble

    folder = run / f"n{size}" / "out" / data.item_folder(item)
    metas = [folder / ensemble.member_name("teacher", k) / "teacher.json" for k in range(members)]
    return [json.loads(m.read_text())["metrics"].get("test", {}).get("qwk") if m.is_file() else None for m in metas]


def members_markdown(rows: dict, sizes: list[int]) -> list[str]:
    body = []
    for item, by_size in rows.items():
        for size in sizes:
            row = by_size.get(str(size), {})
            m = row.get("members")
            if not m:
                continue
            each = ", ".join(f"{v:.3f} / {t:.3f}" if t is not None else f"{v:.3f} / —"
                             for v, t in zip(m["val_qwk"]["each"], row.get("member_test_qwk", [])))
            body.append([item, size, each, f"{m['val_qwk']['averaged']:.3f} / {row['test_qwk'].get('teacher', float('nan')):.3f}",
                         m["labels"], f"{sum(t or 0 for t in m['wall_s']) / 60:.0f}"])
    if not body:
        return []
    return ["", "Teachers of several members (`--teachers`): validation / test QWK of each member alone and of their "
            "average (validation by the teacher's own rule, the one selection uses; test by the most probable score), "
            "which labelled, and the minutes of fine-tuning:", "",
            *table(["item", "answers", "each member val / test", "averaged val / test", "labels", "min"], body, "lrlrlr")]


def candidates_markdown(rows: dict, sizes: list[int]) -> list[str]:
    """Every candidate selection saw (the page's rungs among them): validation and test QWK by its own decision
    rule, and its model.onnx's size."""
    body = [[item, size, *timed(row)] for item, by_size in rows.items() for size in sizes
            for row in by_size.get(str(size), {}).get("candidates", [])]
    if not body:
        return []
    return ["", "Every candidate, by the scores its own decision rule gives (validation: what selection compared; "
            "test: held out), its model.onnx (MB) and its time per answer while training (ms; see report.md):", "",
            *table(["item", "answers", "candidate", "val QWK", "test QWK", "MB", "ms", "decision rule", ""], body,
                   "lrlrrrrll")]


def timed(row: list[str]) -> list[str]:
    """A candidate row of results written before candidates were timed gets "—" for its time."""
    return row if len(row) == 7 else [*row[:4], "—", *row[4:]]


def markdown(rows: dict, sizes: list[int], command: str, wall_s: float) -> str:
    lines = ["# Small-data curve on ASAP-SAS", "", f"Command: `{command}` ({wall_s / 60:.0f} min on this machine's CPU).",
             "", "Each item's training answers subsampled (stratified by score, seeded) to the size given; test QWK "
             "on the item's test_public answers. `shipped` is the scorer chosen on validation (cross-validated "
             "where a validation split would be too small, as `kd-train train` does); a model named under "
             "'degenerate' failed the quality gate on validation, judged by the scores its own decision rule "
             "gives (for the teacher: \"teacher by its rule\", — where it was trained before its validation logits "
             "were kept and is judged by its most probable score; the model columns are each model's most probable "
             "score).", ""]

    def rule(row: dict) -> str:
        if row.get("teacher_rule_test_qwk") is None:
            return "—"
        return f"{row['teacher_rule_test_qwk']:.3f}" + (" (cutpoints)" if row["teacher_rule"].startswith("cutpoints") else "")

    body = []
    for item, by_size in rows.items():
        for row in (by_size[str(size)] for size in sizes if str(size) in by_size):
            q = row["test_qwk"]
            body.append([item, row["answers"], f"{q['teacher']:.3f}" if "teacher" in q else "—", rule(row),
                         *(f"{q[name]:.3f}" if name in q else "—" for name in MODELS[1:-1]),
                         f"{q.get('shipped', float('nan')):.3f} ({row['shipped']})", ", ".join(row["degenerate"]) or "—",
                         "yes" if row["fit_for_use"] else "**no**"])
    lines += table(["item", "answers", "teacher", "teacher by its rule", "KD student", "ANN", "hashing + LR",
                    "sequence", "shipped (which)", "degenerate", "fit"], body, "lrrrrrrrlll")
    labels = [f"item {item} at {row['answers']}: {row['teacher_labels']}" for item, by_size in rows.items()
              for row in by_size.values() if "teacher_labels" in row]
    lines += ["", teacher_labels_line(labels)]
    means = {size: [r[str(size)] for r in rows.values() if str(size) in r] for size in sizes}
    lines += ["", "Mean test QWK by size:", "", *table(
        ["answers", *MODELS],
        ([size, *(f"{sum(r['test_qwk'].get(name, 0.0) for r in per) / len(per):.3f}" for name in MODELS)]
         for size, per in means.items() if per), "r" * (1 + len(MODELS)))]
    lines += candidates_markdown(rows, sizes)
    lines += members_markdown(rows, sizes)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    ds = load_asap(args.data)
    started = time.time()
    if args.render:
        reports = {size: json.loads((args.run / f"n{size}" / "out" / "report.json").read_text()) for size in args.sizes}
    else:
        reports = {size: run_size(ds, args, size, extra) for size in args.sizes}
    rows = summarize(reports)
    for item, by_size in rows.items():
        for size, row in by_size.items():
            if "members" in row:
                row["member_test_qwk"] = member_test_qwks(args.run, int(size), item, row["members"]["members"])
    result = {"command": command("python -m bench.small_data", argv), "wall_s": round(time.time() - started, 1),
              "sizes": args.sizes, "items": rows}
    print(write_result(args.out, "small-data", result, markdown(rows, args.sizes, result["command"], result["wall_s"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
