"""Small German items: every model, the quality gate's verdicts and the validity table on SAF
German legal (19 items, 84–99 scored answers each for training, 13 each in test).

    python -m bench.saf_german [--data DIR] [--items L01 L02 ...] [--run runs/saf-german-legal]
                               [--out bench/results] [-- extra kd-train train options]

Trains with ``kd-train train`` (the teacher of each item is cached in --run and reused) on
train.csv, tests on test.csv (the source's "unseen answers"); validation.csv is not used. Writes
saf-german-legal.md and saf-german-legal.json to --out. The data is read from its folder
($KD_TRAIN_DATA or ../shared/datasets), never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import (add_out, command, split_extra, table, teacher_labels, teacher_labels_line, teacher_rule, train,
                   write_result)
from kd_train.data import default_data_root

ATTRIBUTION = ("SAF German legal domain: Filighera, Parihar, Steuer, Meuser & Ochs, \"Your Answer is Incorrect... "
               "Would you like to know why? Introducing a Bilingual Short Answer Feedback Dataset\" (ACL 2022), "
               "licensed CC BY 4.0.")
MODELS = ("teacher", "student", "ann", "hashing_lr", "sequence", "shipped")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = split_extra(list(sys.argv[1:] if argv is None else argv))
    ap = argparse.ArgumentParser(prog="python -m bench.saf_german", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding saf-german-legal/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--items", nargs="+", help="items to train (default: all 19)")
    ap.add_argument("--run", type=Path, default=Path("runs/saf-german-legal"), help="kd-train train --out (default: %(default)s)")
    add_out(ap)
    ap.add_argument("--render", action="store_true", help="train nothing: re-write the .md from OUT/saf-german-legal.json")
    return ap.parse_args(argv), extra


def summarize(report: dict) -> dict:
    rows = {}
    for item, r in report["per_item"].items():
        q = r["quality"]
        row = {"models": {}, "shipped": q["shipped"], "why": q["why"], "fit_for_use": q["fit_for_use"],
               "unfit_reasons": q["unfit_reasons"], "gates": q["gates"], "selection": q.get("selection"),
               "wall_s": r.get("wall_s"), "teacher_labels": teacher_labels(r)}
        for name in MODELS:
            m = r["models"].get(name, {})
            row["models"][name] = {split: {k: m[split][k] for k in ("n", "acc", "qwk")} for split in ("val", "test")
                                   if split in m}
        decided = teacher_rule(r)
        if decided:
            row["models"]["teacher_rule"] = {split: {k: decided[split][k] for k in ("n", "acc", "qwk")}
                                             for split in ("val", "test") if split in decided}
            row["teacher_rule"] = decided["decision"]["rule"]
        if "test" in q["validity"]:
            row["validity_test"] = q["validity"]["test"]
        rows[item] = row
    return rows


def markdown(rows: dict, command: str, wall_s: float) -> str:
    from kd_train.validity import validity_markdown

    lines = ["# SAF German legal: small German items", "", ATTRIBUTION, "",
             f"Command: `{command}` ({wall_s / 60:.0f} min on this machine's CPU).", "",
             "Per item: QWK on validation (out-of-fold over all training answers where cross-validation was used) "
             "and on test (13 answers per item: read the confidence intervals below). `shipped` is the model the "
             "scorer directory holds, chosen on validation.", ""]

    def cell(m: dict) -> str:
        return " / ".join(f"{m[s]['qwk']:.2f}" if s in m else "—" for s in ("val", "test"))

    def rule(row: dict) -> str:
        if "teacher_rule" not in row["models"]:
            return "—"
        return cell(row["models"]["teacher_rule"]) + (" (cutpoints)" if row["teacher_rule"].startswith("cutpoints") else "")

    lines += table(["item", "teacher val / test", "teacher by its rule", "KD student val / test", "ANN val / test",
                    "hashing + LR val / test", "sequence val / test", "shipped", "fit for use"],
                   ([item, cell(row["models"]["teacher"]), rule(row), *(cell(row["models"].get(name, {})) for name in MODELS[1:-1]),
                     f"{row['shipped']} ({cell(row['models']['shipped'])})",
                     "yes" if row["fit_for_use"] else "**no**: " + "; ".join(row["unfit_reasons"])]
                    for item, row in rows.items()), "l" * 9)
    labels = [f"{item}: {row['teacher_labels']}" for item, row in rows.items() if "teacher_labels" in row]
    if labels:
        lines += ["", teacher_labels_line(labels)]
    lines += ["", "The model columns are each model's most probable score; \"teacher by its rule\" is the score the "
                  "teacher's own decision rule gives (cutpoints on its expected score where they beat the most probable "
                  "score out of fold, as for every candidate; `shipped` uses its own too), where the teacher kept the "
                  "logits its validation figures came from (— : a teacher trained before they were kept, judged by "
                  "its most probable score). The quality gate judges each model by its rule's scores."]
    means = {name: [row["models"][name]["test"]["qwk"] for row in rows.values() if "test" in row["models"].get(name, {})]
             for name in ("teacher", "teacher_rule", *MODELS[1:])}
    lines += ["", "Mean test QWK over the items: " + ", ".join(
        f"{name} {sum(v) / len(v):.3f}" + (f" ({len(v)} items)" if len(v) < len(rows) else "")
        for name, v in means.items() if v) + "; shipped model: " + ", ".join(
        f"{name} {sum(1 for r in rows.values() if r['shipped'] == name)}" for name in MODELS[1:-1]) + " items."]
    degenerate = {name: sum(1 for row in rows.values() if row["gates"].get(name)) for name in MODELS[:-1]}
    lines += ["", "Degenerate by the quality gate (items): " + ", ".join(f"{k} {v}" for k, v in degenerate.items())
              + f"; shipped scorers unfit: {sum(1 for r in rows.values() if not r['fit_for_use'])} of {len(rows)}.",
              "", "## Validity of the shipped scorers on test", "",
              validity_markdown({item: row["validity_test"] for item, row in rows.items() if "validity_test" in row})]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    if args.render:
        result = json.loads((args.out / "saf-german-legal.json").read_text(encoding="utf-8"))
        (args.out / "saf-german-legal.md").write_text(markdown(result["items"], result["command"], result["wall_s"]),
                                                      encoding="utf-8")
        return 0
    folder = (args.data or default_data_root()) / "saf-german-legal"
    started = time.time()
    rows = summarize(train(["--train", str(folder / "train.csv"), "--items", str(folder / "items.csv"),
                            "--test", str(folder / "test.csv"), *(["--item", *args.items] if args.items else []), *extra],
                           args.run))
    result = {"command": command("python -m bench.saf_german", argv), "attribution": ATTRIBUTION,
              "wall_s": round(time.time() - started, 1), "items": rows}
    print(write_result(args.out, "saf-german-legal", result, markdown(rows, result["command"], result["wall_s"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
