"""Temporaries kd-train can prove it made, and the writes built on them: a file or folder is made inside a
hidden sibling ``.<name>.kd-train-tmp-<pid>-<token>/`` of its destination and renamed into place, so that
no output is ever half-written. The folder's first file, ``kd-train-temp.json``, records the same pid and
token, the process's start time and the machine: a later run removes such a folder (:func:`remove_leftovers`)
only when that proof holds and the process is gone (its pid dead, or alive with another start time).
Anything else that looks like a temporary (the names older versions used included) is left alone, with
one line on stderr saying so. kd_train/files.py builds the output guards and locks on these.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

TMP_TAG = "kd-train-tmp"
LOCK_TAG = "kd-train-lock"   # the lock beside an output (kd_train/files.py): a sibling that is never a leftover


# ---- who made a temporary: the proof a later run checks before removing it ------------------------

OWNER_FILE = "kd-train-temp.json"   # the first file of every temporary folder kd-train makes
_TEMP_NAME_RE = re.compile(rf"\.(.+)\.{TMP_TAG}-(\d+)-([0-9a-f]{{16}})")


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None when that cannot be read.
    A pid and its start time name one process: pids are reused, the pair is not (until a reboot)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return stat[stat.rindex(")") + 2:].split()[19]   # field 22: starttime (fields after "(comm)" start at 3)
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def owner_record(pid: int | None = None) -> dict:
    """What identifies a running process: pid, start time, boot and machine."""
    pid = pid or os.getpid()
    return {"pid": pid, "start": process_start(pid), "boot": _boot_id(), "host": socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def owner_gone(record: dict) -> bool:
    """True only when the process ``record`` names has certainly ended: on this machine, and its pid is dead,
    or alive with another start time, or the machine has rebooted since. Unknown means still running."""
    if record.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if boot and record.get("boot") and record["boot"] != boot:
        return True
    pid = record.get("pid")
    if type(pid) is not int or pid <= 0:
        return False
    if not _pid_alive(pid):
        return True
    start = process_start(pid)
    return start is not None and record.get("start") is not None and start != record["start"]


def _read_json_file(path: Path) -> dict | None:
    """A small JSON object from a regular file (never through a symlink), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(65536).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def temp_record(path: Path) -> dict | None:
    """The owner record of ``path`` when it is a temporary folder kd-train made (its name and its
    kd-train-temp.json agree on the pid, the token and the output it was for), else None."""
    path = Path(path)
    match = _TEMP_NAME_RE.fullmatch(path.name)
    if not match or path.is_symlink() or not path.is_dir():
        return None
    record = _read_json_file(path / OWNER_FILE)
    if (record is None or record.get("token") != match.group(3) or record.get("pid") != int(match.group(2))
            or record.get("for") != match.group(1)):
        return None
    return record


def is_leftover(path: Path) -> bool:
    """A temporary folder kd-train provably made, whose process is gone."""
    record = temp_record(path)
    return record is not None and owner_gone(record)


# ---- atomic writes -----------------------------------------------------------------------------

def temp_path(dst: Path, owner: int | None = None) -> str:
    """Prefix of a temporary sibling of ``dst`` owned by process ``owner`` (default: this one)."""
    return f".{dst.name}.{TMP_TAG}-{owner or os.getpid()}-"


def new_temp(dst: str | os.PathLike, owner: int | None = None, token: str | None = None) -> Path:
    """A new hidden folder beside ``dst`` holding only its proof of origin (kd-train-temp.json, written
    first). ``owner``: the process whose end makes it a leftover (default: this one); ``token``: 16 hex
    digits shared by the processes of one distributed run (default: random; an existing folder is
    then reused)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    owner = owner or os.getpid()
    folder = dst.parent / f"{temp_path(dst, owner)}{token or secrets.token_hex(8)}"
    folder.mkdir(mode=0o700, exist_ok=token is not None)
    if token is None or not (folder / OWNER_FILE).exists():
        record = owner_record(owner) | {"format": 1, "token": folder.name[-16:], "for": dst.name}
        with open(folder / OWNER_FILE, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    return folder


def make_temp_dir(dst: str | os.PathLike, owner: int | None = None) -> Path:
    """A new, empty folder to build ``dst`` in (then :func:`replace_dir`), inside a :func:`new_temp`
    beside it; :func:`discard_temp` removes it all."""
    folder = new_temp(dst, owner) / "new"
    folder.mkdir()
    return folder


def discard_temp(path: str | os.PathLike) -> None:
    """Remove the temporary ``path`` came from (a :func:`make_temp_dir` folder or a :func:`new_temp`), when it is
    provably kd-train's; else ``path`` alone."""
    path = Path(path)
    for folder in (path, path.parent):
        if temp_record(folder) is not None:
            shutil.rmtree(folder, ignore_errors=True)
            return
    shutil.rmtree(path, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path`` and rename it into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` inside a temporary folder beside ``path`` and rename it into place."""
    path = Path(path)
    temp = new_temp(path)
    try:
        tmp = temp / "new"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# ---- leftovers of killed runs ----------------------------------------------------------------------

# Names the clean-up of earlier versions removed on sight (they may as well be a user's backups): now
# only reported, like a temporary name without kd-train's proof.
_LOOKS_TEMPORARY = re.compile(rf"(?:{TMP_TAG}-.*|partial|old|building\.[A-Za-z0-9_]{{8}}|[a-z0-9_]{{8}}|"
                              rf"[A-Za-z0-9_]{{8}}\.tmp)")


def _siblings(dst: Path) -> list[Path]:
    prefix = f".{dst.name}."
    if not dst.parent.is_dir():
        return []
    return sorted(p for p in dst.parent.iterdir() if p.name.startswith(prefix) and p.name != f".{dst.name}.{LOCK_TAG}")


def leftovers(dst: str | os.PathLike) -> list[Path]:
    """Temporary siblings of ``dst`` that kd-train provably made and whose process is gone."""
    return [p for p in _siblings(Path(dst)) if is_leftover(p)]


def not_ours(dst: str | os.PathLike) -> list[Path]:
    """Siblings of ``dst`` named like a temporary (of this version or an older one) that kd-train cannot prove
    are leftovers of its own: left alone."""
    dst = Path(dst)
    return [p for p in _siblings(dst) if _LOOKS_TEMPORARY.fullmatch(p.name[len(dst.name) + 2:]) and not is_leftover(p)]


def remove_leftovers(dst: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove :func:`leftovers` of ``dst``, saying so on stderr; name what looks like one but is not provably so."""
    log = log or (lambda message: print(message, file=sys.stderr))
    removed = []
    for p in leftovers(dst):
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
            log(f"removed {p}, left behind by an interrupted kd-train run")
    for p in not_ours(dst):
        log(f"found {p}, not made by kd-train (or still in use): left alone")
    return removed
