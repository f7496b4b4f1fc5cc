"""One fine-tuning of an encoder as a sequence classifier, with ``transformers.Trainer`` (so ``torchrun``
or ``accelerate launch`` distribute it without code changes): the class-weighted loss, patience on the
validation QWK, quiet progress lines for logs, and optional soft targets (prediction-layer distillation,
for the TinyBERT-like stand-in). kd_train/teacher.py decides what to fine-tune on and saves the result.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kd_train.config import TeacherConfig
from kd_train.data import UNLABELED, Table, UserError, concat
from kd_train.encoder import encode, load_model, resolve_model, truncate_layers

PROGRESS_EVERY_S = 30.0   # without a terminal (no progress bar), a line at most this often while training


@dataclass
class SoftTargets:
    """Teacher probabilities to fine-tune against (prediction-layer distillation) instead of labels alone.

    ``loss(logits, labels, teacher_probs)`` gets labels of UNLABELED for answers no human scored; those come
    from ``transfer``, answers that only the teacher labelled.
    """

    ids: list[str]
    probs: np.ndarray
    loss: Callable
    transfer: Table | None = None

    def lookup(self, table: Table) -> np.ndarray:
        import numpy as np

        index = {rid: i for i, rid in enumerate(self.ids)}
        missing = [rid for rid in table.ids if rid not in index]
        if missing:
            raise UserError(f"no teacher probabilities for {len(missing)} answers (first: id {missing[0]!r}); label them first")
        return self.probs[[index[rid] for rid in table.ids]]


def balanced_class_weights(scores: Sequence[int | None], score_values: list[int]) -> list[float]:
    """A loss weight per score value: n / (k * count) over the scored answers in ``scores``, where k is the
    number of score values that occur (so the weights average 1 over the answers); a score value that does
    not occur gets 0 (it has no answers to weigh)."""
    counts = [sum(1 for s in scores if s == v) for v in score_values]
    n, present = sum(counts), sum(1 for c in counts if c)
    return [n / (present * c) if c else 0.0 for c in counts]


class PatienceRule:
    """Early stopping on validation QWK that waits for the teacher to beat chance.

    ``step(qwk, epoch, steps)`` after each evaluation says whether to stop: after ``patience`` evaluations in a
    row without a better QWK, counted only once the best QWK is above 0 and ``min_steps`` optimizer steps have
    run. A teacher still predicting one score for every answer (QWK 0) keeps training up to the most epochs; so
    does one that has seen too few batches to judge (80 answers make 5 steps an epoch, and 4 epochs of them
    had stopped a teacher at chance). Better means strictly greater, as Trainer's choice of the best checkpoint
    (load_best_model_at_end), so ``best_epoch`` is the epoch of the kept model.
    """

    def __init__(self, patience: int, min_steps: int = 0):
        self.patience = patience
        self.min_steps = min_steps
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.waited = 0
        self.history: list[float] = []

    def step(self, qwk: float, epoch: float | None, steps: int | None = None) -> bool:
        self.history.append(qwk)
        if self.best is None or qwk > self.best:
            self.best, self.best_epoch, self.waited = qwk, epoch, 0
        elif self.best > 0 and (steps is None or steps >= self.min_steps):
            self.waited += 1
        return self.best > 0 and self.waited >= self.patience


def patience_callback(patience: int, metric: str = "eval_qwk", min_steps: int = 0):
    """A TrainerCallback that applies a :class:`PatienceRule` to ``metric`` after each evaluation."""
    from transformers import TrainerCallback

    class QWKPatience(TrainerCallback):
        def __init__(self):
            self.rule = PatienceRule(patience, min_steps)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(metric)
            if value is not None and self.rule.step(float(value), state.epoch, getattr(state, "global_step", None)):
                control.should_training_stop = True

    return QWKPatience()


def epoch_line(logs: dict, total_epochs: float, loss: float | None = None) -> str | None:
    """One line for a Trainer log: the epoch's validation figures (with ``loss``, the training loss its
    epoch logged before them), or its training loss where no validation follows; the run's time at
    the end. None for a log that needs no line of its own."""
    head = f"    epoch {logs['epoch']:g}/{total_epochs:g}" if logs.get("epoch") is not None else "   "
    if "eval_qwk" in logs:
        trained = f"training loss {loss:.3f}; " if loss is not None else ""
        return f"{head}: {trained}validation QWK {logs['eval_qwk']:.3f}, accuracy {logs.get('eval_acc', float('nan')):.3f}"
    if "train_runtime" in logs:
        return f"    trained in {logs['train_runtime']:.0f} s"
    if "loss" in logs:
        return f"{head}: training loss {logs['loss']:.3f}"
    return None


def quiet_log_callbacks(total_epochs: float) -> tuple:
    """Callbacks that replace Trainer's printed log dicts (PrinterCallback on a log file, the dicts that
    ProgressCallback writes under its bar on a terminal) by one ``epoch_line`` an epoch."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback, TrainerCallback

    class EpochLines(TrainerCallback):
        loss = None
        started = said = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = self.said = time.monotonic()
            if state.is_world_process_zero:
                tqdm.write(f"    {state.max_steps} optimizer steps at most ({total_epochs:g} epochs); a line an epoch"
                           + ("" if sys.stderr.isatty() else f" and one every {PROGRESS_EVERY_S:g} s"))

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()   # on a terminal, the progress bar says it
            if sys.stderr.isatty() or now - self.said < PROGRESS_EVERY_S or not state.is_world_process_zero:
                return
            self.said = now
            tqdm.write(f"    step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f}), "
                       f"{now - self.started:.0f} s")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs and args.eval_strategy != "no":
                self.loss = logs["loss"]            # said with the validation figures that follow
                return
            line = epoch_line(logs, total_epochs, self.loss)
            if line and state.is_world_process_zero:
                tqdm.write(line)

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    return EpochLines(), BarOnly()


def stop_after_callback(epochs: int):
    """A TrainerCallback that ends training after ``epochs`` epochs (the schedule stays that of all epochs)."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if state.epoch is not None and state.epoch >= epochs - 1e-6:
                control.should_training_stop = True

    return StopAfter()


class _Examples:
    """A list of tokenized answers with labels (and teacher probabilities), as Trainer expects."""

    def __init__(self, features: list[dict], labels: list[int], teacher_probs: np.ndarray | None = None):
        self.rows = [dict(f, labels=y) for f, y in zip(features, labels)]
        if teacher_probs is not None:
            for row, p in zip(self.rows, teacher_probs):
                row["teacher_probs"] = p.tolist()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _collator(tokenizer):
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer)

    def collate(features: list[dict]) -> dict:
        import torch

        features = [dict(f) for f in features]
        probs = [f.pop("teacher_probs") for f in features] if "teacher_probs" in features[0] else None
        batch = pad(features)
        if probs is not None:
            batch["teacher_probs"] = torch.tensor(probs, dtype=torch.float32)
        return batch

    return collate


def weighted_cross_entropy(logits, labels, weights):
    """Mean over the scored answers of weight[label] * cross-entropy (UNLABELED answers count for nothing).

    Divided by the number of scored answers, not by the sum of their weights, so a batch whose answers all
    have weight 0 gives 0 rather than NaN.
    """
    import torch.nn.functional as F

    scored = labels != UNLABELED
    safe = labels.clamp(min=0)
    ce = F.cross_entropy(logits.float(), safe, reduction="none")
    w = weights.to(logits.device)[safe] * scored
    return (w * ce).sum() / scored.sum().clamp(min=1)


def _trainer_class():
    from transformers import Trainer

    class SoftTrainer(Trainer):
        """A Trainer whose training loss may come from teacher probabilities (see SoftTargets), or be
        class-weighted cross-entropy on the labels (``class_weights``, a tensor with one weight per score)."""

        soft_loss: Callable | None = None
        class_weights = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            probs = inputs.pop("teacher_probs", None)
            if probs is not None and self.soft_loss is not None:
                labels = inputs.pop("labels")
                outputs = model(**inputs)
                loss = self.soft_loss(outputs.logits, labels, probs)
            elif self.class_weights is not None and "labels" in inputs:
                labels = inputs.pop("labels")
                outputs = model(**inputs)
                loss = weighted_cross_entropy(outputs.logits, labels, self.class_weights)
            else:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return SoftTrainer


def train_one(
    train: Table,
    val: Table,
    score_values: list[int],
    question: str | None,
    config: TeacherConfig,
    work_dir: Path,
    eval_tables: dict[str, Table],
    soft: SoftTargets | None = None,
    stop_at: int | None = None,
):
    """Fine-tune on ``train`` with early stopping on ``val``; return (trainer, tokenizer, {name: logits}, info).

    ``config.max_length`` must be resolved (> 0, see :func:`resolve_max_length`). ``info`` holds best_epoch,
    the validation QWK of each epoch, ``val_logits_by_epoch`` (the logits on ``val`` after each epoch) and the
    class weights used (None: plain cross-entropy). With ``val`` None nothing is evaluated and training stops
    after ``stop_at`` epochs, on the learning-rate schedule of ``config.epochs`` (as the runs that chose it).
    """
    import numpy as np
    import torch
    from transformers import TrainingArguments, set_seed

    from kd_train.metrics import score_metrics

    set_seed(config.seed)
    model, tokenizer = load_model(resolve_model(config.model), num_labels=len(score_values))
    if config.layers:
        truncate_layers(model, config.layers)
    model.config.id2label = {i: str(v) for i, v in enumerate(score_values)}
    model.config.label2id = {str(v): i for i, v in enumerate(score_values)}
    to_index = {v: i for i, v in enumerate(score_values)}

    def dataset(table: Table, probs: np.ndarray | None = None) -> _Examples:
        labels = [to_index[s] if s is not None else UNLABELED for s in table.scores]
        return _Examples(encode(tokenizer, table.responses, question, config.max_length), labels, probs)

    if soft is not None:
        fit = concat(train, soft.transfer) if soft.transfer is not None else train
        train_set = dataset(fit, soft.lookup(fit))
    else:
        train_set = dataset(train)
    # the soft-target path has its own loss; class weights are for the plain label loss only
    weights = balanced_class_weights(train.scores, score_values) if soft is None and config.class_weights == "balanced" else None

    seen: list[np.ndarray] = []   # logits of every evaluation on val, in order

    def compute_metrics(pred) -> dict:
        seen.append(pred.predictions)
        keep = pred.label_ids != UNLABELED
        m = score_metrics(pred.label_ids[keep], np.argmax(pred.predictions[keep], axis=1), list(range(len(score_values))))
        return {"acc": m["acc"], "qwk": m["qwk"], "f1": m["f1"]}

    args = TrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=config.epochs,
        learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(64, config.batch_size),
        weight_decay=config.weight_decay,
        # a float in [0, 1) is a share of all optimizer steps here (transformers >= 5 dropped warmup_ratio;
        # TrainingArguments.get_warmup_steps: ceil(total steps * share))
        warmup_steps=config.warmup_ratio,
        eval_strategy="epoch" if val is not None else "no",
        save_strategy="epoch" if val is not None else "no",
        save_total_limit=1,
        load_best_model_at_end=val is not None,
        metric_for_best_model="qwk" if val is not None else None,
        greater_is_better=True,
        logging_strategy="epoch",
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=not sys.stderr.isatty(),   # a progress bar on a terminal only; epoch lines either way
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        save_only_model=True,
        remove_unused_columns=False,
    )
    patience = patience_callback(config.patience, min_steps=config.min_steps)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dataset(val) if val is not None else None,
        data_collator=_collator(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[patience if val is not None else stop_after_callback(stop_at or math.ceil(config.epochs))],
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    lines, bar = quiet_log_callbacks(config.epochs)
    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(bar)
    trainer.add_callback(lines)
    trainer.soft_loss = soft.loss if soft is not None else None
    trainer.class_weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    trainer.train()
    val_logits = seen[:]
    logits = {name: trainer.predict(dataset(t)).predictions for name, t in eval_tables.items()}
    if val is None:
        info = {"best_epoch": float(trainer.state.epoch or 0), "val_qwk_by_epoch": [], "val_logits_by_epoch": []}
    else:
        info = {"best_epoch": patience.rule.best_epoch, "val_qwk_by_epoch": [round(q, 4) for q in patience.rule.history],
                "val_logits_by_epoch": val_logits}
    info["class_weights"] = weights
    return trainer, tokenizer, logits, info


def logit_metrics(logits: np.ndarray, table: Table, score_values: list[int]) -> dict:
    import numpy as np

    from kd_train.metrics import score_metrics

    pred = [score_values[i] for i in np.argmax(logits, axis=1)]
    truth = [s for s in table.scores]
    keep = [i for i, s in enumerate(truth) if s is not None]
    return score_metrics([truth[i] for i in keep], [pred[i] for i in keep], score_values)
