"""Item banks (kd_train/bank.py): items as Ray tasks, resumable after a kill, failures isolated, one report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, toy_rows, write_csv
from kd_train import bank, data
from kd_train.cli import main

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (pip install 'kd-train[cluster]' or '.[test]')")
HEADER = ["id", "item", "response", "score"]


def _tiny_args(train: Path, out: Path, model: Path) -> list[str]:
    return ["train", "--train", str(train), "--out", str(out), "--model", str(model), "--epochs", "1",
            "--max-length", "32", "--student-epochs", "3", "--augment", "0"]


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory, tiny_model):
    """Two tiny items and one with a single score (bad) through --ray with 2 workers on a local Ray of 2 CPUs."""
    folder = tmp_path_factory.mktemp("bank")
    bad = [[f"c{i}", "q3", r[2], 0] for i, r in enumerate(toy_rows(30, seed=4))]
    train = write_csv(folder / "train.csv", HEADER, toy_rows(60) + toy_rows(60, seed=3, item="q2", prefix="b") + bad)
    out = folder / "run"
    code = main(_tiny_args(train, out, tiny_model) + ["--ray", "--workers", "2"])
    return out, code


@needs_ray
def test_two_items_train_at_once_as_ray_tasks_and_a_bad_item_does_not_stop_them(bank_run, capsys):
    out, code = bank_run
    assert code == 2                                                    # one item failed: said, after the others
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["per_item"]) == ["q1", "q2"] and report["run"]["workers"] == 2
    records = [json.loads((out / item / bank.DONE_FILE).read_text()) for item in ("q1", "q2")]
    for item, record in zip(("q1", "q2"), records):
        r = report["per_item"][item]
        assert r["wall_s"] > 0 and r["worker"]["node"] and r["worker"]["pid"] != os.getpid()
        assert r["worker"]["niceness"] == os.nice(0)                   # not starved on a busy machine
        assert record["fingerprint"] and record["report"]["item"] == item
        assert (out / item / "scorer" / "model.onnx").is_file()
    assert records[0]["worker"]["pid"] != records[1]["worker"]["pid"]   # two worker processes ...
    starts, ends = [r["started"] for r in records], [r["ended"] for r in records]
    assert max(starts) < min(ends)                                      # ... whose items overlapped in time
    [failed] = report["failures"]
    assert failed["item"] == "q3" and "only one score value" in failed["error"]
    assert (out / "q3" / bank.FAILED_FILE).is_file() and not (out / "q3" / bank.DONE_FILE).exists()
    md = (out / "report.md").read_text()
    assert "## Failed items (1)" in md and "| q3 | DataError" in md and "| worker |" in md
    assert "Ran as Ray tasks (local): 2 item(s) at a time" in md


@needs_ray
def test_a_run_folder_builds_its_items_with_scorers(bank_run, capsys):
    out, _ = bank_run
    found = bank.run_folder_scorers([str(out)], allow_unfit=True)
    assert found == [out / "q1" / "scorer", out / "q2" / "scorer"]
    assert "left out: q3 (no scorer: failed or unfinished)" in capsys.readouterr().out
    other = out / "q1" / "scorer"
    assert bank.run_folder_scorers([str(other)], allow_unfit=False) == [str(other)]   # scorer dirs pass through


@needs_ray
def test_build_given_a_run_folder_bundles_its_items_scorers(bank_run, tmp_path, monkeypatch, capsys):
    from kd_train import bundle

    out, _ = bank_run
    seen = []
    monkeypatch.setattr(bundle, "run", lambda scorers, *rest, **kw: seen.append(scorers))   # the bundler has its own tests
    assert main(["build", str(out), "--out", str(tmp_path / "dist"), "--allow-unfit", "--no-snapshot"]) == 0
    assert seen == [[out / "q1" / "scorer", out / "q2" / "scorer"]]
    assert f"{out}: building 2 item(s); left out: q3" in capsys.readouterr().out


@needs_ray
def test_a_killed_run_resumes_with_only_the_items_left(tmp_path, tiny_model, capsys):
    train = write_csv(tmp_path / "train.csv", HEADER, toy_rows(60) + toy_rows(240, seed=3, item="q2", prefix="b"))
    out = tmp_path / "run"
    args = _tiny_args(train, out, tiny_model) + ["--ray", "--workers", "1"]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "kd_train.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done_a, done_b = out / "q1" / bank.DONE_FILE, out / "q2" / bank.DONE_FILE
    deadline = time.monotonic() + 300
    try:
        while not done_a.exists():                                      # wait for item q1 to be recorded done
            assert proc.poll() is None, f"kd-train ended before item q1 was done: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "item q1 was not done within 300 s"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                             # the driver and what it started
        proc.wait()
    assert not done_b.exists(), "q2 finished before the kill; the test needs q2 to be slower"
    before = (out / "q1" / "scorer" / "model.onnx").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "item q1: done in an earlier run, skipped" in printed and "[1/1] item q2: done" in printed
    assert (out / "q1" / "scorer" / "model.onnx").read_bytes() == before and done_b.is_file()
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["per_item"]) == ["q1", "q2"] and report["run"]["skipped"] == ["q1"]
    assert report["failures"] == []


def test_without_ray_the_flag_names_the_install_command(tmp_path, monkeypatch, capsys):
    train = write_csv(tmp_path / "train.csv", HEADER, toy_rows(30))
    monkeypatch.setitem(sys.modules, "ray", None)                      # import ray raises ImportError
    assert main(["train", "--train", str(train), "--out", str(tmp_path / "run"), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["kd-train train: error: --ray needs Ray, which is not installed; install it with: "
                   "pip install 'kd-train[cluster]'"]
    assert main(["train", "--train", str(train), "--out", str(tmp_path / "run"), "--workers", "2"]) == 2
    assert "--workers and --ray-address go with --ray" in capsys.readouterr().err


def test_light_verbs_import_neither_ray_nor_torch(tmp_path):
    code = ("import sys; from kd_train import cli, bank; cli.build_parser(); bank.run_folder_scorers([], False); "
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "[]", done.stderr


def test_sizing_is_one_item_per_cpu_and_per_1_6_gb():
    assert bank.sizing(2, 23e9, None) == (2, 1, "training 2 items at a time (2 CPUs, 23 GB free)")
    assert bank.sizing(16, 3.3e9, None)[:2] == (2, 8)                   # memory bounds it: 8 torch threads each
    assert bank.sizing(8, 64e9, 1)[:2] == (1, 8)
    assert bank.sizing(4, 0.5e9, None)[:2] == (1, 4)                    # always at least one


def test_the_fingerprint_follows_the_items_rows_and_settings_only(tmp_path):
    from kd_train.pipeline import PipelineConfig
    from kd_train.teacher import TeacherConfig

    path = write_csv(tmp_path / "t.csv", HEADER, toy_rows(30) + toy_rows(30, item="q2", prefix="b"))
    table = data.read_responses(path)
    spec, config = data.Item("q1"), PipelineConfig()
    fp = bank.fingerprint(spec, [0, 1, 2], table, None, None, config)
    more = data.read_responses(write_csv(tmp_path / "u.csv", HEADER,
                                         toy_rows(30) + toy_rows(31, item="q2", prefix="b")))
    assert bank.fingerprint(spec, [0, 1, 2], more, None, None, config) == fp        # another item's rows
    changed = data.read_responses(write_csv(tmp_path / "v.csv", HEADER, toy_rows(31) + toy_rows(30, item="q2", prefix="b")))
    assert bank.fingerprint(spec, [0, 1, 2], changed, None, None, config) != fp      # its own rows
    assert bank.fingerprint(spec, [0, 1, 2], table, None, None, PipelineConfig(teacher=TeacherConfig(epochs=1))) != fp
    assert bank.fingerprint(spec, [0, 1, 2], table, None, None, PipelineConfig(force=True)) == fp
    assert bank.done_record(tmp_path, "q1", fp) is None


@needs_ray
def group_after_it_ends(group: int, limit_s: float) -> list[int]:
    """The processes of ``group`` still running once each has ended or ``limit_s`` has passed: waits on each
    one's exit (its pidfd becomes readable when it ends), never for a fixed time."""
    import select

    deadline = time.monotonic() + limit_s
    while True:
        pids = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "-g", str(group)], capture_output=True,
                                               text=True).stdout.split()]
        if not pids or time.monotonic() >= deadline:
            return pids
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            finally:
                os.close(fd)


def test_ctrl_c_stops_every_task_exits_130_in_one_line_and_keeps_finished_items(tmp_path, tiny_model):
    train = write_csv(tmp_path / "train.csv", HEADER, toy_rows(60) + toy_rows(240, seed=3, item="q2", prefix="b"))
    out = tmp_path / "run"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "kd_train.cli", *_tiny_args(train, out, tiny_model), "--ray",
                             "--workers", "1"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),   # as from a terminal
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while not (out / "q1" / bank.DONE_FILE).exists():
            assert proc.poll() is None, f"kd-train ended before item q1 was done: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "item q1 was not done within 300 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)                              # Ctrl+C: the terminal signals the group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "kd-train train: interrupted; nothing half-written was left behind"
    assert not (out / "q2" / bank.DONE_FILE).exists()
    assert bank.done_record(out, "q1", json.loads((out / "q1" / bank.DONE_FILE).read_text())["fingerprint"])
    left = group_after_it_ends(proc.pid, 120)   # Ray's own processes end a moment after kd-train on a busy machine
    assert left == [], f"processes of the interrupted run still running 120 s after it ended: {left}"
