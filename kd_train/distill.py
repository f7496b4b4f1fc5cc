"""Knowledge distillation: the loss, and training the student from teacher probabilities."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kd_train.config import StudentConfig  # noqa: F401  (re-exported: the student's settings)
from kd_train.data import Table, UserError, check_trainable, concat, stratified_split
from kd_train.metrics import qwk, score_metrics
from kd_train.soft_labels import SoftLabels
from kd_train.student import Student, featurize_all, param_count
from kd_train.teacher import UNLABELED


def kd_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    alpha: float = 0.5,
    temperature: float = 2.0,
    lam: float = 0.0,
) -> torch.Tensor:
    """L = (1−α)·CE(y, s) + α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + λ·CE(p_teacher, s), averaged over the batch.

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
class StudentData:
    """Featurized answers for one item: labels index score values, UNLABELED for transfer answers."""

    x: np.ndarray
    y: np.ndarray
    teacher_probs: np.ndarray | None = None


def train_student(
    fit: StudentData, val: StudentData, n_classes: int, config: StudentConfig, progress: bool = True
) -> tuple[Student, dict]:
    """AdamW on kd_loss (or plain cross-entropy without teacher probabilities), early stopping on
    validation QWK; returns the best model and its history. Same data and seed → same weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small trains >10x faster on one thread than on two busy cores
    try:
        return _train_student(fit, val, n_classes, config, progress)
    finally:
        torch.set_num_threads(threads)


def _train_student(fit: StudentData, val: StudentData, n_classes: int, config: StudentConfig, progress: bool):
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = Student(fit.x.shape[1], n_classes, config.hidden, config.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x, y = torch.from_numpy(fit.x), torch.from_numpy(fit.y).long()
    p = torch.from_numpy(fit.teacher_probs).float() if fit.teacher_probs is not None else None
    if p is None and bool((y == UNLABELED).any()):
        raise ValueError("unlabeled answers need teacher probabilities")
    x_val = torch.from_numpy(val.x)
    labels = list(range(n_classes))
    best = {"qwk": -2.0, "epoch": 0, "state": None}
    history = []
    bar = tqdm(range(1, config.epochs + 1), desc="student", unit="epoch", disable=not progress, leave=False)
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
                loss = kd_loss(logits, y[idx], p[idx], config.alpha, config.temperature, config.lam)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            pred = model(x_val).argmax(dim=1).numpy()
        score = qwk(val.y, pred, labels)
        history.append({"epoch": epoch, "loss": total / len(x), "val_qwk": score})
        bar.set_postfix(loss=f"{total / len(x):.4f}", val_qwk=f"{score:.3f}")
        if score > best["qwk"]:
            best = {"qwk": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif epoch - best["epoch"] >= config.patience:
            break
    model.load_state_dict(best["state"])
    model.eval()
    return model, {"best_epoch": best["epoch"], "val_qwk": best["qwk"], "epochs_run": len(history), "history": history}


def predict_proba(model: Student, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(x)), dim=-1).numpy()


def _student_data(table: Table, to_index: dict[int, int], featurizer_config: dict, soft: SoftLabels | None) -> StudentData:
    y = np.array([to_index[s] if s is not None else UNLABELED for s in table.scores], dtype=np.int64)
    probs = soft.lookup(table.ids) if soft is not None else None
    return StudentData(featurize_all(table.responses, featurizer_config), y, probs)


def distill_item(
    train: Table,
    item: str,
    score_values: list[int],
    featurizer_config: dict,
    config: StudentConfig,
    soft: SoftLabels | None = None,
    transfer: Table | None = None,
    test: Table | None = None,
    progress: bool = True,
) -> tuple[Student, dict]:
    """Train one item's student; returns (model, report with metrics on validation and test).

    Without ``soft`` (or with α = 0 and λ = 0) this is the paper's ANN baseline: the same network
    on human scores only. ``transfer`` answers (unscored) need ``soft`` probabilities for them.
    """
    check_trainable(train, item)
    labelled = train.for_item(item).labelled()
    fit, val = stratified_split(labelled, config.val_fraction, config.seed)
    to_index = {v: i for i, v in enumerate(score_values)}
    stray = sorted({s for s in labelled.scores if s not in to_index})
    if stray:
        raise UserError(f"{train.path}: score {stray[0]} of item {item!r} is not among its score values {score_values}")
    use_soft = soft if soft is not None and (config.alpha > 0 or config.lam > 0) else None
    if transfer is not None and use_soft is None:
        raise UserError("a transfer set needs teacher soft labels and α > 0 (or λ > 0): only the teacher can score it")
    fit_table = concat(fit, transfer.for_item(item)) if transfer is not None else fit
    model, history = train_student(
        _student_data(fit_table, to_index, featurizer_config, use_soft),
        _student_data(val, to_index, featurizer_config, None),
        len(score_values), config, progress,
    )
    report = {
        "params": param_count(model),
        "training": {"labelled": len(labelled), "fit": len(fit), "val": len(val),
                     "transfer": len(fit_table) - len(fit), "alpha": config.alpha if use_soft else 0.0,
                     "temperature": config.temperature, "lam": config.lam if use_soft else 0.0, "seed": config.seed,
                     "best_epoch": history["best_epoch"], "epochs_run": history["epochs_run"]},
        "metrics": {},
    }
    splits = {"val": val} | ({"test": test.for_item(item).labelled()} if test is not None else {})
    for name, table in splits.items():
        if len(table):
            report["metrics"][name] = evaluate(model, table, score_values, featurizer_config, soft)
    return model, report


def evaluate(model: Student, table: Table, score_values: list[int], featurizer_config: dict,
             soft: SoftLabels | None = None) -> dict:
    """Metrics of ``model`` on ``table`` (labelled rows), with agreement with the teacher where known."""
    probs = predict_proba(model, featurize_all(table.responses, featurizer_config))
    pred = [score_values[i] for i in probs.argmax(axis=1)]
    m = score_metrics(table.scores, pred, score_values)
    if soft is not None and set(table.ids) <= set(soft.ids):
        teacher_pred = soft.lookup(table.ids).argmax(axis=1)
        m["teacher_agreement"] = float(np.mean(teacher_pred == probs.argmax(axis=1)))
    return m
