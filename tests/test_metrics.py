import math

from sklearn.metrics import cohen_kappa_score

from kd_train.metrics import fisher_mean, qwk, score_metrics


def test_qwk_matches_hand_computed_value():
    # Two raters, scores 0-2: observed disagreement weights (i-j)^2 / 4.
    y1, y2 = [0, 1, 2, 2], [0, 2, 2, 1]
    assert math.isclose(qwk(y1, y2, [0, 1, 2]), cohen_kappa_score(y1, y2, weights="quadratic"))
    assert qwk([0, 1, 2], [0, 1, 2]) == 1.0


def test_qwk_undefined_is_zero():
    assert qwk([1, 1, 1], [1, 1, 1], [0, 1, 2]) == 0.0


def test_fisher_mean():
    assert math.isclose(fisher_mean([0.5, 0.5]), 0.5)
    assert fisher_mean([0.2, 0.8]) > 0.5  # z-averaging weights the high kappa more
    assert fisher_mean([1.0]) < 1.0


def test_score_metrics_shape():
    m = score_metrics([0, 1, 2, 2], [0, 1, 1, 2], [0, 1, 2])
    assert m["n"] == 4 and m["acc"] == 0.75 and m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
