"""Baselines evaluated exactly like the student: hashing + logistic regression (scikit-learn).

(The ANN baseline is the student trained on human scores only: ``distill_item`` with no soft
labels. The TinyBERT-like stand-in is ``teacher.fine_tune`` with ``layers=3`` and ``SoftTargets``.)
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

from kd_train.config import FeaturizerConfig
from kd_train.data import Table, stratified_folds, stratified_split
from kd_train.metrics import score_metrics
from kd_train.student import Student, featurize_all

ABSENT_LOGIT = -30.0   # a score value the regression never saw: probability ≈ 1e-13 after softmax


def hashing_lr(
    train: Table, item: str, score_values: list[int], featurizer_config: FeaturizerConfig, test: Table | None,
    seed: int = 0, val_fraction: float = 0.1, c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0),
    cv_folds: int = 0,
) -> dict:
    """Logistic regression on the featurizer's vector; C chosen on the student's validation split, or,
    with ``cv_folds``, by the pooled out-of-fold QWK of k-fold cross-validation (then refitted on every
    labelled answer; ``report["oof"]`` holds the out-of-fold logits, as distill_item's does).

    The features go in as a sparse matrix: scipy's single-threaded products make the fit the same
    on any machine (dense input went through multi-threaded BLAS, whose sums vary with the threads).
    """
    labelled = train.for_item(item).labelled()
    if cv_folds:
        model, val_metrics, c, oof = _cross_validated(labelled, score_values, featurizer_config, seed, c_grid, cv_folds)
    else:
        fit, val = stratified_split(labelled, val_fraction, seed)
        x_fit, x_val = _features(fit.responses, featurizer_config), _features(val.responses, featurizer_config)
        best = None
        for c in c_grid:
            model = _fit(x_fit, fit.scores, c, seed)
            m = score_metrics(val.scores, model.predict(x_val).tolist(), score_values)
            if best is None or m["qwk"] > best[1]["qwk"]:
                best = (model, m, c)
        (model, val_metrics, c), oof = best, None
    n_classes = len(model.classes_)
    report = {"params": int(model.coef_.size + model.intercept_.size), "C": c,
              "metrics": {"val": val_metrics}, "classes": model.classes_.tolist(), "n_classes": n_classes,
              "model": model}
    if oof is not None:
        report["oof"] = oof
    if test is not None:
        rows = test.for_item(item).labelled()
        if len(rows):
            pred = model.predict(_features(rows.responses, featurizer_config)).tolist()
            report["metrics"]["test"] = score_metrics(rows.scores, pred, score_values)
    return report


def _fit(x, scores: list[int], c: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, scores)


def _cross_validated(labelled: Table, score_values: list[int], featurizer_config: FeaturizerConfig, seed: int,
                     c_grid: tuple[float, ...], k: int):
    x = _features(labelled.responses, featurizer_config)
    folds = stratified_folds(labelled, k, seed)
    best = None
    for c in c_grid:
        logits = np.full((len(labelled), len(score_values)), ABSENT_LOGIT)
        for held_out in folds:
            keep = np.setdiff1d(np.arange(len(labelled)), held_out)
            model = _fit(x[keep], [labelled.scores[i] for i in keep], c, seed)
            columns = [score_values.index(int(v)) for v in model.classes_]
            logits[np.ix_(held_out, columns)] = np.log(np.clip(model.predict_proba(x[held_out]), 1e-13, None))
        pred = [score_values[i] for i in logits.argmax(axis=1)]
        m = score_metrics(labelled.scores, pred, score_values) | {"cross_validated": True}
        if best is None or m["qwk"] > best[1]["qwk"]:
            best = (c, m, logits)
    c, val_metrics, logits = best
    return _fit(x, labelled.scores, c, seed), val_metrics, c, {"ids": list(labelled.ids), "logits": logits}


def _features(responses: list[str], featurizer_config: FeaturizerConfig) -> csr_matrix:
    return csr_matrix(featurize_all(responses, featurizer_config))


def as_student(model: LogisticRegression, score_values: list[int]) -> Student:
    """The fitted regression as a linear Student (hidden = 0), so it exports to the same ONNX contract:
    input ``features`` (as many as it was fitted on: the featurizer's buckets), output ``probs`` =
    softmax(W x + b) over every score value."""
    import torch

    n_buckets = model.coef_.shape[1]
    student = Student(n_buckets, len(score_values), hidden=0, dropout=0.0).eval()
    weight = np.zeros((len(score_values), n_buckets), dtype=np.float64)
    bias = np.full(len(score_values), ABSENT_LOGIT)
    rows = [score_values.index(int(c)) for c in model.classes_]
    if len(rows) == 2:   # binary: p(second) = sigmoid(w·x + b) = softmax([0, w·x + b])
        weight[rows[0]], bias[rows[0]] = 0.0, 0.0
        weight[rows[1]], bias[rows[1]] = model.coef_[0], model.intercept_[0]
    else:
        weight[rows], bias[rows] = model.coef_, model.intercept_
    linear = student.net[-1]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return student
