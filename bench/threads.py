"""What more threads would give each rung: a scorer's per-answer time on 1, 2, ... onnxruntime threads.

The page runs onnxruntime-web's wasm on one thread (`ort.env.wasm.numThreads = 1`): more threads need
SharedArrayBuffer, which a browser gives only to a cross-origin isolated page (served with the headers
Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp). This measures
the same model.onnx files with CPython's onnxruntime (its native CPU kernels, not the wasm build) on 1, 2,
... intra-op threads, one answer at a time as the page scores them, with `kd-train predict`'s featurizer
(the compiled one for a bag scorer's ASCII answers): how much a rung could gain from threads on this
machine's cores. It is a proxy: the wasm build's threads are web
workers and its kernels are slower, so read the ratios, not the milliseconds.

    python -m bench.threads SCORER_DIR [SCORER_DIR ...] [--threads 1 2] [--answers N] [--out DIR]

Answers: the first N non-empty answers of ASAP-SAS test_public.csv (from --data), in file order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench import RESULTS, command, table, utc_now, write_result
from kd_train.data import default_data_root, load_asap
from kd_train.scorer import Scorer, onnx_session


def per_answer_ms(scorer: Scorer, answers: list[str], threads: int, rounds: int) -> list[float]:
    """The median time of each round over ``answers``, one answer per call, on ``threads`` threads."""
    scorer.session = onnx_session(scorer.folder / scorer.info["model"]["file"], threads=threads)
    scorer.predict_proba(answers[:1])   # the first call allocates: not counted
    medians = []
    for _ in range(rounds):
        times = []
        for text in answers:
            start = time.perf_counter()
            scorer.predict_proba([text])
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1000)
    return medians


def run(args: argparse.Namespace) -> dict:
    answers = [t for t in load_asap(args.data or default_data_root()).test.responses if t.strip()][:args.answers]
    rows = {}
    for folder in args.scorers:
        scorer = Scorer(folder)
        kind = scorer.info["model"].get("kind", "bag")
        # rounds alternate the thread counts, so both see the same load on a shared machine
        found = {n: [] for n in args.threads}
        for _ in range(args.rounds):
            for n in args.threads:
                found[n] += per_answer_ms(scorer, answers, n, 1)
        ms = {n: statistics.median(v) for n, v in found.items()}
        rows[str(folder)] = {"kind": kind, "bytes": (scorer.folder / scorer.info["model"]["file"]).stat().st_size,
                             "ms": {str(n): round(v, 3) for n, v in ms.items()},
                             "rounds": {str(n): [round(x, 3) for x in v] for n, v in found.items()}}
        print(folder, kind, {n: f"{v:.2f} ms" for n, v in ms.items()}, flush=True)
    return {"command": command("python -m bench.threads"), "date": utc_now(), "cpus": os.cpu_count(),
            "load": [round(x, 2) for x in os.getloadavg()], "answers": len(answers), "threads": args.threads,
            "rounds": args.rounds, "scorers": rows}


def write_report(result: dict, out: Path) -> str:
    first = str(result["threads"][0])
    head = ["scorer", "kind", "model.onnx (MB)", *[f"{n} thread{'s' * (n > 1)} (ms)" for n in result["threads"]],
            *[f"{first} : {n}" for n in result["threads"][1:]]]
    body = [[name, r["kind"], f"{r['bytes'] / 1e6:.2f}", *[f"{r['ms'][str(n)]:.2f}" for n in result["threads"]],
             *[f"{r['ms'][first] / r['ms'][str(n)]:.2f}×" for n in result["threads"][1:]]]
            for name, r in result["scorers"].items()]
    lines = ["# Per-answer time on more threads (CPython's onnxruntime: a proxy for a cross-origin isolated page)", "",
             *table(head, body, "llr" + "r" * (2 * len(result["threads"]) - 1)), "",
             f"Median per-answer time (one answer per call, featurizer included) over {result['answers']} ASAP-SAS "
             f"test answers; the median of {result['rounds']} rounds, the thread counts alternating round by round. "
             "`1 : n` is how many times faster n threads are.", "",
             f"Command (repo root): `{result['command']}`; {result['date']}; {result['cpus']} CPUs, load average "
             f"{', '.join(map(str, result['load']))} at the start."]
    return write_result(out, "threads", result, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.splitlines()[0])
    ap.add_argument("scorers", nargs="+", type=Path, help="scorer directories (kd-train train's OUT/<item>/scorer)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare (default: 1 2)")
    ap.add_argument("--answers", type=int, default=200, help="answers timed per round (default: 200)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per thread count (default: 3)")
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--out", type=Path, default=RESULTS / "threads", help="results folder (default: bench/results/threads)")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.threads) or args.answers < 1 or args.rounds < 1:
        ap.error("--threads, --answers and --rounds take numbers of 1 or more")
    print(write_report(run(args), args.out))


if __name__ == "__main__":
    main()
