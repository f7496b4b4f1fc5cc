"""fastText supervised (PyPI `fasttext-wheel`), the practitioner's small fast text classifier, as .bin and .ftz.

Settings are chosen per item on the student's validation split (seed 0) — never on test_public —
then that model is scored on test_public and quantized (`.ftz`). Deterministic: one thread, fixed
seed. With numpy 2, `model.predict` raises; `model.f.predict(text + "\\n", k, 0.0, "strict")` works.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench.cache import CachedItem
from kd_train.data import Table, stratified_split
from kd_train.metrics import score_metrics

_TOKEN = re.compile(r"\w+|[^\w\s]")
LABEL = "__label__"
FIXED = {"dim": 50, "bucket": 100_000, "thread": 1, "verbose": 0}
GRID = {"lr": (0.25, 1.0), "epoch": (5, 25), "wordNgrams": (1, 2), "chars": ((0, 0), (2, 5))}
QUICK_GRID = {"lr": (0.5,), "epoch": (25,), "wordNgrams": (1, 2), "chars": ((0, 0), (2, 5))}


def prep(text: str) -> str:
    """Lower-case, words and punctuation split by spaces, one line (fastText splits on whitespace)."""
    return " ".join(_TOKEN.findall(text.lower()))


def predict_one(model, text: str) -> str:
    return model.f.predict(prep(text) + "\n", 1, 0.0, "strict")[0][1]


def predict(model, responses: list[str]) -> list[int]:
    return [int(predict_one(model, r)[len(LABEL):]) for r in responses]


def write_train_file(table: Table, path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for text, score in zip(table.responses, table.scores):
            fh.write(f"{LABEL}{score} {prep(text)}\n")
    return path


def settings(grid: dict) -> list[dict]:
    return [{"lr": lr, "epoch": epoch, "wordNgrams": ngrams, "minn": minn, "maxn": maxn}
            for lr, epoch, ngrams, (minn, maxn) in itertools.product(*(grid[k] for k in ("lr", "epoch", "wordNgrams", "chars")))]


def param_count(model) -> int:
    inp, out = model.get_input_matrix(), model.get_output_matrix()
    return int(inp.size + out.size)


@dataclass
class FastTextResult:
    report: dict  # params, bytes, settings, val/test metrics (and the .ftz's)
    bin_path: Path
    ftz_path: Path


def run_item(item: CachedItem, work: Path, grid: dict, seed: int = 0) -> FastTextResult:
    """Tune on the student's val split, keep the best model as .bin, quantize it to .ftz; score both on test."""
    import fasttext

    fit, val = stratified_split(item.labelled, item.student_config.val_fraction, seed)
    train_file = write_train_file(fit, work / f"fasttext-{item.item}.txt")
    best = None
    for setting in settings(grid):
        model = fasttext.train_supervised(str(train_file), seed=seed, **FIXED, **setting)
        m = score_metrics(val.scores, predict(model, val.responses), item.values)
        if best is None or m["qwk"] > best[1]["qwk"]:
            best = (model, m, setting)
    model, val_metrics, setting = best
    bin_path, ftz_path = work / f"fasttext-{item.item}.bin", work / f"fasttext-{item.item}.ftz"
    model.save_model(str(bin_path))
    report = {"params": param_count(model), "bytes": os.path.getsize(bin_path), "settings": setting | FIXED,
              "val": val_metrics, "test": score_metrics(item.test.scores, predict(model, item.test.responses), item.values)}
    model.quantize(input=str(train_file), qnorm=True, retrain=False, cutoff=0, thread=1, verbose=0)
    model.save_model(str(ftz_path))
    ftz = {"params": report["params"], "bytes": os.path.getsize(ftz_path), "settings": report["settings"] | {"quantized": True},
           "test": score_metrics(item.test.scores, predict(model, item.test.responses), item.values)}
    report["ftz"] = ftz
    return FastTextResult(report, bin_path, ftz_path)
