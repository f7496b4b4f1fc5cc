"""The teacher outputs cached by `kd-train train --asap --out CACHE`: which items have them, and loading them.

Per item, `CACHE/<item>/` holds `teacher/teacher.json` (+ weights), the soft labels `soft-train.csv`,
`soft-unlabeled.csv`, `soft-test.csv` (each with a .json sidecar) and the pipeline's `scorer/`. The
benchmark only reads them: it never trains or runs a transformer to fill a gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from kd_train import soft_labels
from kd_train.config import FeaturizerConfig
from kd_train.files import sha256_file
from kd_train.data import Dataset, Table
from kd_train.distill import StudentConfig

SOFT_PARTS = ("train", "unlabeled", "test")


@dataclass
class CachedItem:
    """One item's data (train rows with scores, test, unlabeled) and its cached teacher outputs."""

    item: str
    folder: Path
    values: list[int]
    labelled: Table
    test: Table
    unlabeled: Table
    soft: soft_labels.SoftLabels  # train + unlabeled + test answers, merged
    soft_train: soft_labels.SoftLabels
    teacher_meta: dict
    student_config: StudentConfig  # the settings the pipeline distilled this item's scorer with
    featurizer: FeaturizerConfig  # the featurizer the pipeline used (scorer.json's; featurize.py's defaults before one exists)


def missing_reason(folder: Path, train_sha256: str) -> str | None:
    """Why ``folder`` cannot be used (None: it can)."""
    if not folder.is_dir():
        return "not in the cache: its teacher has not been trained yet"
    if not (folder / "teacher" / "teacher.json").is_file():
        return "no teacher/teacher.json: teacher not trained (or still training)"
    for part in SOFT_PARTS:
        if not (folder / f"soft-{part}.csv").is_file() or not (folder / f"soft-{part}.json").is_file():
            return f"teacher trained but soft-{part}.csv (+ .json sidecar) not written yet"
    sidecar = json.loads((folder / "soft-train.json").read_text(encoding="utf-8"))
    if sidecar.get("table_sha256") != train_sha256:
        return "stale: its soft labels were made from a different train.csv (sha256 differs)"
    return None


def _student_config(info: dict | None) -> StudentConfig:
    saved = (info or {}).get("training", {}).get("student_config", {})
    names = {f.name for f in fields(StudentConfig)}
    return StudentConfig(**{k: v for k, v in saved.items() if k in names})


def load_item(folder: Path, item: str, data: Dataset) -> CachedItem:
    parts = {p: soft_labels.read(folder / f"soft-{p}.csv") for p in SOFT_PARTS}
    scorer_json = folder / "scorer" / "scorer.json"
    info = json.loads(scorer_json.read_text(encoding="utf-8")) if scorer_json.is_file() else None
    meta = json.loads((folder / "teacher" / "teacher.json").read_text(encoding="utf-8"))
    return CachedItem(
        item=item,
        folder=folder,
        values=meta["score_values"],
        labelled=data.train.for_item(item).labelled(),
        test=data.test.for_item(item).labelled(),
        unlabeled=data.unlabeled.for_item(item),
        soft=soft_labels.merge([parts[p] for p in SOFT_PARTS]),
        soft_train=parts["train"],
        teacher_meta=meta,
        student_config=_student_config(info),
        featurizer=FeaturizerConfig.from_dict(info["featurizer"]) if info else FeaturizerConfig(),
    )


def find_items(cache: Path, wanted: list[str] | None, data: Dataset) -> tuple[list[CachedItem], dict[str, str]]:
    """(items with complete teacher outputs, {item: why it is missing}) over ``wanted`` (default: all)."""
    all_items = sorted(data.items, key=lambda s: (len(s), s))
    train_sha256 = sha256_file(data.train.path)
    included, missing = [], {}
    for item in wanted or all_items:
        if item not in data.items:
            missing[item] = "not an ASAP-SAS item"
            continue
        reason = missing_reason(cache / item, train_sha256)
        if reason is None:
            included.append(load_item(cache / item, item, data))
        else:
            missing[item] = reason
    for item in all_items:
        if wanted and item not in wanted:
            missing[item] = "not requested (--items)"
    return included, missing
