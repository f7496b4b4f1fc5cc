"""Selection rules judged on validation answers only: each item's validation answers (out of fold where
cross-validated) are split in two halves at random, many times; a rule chooses a candidate on one half and
that candidate's QWK is measured on the other. No test answer and no training takes part.

    python -m bench.selection_rules RUN [RUN ...] --out FOLDER [--splits 200] [--boot 200] [--seed 0]

Each RUN is a `kd-train train --out` folder whose items' report.json keep `validation_predictions` (what
selection saw, answer by answer). The rules (fixed here, nothing in them is tuned):

- best: the candidate with the best QWK on the choosing half (ties: kd-train's preference order); kd-train's rule.
- one_se_smallest: among the candidates whose QWK on the choosing half is below the best's by at most one
  bootstrap standard error of that paired difference, the smallest model.onnx (the one-standard-error rule).
- one_se_baseline: hashing + logistic regression unless the best beats it on the choosing half by more than one
  bootstrap standard error of that paired difference; then the best (the burden of proof on the flexible
  candidates: "never ship a scorer worse than a simple baseline").
- hashing_lr: always hashing + logistic regression (the simple baseline).
- oracle: the candidate best on the measuring half (the most any rule could reach; not a rule).

Half of the answers choose, so this judges selection on half as many answers as the runs had: a rule that
wins here is not proved to win at full size, but one that loses on every run size is a warning. Writes
selection-rules.md and .json to FOLDER.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from bench import command, table, utc_now, write_result
from kd_train.config import CANDIDATES
from kd_train.metrics import qwk_rows

RULES = ("best", "one_se_smallest", "one_se_baseline", "hashing_lr", "oracle")


def item_data(report: dict) -> dict | None:
    """{"truth": score indices, "pred": {name: score indices}, "bytes": {name: model.onnx bytes}} of one item's
    report.json; None when it kept no validation predictions."""
    seen = report.get("validation_predictions")
    if not seen:
        return None
    values = sorted({*seen["scores"], *(s for p in seen["by_candidate"].values() for s in p)})
    index = {v: i for i, v in enumerate(values)}
    return {"truth": np.array([index[s] for s in seen["scores"]]), "k": len(values),
            "pred": {n: np.array([index[s] for s in p]) for n, p in seen["by_candidate"].items()},
            "bytes": {n: c["bytes"] for n, c in report["quality"]["candidates"].items()}}


def _qwk(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    q = qwk_rows(truth[None, :], pred[None, :], k)[0]
    return 0.0 if np.isnan(q) else float(q)


def choose(rule: str, data: dict, rows: np.ndarray, rng: np.random.Generator, boot: int) -> str:
    """The candidate ``rule`` picks from the answers ``rows`` of ``data``."""
    names = sorted(data["pred"], key=lambda n: CANDIDATES.index(n) if n in CANDIDATES else len(CANDIDATES))
    if rule == "hashing_lr":
        return "hashing_lr" if "hashing_lr" in names else names[0]
    truth, k = data["truth"][rows], data["k"]
    qwks = {n: _qwk(truth, data["pred"][n][rows], k) for n in names}
    best = max(names, key=lambda n: qwks[n])          # max keeps the first of equals: the preference order
    if rule == "best":
        return best
    draws = rng.integers(0, len(rows), size=(boot, len(rows)))
    t = truth[draws]
    best_q = np.nan_to_num(qwk_rows(t, data["pred"][best][rows][draws], k))

    def within_one_se(n: str) -> bool:
        gap = best_q - np.nan_to_num(qwk_rows(t, data["pred"][n][rows][draws], k))
        return qwks[best] - qwks[n] <= float(np.std(gap))

    if rule == "one_se_baseline":
        return "hashing_lr" if "hashing_lr" in names and within_one_se("hashing_lr") else best
    eligible = [n for n in names if within_one_se(n)]
    return min(eligible, key=lambda n: (data["bytes"][n], names.index(n)))


def judge(items: dict[str, dict], splits: int, boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    found = {}
    for item, data in items.items():
        n = len(data["truth"])
        got = {rule: [] for rule in RULES}
        picks = {rule: {} for rule in RULES}
        for _ in range(splits):
            order = rng.permutation(n)
            choose_rows, measure_rows = order[: n // 2], order[n // 2:]
            measured = {name: _qwk(data["truth"][measure_rows], p[measure_rows], data["k"])
                        for name, p in data["pred"].items()}
            for rule in RULES:
                pick = max(measured, key=measured.get) if rule == "oracle" else choose(rule, data, choose_rows, rng, boot)
                got[rule].append(measured[pick])
                picks[rule][pick] = picks[rule].get(pick, 0) + 1
        found[item] = {"n": n, "mean_qwk": {r: statistics.fmean(v) for r, v in got.items()}, "picks": picks}
    means = {rule: statistics.fmean(found[i]["mean_qwk"][rule] for i in found) for rule in RULES}
    wins = {rule: sum(found[i]["mean_qwk"][rule] > found[i]["mean_qwk"]["best"] + 1e-12 for i in found)
            for rule in RULES if rule != "best"}
    return {"items": found, "means": means, "items_above_best": wins}


def markdown(result: dict) -> str:
    lines = ["# Selection rules, judged on validation answers only", "",
             f"Command (repo root): `{result['command']}`; {result['date']}; {result['splits']} random halvings per "
             f"item, {result['boot']} bootstrap draws for the one-SE rule.", "",
             "Mean QWK on the measuring half of the candidate each rule chose on the other half:", ""]
    lines += table(["rule", "mean over items", "items above `best`"],
                   [[r, f"{result['means'][r]:.4f}", str(result["items_above_best"].get(r, "—"))] for r in RULES])
    lines += ["", "Per item:", ""]
    rows = []
    for item, r in result["items"].items():
        picks = ", ".join(f"{n} {c}" for n, c in sorted(r["picks"]["best"].items(), key=lambda kv: -kv[1]))
        rows.append([item, str(r["n"])] + [f"{r['mean_qwk'][rule]:.3f}" for rule in RULES] + [picks])
    lines += table(["item", "answers"] + list(RULES) + ["what `best` picked"], rows, "lr" + "r" * len(RULES) + "l")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.selection_rules", description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="kd-train train --out folders")
    ap.add_argument("--out", type=Path, required=True, help="where selection-rules.md and .json go")
    ap.add_argument("--splits", type=int, default=200, help="random halvings per item (default: 200)")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap draws for the one-SE rule (default: 200)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    items = {}
    for run in args.runs:
        for path in sorted(run.glob("*/report.json")):
            data = item_data(json.loads(path.read_text(encoding="utf-8")))
            if data is not None:
                items[f"{run}/{path.parent.name}"] = data
    if not items:
        raise SystemExit("no item of these runs kept validation_predictions in its report.json; re-run kd-train train "
                         "with this version")
    result = judge(items, args.splits, args.boot, args.seed)
    result |= {"command": command("python -m bench.selection_rules", argv), "date": utc_now(),
               "splits": args.splits, "boot": args.boot}
    text = markdown(result)
    write_result(args.out, "selection-rules", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
