"""Scoring metrics: accuracy, quadratic weighted kappa (QWK), macro-F1, and the Fisher-z mean."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score


def qwk(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int] | None = None) -> float:
    """Quadratic weighted kappa; 0.0 where it is undefined (e.g. both raters constant and equal)."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    return 0.0 if math.isnan(k) else float(k)


def fisher_mean(kappas: Sequence[float]) -> float:
    """Mean of kappas through Fisher's z (the Kaggle ASAP-SAS average), clipped at |k| < 0.999."""
    if not kappas:
        return float("nan")
    z = [math.atanh(max(-0.999, min(0.999, k))) for k in kappas]
    return math.tanh(sum(z) / len(z))


def score_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> dict:
    """Accuracy, QWK, macro-F1 and the confusion matrix (rows: true, columns: predicted)."""
    return {
        "n": len(y_true),
        "acc": float(accuracy_score(y_true, y_pred)),
        "qwk": qwk(y_true, y_pred, labels),
        "f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }
