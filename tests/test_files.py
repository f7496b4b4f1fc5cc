"""Writes that never leave half a file behind, and never write through into another link of the old file."""

from __future__ import annotations

import os

import pytest

from kd_train.files import atomic_write_bytes, atomic_write_text


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
