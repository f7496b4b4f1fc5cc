"""Hashing + logistic regression: evaluated like the student, reproducible."""

from __future__ import annotations

from kd_train import data
from kd_train.config import FeaturizerConfig
from kd_train.baselines import hashing_lr
from conftest import DEMO


def test_hashing_lr_is_reproducible_and_reports_its_choice():
    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    grid = (0.3, 3.0)
    a = hashing_lr(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), test, c_grid=grid)
    b = hashing_lr(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), test, c_grid=grid)
    model_a, model_b = a.pop("model"), b.pop("model")
    assert a == b and (model_a.coef_ == model_b.coef_).all()
    assert a["C"] in grid
    assert a["params"] == 4 * (FeaturizerConfig().n_buckets + 1)
    assert a["metrics"]["test"]["qwk"] > 0.3


def test_hashing_lr_exports_as_a_linear_student_with_the_same_probabilities():
    import numpy as np

    from kd_train.baselines import as_student
    from kd_train.student import featurize_all, logits
    from kd_train.quality import softmax

    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    lr = hashing_lr(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), None, c_grid=(1.0,))
    student = as_student(lr["model"], [0, 1, 2, 3])
    x = featurize_all(test.responses, FeaturizerConfig())
    np.testing.assert_allclose(softmax(logits(student, x)), lr["model"].predict_proba(x), atol=1e-5)
    assert student.hidden == 0
