"""kd_train/folds.py: the fold teachers' labels for the distilled students' cross-validation, or a clear word
that there are none."""

from __future__ import annotations

import json

from kd_train import data, folds


def test_a_teacher_without_fold_teachers_gives_none_and_says_the_figures_are_optimistic(tmp_path):
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "teacher.json").write_text(json.dumps({"item": "q"}))
    table = data.Table(path="t.csv", ids=["a"], items=["q"], responses=["x"], scores=[1], rows=[2])
    said = []
    assert folds.fold_teachers(tmp_path, [tmp_path / "teacher"], table, None, log=said.append) is None
    assert "out-of-fold QWK is optimistic" in said[0]
    assert folds.note(None) == {"used": False, "why": "the teacher kept no fold teachers: the distilled students' "
                                                     "out-of-fold QWK is optimistic (their teacher saw every fold)"}
    assert folds.note([object()] * 5)["folds"] == 5
