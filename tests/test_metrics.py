import math

from sklearn.metrics import cohen_kappa_score

from kd_train.metrics import fisher_mean, mean_metrics, qwk, score_metrics, summarize


def test_qwk_matches_hand_computed_value():
    # Two raters, scores 0-2: observed disagreement weights (i-j)^2 / 4.
    y1, y2 = [0, 1, 2, 2], [0, 2, 2, 1]
    assert math.isclose(qwk(y1, y2, [0, 1, 2]), cohen_kappa_score(y1, y2, weights="quadratic"))
    assert qwk([0, 1, 2], [0, 1, 2]) == 1.0


def test_qwk_undefined_is_zero():
    assert qwk([1, 1, 1], [1, 1, 1], [0, 1, 2]) == 0.0


def test_qwk_that_is_zero_in_exact_arithmetic_is_zero():
    """A SAF German validation split (10 answers) whose kappa sklearn gives as 1.1e-16: the early-stopping
    rules count patience only above 0, so this must read as 0, not as 'above chance'."""
    truth, pred = [0] + [1] * 8 + [2], [2, 0] + [1] * 5 + [2, 2, 2]
    assert cohen_kappa_score(truth, pred, labels=[0, 1, 2], weights="quadratic") != 0.0   # the float noise
    assert qwk(truth, pred, [0, 1, 2]) == 0.0
    from kd_train.teacher_trainer import PatienceRule

    rule = PatienceRule(patience=3)
    assert not any(rule.step(qwk(truth, pred, [0, 1, 2]), epoch) for epoch in range(1, 10))   # keeps training


def test_fisher_mean():
    assert math.isclose(fisher_mean([0.5, 0.5]), 0.5)
    assert fisher_mean([0.2, 0.8]) > 0.5  # z-averaging weights the high kappa more
    assert fisher_mean([1.0]) < 1.0


def test_score_metrics_shape():
    m = score_metrics([0, 1, 2, 2], [0, 1, 1, 2], [0, 1, 2])
    assert m["n"] == 4 and m["acc"] == 0.75 and m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_mean_metrics_is_what_summarize_reports_per_model():
    per_item = [{"acc": 0.5, "qwk": 0.2, "f1": 0.4, "n": 10}, {"acc": 0.7, "qwk": 0.8, "f1": 0.6, "n": 20}]
    means = mean_metrics(per_item)
    assert means == {"mean_acc": 0.6, "mean_qwk": 0.5, "fisher_qwk": fisher_mean([0.2, 0.8]), "mean_f1": 0.5}
    reports = [{"item": str(i), "models": {"student": {"params": 9, "test": m}}} for i, m in enumerate(per_item)]
    assert {k: summarize(reports)["student"][k] for k in means} == means


def test_plots_of_item_ids_the_font_lacks_print_no_glyph_warnings(tmp_path, recwarn):
    from kd_train.report import plot_confusions, plot_qwk_vs_params

    name = "item 問題七：氷が溶ける"
    plot_confusions({name: [[3, 1], [0, 4]]}, {name: [0, 1]}, str(tmp_path / "c.png"))
    plot_qwk_vs_params({name: {"params": 1000, "mean_qwk": 0.5}}, str(tmp_path / "q.png"))
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "q.png").stat().st_size > 0
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
