"""Two Ray nodes on one machine, and `kd-train train --ray --ray-address` placing items on both.

    python -m bench.cluster [--out bench/results/item-bank] [--port 6391]

Starts `ray start --head --port P --num-cpus 1` and a second node, `ray start --address 127.0.0.1:P
--num-cpus 1`, trains two tiny items (a 2-layer random BERT, 60 answers each) through
`kd-train train --ray --ray-address 127.0.0.1:P --workers 2`, reads the node ids from the report and
stops the processes it started (by their process ids: the Ray processes that were not running before
it; `ray stop` would stop every Ray on the machine). Ray 2.60 asks the nodes of a cluster for its token
(~/.ray/auth_token): the script sets RAY_AUTH_MODE=token for every command. Too heavy for the test suite on a 2-core
CI machine (two extra Ray nodes: about 10 processes and 20 s to start), so it is a benchmark script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import utc_now
from bench.item_bank import kd_train, tiny_item


def ray_cli(*args: str) -> None:
    ray = Path(sys.executable).with_name("ray")
    done = subprocess.run([str(ray), *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"ray {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def ray_pids() -> set[int]:
    """Ray's processes on this machine (its binaries, its Python services and workers, named ray::...)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if state != "Z" and (cmd.startswith("ray::") or "/site-packages/ray/" in cmd):
            pids.add(int(proc.name))
    return pids


def stop(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL after 10 s, the processes this script started (by id: never `ray stop`)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in sorted(pids & ray_pids()):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids & ray_pids() and time.monotonic() < deadline:
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/item-bank"))
    ap.add_argument("--port", type=int, default=6391)
    ap.add_argument("--run", type=Path, default=Path("/tmp/kd-cluster-bench"))
    a = ap.parse_args(argv)
    if a.run.exists():
        shutil.rmtree(a.run)
    table, model = tiny_item(a.run)
    rows = table.read_text().splitlines()
    table.write_text("\n".join(rows + [r.replace(",q1,", ",q2,").replace("a", "b", 1) for r in rows[1:]]) + "\n")
    address = f"127.0.0.1:{a.port}"
    os.environ["RAY_AUTH_MODE"] = "token"
    before = ray_pids()
    env_started = time.time()
    try:
        ray_cli("start", "--head", "--port", str(a.port), "--num-cpus", "1", "--include-dashboard=false",
                "--node-ip-address", "127.0.0.1", "--disable-usage-stats")
        ray_cli("start", "--address", address, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                "--disable-usage-stats")
        up_s = time.time() - env_started
        wall, rc, tail = kd_train(["train", "--train", str(table), "--model", str(model), "--epochs", "1",
                                   "--max-length", "32", "--student-epochs", "3", "--augment", "0",
                                   "--out", str(a.run / "run"), "--ray", "--ray-address", address, "--workers", "2"])
    finally:
        stop(ray_pids() - before)
        current = Path("/tmp/ray/ray_current_cluster")   # what `ray stop` removes: `--ray-address auto` reads it
        if current.is_file() and current.read_text().strip().endswith(f":{a.port}"):
            current.unlink()
    if rc != 0:
        sys.exit(f"kd-train failed:\n{tail}")
    report = json.loads((a.run / "run" / "report.json").read_text())
    placed = {item: r["worker"] for item, r in report["per_item"].items()}
    nodes = sorted({w["node"] for w in placed.values()})
    result = {"date": utc_now(), "cluster": "two Ray nodes on one machine, 1 CPU each (ray start --head; ray start --address)",
              "cluster_up_s": round(up_s, 1), "train_wall_s": round(wall, 1), "run": report["run"],
              "placed": placed, "distinct_nodes": len(nodes)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "cluster.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    if len(nodes) < 2:
        sys.exit("the items ran on one node only")


if __name__ == "__main__":
    main()
