"""The sequence student's settings on ASAP-SAS, chosen on validation: each setting trained on all 10 items
from the cached teachers' soft labels, through the pipeline's own function.

    python -m bench.sequence_settings [--settings default ch128 ...] [--cache bench/results/asap-teacher-cache]
                                      [--data DIR] [--out bench/results/sequence-settings]

Each setting is the sequence student of this version with one change (SETTINGS); it is trained as
`kd-train train` trains it (kd_train.pipeline.sequence_student: embeddings from the cached teacher's
base encoder, the item's unscored answers as transfer set, no augmented copies: the cache keeps no
teacher weights to label them), and judged by its validation QWK (most probable score). The test
QWK is printed beside it, never used to choose. Writes sequence-settings.md and .json to --out.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from bench import RESULTS, command, table, utc_now, write_result
from bench.cache import load_item
from kd_train.config import SequenceConfig, TokenConfig
from kd_train.data import default_data_root, load_asap
from kd_train.pipeline import PipelineConfig, sequence_student

BASE = replace(SequenceConfig(), channels=64)   # the first settings; each other setting changes one thing
SETTINGS = {
    "first": BASE,
    "b4096_d96": replace(BASE, tokens=TokenConfig(n_buckets=4096), dim=96),
    "ch128": replace(BASE, channels=128),
    "k123": replace(BASE, kernels=(1, 2, 3)),
    "patience15": replace(BASE, patience=15, epochs=60),
}


def run(args: argparse.Namespace) -> dict:
    data = load_asap(args.data or default_data_root())
    started, found = time.time(), {}
    for name in args.settings:
        for item in [str(i) for i in range(1, 11)]:
            cached = load_item(args.cache / item, item, data)
            t = time.time()
            model, report = sequence_student(cached.folder / "teacher", cached.labelled, item, cached.values,
                                             PipelineConfig(sequence=SETTINGS[name]), cached.soft, cached.unlabeled,
                                             cached.test, log=lambda *a: None)
            found.setdefault(name, {})[item] = {"val": report["metrics"]["val"]["qwk"],
                                                "test": report["metrics"]["test"]["qwk"], "params": report["params"],
                                                "s": round(time.time() - t, 1)}
            print(name, item, found[name][item], flush=True)
    return {"command": command("python -m bench.sequence_settings"), "date": utc_now(),
            "wall_s": round(time.time() - started), "settings": {n: repr(SETTINGS[n]) for n in args.settings},
            "items": found}


def write_report(result: dict, out: Path) -> str:
    rows = []
    for name, items in result["items"].items():
        val = sum(r["val"] for r in items.values()) / len(items)
        test = sum(r["test"] for r in items.values()) / len(items)
        rows.append([name, f"{val:.4f}", f"{test:.4f}", f"{max(r['params'] for r in items.values()):,}"])
    best = max(rows, key=lambda r: float(r[1]))[0]
    lines = ["# The sequence student's settings (ASAP-SAS, cached teachers)", "",
             *table(["setting", "mean validation QWK", "mean test QWK (not used to choose)", "parameters"], rows), "",
             f"Best on validation: **{best}**. Settings: " + "; ".join(f"{n}: `{s}`" for n, s in result["settings"].items()),
             "", f"Command (repo root): `{result['command']}`; {result['date']}; wall time {result['wall_s']} s."]
    return write_result(out, "sequence-settings", result, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.sequence_settings", description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--cache", type=Path, default=RESULTS / "asap-teacher-cache")
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--out", type=Path, default=RESULTS / "sequence-settings")
    args = ap.parse_args(argv)
    print(write_report(run(args), args.out))


if __name__ == "__main__":
    main()
