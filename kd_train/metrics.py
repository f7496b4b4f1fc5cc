"""Scoring metrics: accuracy, quadratic weighted kappa (QWK), macro-F1, the Fisher-z mean, the decision rules
(most probable score, cutpoints on the expected score), and their means over items. The run's report is
kd_train/report.py; the validity table, kd_train/validity.py."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def qwk(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Quadratic weighted kappa; 0.0 where it is undefined (e.g. both raters constant and equal).

    Rounded to 12 decimals: a kappa that is 0 in exact arithmetic can come out as 1e-16, and the
    early-stopping rules ("patience counts once QWK is above 0") must read it as 0. A SAF teacher
    stopped after 4 of 20 epochs, still at chance, on such a 1.1e-16.
    """
    from sklearn.metrics import cohen_kappa_score   # here: scoring answers (kd_train.scorer) needs no sklearn

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    return 0.0 if math.isnan(k) else round(float(k), 12) + 0.0   # + 0.0: no -0.0


def decide(probs: np.ndarray, cutpoints: Sequence[float] | None = None) -> np.ndarray:
    """The index of the score given to each row of probabilities: the most probable score, or, with
    ``cutpoints`` (k − 1 increasing numbers), how many of them the expected score index Σ p_i·i exceeds.

    The sum runs in float64 from index 0 up, one term at a time, as the page's main.js adds it, so both
    give the same score for the same float32 probabilities.
    """
    probs = np.asarray(probs)
    if not cutpoints:
        return probs.argmax(axis=1)
    return np.searchsorted(np.asarray(cutpoints, dtype=np.float64), expected_index(probs), side="left")


def expected_index(probs: np.ndarray) -> np.ndarray:
    """Σ p_i·i of each row, in float64, added term by term from i = 0 (see ``decide``)."""
    probs = np.asarray(probs)
    expected = np.zeros(len(probs))
    for i in range(probs.shape[1]):
        expected += probs[:, i].astype(np.float64) * i
    return expected


def fisher_mean(kappas: Sequence[float]) -> float:
    """Mean of kappas through Fisher's z (the Kaggle ASAP-SAS average), clipped at |k| < 0.999."""
    if not kappas:
        return float("nan")
    z = [math.atanh(max(-0.999, min(0.999, k))) for k in kappas]
    return math.tanh(sum(z) / len(z))


def score_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> dict:
    """Accuracy, QWK, macro-F1 and the confusion matrix (rows: true, columns: predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {
        "n": len(y_true),
        "acc": float(accuracy_score(y_true, y_pred)),
        "qwk": qwk(y_true, y_pred, labels),
        "f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }


MODEL_NAMES = {
    "teacher": "Teacher (the pretrained encoder fine-tuned, or frozen + logistic regression on small items)",
    "student": "KD student",
    "ann": "ANN (same network, human scores only)",
    "tinybert_like": "Small transformer student (the teacher's first layers distilled from it; a TinyBERT stand-in)",
    "hashing_lr": "Hashing + logistic regression",
    "sequence": "KD sequence student (hashed words in order, embeddings from the teacher's encoder, convolutions)",
    "shipped": "Shipped scorer (the best candidate on validation, scoring by its own rule: most probable score or cutpoints)",
}


def mean_metrics(per_item: list[dict]) -> dict:
    """One model's means over items ({acc, qwk, f1} each): mean_acc, mean_qwk, fisher_qwk (Fisher-z), mean_f1."""
    return {"mean_acc": float(np.mean([m["acc"] for m in per_item])),
            "mean_qwk": float(np.mean([m["qwk"] for m in per_item])),
            "fisher_qwk": fisher_mean([m["qwk"] for m in per_item]),
            "mean_f1": float(np.mean([m["f1"] for m in per_item]))}


def summarize(item_reports: list[dict], split: str = "test") -> dict:
    """Per-model means over items: {name: {params, mean_acc, mean_qwk, fisher_qwk, mean_f1, items}}."""
    models: dict[str, dict] = {}
    for report in item_reports:
        for name, m in report["models"].items():
            if split not in m:
                continue
            entry = models.setdefault(name, {"params": 0, "items": {}})
            entry["params"] = max(entry["params"], int(m.get("params") or 0))
            entry["items"][str(report["item"])] = {k: m[split][k] for k in ("acc", "qwk", "f1")} | {"n": m[split]["n"]}
    for entry in models.values():
        entry |= mean_metrics(list(entry["items"].values()))
    order = [n for n in MODEL_NAMES if n in models] + sorted(n for n in models if n not in MODEL_NAMES)
    return {n: models[n] for n in order}


def flag_shares(found: list[list[str]]) -> dict:
    """{n, flagged, flagged_by: {code: share}} of per-answer detector flags (kd_train/detect.py codes)."""
    n = max(len(found), 1)
    codes = sorted({code for codes in found for code in codes})
    return {"n": len(found), "flagged": sum(map(bool, found)) / n,
            "flagged_by": {code: sum(code in f for f in found) / n for code in codes}}


def qwk_rows(h: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """QWK of each row of ``h`` and ``m`` (label indices 0..k-1, shape (B, n)), as qwk() computes it with k
    sorted labels; NaN where undefined. Vectorised so that a 1000-resample bootstrap takes milliseconds."""
    b, n = h.shape
    cells = (h * k + m + (np.arange(b) * k * k)[:, None]).ravel()
    obs = np.bincount(cells, minlength=b * k * k).reshape(b, k, k).astype(float)
    expected = obs.sum(2)[:, :, None] * obs.sum(1)[:, None, :] / n
    w = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2.0
    num, den = (w * obs).sum((1, 2)), (w * expected).sum((1, 2))
    return 1.0 - np.divide(num, den, out=np.full(b, np.nan), where=den > 0)
