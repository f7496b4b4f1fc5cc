"""The repository carries no text from ASAP-SAS: no answer, no question, no rubric (the data stays
in its shared folder; code and benchmarks read it from there)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from kd_train.data import ASAP_FILES, default_data_root

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 40          # characters: long enough that a match is a copy, not a common phrase


def _wordy(text: str) -> bool:
    return sum(c.isalpha() for c in text) >= WINDOW * 5 // 8      # not runs of spaces or digits


def _snippets(folder: Path) -> set[str]:
    """Windows of every item text, and one from the middle of every answer long enough."""
    snippets = set()
    with open(folder / ASAP_FILES["items"], encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for key, text in row.items():
                text = (text or "").strip()
                if key != "item" and len(text) >= WINDOW:
                    snippets.update(text[i:i + WINDOW] for i in range(0, len(text) - WINDOW + 1, 50))
    for name in ("train", "test", "unlabeled"):
        with open(folder / ASAP_FILES[name], encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                text = row.get("response") or ""
                if len(text) >= 2 * WINDOW:
                    mid = len(text) // 2
                    snippets.add(text[mid - WINDOW // 2:mid + WINDOW // 2])
    return set(filter(_wordy, snippets))


def _tracked_texts():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue                                  # binary files (images), submodules
        yield name, text
        if "\\" in text:                              # JSON/CSV escapes: match the text they stand for
            yield name, text.replace('\\"', '"').replace("\\n", "\n").replace("\\u2019", "\u2019")


def test_no_asap_text_is_committed():
    folder = default_data_root() / "asap-sas"
    if not (folder / ASAP_FILES["items"]).is_file():
        pytest.skip("ASAP-SAS not found at ../shared/datasets (set KD_TRAIN_DATA)")
    if subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    snippets = _snippets(folder)
    copies = {}
    for name, text in _tracked_texts():
        hits = {text[i:i + WINDOW] for i in range(len(text) - WINDOW + 1)} & snippets
        if hits:
            copies[name] = sorted(hits)[0]
    assert not copies, f"dataset text committed in {sorted(copies)}: e.g. {next(iter(copies.values()))!r}; remove it"
