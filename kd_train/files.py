"""File helpers shared by every stage: hashing, the output guards that keep every verb from replacing what
it did not write, and the lock that keeps two runs from writing one output.

The rule for every ``--out``: a folder is replaced only when it is empty or is recognisably this
verb's own earlier output (its ``kd-train.json`` marker, listing the files kd-train wrote there), a
file only when it is this verb's own kind of file; ``--force`` lifts that, never the rule that an
output may not be, contain or sit inside an input.

kd-train touches nothing beside an output that it cannot prove it made: its temporaries, the atomic
writes built on them and the clean-up of a killed run's leftovers are kd_train/temps.py's.

While a verb writes an output it holds an exclusive ``flock`` on ``.<name>.kd-train-lock`` beside it
(recording its pid, start time and when it started): a second run writing the same output is refused
in one line, and a lock whose recorded process is gone never blocks.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from kd_train.data import UserError
from kd_train.temps import (LOCK_TAG, OWNER_FILE, TMP_TAG, atomic_write_text, is_leftover, new_temp, owner_gone,
                            owner_record, remove_leftovers, temp_record)

FIXES = {
    errno.EACCES: "check its permissions, or choose another path you can write to",
    errno.EPERM: "check its permissions, or choose another path you can write to",
    errno.EROFS: "the file system is read-only: choose a path on another one",
    errno.ENOSPC: "the disk is full: free some space or choose a path on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or choose a path on another disk",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EEXIST: "it is in the way: remove it or choose another path",
    errno.EXDEV: "keep the output on the same disk as its folder",
}


def os_error_message(err: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong, and the fix."""
    path = err.filename if err.filename is not None else "a file"
    fix = FIXES.get(err.errno, "check the path and try again")
    return f"{path}: {err.strerror or err}; {fix}"


MARKER = "kd-train.json"
MARKER_FORMAT = 1


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()



def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike, kind: str, force: bool = False,
                marker: bool = True) -> None:
    """Move the complete folder ``src`` to ``dst``, replacing an existing ``dst`` only at the last moment,
    and only when :func:`is_own_dir` says it is ``kind``'s own output (or ``force``). The swap is one step
    where the system allows it; else the old ``dst`` first moves into this run's temporary folder.

    With ``marker``, ``src`` first gets its ``kd-train.json``: the kind and each file's sha256 and size.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and not force:
        refuse_foreign_dir(dst, kind)
    if marker:
        write_marker(src, kind)
    src.chmod(0o755)
    if dst.is_dir() and not dst.is_symlink() and _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)   # now the old dst
        return
    own = src.parent if temp_record(src.parent) is not None else None
    holder = own or new_temp(dst)
    try:
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.exists():
            dst.rename(holder / "replaced")
        src.rename(dst)
    finally:
        shutil.rmtree(holder / "replaced", ignore_errors=True)
        if own is None:
            shutil.rmtree(holder, ignore_errors=True)


@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl+C (SIGINT) and SIGTERM for the few milliseconds a set of renames takes, so that they all
    happen or none; the signal is acted on right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {sig: signal.signal(sig, lambda number, frame: caught.append(number))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            if sig == signal.SIGINT and old[sig] is signal.default_int_handler:
                raise KeyboardInterrupt
            os.kill(os.getpid(), sig)


def publish_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Move every file of the folder ``src`` (flat) into the folder ``dst`` together: Ctrl+C cannot come
    between them. Returns the names moved."""
    src, dst = Path(src), Path(dst)
    names = sorted(p.name for p in src.iterdir() if p.is_file() and p.name != OWNER_FILE)
    dst.mkdir(parents=True, exist_ok=True)
    with interrupts_deferred():
        for name in names:
            os.replace(src / name, dst / name)
    return names


# ---- the marker: what kd-train wrote into a folder ------------------------------------------------

def list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a relative POSIX path, sorted (folders themselves not listed)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def file_entry(path: Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_marker(folder: str | os.PathLike, kind: str, hashes: bool = True) -> dict:
    """Write ``folder/kd-train.json``: the output's kind and (``hashes``) the sha256 and size of every file
    in it; a folder that runs keep writing into (a train or evaluate folder) is marked without them."""
    from kd_train import __version__

    folder = Path(folder)
    files = {name: file_entry(folder / name) for name in list_files(folder) if name != MARKER} if hashes else {}
    marker = {"format": MARKER_FORMAT, "kind": kind, "written_by": f"kd-train {__version__}", "files": files}
    atomic_write_text(folder / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return marker


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The folder's kd-train.json, or None when it has none or it cannot be read as one."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(marker, dict) and isinstance(marker.get("kind"), str) and isinstance(marker.get("files"), dict)
    return marker if ok else None


# ---- recognising a verb's own earlier output ------------------------------------------------------

# Outputs of kd-train versions that wrote no marker, recognised by the files they consist of.
def _legacy_scorer(folder: Path, files: list[str]) -> bool:
    return "scorer.json" in files and set(files) <= {"model.onnx", "scorer.json", "MODEL_CARD.md"}


def _legacy_teacher(folder: Path, files: list[str]) -> bool:
    return "teacher.json" in files and all("/" not in f for f in files)


def _legacy_report(folder: Path, files: list[str]) -> bool:
    try:
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and "models" in report


def _bundle(folder: Path, files: list[str]) -> bool:
    """A dist/ made by kd-train build: manifest.json lists every other file in it but index.html (which pins
    manifest.json's digest, so it cannot be listed there; older builds listed it too)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        listed = set(manifest["files"])
        ours = str(manifest.get("generator", "")).startswith("kd-train")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return ours and set(files) - {"manifest.json", "index.html"} <= listed   # index.html pins manifest.json


LEGACY: dict[str, Callable[[Path, list[str]], bool]] = {
    "scorer": _legacy_scorer, "teacher": _legacy_teacher, "run": _legacy_report, "evaluation": _legacy_report,
    "bundle": _bundle,
}
# Folders that runs write into (per-item subfolders, reports) rather than replace as a whole: for
# these the marker's kind is enough; for the rest every file must be one the marker lists.
ACCUMULATING = {"run"}
# The files of a report (kd-train evaluate's whole folder; the top of a train folder).
REPORT_FILE = re.compile(r"report\.(?:md|json)|qwk_vs_params\.png|confusion_\w+\.png|reliability\.png")

DESCRIPTIONS = {
    "teacher": "a teacher folder", "scorer": "a scorer directory", "bundle": "a bundle (dist/)",
    "run": "a kd-train train/demo folder", "evaluation": "a kd-train evaluate report folder",
}


def _own_files(folder: Path, with_marker: bool = False):
    """The files under ``folder`` that are not inside a provable leftover (nor, unless ``with_marker``, the marker)."""
    for name in list_files(folder):
        parts = name.split("/")
        if any(is_leftover(folder.joinpath(*parts[:i])) for i in range(1, len(parts))):
            continue
        if with_marker or name != MARKER:
            yield name


def is_own_dir(folder: str | os.PathLike, kind: str) -> bool:
    """True when ``folder`` is empty or holds only what an earlier ``kind`` output of kd-train wrote."""
    folder = Path(folder)
    files = list(_own_files(folder, with_marker=True))
    if not files:
        return True
    marker = read_marker(folder)
    if marker is not None:
        if marker["kind"] != kind:
            return False
        if kind in ACCUMULATING:
            return True
        if kind == "evaluation" and not marker["files"]:   # marked without a file list before kd-train listed them
            return all(REPORT_FILE.fullmatch(f) for f in files if f != MARKER)
        return set(files) - {MARKER} <= set(marker["files"])
    legacy = LEGACY.get(kind)
    return legacy is not None and legacy(folder, files)


def refuse_foreign_dir(folder: Path, kind: str) -> None:
    if not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder; give --out a folder path (or remove the file)")
    if not is_own_dir(folder, kind):
        marker = read_marker(folder)
        what = f"holds {DESCRIPTIONS.get(marker['kind'], marker['kind'])}" if marker else "holds files kd-train did not write"
        raise UserError(f"{folder} is not empty and {what}; refusing to replace it: give --out a new or empty "
                        f"folder, or add --force to replace it")


# ---- output files ---------------------------------------------------------------------------------

def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.readline(4096).decode("utf-8-sig", "replace").strip()
    except OSError:
        return ""


FILE_KINDS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "scores": ("a scores CSV written by kd-train predict", lambda p: _first_line(p).startswith("id,item,score")),
    "soft-labels": ("a soft-label CSV written by kd-train label", lambda p: _first_line(p).startswith("id,item,p_")),
    "soft-labels-sidecar": ("a soft-label sidecar written by kd-train label",
                            lambda p: _first_line(p).startswith("{")),
}


def check_output_file(path: str | os.PathLike, kind: str, inputs: Iterable = (), force: bool = False,
                      option: str = "--out") -> Path:
    """Refuse an output file that is an input, is a folder, or would overwrite another kind of file."""
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give {option} a file path, such as {path / 'out.csv'}")
    description, is_kind = FILE_KINDS[kind]
    if path.exists() and not force and not is_kind(path):
        raise UserError(f"{path} exists and is not {description}; refusing to overwrite it: give {option} "
                        "another file name, or add --force to replace it")
    check_writable(path, option)
    lock_output(path, option)
    if path.exists() and not force and not is_kind(path):   # again, now that no other run can write it
        raise UserError(f"{path} exists and is not {description}; refusing to overwrite it: give {option} "
                        "another file name, or add --force to replace it")
    remove_leftovers(path)
    return path


def check_output_dir(path: str | os.PathLike, kind: str, inputs: Iterable = (), force: bool = False,
                     option: str = "--out") -> Path:
    """Refuse an output folder that is (or holds, or sits in) an input, or that holds what ``kind`` did not write."""
    path = Path(path)
    check_not_input(path, inputs, option)
    check_writable(path, option)
    for _ in range(2):   # before taking the lock (nothing is created for a refused output), and again after it
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise UserError(f"{path} is a file, not a folder; give {option} a folder path")
            if not force:
                refuse_foreign_dir(path, kind)
        if not lock_output(path, option):
            break
    remove_leftovers(path)
    return path


def check_writable(path: Path, option: str = "--out") -> None:
    """Fail now, not after an hour of training, when ``path``'s folder cannot be created or written."""
    ancestor = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if ancestor is None:
        return
    if not ancestor.is_dir():
        raise UserError(f"{ancestor} is a file, not a folder; give {option} a path inside a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor, prefix=f".{TMP_TAG}-probe-"):
            pass
    except OSError as err:
        raise UserError(f"{option} {path}: cannot write in {ancestor} ({err.strerror or err}); "
                        "choose a folder you can write to") from None


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def check_not_input(output: str | os.PathLike, inputs: Iterable, option: str = "--out") -> None:
    """An output may not be an input, contain one, or sit inside an input folder."""
    out = _real(output)
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        inp = _real(given)
        if out == inp:
            raise UserError(f"{option} {output} is also an input; writing there would destroy it: choose another path")
        if inp.is_relative_to(out):
            raise UserError(f"{option} {output} contains the input {given}; writing there could destroy it: "
                            "choose a folder that holds none of the inputs")
        if Path(given).is_dir() and out.is_relative_to(inp):
            raise UserError(f"{option} {output} is inside the input folder {given}; writing there would change "
                            "an input: choose a path outside it")



# ---- one writer per output -------------------------------------------------------------------------

_LOCKS: dict[str, tuple[int, Path, list[Path]]] = {}   # output -> (open lock file, its path, folders made for it)
_MADE: list[tuple[Path, str]] = []                    # output folders this process created (make_output_dir)


def _key(dst: str | os.PathLike) -> Path:
    dst = Path(dst)
    return Path(os.path.realpath(dst.parent)) / dst.name


def lock_path(dst: str | os.PathLike) -> Path:
    key = _key(dst)
    return key.parent / f".{key.name}.{LOCK_TAG}"


def _lock_text(fd: int) -> str:
    try:
        return os.pread(fd, 65536, 0).decode("utf-8", "replace")
    except OSError:
        return ""


def _lock_record(text: str) -> dict | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("kd_train_lock") == 1 else None


def lock_output(dst: str | os.PathLike, option: str = "--out") -> bool:
    """Take this process's exclusive lock on writing ``dst`` (``.<name>.kd-train-lock`` beside it, created or
    reused when it is kd-train's), until :func:`release_locks`. Refuses when another live kd-train run holds
    it. True when taken now; False when already held here, or where locks do not work (no fcntl, a file
    system without flock, a non-main process of a distributed run)."""
    try:
        import fcntl
    except ImportError:
        return False
    key = _key(dst)
    if str(key) in _LOCKS or os.environ.get("RANK", "0") != "0":
        return False
    made = [p for p in [key.parent, *key.parent.parents] if not p.exists()][::-1]
    key.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(dst)
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _lock_record(_lock_text(fd))
                if record is not None and owner_gone(record):   # held by a stray child of a killed run
                    with contextlib.suppress(OSError):
                        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                            os.unlink(path)
                    continue
                when = f", started {record['started']}" if record and record.get("started") else ""
                who = f" (pid {record['pid']}{when})" if record else ""
                raise UserError(f"another kd-train run{who} is writing to {dst}; wait for it to finish or choose "
                                f"another {option}")
            except OSError as err:
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    return False   # the file system cannot lock: go on unguarded, as before
                raise
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:   # the holder removed it as we opened it: lock the new one
                continue
            text = _lock_text(fd)
            if text.strip() and _lock_record(text) is None:
                raise UserError(f"{path} is in the way: kd-train locks {dst} with a file of that name and this one "
                                "is not kd-train's; move it away or choose another " + option)
            record = {"kd_train_lock": 1, **owner_record(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "command": " ".join(["kd-train", *sys.argv[1:]])[:300]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"), 0)
            _LOCKS[str(key)] = (fd, path, made)
            fd = -1
            return True
        finally:
            if fd >= 0:
                os.close(fd)
    raise UserError(f"{path} keeps changing; another kd-train run may be writing to {dst}: try again")


def holds_lock(dst: str | os.PathLike) -> bool:
    return str(_key(dst)) in _LOCKS


def unlock_output(dst: str | os.PathLike) -> None:
    """Release the lock on ``dst`` and remove its lock file (and the parent folders taken for it, if empty)."""
    held = _LOCKS.pop(str(_key(dst)), None)
    if held is None:
        return
    fd, path, made = held
    with contextlib.suppress(OSError):
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    os.close(fd)
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()   # only when still empty


def make_output_dir(folder: str | os.PathLike, kind: str) -> Path:
    """Create ``folder`` (when new) and mark it as ``kind``'s; a folder this run created is removed again by
    :func:`release_locks` when the run fails before writing anything else into it."""
    folder = Path(folder)
    if not folder.exists():
        folder.mkdir(parents=True)
        _MADE.append((folder, kind))
    if (read_marker(folder) or {}).get("kind") != kind:
        write_marker(folder, kind, hashes=False)
    return folder


def release_locks(failed: bool = False) -> None:
    """End of a run: with ``failed``, remove the output folders it created that hold nothing but their marker
    (and provable leftovers); then release every lock it holds."""
    while _MADE:
        folder, kind = _MADE.pop()
        if failed and folder.is_dir() and not any(True for _ in _own_files(folder)):
            marker = read_marker(folder)
            if marker is not None and marker.get("kind") == kind:
                shutil.rmtree(folder, ignore_errors=True)
    for key in list(_LOCKS):
        unlock_output(key)


atexit.register(release_locks)
