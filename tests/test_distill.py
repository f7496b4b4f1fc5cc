"""The distillation loss against hand-computed values, and student training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import DEMO
from kd_train import data
from kd_train.config import FeaturizerConfig
from kd_train.distill import StudentConfig, distill_item, kd_loss
from kd_train.soft_labels import SoftLabels
from kd_train.student import featurize_all
from kd_train.data import UNLABELED

LOGITS = torch.tensor([[2.0, 0.5, -1.0]])
TEACHER = torch.tensor([[0.6, 0.3, 0.1]])
LABEL = torch.tensor([1])


def ce(logits, label):
    z = [math.exp(v) for v in logits]
    return -math.log(z[label] / sum(z))


def kl_at(teacher, logits, t):
    pt = [p ** (1 / t) for p in teacher]
    pt = [p / sum(pt) for p in pt]
    zs = [math.exp(v / t) for v in logits]
    ps = [z / sum(zs) for z in zs]
    return sum(a * math.log(a / b) for a, b in zip(pt, ps))


def test_alpha_zero_is_plain_cross_entropy():
    got = kd_loss(LOGITS, LABEL, TEACHER, alpha=0.0, temperature=3.0, lam=0.0)
    assert math.isclose(got.item(), ce([2.0, 0.5, -1.0], 1), rel_tol=1e-6)


def test_alpha_one_is_pure_distillation():
    got = kd_loss(LOGITS, LABEL, TEACHER, alpha=1.0, temperature=2.0, lam=0.0)
    want = 4.0 * kl_at([0.6, 0.3, 0.1], [2.0, 0.5, -1.0], 2.0)
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_mixed_loss_and_the_papers_extra_term():
    got = kd_loss(LOGITS, LABEL, TEACHER, alpha=0.3, temperature=2.0, lam=0.5)
    soft_ce = -sum(p * math.log(math.exp(v) / sum(math.exp(u) for u in [2.0, 0.5, -1.0]))
                   for p, v in zip([0.6, 0.3, 0.1], [2.0, 0.5, -1.0]))
    want = 0.7 * ce([2.0, 0.5, -1.0], 1) + 0.3 * 4.0 * kl_at([0.6, 0.3, 0.1], [2.0, 0.5, -1.0], 2.0) + 0.5 * soft_ce
    assert math.isclose(got.item(), want, rel_tol=1e-5)


def test_unlabeled_rows_get_only_the_distillation_term():
    got = kd_loss(LOGITS, torch.tensor([UNLABELED]), TEACHER, alpha=0.3, temperature=2.0, lam=0.0)
    assert math.isclose(got.item(), 4.0 * kl_at([0.6, 0.3, 0.1], [2.0, 0.5, -1.0], 2.0), rel_tol=1e-5)


def test_student_matching_the_teacher_has_zero_kd_loss():
    logits = torch.log(TEACHER)
    assert kd_loss(logits, LABEL, TEACHER, alpha=1.0, temperature=4.0, lam=0.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def demo():
    items = data.read_items(DEMO / "items.csv")
    return items, data.read_responses(DEMO / "responses.csv", items), data.read_responses(DEMO / "test.csv", items)


def fake_teacher(table: data.Table, values: list[int], seed: int = 0) -> SoftLabels:
    """Probabilities peaked on the human score (unscored rows: uniform), as a stand-in teacher output."""
    rng = np.random.default_rng(seed)
    probs = []
    for s in table.scores:
        p = rng.dirichlet(np.ones(len(values)))
        if s is not None:
            p = 0.3 * p + 0.7 * np.eye(len(values))[values.index(s)]
        probs.append(p)
    return SoftLabels(table.ids, table.items, values, np.array(probs), {"teacher": "fake"})


def test_distillation_is_deterministic_and_beats_chance(demo, tmp_path):
    items, train, test = demo
    soft = fake_teacher(train, [0, 1, 2, 3])
    config = StudentConfig(epochs=15, patience=15)
    a, report = distill_item(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, soft, test=test, progress=False)
    b, _ = distill_item(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, soft, test=test, progress=False)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert report["params"] == 28746 and report["training"]["alpha"] == StudentConfig().alpha
    assert report["metrics"]["test"]["qwk"] > 0.3
    assert "teacher_agreement" not in report["metrics"]["test"]  # the fake teacher did not label the test set


def test_transfer_answers_need_soft_labels(demo):
    items, train, test = demo
    unlabeled = data.read_responses(DEMO / "unlabeled.csv", items)
    with pytest.raises(data.UserError, match="transfer set needs teacher soft labels"):
        distill_item(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), StudentConfig(epochs=1), None, unlabeled)


def test_patience_waits_until_validation_qwk_rises_above_zero():
    from kd_train.distill import StudentData, train_student

    rng = np.random.default_rng(0)
    fit = StudentData(rng.random((40, 16), dtype=np.float32), rng.integers(0, 2, 40))
    constant_val = StudentData(rng.random((10, 16), dtype=np.float32), np.zeros(10, dtype=np.int64))   # QWK stays 0
    _, history = train_student(fit, constant_val, 2, StudentConfig(hidden=0, epochs=9, patience=1), progress=False)
    assert history["epochs_run"] == 9


def test_a_small_item_is_chosen_by_cross_validation(demo):
    _, train, _ = demo
    small = train.take(list(range(120)))                 # a 10% split would hold 12 answers (< 30)
    config = StudentConfig(epochs=6)
    model, report = distill_item(small, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, progress=False)
    assert report["training"]["cross_validation_folds"] == 5 and report["training"]["fit"] == 120
    assert report["metrics"]["val"]["cross_validated"] and report["metrics"]["val"]["n"] == 120
    assert report["oof"]["ids"] == small.ids and report["oof"]["logits"].shape == (120, 4)
    assert 1 <= report["training"]["best_epoch"] <= 6
    again = distill_item(small, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, progress=False)[1]
    np.testing.assert_array_equal(again["oof"]["logits"], report["oof"]["logits"])


def test_a_large_item_keeps_its_validation_split(demo):
    _, train, _ = demo
    _, report = distill_item(train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), StudentConfig(epochs=2),
                             progress=False)
    assert "oof" not in report and report["training"]["val"] == 32


@pytest.mark.parametrize("n", [120, None])          # cross-validated (120 answers) and with a validation split
def test_precomputed_features_train_the_same_student(demo, n):
    """distill_item(features=...) (what bench/ passes: rows of a matrix featurized once) gives the weights and
    metrics that featurizing inside distill_item gives, and it is what the student is trained on."""
    _, train, test = demo
    train = train.take(list(range(n))) if n else train
    both = data.concat(train, test)
    x = featurize_all(both.responses, FeaturizerConfig())
    row = {rid: i for i, rid in enumerate(both.ids)}
    calls = []

    def lookup(table):
        calls.append(len(table))
        return x[[row[rid] for rid in table.ids]]

    config = StudentConfig(epochs=3, seed=1)
    soft = fake_teacher(both, [0, 1, 2, 3])
    args = (train, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, soft, None, test)
    a, ra = distill_item(*args, progress=False)
    b, rb = distill_item(*args, progress=False, features=lookup)
    assert calls
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert ra["metrics"] == rb["metrics"] and ra["training"] == rb["training"]
    if n:
        np.testing.assert_array_equal(ra["oof"]["logits"], rb["oof"]["logits"])


def test_the_ann_is_the_student_without_its_teacher(demo):
    config = StudentConfig(hidden=7, alpha=0.8, temperature=3.0, lam=0.2, seed=4)
    ann = config.without_teacher()
    assert (ann.alpha, ann.lam) == (0.0, 0.0) and config.alpha == 0.8      # a copy; the student's config is unchanged
    assert {**vars(ann), "alpha": 0.8, "lam": 0.2} == vars(config)


def test_each_fold_learns_from_its_own_fold_teacher(demo):
    """With fold teachers, fold k's student is distilled from fold k's teacher alone: here each fold's teacher
    gives every answer one score of its own (fold k: score k), and α = 1, so each held-out fold is given its
    teacher's score, whatever the teacher of the whole item said."""
    from kd_train.distill import FoldTeacher
    from kd_train.soft_labels import SoftLabels

    _, train, _ = demo
    small = train.take(list(range(120)))
    folds = [small.ids[k::4] for k in range(4)]

    def constant(score: int) -> SoftLabels:
        probs = np.full((len(small), 4), 0.001)
        probs[:, score] = 0.997
        return SoftLabels(small.ids, small.items, [0, 1, 2, 3], probs, {})

    config = StudentConfig(epochs=4, alpha=1.0, lam=0.0, hidden=0, lr=0.1)   # learnt within the first epoch
    fold_teachers = [FoldTeacher(held_out=ids, soft=constant(k)) for k, ids in enumerate(folds)]
    _, report = distill_item(small, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, constant(0),
                             progress=False, fold_teachers=fold_teachers)
    given = dict(zip(report["oof"]["ids"], np.asarray(report["oof"]["logits"]).argmax(axis=1)))
    for k, ids in enumerate(folds):
        assert {int(given[rid]) for rid in ids} == {k}
    assert report["training"]["fold_teachers"] and report["training"]["cross_validation_folds"] == 4
    with pytest.raises(ValueError, match="each once"):
        distill_item(small, "demo-ice", [0, 1, 2, 3], FeaturizerConfig(), config, constant(0), progress=False,
                     fold_teachers=fold_teachers[:3])
