"""Train one item end to end: teacher -> soft labels -> student -> scorer directory (+ baselines).

Everything lands in ``out/<item>/`` and doubles as a cache: a teacher whose settings and training
table are unchanged is reused, and soft labels are reused by their fingerprint, so re-running the
student side takes minutes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from kd_train import baselines, soft_labels, teacher
from kd_train.data import Item, Table, item_folder
from kd_train.distill import StudentConfig, distill_item, kd_loss
from kd_train.files import atomic_write_text, sha256_file
from kd_train.metrics import score_metrics
from kd_train.scorer import write_scorer


@dataclass
class PipelineConfig:
    teacher: teacher.TeacherConfig = field(default_factory=teacher.TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    featurizer: dict | None = None  # None: featurize.DEFAULT_CONFIG
    baselines: bool = False  # ANN and hashing + logistic regression
    tinybert: bool = False  # the TinyBERT-like stand-in (slow: a 3-layer transformer)
    tinybert_layers: int = 3
    use_transfer: bool = True
    force: bool = False  # replace teacher and scorer folders even when kd-train did not write them


def _cached_teacher(folder: Path, config: teacher.TeacherConfig, train: Table) -> dict | None:
    try:
        meta = teacher.read_meta(folder)
    except teacher.ModelError:
        return None
    same = meta["config"] == asdict(config) and meta["train_sha256"] == sha256_file(train.path)
    return meta if same else None


def _teacher(out: Path, item: Item, values: list[int], train: Table, test: Table | None, config: teacher.TeacherConfig,
             name: str = "teacher", soft: teacher.SoftTargets | None = None, log=print, force: bool = False) -> dict:
    meta = _cached_teacher(out / name, config, train)
    if meta is not None:
        log(f"  {name}: reusing {out / name}")
        return meta
    log(f"  {name}: fine-tuning ({'distilled, ' if soft else ''}{config.layers or 'all'} layers)")
    return teacher.fine_tune(train, item.item, values, out / name, config, question=item.question, test=test, soft=soft,
                             force=force)


def _test_metrics(labels: soft_labels.SoftLabels, test: Table, values: list[int]) -> dict:
    pred = [values[i] for i in labels.lookup(test.ids).argmax(axis=1)]
    return score_metrics(test.scores, pred, values)


def run_item(
    item: Item, values: list[int], train: Table, test: Table | None, unlabeled: Table | None,
    out: str | Path, config: PipelineConfig, log=print,
) -> dict:
    """Train ``item``'s teacher, soft labels, student (and baselines); write out/<folder>/ and its report,
    where <folder> is :func:`kd_train.data.item_folder` of the item id (safe for any id)."""
    from kd_train import featurize

    started = time.time()
    out = Path(out) / item_folder(item.item)
    fconfig = featurize.validate_config(config.featurizer or featurize.DEFAULT_CONFIG)
    train = train.for_item(item.item)
    test = test.for_item(item.item).labelled() if test is not None else None
    unlabeled = unlabeled.for_item(item.item) if unlabeled is not None else None
    report: dict = {"item": item.item, "score_values": values, "models": {}}

    meta = _teacher(out, item, values, train, test, config.teacher, log=log, force=config.force)
    soft_train, _ = teacher.label(out / "teacher", train, out / "soft-train.csv")
    parts = [soft_train]
    if unlabeled is not None and len(unlabeled):
        parts.append(teacher.label(out / "teacher", unlabeled, out / "soft-unlabeled.csv")[0])
    soft_test = teacher.label(out / "teacher", test, out / "soft-test.csv")[0] if test is not None and len(test) else None
    if soft_test is not None:
        parts.append(soft_test)
    soft = soft_labels.merge(parts)
    report["models"]["teacher"] = {"params": meta["params"], **({"test": _test_metrics(soft_test, test, values)} if soft_test else {})}

    transfer = unlabeled if config.use_transfer and unlabeled is not None and len(unlabeled) else None
    log(f"  student: distilling (α={config.student.alpha}, T={config.student.temperature}"
        f"{f', {len(transfer)} transfer answers' if transfer is not None else ''})")
    model, student = distill_item(train, item.item, values, fconfig, config.student, soft, transfer, test)
    report["models"]["student"] = {"params": student["params"], **student["metrics"]}

    if config.baselines:
        log("  baselines: ANN (same network, human scores only), hashing + logistic regression")
        ann_config = StudentConfig(**{**asdict(config.student), "alpha": 0.0, "lam": 0.0})
        _, ann = distill_item(train, item.item, values, fconfig, ann_config, soft, None, test)
        report["models"]["ann"] = {"params": ann["params"], **ann["metrics"]}
        lr = baselines.hashing_lr(train, item.item, values, fconfig, test, seed=config.student.seed)
        report["models"]["hashing_lr"] = {"params": lr["params"], **lr["metrics"]}
    if config.tinybert:
        small = teacher.TeacherConfig(**{**asdict(config.teacher), "layers": config.tinybert_layers, "folds": 0})
        targets = teacher.SoftTargets(soft.ids, soft.probs, partial(kd_loss, alpha=1.0, temperature=1.0), transfer)
        tiny = _teacher(out, item, values, train, test, small, name="tinybert_like", soft=targets, log=log,
                        force=config.force)
        report["models"]["tinybert_like"] = {"params": tiny["params"], **tiny["metrics"]}

    teacher_fp = soft_train.fingerprint | {"test_metrics": report["models"]["teacher"].get("test")}
    others = {k: {"params": v["params"], **{m: v["test"][m] for m in ("acc", "qwk", "f1")}}
              for k, v in report["models"].items() if k != "student" and "test" in v}
    training = student["training"] | {"student_config": asdict(config.student)}
    write_scorer(out / "scorer", model, item=item.item, question=item.question, score_values=values,
                 featurizer_config=fconfig, metrics=student["metrics"], teacher=teacher_fp, training=training,
                 baselines=others, force=config.force)
    report["wall_s"] = round(time.time() - started, 1)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report
