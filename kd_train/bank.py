"""Item banks: many items of one `kd-train train` run as Ray tasks, resumable, isolated, one report.

Each item is one task that runs :func:`kd_train.pipeline.run_item` into ``OUT/<item>/`` exactly as the
sequential run does, then writes ``OUT/<item>/item-done.json``: the item's fingerprint (its rows of
the training, test and unlabeled tables, its question and score range, the pipeline's settings and
the kd-train version), its report, its wall time and its worker. A later run with the same
fingerprint skips the item. A task that fails returns its one-line reason; the other items go on,
and the driver's report lists the failures. Ray (https://docs.ray.io) does the scheduling, locally
(an embedded ``ray.init()``) or on a cluster (``--ray-address``).

This module imports neither torch nor ray at import time: ``kd-train build`` uses
:func:`run_folder_scorers`, and a machine without Ray gets one line naming the install command.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from kd_train.data import UserError, item_folder
from kd_train.files import read_marker
from kd_train.temps import atomic_write_text

DONE_FILE = "item-done.json"
FAILED_FILE = "item-failed.json"
# bytes: one item's training process. Measured: 1.54 GB peak RSS (SAF German legal L02, MiniLM, split) and
# 1.59 GB (the same item cross-validated, frozen encoder tried too); the estimate was 1.2 GB.
MEMORY_PER_TASK = int(1.6e9)
INSTALL = "pip install 'kd-train[cluster]'"


# ---- fingerprints and the record of a finished item ----------------------------------------------

def _rows_digest(h, table, item: str) -> None:
    if table is None:
        h.update(b"\x00none")
        return
    rows = table.for_item(item)
    for rid, response, score in zip(rows.ids, rows.responses, rows.scores):
        h.update(json.dumps([rid, response, score], ensure_ascii=False).encode("utf-8") + b"\n")
    h.update(b"\x00end")


def fingerprint(spec, values: list[int], train, test, unlabeled, config) -> str:
    """sha256 of what an item's outputs depend on: its rows of each table, its question and score values,
    the pipeline's settings (``force`` aside) and the kd-train version. Answers to other items are not in
    it (adding an item to the bank does not retrain the others), though the detectors' other_question
    check learns from them."""
    from kd_train import __version__

    h = hashlib.sha256()
    settings = asdict(config)
    settings.pop("force", None)
    head = {"version": __version__, "item": spec.item, "question": spec.question,
            "reference_answer": getattr(spec, "reference_answer", ""), "values": values, "settings": settings}
    h.update(json.dumps(head, sort_keys=True, default=str).encode("utf-8"))
    for table in (train, test, unlabeled):
        _rows_digest(h, table, spec.item)
    return h.hexdigest()


def done_record(out: Path, item: str, fp: str) -> dict | None:
    """The record of an item finished by an earlier run with this fingerprint whose scorer is still whole, else None."""
    folder = Path(out) / item_folder(item)
    try:
        record = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fp or not isinstance(record.get("report"), dict):
        return None
    marker = read_marker(folder / "scorer")
    if not marker or marker.get("kind") != "scorer" or not all((folder / "scorer" / f).is_file() for f in marker["files"]):
        return None
    return record


def worker_id() -> dict:
    """Where this task ran: Ray's node id (when in Ray), host name, process id and niceness."""
    node = None
    if "ray" in sys.modules:
        try:
            import ray

            if ray.is_initialized():
                node = ray.get_runtime_context().get_node_id()
        except Exception:   # not inside a Ray worker
            node = None
    return {"node": node, "host": socket.gethostname(), "pid": os.getpid(), "niceness": os.nice(0)}


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def record_refused(out, item: str, err: BaseException) -> dict:
    """An item the up-front data check refused, recorded as failed (OUT/<item>/item-failed.json) like one
    that failed in training, so that the report lists it and a build of the run folder leaves it out."""
    failed = {"item": item, "error": _one_line(err), "wall_s": None, "worker": None, "fingerprint": None}
    folder = Path(out) / item_folder(item)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / FAILED_FILE, json.dumps(failed, indent=2) + "\n")
    return failed


def train_one(spec, values, train, test, unlabeled, out: str, config, fp: str, threads: int = 0,
              env: dict | None = None) -> dict:
    """Run one item (in a Ray worker or in this process): {"item", "report" | "error", "wall_s", "worker"}.
    Never raises for a failed item: its reason is returned and written to OUT/<item>/item-failed.json."""
    for key, value in (env or {}).items():
        os.environ.setdefault(key, value)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from kd_train import pipeline

    folder = Path(out) / item_folder(spec.item)
    started = time.time()
    lines: list[str] = []
    worker = worker_id()
    try:
        report = pipeline.run_item(spec, values, train, test, unlabeled, out, config, log=lines.append)
    except Exception as err:   # one bad item must not stop the bank
        wall = round(time.time() - started, 1)
        reason = _one_line(err)
        failed = {"item": spec.item, "error": reason, "wall_s": wall, "worker": worker, "fingerprint": fp}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / FAILED_FILE, json.dumps(failed, indent=2) + "\n")
            atomic_write_text(folder / "log.txt", "\n".join(lines + [f"FAILED: {reason}"]) + "\n")
        except OSError:
            pass
        return failed
    ended = time.time()
    wall = round(ended - started, 1)
    report["wall_s"], report["worker"] = wall, worker
    record = {"item": spec.item, "fingerprint": fp, "wall_s": wall, "started": started, "ended": ended,
              "worker": worker, "report": report}
    atomic_write_text(folder / "log.txt", "\n".join(lines) + "\n")
    atomic_write_text(folder / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(folder / DONE_FILE, json.dumps(record, indent=2) + "\n")   # last: the item is done
    (folder / FAILED_FILE).unlink(missing_ok=True)
    return record


# ---- sizing ----------------------------------------------------------------------------------------

def free_memory() -> int:
    """Bytes of memory available on this machine (MemAvailable), or 0 when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def sizing(cpus: float, memory: float, workers: int | None, gpus: float = 0, nodes: int = 0) -> tuple[int, int, str]:
    """(items at a time, CPUs (torch threads) per item, the line that says so) from the CPUs and memory
    there are: at most one item per CPU and per 1.6 GB; ``workers`` overrides the count."""
    cpus_i = max(1, int(cpus))
    by_memory = max(1, int(memory // MEMORY_PER_TASK)) if memory else cpus_i
    n = workers or max(1, min(cpus_i, by_memory))
    per_task = max(1, cpus_i // n)
    why = (f"{cpus_i} CPUs, {memory / 1e9:.0f} GB " + (f"of Ray memory on {nodes} nodes" if nodes else "free")
           + (f", {gpus:g} GPUs" if gpus else ""))
    return n, per_task, f"training {n} item{'s' if n != 1 else ''} at a time ({why}" + (
        f"; --workers {workers})" if workers else ")")


# ---- the driver ------------------------------------------------------------------------------------

def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs Ray, which is not installed; install it with: {INSTALL}") from None
    return ray


def run(chosen: list[str], items, train, test, unlabeled, out: Path, config, workers: int | None = None,
        address: str | None = None, log=print) -> tuple[list[dict], list[dict], dict]:
    """Train ``chosen`` items as Ray tasks (skipping those done by an earlier run with the same fingerprint):
    (reports of all done items in ``chosen`` order, failures, how it ran). Ctrl+C cancels every task,
    shuts Ray down and raises KeyboardInterrupt; finished items stay usable."""
    from kd_train import data

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    ray = import_ray()
    out = Path(out)
    todo, done = [], {}
    for item in chosen:
        spec = (items or {}).get(item) or data.Item(item)
        values = data.score_values(train, item, items)
        fp = fingerprint(spec, values, train, test, unlabeled, config)
        record = done_record(out, item, fp)
        if record is not None:
            log(f"item {item}: done in an earlier run, skipped")
            done[item] = record
        else:
            todo.append((spec, values, fp))
    failures: dict[str, dict] = {}
    how = {"mode": "ray", "address": address or "local", "skipped": sorted(done, key=chosen.index)}
    if todo:
        env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "PYTHONPATH", "KD_TRAIN_DATA")
               if k in os.environ}
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        started_here = not ray.is_initialized()
        if started_here:
            _init(ray, address, workers)
        try:
            total = ray.cluster_resources()
            cpus, gpus = total.get("CPU", 1), total.get("GPU", 0)
            nodes = len([x for x in ray.nodes() if x.get("Alive")])
            memory = free_memory() if not address else total.get("memory", 0)
            n, per_task, line = sizing(cpus, memory, workers, gpus, nodes if address else 0)
            log(line)
            how |= {"workers": n, "cpus_per_item": per_task, "gpus_per_item": 1 if gpus else 0,
                    "cluster": {"CPU": cpus, "GPU": gpus, "nodes": nodes}}
            task = ray.remote(train_one).options(num_cpus=per_task, num_gpus=1 if gpus else 0,
                                                 memory=MEMORY_PER_TASK, max_retries=0, name="kd-train item")
            shared = [ray.put(x) for x in (train, test, unlabeled)]
            _drive(ray, task, todo, shared, str(out), config, per_task, env, n, done, failures, log)
        except KeyboardInterrupt:
            raise
        finally:
            if started_here:
                ray.shutdown()
    reports = [done[i]["report"] for i in chosen if i in done]
    return reports, [failures[i] for i in chosen if i in failures], how


def _init(ray, address: str | None, workers: int | None) -> None:
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # Ray runs its workers at niceness 15, so that on a busy machine the items' training starved (a
            # tenth of a core beside two ordinary processes); kd-train's own sequential run has niceness 0.
            os.environ.setdefault("RAY_worker_niceness", "0")
            # "local": a new Ray of its own, even where `ray start` left one running on this machine
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, workers or 0), **kwargs)
    except ConnectionError as err:
        raise UserError(f"--ray-address {address}: no Ray cluster there ({_one_line(err)}); start one with "
                        "'ray start --head' and give its address, or leave --ray-address out to run here") from None


def _drive(ray, task, todo, shared, out, config, per_task, env, n, done, failures, log) -> None:
    """Keep ``n`` tasks in flight; record each as it finishes. Ctrl+C cancels those still running."""
    pending: dict = {}
    queue = list(todo)
    total, finished = len(todo), 0
    try:
        while queue or pending:
            while queue and len(pending) < n:
                spec, values, fp = queue.pop(0)
                ref = task.remote(spec, values, *shared, out, config, fp, per_task, env)
                pending[ref] = spec.item
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                item = pending.pop(ref)
                finished += 1
                try:
                    result = ray.get(ref)
                except Exception as err:   # the worker died (killed, out of memory, node lost)
                    result = {"item": item, "error": f"worker lost: {_one_line(err)}", "wall_s": None, "worker": None}
                where = result.get("worker") or {}
                at = f"{where.get('host')}:{where.get('pid')}" if where else "?"
                if "error" in result:
                    failures[item] = result
                    log(f"[{finished}/{total}] item {item}: FAILED ({result['error']})")
                else:
                    done[item] = result
                    log(f"[{finished}/{total}] item {item}: done in {result['wall_s']:.0f} s on {at}")
    except KeyboardInterrupt:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise


# ---- kd-train build over a run folder ----------------------------------------------------------------

def run_folder_scorers(paths: list, allow_unfit: bool, log=print) -> list:
    """Scorer directories for ``kd-train build``: a run folder of kd-train train (kd-train.json kind "run")
    stands for the scorer/ of each of its items that is fit for use (every item's with ``allow_unfit``);
    other paths are passed through."""
    scorers: list = []
    for path in paths:
        marker = read_marker(path)
        if not marker or marker.get("kind") != "run":
            scorers.append(path)
            continue
        found, skipped = [], []
        for folder in sorted(Path(path).iterdir()):
            scorer = folder / "scorer"
            if not (scorer / "scorer.json").is_file():
                if (folder / FAILED_FILE).is_file() or (folder / "teacher").is_dir():
                    skipped.append(f"{folder.name} (no scorer: failed or unfinished)")
                continue
            try:
                fit = json.loads((scorer / "scorer.json").read_text(encoding="utf-8")).get("fit_for_use", True)
            except (OSError, ValueError):
                skipped.append(f"{folder.name} (scorer.json unreadable)")
                continue
            if fit is False and not allow_unfit:
                skipped.append(f"{folder.name} (not fit for use; --allow-unfit builds it)")
                continue
            found.append(scorer)
        if not found:
            raise UserError(f"{path}: no item of this run has a scorer fit for use"
                            + (f" ({'; '.join(skipped[:5])})" if skipped else ""))
        log(f"{path}: building {len(found)} item(s)" + (f"; left out: {'; '.join(skipped)}" if skipped else ""))
        scorers += found
    return scorers
