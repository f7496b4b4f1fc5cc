"""Start-up time and peak memory of the light verbs (predict, evaluate, build, serve), and predict on
many answers, against an earlier version of kd-train measured in the same run.

    python bench/cli_startup.py --baseline 2726b7f --answers 200000 --repeat 3

Each command runs as its own process (``python -m kd_train.cli ...``), from a git worktree of the
baseline and from this checkout, alternately, so both see the same machine load; the figures are
medians over ``--repeat`` runs. Peak memory is the child's maximum resident set size (``wait4``);
for ``serve``, the time until it prints its URL and the peak (VmHWM) at that moment. The scorer and
the answers come from the project's own demo data (examples/demo), cycled to ``--answers`` rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # bench and kd_train, when run as `python bench/cli_startup.py` from a checkout

from bench import add_out, command, table, write_result  # noqa: E402

DEMO = REPO / "examples" / "demo"
EXTENSION = "_featurize_ascii"   # the compiled featurizer, built into kd_train/ by pip install -e


def run_measured(cmd: list[str], cwd: Path) -> dict:
    """Wall seconds and peak RSS (MB) of one child process; raises if it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode("utf-8", "replace")
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}: {err.strip()[-500:]}")
    return {"s": wall, "mb": usage.ru_maxrss / 1024}


def serve_measured(cmd: list[str], cwd: Path) -> dict:
    """Seconds until `kd-train serve` prints its URL, and its peak RSS (MB) then."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = child.stdout.readline()
        wall = time.perf_counter() - started
        if "serving" not in line:
            raise RuntimeError(f"serve printed {line!r}")
        status = Path(f"/proc/{child.pid}/status").read_text()
        peak_kb = next(int(row.split()[1]) for row in status.splitlines() if row.startswith("VmHWM:"))
    finally:
        child.terminate()
        child.wait(timeout=10)
    return {"s": wall, "mb": peak_kb / 1024}


def write_answers(path: Path, n: int) -> Path:
    """`n` answers cycled from the demo item's answers (ids made unique)."""
    texts = []
    for name in ("responses.csv", "test.csv", "unlabeled.csv"):
        with open(DEMO / name, encoding="utf-8", newline="") as fh:
            texts += [row["response"] for row in csv.DictReader(fh)]
    item = next(csv.DictReader(open(DEMO / "items.csv", encoding="utf-8", newline="")))["item"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "item", "response"])
        writer.writerows([f"a{i}", item, texts[i % len(texts)]] for i in range(n))
    return path


def baseline_tree(ref: str, work: Path) -> Path:
    """A git worktree of `ref` with this checkout's compiled featurizer copied in (same C code path)."""
    tree = work / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=REPO, check=True,
                   capture_output=True)
    for so in (REPO / "kd_train").glob(f"{EXTENSION}*.so"):
        shutil.copy(so, tree / "kd_train" / so.name)
    (tree / "web" / "node_modules").symlink_to(REPO / "web" / "node_modules")   # the same npm packages
    return tree


def cases(work: Path, scorer: Path, answers: Path, big: Path, n_big: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (how to measure, arguments after `python -m kd_train.cli`); outputs go to fresh paths."""
    fresh = iter(range(10**6))

    def out(suffix: str = "") -> str:
        return str(work / "out" / f"{next(fresh)}{suffix}")

    return {
        "predict (100 answers)": ("run", lambda: ["predict", "--scorer", str(scorer), "--input", str(answers),
                                                  "--out", out(".csv")]),
        f"predict ({n_big:,} answers)": ("run", lambda: ["predict", "--scorer", str(scorer), "--input",
                                                                   str(big), "--out", out(".csv")]),
        "evaluate (100 answers)": ("run", lambda: ["evaluate", "--scorer", str(scorer), "--test",
                                                   str(DEMO / "test.csv"), "--out", out()]),
        "build (1 scorer)": ("run", lambda: ["build", str(scorer), "--out", out()]),
        "serve (until listening)": ("serve", lambda: ["serve", str(work / "dist"), "--port", "0"]),
    }


def measure(trees: dict[str, Path], work: Path, scorer: Path, answers: Path, big: Path, n_big: int,
            repeat: int) -> dict:
    raw: dict[str, dict[str, list[dict]]] = {}
    for name, (how, make_args) in cases(work, scorer, answers, big, n_big).items():
        raw[name] = {version: [] for version in trees}
        for _ in range(repeat):
            for version, tree in trees.items():
                cmd = [sys.executable, "-m", "kd_train.cli", *make_args()]
                result = (serve_measured if how == "serve" else run_measured)(cmd, tree)
                raw[name][version].append(result)
                print(f"{name:<28} {version:<9} {result['s']:6.2f} s {result['mb']:7.0f} MB", flush=True)
    return raw


def summarize(raw: dict, versions: list[str]) -> dict:
    table = {}
    for name, by_version in raw.items():
        row = {v: {"s": statistics.median(r["s"] for r in by_version[v]),
                   "mb": statistics.median(r["mb"] for r in by_version[v])} for v in versions}
        if len(versions) == 2:
            before, after = (row[v] for v in versions)
            row["speed-up"] = before["s"] / after["s"]
        table[name] = row
    return table


def markdown(medians: dict, versions: list[str], command_line: str, baseline: str | None) -> str:
    lines = ["# Start-up time and memory of the light verbs", "", f"Command: `{command_line}`", ""]
    if baseline:
        lines += [f"`before`: kd-train at `{baseline}` (every verb imported torch when its parser was built); "
                  "`after`: this checkout. Same machine, same run, alternating; medians.", ""]
    lines += table(["command", *(f"{v} {unit}" for v in versions for unit in ("s", "MB")), *(["speed-up"] if baseline else [])],
                   ([name, *(x for v in versions for x in (f"{row[v]['s']:.2f}", f"{row[v]['mb']:.0f}")),
                     *([f"×{row['speed-up']:.1f}"] if baseline else [])] for name, row in medians.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="GIT_REF", help="an earlier commit to compare with (a git worktree of it)")
    parser.add_argument("--answers", type=int, default=200_000, help="answers for the large predict (default: 200000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command and version (default: 3)")
    add_out(parser)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kd-train-startup-"))
    trees = {}
    try:
        if args.baseline:
            trees["before"] = baseline_tree(args.baseline, work)
        trees["after"] = REPO
        scorer = work / "scorer"   # made by a child process: a child's peak RSS starts at its parent's
        subprocess.run([sys.executable, "-m", "kd_train.cli", "distill", "--train", str(DEMO / "responses.csv"),
                        "--items", str(DEMO / "items.csv"), "--student-epochs", "5", "--out", str(scorer)],
                       cwd=REPO, check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "kd_train.cli", "build", str(scorer), "--out", str(work / "dist")],
                       cwd=REPO, check=True, capture_output=True)
        answers, big = write_answers(work / "answers.csv", 100), write_answers(work / "big.csv", args.answers)
        raw = measure(trees, work, scorer, answers, big, args.answers, args.repeat)
    finally:
        if "before" in trees:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees["before"])], cwd=REPO, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    versions = list(trees)
    result = {"command": command("python bench/cli_startup.py", argv), "baseline": args.baseline, "repeat": args.repeat,
              "medians": summarize(raw, versions), "runs": raw}
    print(write_result(args.out, "cli_startup", result, markdown(result["medians"], versions, result["command"],
                                                                 args.baseline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
