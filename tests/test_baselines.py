"""Hashing + logistic regression: evaluated like the student, reproducible."""

from __future__ import annotations

from kd_train import data, featurize
from kd_train.baselines import hashing_lr
from conftest import DEMO


def test_hashing_lr_is_reproducible_and_reports_its_choice():
    items = data.read_items(DEMO / "items.csv")
    train = data.read_responses(DEMO / "responses.csv", items)
    test = data.read_responses(DEMO / "test.csv", items)
    grid = (0.3, 3.0)
    a = hashing_lr(train, "demo-ice", [0, 1, 2, 3], featurize.DEFAULT_CONFIG, test, c_grid=grid)
    b = hashing_lr(train, "demo-ice", [0, 1, 2, 3], featurize.DEFAULT_CONFIG, test, c_grid=grid)
    assert a == b
    assert a["C"] in grid
    assert a["params"] == 4 * (featurize.DEFAULT_CONFIG["n_buckets"] + 1)
    assert a["metrics"]["test"]["qwk"] > 0.3
