"""The student network: parameter budget and ONNX export parity with torch."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from kd_train import featurize
from kd_train.config import FeaturizerConfig
from kd_train.scorer import onnx_session
from kd_train.student import Student, export_onnx, featurize_all, param_count

TRICKY = ["Heat conducts through the metal plate faster.", "", "<script>alert(1)</script>", "ÄÖÜ ß ẞ 🧊🔥", "x" * 20000]


def test_default_student_fits_the_budget():
    n_buckets = FeaturizerConfig().n_buckets
    model = Student(n_buckets, 4)
    assert param_count(model) == 2048 * 14 + 14 + 14 * 4 + 4 == 28746
    assert param_count(Student(n_buckets, 4)) <= 30000
    assert param_count(Student(n_buckets, 3, hidden=0)) == 2048 * 3 + 3


def test_onnx_matches_torch_on_random_and_real_inputs(tmp_path):
    torch.manual_seed(0)
    model = Student(2048, 4).eval()
    export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx")
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == ["features"] and [o.name for o in graph.graph.output] == ["probs"]
    session = onnx_session(tmp_path / "m.onnx")
    real = featurize_all(TRICKY, FeaturizerConfig())
    rand = np.random.default_rng(0).normal(size=(64, 2048)).astype(np.float32)
    for x in (real, rand, real[:1]):  # dynamic batch, including 1
        got = session.run(["probs"], {"features": x})[0]
        want = torch.softmax(model(torch.from_numpy(x)), dim=-1).detach().numpy()
        assert got.shape == (len(x), 4)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_featurize_all_matches_featurize():
    x = featurize_all(TRICKY, FeaturizerConfig())
    assert x.dtype == np.float32 and x.shape == (len(TRICKY), 2048)
    assert not x[1].any()  # the empty answer is the zero vector
    for row, text in zip(x, TRICKY):
        sparse = featurize.featurize(text, featurize.DEFAULT_CONFIG)
        assert [i for i in np.flatnonzero(row)] == [i for i, _ in sparse]
