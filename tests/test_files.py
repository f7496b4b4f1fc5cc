"""Writes that never leave half a file behind, and never write through into another link of the old file; a clean-up
that removes only what kd-train provably made; one writer per output."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kd_train import files, temps
from kd_train.data import UserError
from kd_train.temps import atomic_write_bytes, atomic_write_text


def test_replaces_the_file_not_its_contents(tmp_path):
    path, other = tmp_path / "report.json", tmp_path / "copy.json"
    path.write_text("old")
    os.link(path, other)                                   # a hard-linked copy (cp -al) must keep "old"
    atomic_write_text(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓" and other.read_text() == "old"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")               # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


# ---- what the clean-up may remove: only temporaries kd-train provably made, of runs that are gone ------

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                    os.environ.get("PYTHONPATH", "")])}


def dead_pid() -> int:
    run = subprocess.Popen([sys.executable, "-c", "pass"])
    run.wait()
    return run.pid


def temp_left_by_a_dead_run(dst: Path) -> Path:
    """What a kd-train run killed while writing ``dst`` leaves: its temporary folder, made by kd-train's own code."""
    code = ("import sys; from kd_train.temps import make_temp_dir; "
            "t = make_temp_dir(sys.argv[1]); (t / 'half.bin').write_bytes(b'half'); print(t.parent)")
    out = subprocess.run([sys.executable, "-c", code, str(dst)], env=ENV, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def shapes(name: str, dead: int) -> list[str]:
    """Every name shape the clean-up of some kd-train version matched, beside an output called ``name``."""
    return [f".{name}.{rest}" for rest in [
        "old", "partial", "building.abcd1234", "backup01", "20240101", "abcdefgh.tmp", "ABCDefgh.tmp", "abcd_123",
        f"kd-train-tmp-{dead}-xyz", f"kd-train-tmp-{dead}-x1y2z3", f"kd-train-tmp-{dead}-0123456789abcdef",
        f"kd-train-tmp-{dead}-old", f"kd-train-tmp-{dead}-partial", f"kd-train-tmp-{dead}-abcdefgh.tmp",
        f"kd-train-tmp-{os.getpid()}-busy"]]


def make_user_things(parent: Path, names: list[str], seed: int) -> dict[str, bytes]:
    """A file or a folder (with a file in it) under each name, at random; returns path -> content."""
    rng = random.Random(seed)
    made = {}
    for name in names:
        if rng.random() < 0.5:
            (parent / name).write_bytes(b"mine: " + name.encode())
            made[name] = b"mine: " + name.encode()
        else:
            (parent / name).mkdir()
            (parent / name / "notes.txt").write_bytes(b"mine too")
            made[f"{name}/notes.txt"] = b"mine too"
    return made


def intact(parent: Path, made: dict[str, bytes]) -> bool:
    return all((parent / p).is_file() and (parent / p).read_bytes() == data for p, data in made.items())


@pytest.mark.parametrize("seed", range(3))
def test_the_clean_up_removes_only_what_a_dead_kd_train_run_provably_left(tmp_path, seed):
    out = tmp_path / "scores.csv"
    user = make_user_things(tmp_path, shapes(out.name, dead_pid()), seed)
    unproven = tmp_path / f".{out.name}.kd-train-tmp-{dead_pid()}-{'ab' * 8}"   # right shape, marker for another token
    unproven.mkdir()
    (unproven / temps.OWNER_FILE).write_text(json.dumps({"pid": 1, "token": "cd" * 8, "for": out.name}))
    (unproven / "data.bin").write_bytes(b"keep")
    left = [temp_left_by_a_dead_run(out) for _ in range(2)]
    logged = []
    removed = temps.remove_leftovers(out, log=logged.append)
    assert sorted(removed) == sorted(left) and not any(p.exists() for p in left)
    assert intact(tmp_path, user) and (unproven / "data.bin").read_bytes() == b"keep"
    for p in left:
        assert f"removed {p}, left behind by an interrupted kd-train run" in logged
    for name in [*{n.split("/")[0] for n in user}, unproven.name]:
        assert f"found {tmp_path / name}, not made by kd-train (or still in use): left alone" in logged


def test_a_temporary_of_a_live_run_is_kept_and_a_reused_pid_does_not_protect_one(tmp_path):
    out = tmp_path / "dist"
    mine = temps.new_temp(out)                       # this process: alive, same start time
    assert temps.leftovers(out) == [] and mine.exists()
    record = json.loads((mine / temps.OWNER_FILE).read_text())
    record["start"] = "1"                            # the same pid, but another process (the pid was reused)
    (mine / temps.OWNER_FILE).write_text(json.dumps(record))
    assert temps.leftovers(out) == [mine]
    record["host"] = "another-machine"                # a process on another machine: cannot tell, so kept
    (mine / temps.OWNER_FILE).write_text(json.dumps(record))
    assert temps.leftovers(out) == []


def test_a_symlink_named_like_a_temporary_is_never_followed_or_removed(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "a.txt").write_text("keep")
    dead = temp_left_by_a_dead_run(tmp_path / "x")
    link = tmp_path / f".out.{dead.name.split('.', 2)[2]}"
    link.symlink_to(target)                          # a link to a folder, named like a leftover of "out"
    temps.remove_leftovers(tmp_path / "out", log=lambda _: None)
    assert link.is_symlink() and (target / "a.txt").read_text() == "keep"


def test_is_own_dir_ignores_only_provable_leftovers(tmp_path):
    folder = tmp_path / "scorer"
    folder.mkdir()
    (folder / "scorer.json").write_text("{}")
    files.write_marker(folder, "scorer")
    temp_left_by_a_dead_run(folder / "scorer.json")
    assert files.is_own_dir(folder, "scorer")
    other = folder / f".scorer.json.kd-train-tmp-{dead_pid()}-{'0' * 16}"   # no proof: someone else's
    other.mkdir()
    (other / "a.txt").write_text("mine")
    assert not files.is_own_dir(folder, "scorer")


HOLD = """
import json, os, sys, fcntl
from kd_train import files, temps
if sys.argv[2] == "kd-train":
    files.lock_output(sys.argv[1])
else:   # another process holds the flock, but the record names a run that is gone (a stray child of it)
    fd = os.open(files.lock_path(sys.argv[1]), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"kd_train_lock": 1, **temps.owner_record(int(sys.argv[3]))}).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_writer_is_refused_until_the_first_is_gone(tmp_path):
    out = tmp_path / "dist"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "kd-train"], env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError, match=rf"another kd-train run \(pid {holder.pid}, started [0-9 :-]+\) is "
                                            rf"writing to {out}; wait for it to finish or choose another --out"):
            files.lock_output(out)
    finally:
        holder.kill()                                # killed: its lock goes with it
        holder.wait()
    assert files.lock_output(out) is True
    assert files.lock_path(out).exists()
    files.unlock_output(out)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_lock_held_for_a_dead_run_does_not_block(tmp_path):
    out = tmp_path / "scores.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "stray", str(dead_pid())], env=ENV,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert files.lock_output(out) is True
        files.unlock_output(out)
    finally:
        holder.kill()
        holder.wait()


def test_a_file_in_the_way_of_the_lock_is_not_touched(tmp_path):
    out = tmp_path / "scores.csv"
    mine = files.lock_path(out)
    mine.write_text("my own notes")
    with pytest.raises(UserError, match="is in the way"):
        files.lock_output(out)
    assert mine.read_text() == "my own notes"


def test_a_lock_taken_for_a_new_folder_removes_the_folders_it_made(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    assert files.lock_output(out)
    assert files.lock_path(out).exists()
    files.release_locks()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_ctrl_c_during_a_set_of_renames_comes_after_all_of_them(tmp_path, monkeypatch):
    import signal

    src, dst = tmp_path / "new", tmp_path / "report"
    src.mkdir()
    for name in ("report.json", "report.md", "plot.png"):
        (src / name).write_text(name)
    replace = os.replace
    calls = []

    def replace_then_ctrl_c(a, b):
        replace(a, b)
        calls.append(b)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)      # Ctrl+C after the first of the three

    monkeypatch.setattr(files.os, "replace", replace_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # also where the test run inherited it ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            files.publish_files(src, dst)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(calls) == 3 and sorted(p.name for p in dst.iterdir()) == ["plot.png", "report.json", "report.md"]
