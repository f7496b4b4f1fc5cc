"""ETS-style validity table (kd_train.validity: validity / validity_markdown) against hand-computed values."""

import json
import math
import warnings

import numpy as np
import pytest

from kd_train.metrics import qwk_rows, qwk
from kd_train.validity import validity, validity_markdown

H, M = [0, 1, 2, 2], [0, 2, 2, 1]


def test_hand_computed_small_example():
    v = validity(H, M, [0, 1, 2], n_boot=200)
    # exact: answers 1 and 3 agree -> 2/4; adjacent: |h-m| = 0,1,0,1 -> 4/4
    assert v["n"] == 4 and v["exact"] == 0.5 and v["adjacent"] == 1.0
    # means 5/4 and 5/4 -> SMD 0
    assert v["smd"] == 0.0 and v["smd_sd"].startswith("pooled")
    # deviations h: -1.25 -0.25 .75 .75, m: -1.25 .75 .75 -.25; sum of products 1.5625-.1875+.5625-.1875 = 1.75,
    # sums of squares 2.75 and 2.75 -> r = 1.75/2.75 = 7/11
    assert math.isclose(v["r"], 7 / 11)
    # QWK: weights (i-j)^2, observed sum 0+1+0+1 = 2; margins h [1,1,2], m [1,1,2], expected sum
    # (1*1*1 + 1*2*4 + 1*1*1 + 1*2*1 + 2*1*4 + 2*1*1)/4 = 22/4 -> 1 - 2/5.5 = 7/11
    assert math.isclose(v["qwk"], 7 / 11)
    assert v["small_sample"] is True
    assert v["human_human"] is None and v["degradation"] is None
    assert v["thresholds"] == {"qwk_ok": False, "r_ok": False, "smd_ok": True, "degradation_ok": None,
                               "meets_all": False}
    json.dumps(v)


def test_smd_uses_pooled_population_sd():
    v = validity([0, 1, 2, 3], [1, 2, 3, 3], [0, 1, 2, 3], n_boot=0)
    # means 1.5 and 2.25; var_h = (2.25+.25+.25+2.25)/4 = 1.25, var_m = (1.5625+.0625+.5625+.5625)/4 = .6875
    # SMD = .75 / sqrt((1.25 + .6875)/2) = .75 / sqrt(.96875)
    assert math.isclose(v["smd"], 0.75 / math.sqrt(0.96875))
    assert v["thresholds"]["smd_ok"] is False and v["qwk_ci"] is None


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    h = rng.integers(0, 4, 60)
    m = np.clip(h + rng.integers(-1, 2, 60) * (rng.random(60) < 0.4), 0, 3)
    a = validity(h.tolist(), m.tolist(), [0, 1, 2, 3], seed=7)
    lo, hi = a["qwk_ci"]
    assert lo <= a["qwk"] <= hi and lo < hi
    assert validity(h.tolist(), m.tolist(), [0, 1, 2, 3], seed=7)["qwk_ci"] == [lo, hi]
    assert validity(h.tolist(), m.tolist(), [0, 1, 2, 3], seed=8)["qwk_ci"] != [lo, hi]
    assert a["small_sample"] is False


def test_vectorised_bootstrap_kappa_equals_qwk():
    rng = np.random.default_rng(0)
    h, m = rng.integers(0, 4, (20, 15)), rng.integers(0, 4, (20, 15))
    for got, hr, mr in zip(qwk_rows(h, m, 4), h, m):
        assert math.isclose(got, qwk(hr.tolist(), mr.tolist(), [0, 1, 2, 3]), abs_tol=1e-12)


def test_perfect_agreement():
    scores = [0, 1, 2, 3] * 5
    v = validity(scores, scores, [0, 1, 2, 3])
    assert v["qwk"] == 1.0 and v["qwk_ci"] == [1.0, 1.0]
    assert v["exact"] == 1.0 and math.isclose(v["r"], 1.0) and v["smd"] == 0.0
    assert v["thresholds"]["meets_all"] is True


def test_constant_scores_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v = validity([0, 1, 2, 1, 0], [1] * 5, [0, 1, 2])
        both = validity([1, 1, 1], [1, 1, 1], [0, 1, 2])
        md = validity_markdown({"a": v, "b": both})
    # constant machine: r undefined, QWK 0; mean h .8, var_h 2.8/5 = .56, SMD = .2 / sqrt(.56/2)
    assert v["r"] is None and v["qwk"] == 0.0 and math.isclose(v["smd"], 0.2 / math.sqrt(0.28))
    assert v["thresholds"]["r_ok"] is None and v["thresholds"]["meets_all"] is False
    # both constant: every resample undefined -> no CI; SMD 0/0 -> None
    assert both["qwk_ci"] is None and both["smd"] is None and both["r"] is None
    assert "no CI" in md
    json.dumps([v, both], allow_nan=False)


def test_human2_degradation():
    v = validity(H, M, [0, 1, 2], human2=[0, 1, None, 1], n_boot=50)
    hh = v["human_human"]
    # double-scored rows 0, 1, 3: human [0,1,2], human2 [0,1,1], machine [0,2,1]
    # h vs h2: observed 0+0+1 = 1; margins [1,1,1] x [1,2,0]: expected (2 + 1 + 6)/3 = 3 -> QWK 2/3
    assert hh["n"] == 3 and math.isclose(hh["qwk"], 2 / 3)
    assert math.isclose(hh["exact"], 2 / 3) and hh["adjacent"] == 1.0
    # r: deviations -1,0,1 and -2/3,1/3,1/3 -> 1 / sqrt(2 * 2/3) = sqrt(3)/2
    assert math.isclose(hh["r"], math.sqrt(3) / 2)
    # h vs m: observed 0+1+1 = 2; margins [1,1,1] x [1,1,1]: expected 12/3 = 4 -> QWK 0.5; 0.5 - 2/3
    assert math.isclose(v["degradation"], -1 / 6)
    assert v["thresholds"]["degradation_ok"] is False  # -0.167 < ETS_THRESHOLDS["degradation"] = -0.10
    assert validity(H, M, [0, 1, 2], human2=[None] * 4, n_boot=0)["degradation"] is None


def test_bad_input():
    with pytest.raises(ValueError, match="same"):
        validity([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="score_values"):
        validity([0, 3], [0, 1], [0, 1])


def test_markdown_table_and_small_sample_line():
    rng = np.random.default_rng(1)
    h = rng.integers(0, 3, 60)
    rows = {"3": validity(H * 3 + [0], M * 3 + [0], [0, 1, 2]), "7": validity(h.tolist(), h.tolist(), [0, 1, 2])}
    md = validity_markdown(rows)
    lines = md.splitlines()
    assert lines[0].startswith("| item | N | QWK [95% CI] |") and lines[0].endswith("| meets ETS thresholds |")
    assert lines[2].startswith("| 3 | 13 | ") and lines[2].endswith("| — | no: QWK, r |")
    assert lines[3].startswith("| 7 | 60 | 1.000 [1.00, 1.00] |") and lines[3].endswith("| yes |")
    assert "QWK ≥ 0.70" in md and "|SMD| ≤ 0.15" in md and "sqrt((sd_h^2 + sd_m^2)/2), ddof=0" in md
    lo, hi = rows["3"]["qwk_ci"]
    small = [line for line in lines if line.startswith("Small samples")]
    assert len(small) == 1 and f"item 3: QWK on 13 answers: 95% CI {lo:.2f}–{hi:.2f}" in small[0]
    assert "item 7" not in small[0]


def test_matches_rsmtool():
    # rsmtool (numpy<2) is not installed in the project venv; this runs where it is.
    rsm = pytest.importorskip("rsmtool.utils.metrics")
    rng = np.random.default_rng(2)
    h = rng.integers(0, 4, 40)
    m = np.clip(h + rng.integers(-1, 2, 40), 0, 3)
    v = validity(h.tolist(), m.tolist(), [0, 1, 2, 3], n_boot=0)
    assert math.isclose(v["qwk"], rsm.quadratic_weighted_kappa(h, m))
    assert math.isclose(v["exact"] * 100, rsm.agreement(h, m))
    assert math.isclose(v["adjacent"] * 100, rsm.agreement(h, m, tolerance=1))
    assert math.isclose(v["smd"], rsm.standardized_mean_difference(h, m, method="pooled", ddof=0))
