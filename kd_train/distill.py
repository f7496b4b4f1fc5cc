"""Knowledge distillation: the loss, and training the student from teacher probabilities."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kd_train.config import FeaturizerConfig, StudentConfig  # noqa: F401  (StudentConfig re-exported: the student's settings)
from kd_train.data import UNLABELED, Table, UserError, check_trainable, concat, stratified_folds, stratified_split
from kd_train.metrics import qwk, score_metrics
from kd_train.soft_labels import SoftLabels
from kd_train.student import Student, as_tensor, featurize_all, param_count

ModelFactory = Callable[[int, int], torch.nn.Module]
"""(number of inputs: the feature matrix's columns, number of score values) -> an untrained model."""


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    lam: float,
) -> torch.Tensor:
    """L = (1−α)·CE(y, s) + α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + λ·CE(p_teacher, s), averaged over the batch.

    No defaults here: the student's α, T and λ come from :class:`StudentConfig`, the only place they live.

    ``teacher_probs`` are the teacher's probabilities at temperature 1 (softmax(t)); softmax(t/T) is
    recovered from them as p^(1/T), renormalised. Rows whose label is UNLABELED (answers only the
    teacher scored) get no human term: their loss is the distillation terms alone. α = 0 with
    λ = 0 is plain cross-entropy on human labels; α = 1 is pure distillation (Hinton et al., 2015);
    the paper's form L + λ·CE(teacher probabilities, s) is α, T and λ together.
    """
    log_t = torch.log(teacher_probs.clamp_min(1e-12))
    soft_t = torch.softmax(log_t / temperature, dim=-1)
    log_s_T = torch.log_softmax(student_logits / temperature, dim=-1)
    kl = (soft_t * (torch.log(soft_t.clamp_min(1e-12)) - log_s_T)).sum(-1) * temperature**2
    labelled = labels != UNLABELED
    ce = F.cross_entropy(student_logits, labels.clamp_min(0), reduction="none") * labelled
    log_s = torch.log_softmax(student_logits, dim=-1)
    soft_ce = -(teacher_probs * log_s).sum(-1)
    hard_weight = torch.where(labelled, torch.full_like(kl, 1.0 - alpha), torch.zeros_like(kl))
    kd_weight = torch.where(labelled, torch.full_like(kl, alpha), torch.ones_like(kl))
    return (hard_weight * ce + kd_weight * kl + lam * soft_ce).mean()


@dataclass
class FoldTeacher:
    """The teacher of one fold of the student's cross-validation: it never saw the labelled answers ``held_out``
    (ids), and ``soft`` holds its probabilities for every other labelled answer and every transfer answer.
    ``make_model``: the network for this fold, where it starts from this teacher too (the sequence student's
    embeddings); None: the one network for all folds."""

    held_out: list[str]
    soft: SoftLabels
    make_model: ModelFactory | None = None


@dataclass
class StudentData:
    """Featurized answers for one item: labels index score values, UNLABELED for transfer answers."""

    x: np.ndarray
    y: np.ndarray
    teacher_probs: np.ndarray | None = None


def train_student(
    fit: StudentData, val: StudentData | None, n_classes: int, config: StudentConfig, progress: bool = True,
    epochs: int | None = None, on_epoch=None, make_model: ModelFactory | None = None,
) -> tuple[torch.nn.Module, dict]:
    """AdamW on kd_loss (or plain cross-entropy without teacher probabilities); returns the model and its
    history. Same data and seed → same weights.

    With ``val``: early stopping on validation QWK, keeping the best epoch; patience only counts once
    the validation QWK has risen above 0 (a model still giving one score, or chance, keeps training
    up to ``config.epochs``). With ``epochs``: exactly that many epochs, no validation.
    ``on_epoch(epoch, model)`` is called after every epoch (cross-validation reads its logits there).
    ``make_model``: the network to train (default: the bag :class:`Student` of ``config``); a model with
    ``round_embeddings`` (the sequence student) has them rounded as its ONNX file stores them at the end.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small trains >10x faster on one thread than on two busy cores
    try:
        return _train_student(fit, val, n_classes, config, progress, epochs, on_epoch, make_model)
    finally:
        torch.set_num_threads(threads)


def _train_student(fit: StudentData, val: StudentData | None, n_classes: int, config: StudentConfig, progress: bool,
                   epochs: int | None = None, on_epoch=None, make_model: ModelFactory | None = None):
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = (make_model or _bag_model(config))(fit.x.shape[1], n_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x, y = as_tensor(fit.x), torch.from_numpy(fit.y).long()
    p = torch.from_numpy(fit.teacher_probs).float() if fit.teacher_probs is not None else None
    if p is None and bool((y == UNLABELED).any()):
        raise ValueError("unlabeled answers need teacher probabilities")
    labels = list(range(n_classes))
    best = {"qwk": -2.0, "epoch": 0, "state": None}
    history = []
    # A bar on a terminal only: in a log file each update would be a line of its own.
    bar = tqdm(range(1, (epochs or config.epochs) + 1), desc="student", unit="epoch",
               disable=not progress or not sys.stderr.isatty(), leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            logits = model(x[idx])
            if p is None:
                loss = F.cross_entropy(logits, y[idx])
            else:
                loss = kd_loss(logits, y[idx], p[idx], alpha=config.alpha, temperature=config.temperature, lam=config.lam)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        if on_epoch is not None:
            on_epoch(epoch, model)
        if epochs is not None or val is None:
            history.append({"epoch": epoch, "loss": total / len(x)})
            continue
        with torch.no_grad():
            pred = model(as_tensor(val.x)).argmax(dim=1).numpy()
        score = qwk(val.y, pred, labels)
        history.append({"epoch": epoch, "loss": total / len(x), "val_qwk": score})
        bar.set_postfix(loss=f"{total / len(x):.4f}", val_qwk=f"{score:.3f}")
        if score > best["qwk"]:
            best = {"qwk": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif best["qwk"] > 0 and epoch - best["epoch"] >= config.patience:
            break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["epoch"] = len(history)
    if hasattr(model, "round_embeddings"):
        model.round_embeddings()
    model.eval()
    return model, {"best_epoch": best["epoch"], "val_qwk": best["qwk"] if best["state"] is not None else None,
                   "epochs_run": len(history), "history": history}


def _bag_model(config: StudentConfig) -> ModelFactory:
    return lambda n_inputs, n_classes: Student(n_inputs, n_classes, config.hidden, config.dropout)


def predict_proba(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model.eval()(as_tensor(x)), dim=-1).numpy()


Features = Callable[[Table], np.ndarray]
"""A table's answers -> their feature matrix (one row per answer, in order): by default
``featurize_all(table.responses, featurizer_config)``; a caller that trains many students on the same
answers (bench/) passes a lookup into a matrix it featurized once."""


def _feature_fn(featurizer_config: FeaturizerConfig, features: Features | None = None) -> Features:
    """``features``, or featurize each table's answers with ``featurizer_config``."""
    return features if features is not None else lambda table: featurize_all(table.responses, featurizer_config)


def _student_data(table: Table, to_index: dict[int, int], features: Features, soft: SoftLabels | None) -> StudentData:
    y = np.array([to_index[s] if s is not None else UNLABELED for s in table.scores], dtype=np.int64)
    probs = soft.lookup(table.ids) if soft is not None else None
    return StudentData(features(table), y, probs)


def uses_cross_validation(n_labelled: int, config: StudentConfig) -> bool:
    """True when a validation split of ``config.val_fraction`` would hold fewer than ``config.cv_below``
    answers: too few to stop early on or to choose a model by, so k-fold cross-validation is used."""
    return round(n_labelled * config.val_fraction) < config.cv_below


def distill_item(
    train: Table,
    item: str,
    score_values: list[int],
    featurizer_config: FeaturizerConfig,
    config: StudentConfig,
    soft: SoftLabels | None = None,
    transfer: Table | None = None,
    test: Table | None = None,
    progress: bool = True,
    features: Features | None = None,
    make_model: ModelFactory | None = None,
    fold_teachers: list[FoldTeacher] | None = None,
) -> tuple[torch.nn.Module, dict]:
    """Train one item's student; returns (model, report with metrics on validation and test).

    Without ``soft`` (or with α = 0 and λ = 0) this is the paper's ANN baseline: the same network
    on human scores only. ``transfer`` answers (unscored) need ``soft`` probabilities for them.

    On a small item (:func:`uses_cross_validation`) the number of epochs is chosen by
    ``config.cv_folds``-fold cross-validation over all labelled answers, the model is then trained
    on all of them for that many epochs, and the report's "val" metrics are the pooled out-of-fold
    ones; ``report["oof"]`` holds the out-of-fold logits (ids, logits) for choosing and calibrating.

    ``features`` (see :data:`Features`) gives the answers' features instead of featurizing them here;
    with ``make_model`` (another network than the bag student, e.g. the sequence student) it gives that
    network's input.

    ``fold_teachers`` (cross-validation only, with soft labels): the folds are theirs, and fold k's model learns
    from fold k's teacher alone, so no held-out answer's score reaches it through the teacher. Without them the
    teacher that labels saw every answer, and the distilled students' out-of-fold figures are optimistic.
    """
    features = _feature_fn(featurizer_config, features)
    check_trainable(train, item)
    labelled = train.for_item(item).labelled()
    to_index = {v: i for i, v in enumerate(score_values)}
    stray = sorted({s for s in labelled.scores if s not in to_index})
    if stray:
        raise UserError(f"{train.path}: score {stray[0]} of item {item!r} is not among its score values {score_values}")
    use_soft = soft if soft is not None and (config.alpha > 0 or config.lam > 0) else None
    if transfer is not None and use_soft is None:
        raise UserError("a transfer set needs teacher soft labels and α > 0 (or λ > 0): only the teacher can score it")
    transfer = transfer.for_item(item) if transfer is not None else None
    if uses_cross_validation(len(labelled), config):
        folds = fold_teachers if use_soft is not None and fold_teachers else None
        model, history, val_metrics, oof = _cross_validated(labelled, transfer, to_index, features, config, use_soft,
                                                            progress, make_model, folds)
        sizes = {"fit": len(labelled), "val": 0, "cross_validation_folds": len(folds) if folds else config.cv_folds,
                 "fold_teachers": bool(folds)}
    else:
        fit, val = stratified_split(labelled, config.val_fraction, config.seed)
        fit_table = concat(fit, transfer) if transfer is not None else fit
        model, history = train_student(
            _student_data(fit_table, to_index, features, use_soft),
            _student_data(val, to_index, features, None),
            len(score_values), config, progress, make_model=make_model,
        )
        val_metrics, oof, sizes = evaluate(model, val, score_values, featurizer_config, soft, features), None, \
            {"fit": len(fit), "val": len(val)}
    report = {
        "params": param_count(model),
        "training": {"labelled": len(labelled), **sizes, "transfer": len(transfer) if transfer is not None else 0,
                     "alpha": config.alpha if use_soft else 0.0, "temperature": config.temperature,
                     "lam": config.lam if use_soft else 0.0, "seed": config.seed,
                     "best_epoch": history["best_epoch"], "epochs_run": history["epochs_run"]},
        "metrics": {"val": val_metrics},
    }
    if oof is not None:
        report["oof"] = oof
    test = test.for_item(item).labelled() if test is not None else None
    if test is not None and len(test):
        report["metrics"]["test"] = evaluate(model, test, score_values, featurizer_config, soft, features)
    return model, report


def _cross_validated(labelled: Table, transfer: Table | None, to_index: dict, features: Features,
                     config: StudentConfig, soft: SoftLabels | None, progress: bool,
                     make_model: ModelFactory | None = None, fold_teachers: list[FoldTeacher] | None = None):
    """k folds trained for config.epochs each; the epoch with the best pooled out-of-fold QWK is the one
    the final model (all labelled answers) is trained for. Returns (model, history, val metrics, oof)."""
    n_classes = len(to_index)
    data = _student_data(labelled, to_index, features, soft)
    has_transfer = transfer is not None and len(transfer) > 0
    extra = _student_data(transfer, to_index, features, soft) if has_transfer else None
    oof = np.zeros((config.epochs, len(labelled), n_classes))
    for held_out, fold in _folds(labelled, config, fold_teachers):
        keep = np.setdiff1d(np.arange(len(labelled)), held_out)
        if fold is None:
            fit, fold_model = _rows(data, keep, extra), make_model
        else:   # this fold's teacher labels what the fold trains on
            fit = _rows(StudentData(data.x, data.y, fold.soft.lookup(labelled.ids)), keep,
                        StudentData(extra.x, extra.y, fold.soft.lookup(transfer.ids)) if has_transfer else None)
            fold_model = fold.make_model or make_model
        x_held = as_tensor(data.x[held_out])

        def record(epoch: int, model: Student, held_out=held_out, x_held=x_held) -> None:
            with torch.no_grad():
                oof[epoch - 1, held_out] = model(x_held).double().numpy()

        train_student(fit, None, n_classes, config, progress=False, epochs=config.epochs, on_epoch=record,
                      make_model=fold_model)
    per_epoch = [qwk(data.y, oof[e].argmax(axis=1), list(range(n_classes))) for e in range(config.epochs)]
    best = int(np.argmax(per_epoch)) + 1
    model, history = train_student(_rows(data, np.arange(len(labelled)), extra), None, n_classes, config, progress,
                                   epochs=best, make_model=make_model)
    values = sorted(to_index, key=to_index.get)
    pred = [values[i] for i in oof[best - 1].argmax(axis=1)]
    val_metrics = score_metrics(labelled.scores, pred, values) | {"cross_validated": True}
    history = history | {"best_epoch": best, "cv_qwk_by_epoch": per_epoch}
    return model, history, val_metrics, {"ids": list(labelled.ids), "logits": oof[best - 1]}


def _folds(labelled: Table, config: StudentConfig, fold_teachers: list[FoldTeacher] | None) -> list:
    """[(held-out row indices, its FoldTeacher or None)]: the fold teachers' folds, or the student's own."""
    if not fold_teachers:
        return [(held_out, None) for held_out in stratified_folds(labelled, config.cv_folds, config.seed)]
    row = {rid: i for i, rid in enumerate(labelled.ids)}
    held = [rid for fold in fold_teachers for rid in fold.held_out]
    if sorted(held) != sorted(labelled.ids):
        raise ValueError("the fold teachers' held-out answers must be the labelled answers, each once")
    return [(np.array([row[rid] for rid in fold.held_out], dtype=np.int64), fold) for fold in fold_teachers]


def _rows(data: StudentData, rows: np.ndarray, extra: StudentData | None) -> StudentData:
    """``rows`` of ``data``, followed by every row of ``extra`` (transfer answers train in every fold)."""
    x, y = data.x[rows], data.y[rows]
    p = data.teacher_probs[rows] if data.teacher_probs is not None else None
    if extra is None:
        return StudentData(x, y, p)
    return StudentData(_stack(x, extra.x), np.concatenate([y, extra.y]),
                       np.concatenate([p, extra.teacher_probs]) if p is not None else None)


def _stack(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` above ``b``; token-id matrices (padded to their own longest answer) padded with 0 to the wider."""
    width = max(a.shape[1], b.shape[1])
    return np.concatenate([np.pad(m, ((0, 0), (0, width - m.shape[1]))) for m in (a, b)])


def evaluate(model: torch.nn.Module, table: Table, score_values: list[int], featurizer_config: FeaturizerConfig,
             soft: SoftLabels | None = None, features: Features | None = None) -> dict:
    """Metrics of ``model`` on ``table`` (labelled rows), with agreement with the teacher where known."""
    probs = predict_proba(model, _feature_fn(featurizer_config, features)(table))
    pred = [score_values[i] for i in probs.argmax(axis=1)]
    m = score_metrics(table.scores, pred, score_values)
    if soft is not None and set(table.ids) <= set(soft.ids):
        teacher_pred = soft.lookup(table.ids).argmax(axis=1)
        m["teacher_agreement"] = float(np.mean(teacher_pred == probs.argmax(axis=1)))
    return m
