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


# ---- the sequence student ------------------------------------------------------------------------
from kd_train.config import SequenceConfig, TokenConfig  # noqa: E402
from kd_train.student import SequenceStudent, embedding_table, logits, token_matrix  # noqa: E402

SMALL = SequenceConfig(tokens=TokenConfig(n_buckets=512), dim=8, channels=6, init="random")
ANSWERS = ["It is not true that heat flows from the metal", "", "metal", "heat heat heat heat flows",
           "ÄÖÜ ß ẞ 🧊🔥 and the plate conducts", "x" * 20000]


def test_the_sequence_student_gives_each_answer_the_same_logits_alone_or_in_a_padded_batch():
    torch.manual_seed(0)
    model = SequenceStudent(SMALL, 4).eval()
    batch = logits(model, token_matrix(ANSWERS, SMALL))
    alone = np.vstack([logits(model, token_matrix([text], SMALL)) for text in ANSWERS])
    np.testing.assert_allclose(batch, alone, atol=1e-6, rtol=0)
    wider = np.pad(token_matrix(ANSWERS, SMALL), ((0, 0), (0, 9)))   # more padding changes nothing
    np.testing.assert_allclose(logits(model, wider), batch, atol=1e-6, rtol=0)


def test_the_sequence_student_reads_order_where_a_bag_cannot():
    torch.manual_seed(1)
    model = SequenceStudent(SMALL, 3).eval()
    a, b = logits(model, token_matrix(["the metal is not cold", "the metal is cold not"], SMALL))
    assert not np.allclose(a, b)   # same words, other order


def test_sequence_onnx_matches_torch_and_stores_the_table_as_float16(tmp_path):
    torch.manual_seed(0)
    model = SequenceStudent(SequenceConfig(), 4).eval()
    model.round_embeddings()
    export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(tmp_path / "m.onnx")
    assert [i.name for i in graph.graph.input] == ["token_ids"] and graph.graph.input[0].type.tensor_type.elem_type \
        == onnx.TensorProto.INT32
    halves = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert [tuple(t.dims) for t in halves] == [(8192, 48)]
    assert (tmp_path / "m.onnx").stat().st_size < 1_000_000   # the budget for this rung
    session = onnx_session(tmp_path / "m.onnx")
    for x in (token_matrix(ANSWERS, SequenceConfig()), token_matrix(ANSWERS[:1], SequenceConfig())):
        got = session.run(["probs"], {"token_ids": x})[0]
        want = torch.softmax(torch.from_numpy(logits(model, x)), dim=-1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_embedding_table_averages_the_words_of_each_id_and_keeps_padding_zero():
    words, counts = ["metal", "plastic", "heat"], [3, 1, 2]
    vectors = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    config = SequenceConfig(tokens=TokenConfig(n_buckets=64), dim=2)
    table = embedding_table(words, counts, vectors, config)
    assert table.shape == (64, 2) and table.dtype == np.float32 and not table[0].any()
    ids = [token_matrix([w], config)[0, 0] for w in words]
    assert len(set(ids)) == 3 and not np.allclose(table[ids[0]], table[ids[1]])
    again = embedding_table(words, counts, vectors, config)
    np.testing.assert_array_equal(table, again)   # seeded: the same table every time


from kd_train.student import answer_ms, model_inputs, onnx_bytes, onnx_cost, one_answer_input  # noqa: E402


def test_the_timed_path_makes_the_inputs_training_makes_one_answer_at_a_time():
    texts = ["It is not true that ice melts.", "", "Eis schmilzt bei 0 °C!", "a " * 300]
    config = FeaturizerConfig()
    for model in (Student(config.n_buckets, 4).eval(), SequenceStudent(SequenceConfig(), 4).eval()):
        one = one_answer_input(model, config)
        for text in texts:
            np.testing.assert_array_equal(one(text)[0][: len(model_inputs(model, [text], config)[0])],
                                          model_inputs(model, [text], config)[0])


def test_answer_ms_times_each_kind_of_student_and_nothing_without_answers():
    config = FeaturizerConfig()
    for model in (Student(config.n_buckets, 4).eval(), SequenceStudent(SequenceConfig(), 4).eval()):
        assert answer_ms(model, ["ice melts in the sun"] * 5, config, most=3) > 0
        assert answer_ms(model, ["", "  "], config) == 0.0
        assert onnx_cost(model, [""], config) == (onnx_bytes(model), 0.0)   # one export gives the size too
