"""File helpers shared by every stage: hashing, writes that never leave half a file behind, and the
output guards that keep every verb from replacing what it did not write.

The rule for every ``--out``: a folder is replaced only when it is empty or is recognisably this
verb's own earlier output (its ``kd-train.json`` marker, listing the files kd-train wrote there), a
file only when it is this verb's own kind of file; ``--force`` lifts that, never the rule that an
output may not be, contain or sit inside an input. New outputs are built in a hidden temporary
sibling (``.<name>.kd-train-tmp-<pid>-<random>``) and renamed into place; such siblings left by a
killed run are removed by the next run that writes the same output.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from kd_train.data import UserError

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
TMP_TAG = "kd-train-tmp"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- atomic writes -----------------------------------------------------------------------------

def temp_path(dst: Path, owner: int | None = None) -> str:
    """Prefix of a temporary sibling of ``dst`` owned by process ``owner`` (default: this one)."""
    return f".{dst.name}.{TMP_TAG}-{owner or os.getpid()}-"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path`` and rename it into place."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_path(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_temp_dir(dst: str | os.PathLike, owner: int | None = None) -> Path:
    """A new, empty hidden folder beside ``dst`` to build it in (then :func:`replace_dir`)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=temp_path(dst, owner), dir=dst.parent))


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike, kind: str, force: bool = False,
                marker: bool = True) -> None:
    """Move the complete folder ``src`` to ``dst``, replacing an existing ``dst`` only at the last moment,
    and only when :func:`is_own_dir` says it is ``kind``'s own output (or ``force``).

    With ``marker``, ``src`` first gets its ``kd-train.json``: the kind and each file's sha256 and size.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and not force:
        refuse_foreign_dir(dst, kind)
    if marker:
        write_marker(src, kind)
    old = dst.parent / f".{dst.name}.{TMP_TAG}-{os.getpid()}-old"
    shutil.rmtree(old, ignore_errors=True)
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        dst.rename(old)
    src.chmod(0o755)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


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
ACCUMULATING = {"run", "evaluation"}

DESCRIPTIONS = {
    "teacher": "a teacher folder", "scorer": "a scorer directory", "bundle": "a bundle (dist/)",
    "run": "a kd-train train/demo folder", "evaluation": "a kd-train evaluate report folder",
}


def is_own_dir(folder: str | os.PathLike, kind: str) -> bool:
    """True when ``folder`` is empty or holds only what an earlier ``kind`` output of kd-train wrote."""
    folder = Path(folder)
    files = [f for f in list_files(folder) if not _is_leftover(folder / f)]
    if not files:
        return True
    marker = read_marker(folder)
    if marker is not None:
        if marker["kind"] != kind:
            return False
        return kind in ACCUMULATING or set(files) - {MARKER} <= set(marker["files"])
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
    remove_leftovers(path)
    return path


def check_output_dir(path: str | os.PathLike, kind: str, inputs: Iterable = (), force: bool = False,
                     option: str = "--out") -> Path:
    """Refuse an output folder that is (or holds, or sits in) an input, or that holds what ``kind`` did not write."""
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UserError(f"{path} is a file, not a folder; give {option} a folder path")
        if not force:
            refuse_foreign_dir(path, kind)
    check_writable(path, option)
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


# ---- leftovers of killed runs ----------------------------------------------------------------------

_TMP_RE = re.compile(rf"\.{TMP_TAG}-(\d+)-")
_LEGACY_TMP_RE = re.compile(r"\.(?:partial|old|building\.[A-Za-z0-9_]{8}|[a-z0-9_]{8}|[A-Za-z0-9_]{8}\.tmp)$")


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


def _is_leftover(path: Path) -> bool:
    match = _TMP_RE.search(path.name)
    return bool(match) and path.name.startswith(".") and not _pid_alive(int(match.group(1)))


def leftovers(dst: str | os.PathLike) -> list[Path]:
    """Temporary siblings of ``dst`` left by killed runs (this version's, and the names older versions used)."""
    dst = Path(dst)
    if not dst.parent.is_dir():
        return []
    prefix = f".{dst.name}."
    found = []
    for p in dst.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        rest = p.name[len(prefix) - 1:]
        if _is_leftover(p) or (not _TMP_RE.search(p.name) and _LEGACY_TMP_RE.fullmatch(rest)):
            found.append(p)
    return sorted(found)


def remove_leftovers(dst: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove :func:`leftovers` of ``dst``, saying so on stderr."""
    log = log or (lambda message: print(message, file=sys.stderr))
    removed = []
    for p in leftovers(dst):
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        except OSError:
            continue
        removed.append(p)
        log(f"removed {p}, left behind by an interrupted run")
    return removed
