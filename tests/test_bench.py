"""The benchmark's verdicts against the issue's goals follow from the measured figures."""

from __future__ import annotations

import pytest

from bench.__main__ import goal_rows


def _models(student_qwk: float = 0.70) -> dict:
    models = {name: {"mean_qwk": 0.66} for name in ("ann", "tinybert_like", "hashing_lr", "fasttext")}
    models["teacher"] = {"mean_qwk": 0.71}
    models["student"] = {"mean_qwk": student_qwk, "params": 28_746}
    return models


BROWSER = {"per_answer_ms_p50": 1.7, "batch200_per_answer_ms_p50": 0.8, "usable_ms": 70, "first_score_ms": 2400}


def _speed(batch_1: float, batch_64: float, fasttext: tuple[float, float] = (0.05, 0.26)) -> dict:
    return {"measured": True, "ratios": {"student / tinybert_like": {"batch_1": batch_1, "batch_64": batch_64},
                                         "student / fasttext": dict(zip(("batch_1", "batch_64"), fasttext))}}


@pytest.mark.parametrize("ratios, verdict", [((24, 118), "in batches only"), ((120, 130), "yes"), ((24, 96), "no")])
def test_throughput_goal_says_where_it_is_met(ratios, verdict):
    rows = {goal: met for goal, _, met in goal_rows(_models(), _speed(*ratios), BROWSER)}
    assert rows["≥ 100× the TinyBERT-like stand-in's CPU throughput"] == verdict


@pytest.mark.parametrize("ratios, verdict", [((0.05, 0.26), "no"), ((0.4, 2.1), "in batches only"), ((0.6, 3.0), "yes")])
def test_fasttext_goal_needs_half_its_throughput(ratios, verdict):
    rows = {goal: (measured, met) for goal, measured, met in goal_rows(_models(), _speed(24, 118, ratios), BROWSER)}
    measured, met = rows["about fastText's throughput (at least half of it)"]
    assert met == verdict and f"×{ratios[1]:.2f} (batch 64)" in measured


def test_teacher_gap_and_baselines():
    rows = {goal: (measured, met) for goal, measured, met in goal_rows(_models(0.676), {}, BROWSER)}
    assert rows["within 0.02 mean QWK of its teacher"] == ("gap +0.034", "no")
    assert rows["mean QWK above ANN"][1] == "yes"
    assert "≥ 100× the TinyBERT-like stand-in's CPU throughput" not in rows      # speed not measured
    assert rows["page usable in < 1 s"][1] == "yes (typing); scoring no"


def test_the_threads_report_gives_each_scorers_speed_up(tmp_path):
    from bench.threads import write_report

    result = {"threads": [1, 2], "answers": 3, "rounds": 1, "command": "python -m bench.threads s", "date": "d",
              "cpus": 2, "load": [0.5, 0.5, 0.5],
              "scorers": {"s": {"kind": "transformer", "bytes": 23_000_000, "ms": {"1": 6.0, "2": 4.0}}}}
    md = write_report(result, tmp_path)
    assert "| s | transformer | 23.00 | 6.00 | 4.00 | 1.50× |" in md and (tmp_path / "threads.json").is_file()


def test_runs_compare_reads_both_runs_items_and_means_what_they_measured(tmp_path):
    import json

    from bench.runs_compare import main

    def report(item: str, seq_val: float, seq_test: float, shipped: str) -> dict:
        return {"item": item, "quality": {"shipped": shipped, "candidates": {
            "hashing_lr": {"val_qwk": 0.6, "test_qwk": 0.5}, "sequence": {"val_qwk": seq_val, "test_qwk": seq_test}}}}

    for run, reports in (("a", [report("x", 0.9, 0.2, "sequence"), report("y", 0.8, 0.4, "sequence"),
                                report("only-a", 0.1, 0.1, "hashing_lr")]),
                         ("b", [report("x", 0.7, 0.3, "hashing_lr"), report("y", 0.7, 0.4, "sequence")])):
        for r in reports:
            (tmp_path / run / r["item"]).mkdir(parents=True)
            (tmp_path / run / r["item"] / "report.json").write_text(json.dumps(r))
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert sorted(result["items"]) == ["x", "y"]                       # the items both runs hold
    assert result["means"]["sequence"]["val_before"] == pytest.approx(0.85)
    assert result["means"]["sequence"]["val_after"] == pytest.approx(0.7)
    assert result["shipped_test_mean"] == {"before": pytest.approx(0.3), "after": pytest.approx(0.45)}
    assert result["shipped_counts"]["after"] == {"hashing_lr": 1, "sequence": 1}
    assert "| sequence | 0.850 | 0.700 | -0.150 |" in (tmp_path / "out" / "compare.md").read_text()


def test_selection_rules_choose_on_one_half_and_measure_on_the_other(tmp_path):
    import json

    import numpy as np

    from bench.selection_rules import main

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 80).tolist()
    noisy = [t if rng.random() < 0.6 else int(rng.integers(0, 3)) for t in truth]
    report = {"item": "q", "quality": {"candidates": {"sequence": {"bytes": 900_000}, "hashing_lr": {"bytes": 30_000},
                                                      "student": {"bytes": 100_000}}},
              "validation_predictions": {"ids": [str(i) for i in range(80)], "scores": truth,
                                         "by_candidate": {"sequence": truth, "hashing_lr": noisy, "student": truth}}}
    (tmp_path / "run" / "q").mkdir(parents=True)
    (tmp_path / "run" / "q" / "report.json").write_text(json.dumps(report))
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--splits", "20", "--boot", "50"]) == 0
    result = json.loads((tmp_path / "out" / "selection-rules.json").read_text())
    item = result["items"][f"{tmp_path / 'run'}/q"]
    assert item["mean_qwk"]["best"] == item["mean_qwk"]["oracle"] == 1.0          # a perfect candidate is found
    assert item["picks"]["best"] == {"student": 20}                                # ties: the preference order
    assert item["picks"]["one_se_smallest"] == {"student": 20}                     # the smaller of the two perfect ones
    assert item["picks"]["one_se_baseline"] == {"student": 20}   # hashing + LR is far more than one SE below
    assert item["mean_qwk"]["hashing_lr"] < 0.9
    report["validation_predictions"]["by_candidate"]["hashing_lr"] = truth          # as good as the best: kept
    (tmp_path / "run" / "q" / "report.json").write_text(json.dumps(report))
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--splits", "5", "--boot", "20"]) == 0
    picks = json.loads((tmp_path / "out" / "selection-rules.json").read_text())["items"][f"{tmp_path / 'run'}/q"]["picks"]
    assert picks["best"] == {"student": 5} and picks["one_se_baseline"] == {"hashing_lr": 5}
