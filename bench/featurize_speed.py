"""Featurizer speed in CPython: microseconds per answer over all ASAP-SAS train answers.

    python bench/featurize_speed.py [--data ../shared/datasets] [--repeat 3]

Prints median, p90, mean and total, and writes bench/results/featurize_speed.{md,json}.
Each answer is timed alone (time.perf_counter_ns around one featurize call); with --repeat R
the whole pass runs R times and each answer keeps its fastest time (less noise from other load);
the first pass's mean (token cache empty at its start) is reported beside it.
In the same run, kd_train/featurize_batch.py does all answers one at a time and in batches of 64
and 256 (best of R passes) through its compiled ASCII path (kd_train/_featurize_ascii.c, where
pip built it; the few non-ASCII answers go through featurize.py); every output is checked bit for
bit against featurize.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # bench and kd_train, when run as `python bench/featurize_speed.py` from a checkout

import numpy as np  # noqa: E402

from bench import add_out, command, utc_now, write_result  # noqa: E402
from kd_train import featurize as featurize_module  # noqa: E402
from kd_train import featurize_batch  # noqa: E402
from kd_train.config import FeaturizerConfig  # noqa: E402
from kd_train.data import default_data_root  # noqa: E402
from kd_train.featurize import DEFAULT_CONFIG, featurize  # noqa: E402
from kd_train.featurize_batch import featurize_dense  # noqa: E402


def time_batches(answers: list[str], config: FeaturizerConfig, size: int, repeat: int, reference: np.ndarray) -> dict:
    """Best-of-``repeat`` µs per answer for featurize_dense in batches of ``size``, and whether it equals reference."""
    best_s = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        dense = np.concatenate([featurize_dense(answers[i:i + size], config) for i in range(0, len(answers), size)])
        best_s = min(best_s, time.perf_counter() - t)
    return {"us_per_answer": round(best_s / len(answers) * 1e6, 1),
            "identical": bool((dense.view(np.uint32) == reference.view(np.uint32)).all())}


def time_featurize_py(answers: list[str], config: dict, repeat: int) -> dict:
    """featurize.py one answer at a time: each answer's best of ``repeat`` passes, and the first pass's mean."""
    best = [float("inf")] * len(answers)
    clock = time.perf_counter_ns
    featurize_module._CHAR_GRAMS.clear()         # the first pass starts with no token cached
    first_pass_ns = 0
    for r in range(repeat):
        for k, text in enumerate(answers):
            t = clock()
            featurize(text, config)
            t = clock() - t
            if r == 0:
                first_pass_ns += t
            best[k] = min(best[k], t)
    us = sorted(t / 1000 for t in best)
    n = len(us)
    return {"answers": n, "median_us": round(statistics.median(us), 1), "p90_us": round(us[min(n - 1, int(0.9 * n))], 1),
            "mean_us": round(sum(us) / n, 1), "max_us": round(us[-1], 1), "total_s": round(sum(us) / 1e6, 3),
            "first_pass_mean_us": round(first_pass_ns / 1000 / n, 1),
            "median_chars": sorted(map(len, answers))[n // 2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="datasets folder (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--repeat", type=int, default=3)
    add_out(ap)
    args = ap.parse_args()

    with open((args.data or default_data_root()) / "asap-sas" / "train.csv", newline="", encoding="utf-8") as f:
        answers = [row["response"] for row in csv.DictReader(f)]
    config = dict(DEFAULT_CONFIG)
    fconfig = FeaturizerConfig.from_dict(config)     # featurize_dense's form of it
    stats = time_featurize_py(answers, config, args.repeat)
    compiled = featurize_batch._featurize_ascii_c
    featurize_batch._featurize_ascii_c = None       # the reference: featurize.py for every answer
    reference = featurize_dense(answers, fconfig)
    featurize_batch._featurize_ascii_c = compiled
    stats["featurize_batch"] = {} if compiled is None else {
        "compiled": {f"batch_{size}": time_batches(answers, fconfig, size, args.repeat, reference) for size in (1, 64, 256)}}
    print(json.dumps(stats, indent=2))
    result = {"command": command(f"python {os.path.relpath(__file__, ROOT)}"), "date": utc_now(),
              "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
              "repeat": args.repeat, "config": config, **stats}
    write_result(args.out, "featurize_speed", result, markdown(result))
    print(f"wrote {args.out / 'featurize_speed.md'}")


def markdown(r: dict) -> str:
    rows = "\n".join(f"| compiled | {key.split('_')[1]} | {m['us_per_answer']} | {r['mean_us'] / m['us_per_answer']:.1f} | "
                     f"{'yes' if m['identical'] else 'NO'} |" for key, m in r["featurize_batch"].get("compiled", {}).items())
    return f"""# Featurizer speed (CPython)

`kd_train/featurize.py` over all {r['answers']:,} ASAP-SAS train answers (median {r['median_chars']}
characters), each timed alone; best of {r['repeat']} passes per answer. featurize.py keeps the
char n-grams of up to {featurize_module._CACHE_TOKENS:,} recent tokens: the first pass starts with none cached and takes
{r['first_pass_mean_us']} µs per answer on average (answers to one question share most words).

| median | p90 | mean | max | total |
|---:|---:|---:|---:|---:|
| {r['median_us']} µs | {r['p90_us']} µs | {r['mean_us']} µs | {r['max_us']} µs | {r['total_s']} s |

`kd_train/featurize_batch.py` over the same answers, best of {r['repeat']} passes: its compiled path for ASCII answers
(`kd_train/_featurize_ascii.c`{'' if r['featurize_batch'] else ': NOT BUILT here, not measured'}; the non-ASCII answers go
through featurize.py):

| path | batch | µs per answer | × featurize.py (mean) | output bit-identical to featurize.py |
|---|---:|---:|---:|---|
{rows}

- Command (repo root): `{r['command']}`
- Date: {r['date']}
- Python {r['python']} on {r['platform']}, {r['cpus']} CPUs (shared with other work)
- Config: `{json.dumps(r['config'])}`
"""


if __name__ == "__main__":
    main()
