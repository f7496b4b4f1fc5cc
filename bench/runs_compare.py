"""Two runs of `kd-train train` over the same items, side by side: each candidate's validation QWK (out of fold
on cross-validated items) and test QWK, and which candidate each run shipped, from the items' report.json.

    python -m bench.runs_compare BEFORE_RUN AFTER_RUN --out FOLDER [--names before after]

BEFORE_RUN and AFTER_RUN are `kd-train train --out` folders (one sub-folder per item, each with its
report.json); the items both hold are compared. Writes compare.md and compare.json to FOLDER. Nothing is
trained: what it prints was measured by the two runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench import command, table, utc_now, write_result

CANDIDATE_ORDER = ("teacher", "student", "ann", "hashing_lr", "sequence", "tinybert_like")


def item_reports(run: Path) -> dict[str, dict]:
    """{item id: its report.json} of every item folder in ``run``."""
    found = {}
    for path in sorted(run.glob("*/report.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        if "quality" in report:
            found[report["item"]] = report
    return found


def candidates(report: dict) -> dict[str, dict]:
    """{candidate: {"val": QWK, "test": QWK}} by each candidate's own decision rule (report.json's quality)."""
    return {name: {"val": c.get("val_qwk"), "test": c.get("test_qwk")}
            for name, c in report["quality"]["candidates"].items()}


def compare(before: dict[str, dict], after: dict[str, dict]) -> dict:
    items = sorted(set(before) & set(after))
    if not items:
        raise SystemExit("the two runs share no item with a report.json; give two kd-train train --out folders")
    rows = {}
    for item in items:
        b, a = candidates(before[item]), candidates(after[item])
        rows[item] = {"before": b, "after": a,
                      "shipped": {"before": before[item]["quality"]["shipped"], "after": after[item]["quality"]["shipped"]},
                      "fold_teachers": after[item].get("fold_teachers", {}).get("used")}
    names = [n for n in CANDIDATE_ORDER if all(n in rows[i]["before"] and n in rows[i]["after"] for i in items)]
    means = {}
    for name in names:
        means[name] = {f"{split}_{run}": statistics.fmean(rows[i][run][name][split] for i in items)
                       for split in ("val", "test") for run in ("before", "after")}
    shipped_test = {run: statistics.fmean(rows[i][run][rows[i]["shipped"][run]]["test"] for i in items)
                    for run in ("before", "after")}
    counts = {run: {n: sum(rows[i]["shipped"][run] == n for i in items) for n in names} for run in ("before", "after")}
    return {"items": rows, "candidates": names, "means": means, "shipped_test_mean": shipped_test,
            "shipped_counts": counts}


def markdown(result: dict, names: tuple[str, str]) -> str:
    b, a = names
    lines = [f"# {b} → {a}", "",
             f"Command (repo root): `{result['command']}`; {result['date']}.", "",
             "Mean over the items both runs hold; QWK by each candidate's own decision rule (validation: out of "
             "fold where cross-validated).", ""]
    rows = [[n, f"{m['val_before']:.3f}", f"{m['val_after']:.3f}", f"{m['val_after'] - m['val_before']:+.3f}",
             f"{m['test_before']:.3f}", f"{m['test_after']:.3f}"] for n, m in result["means"].items()]
    rows.append(["**shipped**", "", "", "", f"{result['shipped_test_mean']['before']:.3f}",
                 f"{result['shipped_test_mean']['after']:.3f}"])
    lines += table(["candidate", f"val {b}", f"val {a}", "val change", f"test {b}", f"test {a}"], rows)
    lines += ["", "Shipped how often: " + "; ".join(
        f"{run}: " + ", ".join(f"{n} {c}" for n, c in result["shipped_counts"][key].items() if c)
        for run, key in ((b, "before"), (a, "after"))), "", "Per item (validation / test QWK):", ""]
    per_item = []
    for item, row in result["items"].items():
        cells = [item]
        for name in result["candidates"]:
            cells.append(f"{row['before'][name]['val']:.3f} / {row['before'][name]['test']:.3f} → "
                         f"{row['after'][name]['val']:.3f} / {row['after'][name]['test']:.3f}")
        cells += [row["shipped"]["before"], row["shipped"]["after"]]
        per_item.append(cells)
    lines += table(["item"] + result["candidates"] + [f"shipped {b}", f"shipped {a}"], per_item)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.runs_compare", description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path, help="the first run's folder (kd-train train --out)")
    ap.add_argument("after", type=Path, help="the second run's folder")
    ap.add_argument("--out", type=Path, required=True, help="where compare.md and compare.json go")
    ap.add_argument("--names", nargs=2, default=("before", "after"), metavar=("BEFORE", "AFTER"),
                    help="what the two runs are called in the table (default: before after)")
    args = ap.parse_args(argv)
    result = compare(item_reports(args.before), item_reports(args.after))
    result |= {"command": command("python -m bench.runs_compare", argv), "date": utc_now(),
               "runs": [str(args.before), str(args.after)], "names": list(args.names)}
    text = markdown(result, tuple(args.names))
    write_result(args.out, "compare", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
