"""Soft labels (contract 2 of docs/design.md): class probabilities per answer plus the teacher's fingerprint.

A soft-label file is a CSV ``id, item, p_<score>...`` (rows sum to 1) with a JSON sidecar beside
it (same name, ``.json``) holding the fingerprint of whatever produced it. Distillation reads these
files and does not care where the probabilities came from: a fine-tuned encoder, or an API model
asked several times whose sampled scores became an empirical distribution.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kd_train.data import DataError, Table, parse_int, read_records, where
from kd_train.files import sha256_file
from kd_train.temps import atomic_write_text

FORMAT_VERSION = 1
NOT_FINGERPRINT = ("format_version", "score_values", "csv_sha256")   # sidecar keys about the file itself


@dataclass
class SoftLabels:
    ids: list[str]
    items: list[str]
    score_values: list[int]
    probs: np.ndarray  # [n, len(score_values)], float64, rows sum to 1
    fingerprint: dict

    def lookup(self, ids: list[str]) -> np.ndarray:
        """Probabilities for ``ids`` in that order; DataError names the first id that has none."""
        index = {rid: i for i, rid in enumerate(self.ids)}
        missing = [rid for rid in ids if rid not in index]
        if missing:
            raise DataError(
                f"soft labels lack {len(missing)} of {len(ids)} answers (first: id {missing[0]!r}); "
                "label that table with the teacher first (kd-train label)"
            )
        return self.probs[[index[rid] for rid in ids]]


def merge(parts: list[SoftLabels]) -> SoftLabels:
    """One SoftLabels over several files' answers (same score values; fingerprints listed)."""
    values = parts[0].score_values
    if any(p.score_values != values for p in parts):
        raise DataError("soft-label files disagree on the score values; label them with the same teacher")
    return SoftLabels(
        ids=[i for p in parts for i in p.ids],
        items=[i for p in parts for i in p.items],
        score_values=values,
        probs=np.concatenate([p.probs for p in parts]),
        fingerprint=parts[0].fingerprint if len(parts) == 1 else {"parts": [p.fingerprint for p in parts]},
    )


def sidecar(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def write(path: str | os.PathLike, labels: SoftLabels) -> None:
    """Write the CSV and its fingerprint sidecar, each atomically (sidecar last: it marks completeness)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "item"] + [f"p_{v}" for v in labels.score_values])
    for rid, item, row in zip(labels.ids, labels.items, labels.probs):
        writer.writerow([rid, item] + [repr(float(p)) for p in row])
    text = buf.getvalue()
    sidecar(path).unlink(missing_ok=True)
    atomic_write_text(path, text)
    meta = {"format_version": FORMAT_VERSION, "score_values": labels.score_values, **labels.fingerprint,
            "csv_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}   # a CSV changed since is not reused
    atomic_write_text(sidecar(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read(path: str | os.PathLike) -> SoftLabels:
    """Read a soft-label CSV and its sidecar, checking that each row is a probability distribution."""
    path = str(path)
    meta_path = sidecar(path)
    if not meta_path.is_file():
        raise DataError(f"{path}: no fingerprint sidecar {meta_path.name} beside it; re-create it with kd-train label")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    values = [int(v) for v in meta["score_values"]]
    columns = tuple(f"p_{v}" for v in values)
    ids, items, rows = [], [], []
    for row, line, rec in read_records(path, ("id", "item") + columns, "soft-label table"):
        try:
            p = [float(rec[c]) for c in columns]
        except ValueError:
            raise DataError(f"{where(path, row, line)}: probabilities must be numbers") from None
        if any(x < 0 or x != x for x in p) or abs(sum(p) - 1.0) > 1e-4:
            raise DataError(f"{where(path, row, line)}: probabilities must be ≥ 0 and sum to 1 (sum {sum(p):.6f})")
        ids.append(rec["id"].strip())
        items.append(rec["item"].strip())
        rows.append(p)
    fingerprint = {k: v for k, v in meta.items() if k not in NOT_FINGERPRINT}
    return SoftLabels(ids, items, values, np.asarray(rows, dtype=np.float64), fingerprint)


def is_cached(path: str | os.PathLike, fingerprint: dict) -> bool:
    """True when ``path`` exists with a sidecar whose fingerprint equals ``fingerprint`` and that
    recorded the CSV's sha256 as it is now (a CSV edited, cut or damaged since is labelled again)."""
    meta_path = sidecar(path)
    if not Path(path).is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    stored = {k: v for k, v in meta.items() if k not in NOT_FINGERPRINT}
    return stored == json.loads(json.dumps(fingerprint)) and meta.get("csv_sha256") == sha256_file(path)


def from_samples(path: str | os.PathLike, score_values: list[int] | None = None, smoothing: float = 0.0) -> SoftLabels:
    """Turn sampled scores (rows ``id, item, score``, several rows per answer) into distributions.

    ``smoothing`` adds that many pseudo-counts to every score value (additive smoothing), so a score
    the sampler never gave keeps a little probability.
    """
    if smoothing < 0:
        raise DataError(f"--smoothing must be ≥ 0, got {smoothing}")
    path = str(path)
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    item_of: dict[str, str] = {}
    for row, line, rec in read_records(path, ("id", "item", "score"), "sampled-score table"):
        rid, item = rec["id"].strip(), rec["item"].strip()
        score = parse_int(rec["score"], path, row, line, "score", allow_empty=False)
        if rid in item_of and item_of[rid] != item:
            raise DataError(f"{where(path, row, line, 'item')}: id {rid!r} was item {item_of[rid]!r} on an earlier row")
        item_of[rid] = item
        counts[rid][score] += 1
    if not counts:
        raise DataError(f"{where(path)}: the header is there but there are no data rows; add rows id, item, score")
    observed = sorted({s for c in counts.values() for s in c})
    values = score_values or observed
    stray = [s for s in observed if s not in values]
    if stray:
        raise DataError(f"{where(path)}: sampled score {stray[0]} is not one of the score values {values}")
    ids = list(counts)
    probs = np.array([[counts[rid].get(v, 0) + smoothing for v in values] for rid in ids], dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    fingerprint = {"source": "sampled scores", "samples_sha256": sha256_file(path), "smoothing": smoothing}
    return SoftLabels(ids, [item_of[r] for r in ids], values, probs, fingerprint)


def table_sha256(table: Table) -> str:
    return sha256_file(table.path)
