"""Train one item end to end: teacher -> soft labels -> student -> scorer directory.

Besides the KD student, the ANN (the same network on human scores only) and hashing + logistic
regression are trained on the same split; the one with the best validation QWK is shipped,
calibrated and checked by the quality gate (kd_train/quality.py). Everything lands in ``out/<item>/`` and doubles as a cache: a teacher whose settings and training
table are unchanged is reused, and soft labels are reused by their fingerprint, so re-running the
student side takes minutes.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from kd_train import baselines, detect, detect_fit, ensemble, folds as fold_teaching, ladder, probes, quality, soft_labels, teacher
from kd_train import featurize
from kd_train.config import AUGMENT, CANDIDATES, FeaturizerConfig, SequenceConfig
from kd_train.data import (Item, Table, UserError, augmented_answers, concat, item_folder, read_responses,
                            stratified_split)
from kd_train.distill import FoldTeacher, StudentConfig, distill_item, kd_loss, uses_cross_validation
from kd_train.files import sha256_file
from kd_train.temps import atomic_write_text
from kd_train.metrics import decide, flag_shares, score_metrics
from kd_train.validity import validity
from kd_train.quality import Candidate
from kd_train.teacher_judge import decided_qwk, teacher_val_qwk, decide_teacher, teacher_validation
from kd_train.scorer import write_scorer
from kd_train.student import (SequenceStudent, embedding_table, input_config, logits, model_inputs, onnx_bytes, onnx_cost,
                              param_count, token_matrix)

OTHER_ANSWERS_MAX = 20000   # answers to other questions the detectors learn other_question from, at most
SEQUENCE_WORDS_MAX = 30000  # words (used twice or more) whose teacher vectors start the sequence student's embeddings


@dataclass
class PipelineConfig:
    teacher: teacher.TeacherConfig = field(default_factory=teacher.TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)
    tinybert: bool = False  # train the small transformer (kd_train/ladder.py) even where it is no candidate: a report row
    tinybert_layers: int = 3
    use_transfer: bool = True
    augment: int = AUGMENT   # perturbed copies of each fitted answer for the teacher to label (0: none)
    pair_question: str = "no"  # "auto": a second teacher reads question + answer; the better on validation labels
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    max_model_mb: float | None = None   # ship the best candidate whose model.onnx is at most this many MB
    max_ms_per_answer: float | None = None   # ... and that scores an answer in at most this many ms (student.answer_ms)
    teachers: int = 1   # members of the teacher (seeds averaged; kd_train/ensemble.py), used where they beat one
    candidates: tuple[str, ...] = CANDIDATES   # the models selection may ship (the sequence student is trained only when listed)
    force: bool = False  # replace teacher and scorer folders even when kd-train did not write them


def check_item(item: Item, values: list[int], train: Table, config: PipelineConfig) -> None:
    """Raise DataError now if :func:`run_item` would stop on ``item``'s data later: the checks the teacher
    and the student make before they train, so that ``kd-train train`` refuses a bad item among several
    before it trains any (and not after hours of training the ones before it)."""
    from kd_train.data import DataError, check_trainable, where

    check_trainable(train, item.item)
    labelled = train.for_item(item.item).labelled()
    stray = sorted({s for s in labelled.scores if s not in values})
    if stray:
        raise DataError(f"{where(train.path)}: score {stray[0]} of item {item.item!r} is not among its score values "
                        f"{values}; fix the score or the item's score_min/score_max")
    if config.teacher.with_question and not item.question:
        raise DataError(f"--with-question needs item {item.item!r}'s question: give --items with a 'question' for it")
    n = len(labelled)
    if not teacher.uses_cross_validation(n, config.teacher):
        stratified_split(labelled, config.teacher.val_fraction, config.teacher.splits_seed)
    if not uses_cross_validation(n, config.student):
        stratified_split(labelled, config.student.val_fraction, config.student.seed)


def _cached_teacher(folder: Path, config: teacher.TeacherConfig, train: Table) -> dict | None:
    try:
        meta = teacher.read_meta(folder)
    except teacher.ModelError:
        return None
    # teachers saved before a setting existed are compared with its default; they were never
    # cross-validated, so they are reused only where the settings would not cross-validate either
    stored = asdict(teacher.TeacherConfig()) | meta["config"]
    cross_validated = meta.get("cross_validation") is not None
    n_labelled = meta["train_rows"] + meta["val_rows"]
    same = (stored == asdict(config) and meta["train_sha256"] == sha256_file(train.path)
            and cross_validated == teacher.uses_cross_validation(n_labelled, config)
            # a cross-validated teacher saved before the frozen encoder was tried beside it is not reused
            and not (cross_validated and config.frozen and not config.layers and "frozen_candidate" not in meta))
    return meta if same else None


def _teacher(out: Path, item: Item, values: list[int], train: Table, test: Table | None, config: teacher.TeacherConfig,
             name: str = "teacher", soft: teacher.SoftTargets | None = None, log=print, force: bool = False) -> dict:
    meta = _cached_teacher(out / name, config, train)
    if meta is not None:
        log(f"  {name}: reusing {out / name}")
        return meta
    log(f"  {name}: fine-tuning ({'distilled, ' if soft else ''}{config.layers or 'all'} layers)")
    return teacher.fine_tune(train, item.item, values, out / name, config, question=item.question, test=test, soft=soft,
                             force=force)


def _paired_or_not(out: Path, item: Item, values: list[int], train: Table, test: Table | None, config: PipelineConfig,
                   log=print) -> tuple[dict, Path, dict | None]:
    """The teacher to label with: (teacher.json, its folder, how the question pairing was chosen or None).

    With ``config.pair_question == "auto"`` and a question, a second teacher is fine-tuned on
    (question, answer) pairs (``teacher-question/``), and the one with the better validation QWK by its
    own decision rule labels the answers (ties: the answer alone, the shorter input)."""
    alone = _teacher(out, item, values, train, test, config.teacher, log=log, force=config.force)
    if config.pair_question != "auto" or not item.question:
        return alone, out / "teacher", None
    paired_config = replace(config.teacher, with_question=True)
    paired = _teacher(out, item, values, train, test, paired_config, name="teacher-question", log=log, force=config.force)
    qwks = {"answer alone": teacher_val_qwk(out / "teacher", alone, train, values),
            "question + answer": teacher_val_qwk(out / "teacher-question", paired, train, values)}
    with_question = qwks["question + answer"] > qwks["answer alone"]
    log(f"  question pairing, chosen on validation QWK: answer alone {qwks['answer alone']:.3f}, question + answer "
        f"{qwks['question + answer']:.3f}: the teacher reads {'the question and ' if with_question else ''}the answer")
    pairing = {"val_qwk": qwks, "with_question": with_question,
               "judged_by": "validation QWK of each teacher's own decision rule"}
    return (paired, out / "teacher-question", pairing) if with_question else (alone, out / "teacher", pairing)


def _members(out: Path, item: Item, values: list[int], train: Table, test: Table | None, config: PipelineConfig,
             meta: dict, first: Path, log=print) -> tuple[list[Path], dict, tuple | None]:
    """The teacher's other ``config.teachers - 1`` members (kd_train/ensemble.py: other seeds, the first one's
    split), and which label: all of them, their probabilities averaged, where their averaged validation logits
    beat the first member's alone by the teacher's own decision rule; else the first alone. Returns (the folders
    that label, the report's "members", the averaged validation (answers, logits) or None)."""
    if meta.get("kind") == teacher.FROZEN_KIND:
        log("  teachers: the frozen encoder + logistic regression labels (better out of fold than fine-tuning); "
            "another seed would give the same regression, so it labels alone")
        return [first], {"members": 1, "labels": "the first alone", "why": "a frozen teacher"}, None
    base = replace(config.teacher, with_question=meta["config"]["with_question"])
    dirs, metas = [first], [meta]
    for k in range(1, config.teachers):
        member = ensemble.member_config(base, k)
        log(f"  teacher {k + 1} of {config.teachers}: seed {member.seed}, the first one's validation answers")
        name = ensemble.member_name(first.name, k)
        metas.append(_teacher(out, item, values, train, test, member, name=name, log=log, force=config.force))
        dirs.append(out / name)
    found = [teacher_validation(d, m, None, train) for d, m in zip(dirs, metas)]
    if any(f is None or f[0].ids != found[0][0].ids for f in found):
        log("  teachers: their validation logits do not cover the same answers, so they cannot be judged "
            "together: the first labels alone")
        return [first], {"members": len(dirs), "labels": "the first alone", "why": "no common validation"}, None
    val, averaged = found[0][0], ensemble.averaged_logits([f[1] for f in found])
    each = [decided_qwk(val, f[1], values) for f in found]
    together = decided_qwk(val, averaged, values)
    chosen = together > each[0]
    log(f"  teachers: validation QWK {', '.join(f'{q:.3f}' for q in each)} alone, {together:.3f} averaged: "
        + (f"the {len(dirs)} label together" if chosen else "the first labels alone"))
    summary = {"members": len(dirs), "seeds": [m["config"]["seed"] for m in metas],
               "val_qwk": {"each": [round(q, 4) for q in each], "averaged": round(together, 4)},
               "labels": f"all {len(dirs)}, averaged" if chosen else "the first alone",
               "judged_by": "validation QWK of the teacher's own decision rule, on the first member's validation answers",
               "wall_s": [m.get("wall_s") for m in metas]}
    return (dirs, summary, (val, averaged)) if chosen else ([first], summary, None)


def run_item(
    item: Item, values: list[int], train: Table, test: Table | None, unlabeled: Table | None,
    out: str | Path, config: PipelineConfig, log=print,
) -> dict:
    """Train ``item``'s teacher, soft labels, student (and baselines); write out/<folder>/ and its report,
    where <folder> is :func:`kd_train.data.item_folder` of the item id (safe for any id)."""
    started = time.time()
    out = Path(out) / item_folder(item.item)
    fconfig = config.featurizer
    table, train = train, train.for_item(item.item)   # the whole table: the detectors learn other_question from it
    test_table, test = test, test.for_item(item.item).labelled() if test is not None else None
    unlabeled = unlabeled.for_item(item.item) if unlabeled is not None else None
    report: dict = {"item": item.item, "score_values": values, "models": {},
                    "class_balance": {str(v): train.labelled().scores.count(v) for v in values}}

    meta, teacher_dir, pairing = _paired_or_not(out, item, values, train, test, config, log)
    dirs, together, validation = [teacher_dir], None, None
    if config.teachers > 1:
        dirs, together, validation = _members(out, item, values, train, test, config, meta, teacher_dir, log)
    soft_train = ensemble.label(dirs, train, out / "soft-train.csv")
    parts = [soft_train]
    if unlabeled is not None and len(unlabeled):
        parts.append(ensemble.label(dirs, unlabeled, out / "soft-unlabeled.csv"))
    soft_test = ensemble.label(dirs, test, out / "soft-test.csv") if test is not None and len(test) else None
    if soft_test is not None:
        parts.append(soft_test)
    labelled = train.labelled()
    cv = uses_cross_validation(len(labelled), config.student)
    augmented = _augmented(out, train, item.item, config, log) if config.augment and not cv else None
    if augmented is not None:
        parts.append(ensemble.label(dirs, augmented, out / "soft-augmented.csv"))
    soft = soft_labels.merge(parts)
    report["models"]["teacher"] = {"params": meta["params"],
                                   **decide_teacher(teacher_dir, meta, soft_train, soft_test, train, test, values,
                                                    validation),
                                   **({"pairing": pairing} if pairing else {}),
                                   **({"members": together} if together else {}),
                                   **({"frozen_candidate": meta["frozen_candidate"]} if "frozen_candidate" in meta else {})}

    transfer = unlabeled if config.use_transfer and unlabeled is not None and len(unlabeled) else None
    if augmented is not None:
        transfer = concat(transfer, augmented) if transfer is not None else augmented
    log(f"  student: distilling (α={config.student.alpha}, T={config.student.temperature}"
        f"{f', {len(transfer)} transfer answers' if transfer is not None else ''}"
        f"{f' ({len(augmented)} of them augmented)' if augmented is not None else ''})")
    folds = None
    if cv:
        log(f"  {len(labelled)} scored answers: a {config.student.val_fraction:.0%} validation split would hold fewer "
            f"than {config.student.cv_below}, so {config.student.cv_folds}-fold cross-validation chooses the epochs, "
            "the regression's C and the shipped model, and checks it")
        folds = fold_teaching.fold_teachers(out, dirs, train, transfer, log)
        report["fold_teachers"] = fold_teaching.note(folds)
    model, student = distill_item(train, item.item, values, fconfig, config.student, soft, transfer, test,
                                  fold_teachers=[fold for _, fold in folds] if folds else None)
    report["models"]["student"] = {"params": student["params"], **student["metrics"]}
    log("  candidates: ANN (same network, human scores only), hashing + logistic regression")
    ann_model, ann = distill_item(train, item.item, values, fconfig, config.student.without_teacher(), soft, None, test)
    report["models"]["ann"] = {"params": ann["params"], **ann["metrics"]}
    lr = baselines.hashing_lr(train, item.item, values, fconfig, test, seed=config.student.seed,
                              val_fraction=config.student.val_fraction, cv_folds=config.student.cv_folds if cv else 0)
    lr_model = baselines.as_student(lr["model"], values)
    report["models"]["hashing_lr"] = {"params": lr["params"], **lr["metrics"]}
    trained = {"student": (model, student), "ann": (ann_model, ann), "hashing_lr": (lr_model, lr)}
    if "sequence" in config.candidates:
        trained["sequence"] = sequence_student(teacher_dir, train, item.item, values, config, soft, transfer, test, log,
                                               folds)
        report["models"]["sequence"] = {"params": trained["sequence"][1]["params"], **trained["sequence"][1]["metrics"],
                                        "embeddings": trained["sequence"][1]["embeddings"]}
    val = labelled if cv else validation_split(train, item.item, config.student)[1]
    folders = {"teacher": (dirs, meta)}   # the transformers that may be exported as candidates (the teacher: those that label)
    if config.tinybert or (ladder.SMALL_NAME in config.candidates and not cv):
        folders[ladder.SMALL_NAME], report["models"][ladder.SMALL_NAME] = small_transformer(
            out, item, values, train, test, config, meta, teacher_dir, soft, transfer, log)
    elif ladder.SMALL_NAME in config.candidates:
        log(f"  candidate: {ladder.SMALL_NAME} skipped: {len(labelled)} scored answers are cross-validated, and a "
            "transformer trained on every answer cannot be judged on them")
    for name in ladder.TRANSFORMER_CANDIDATES:
        if name in config.candidates and name in folders:
            exported = ladder.transformer_candidate(name, *folders[name], train, val, cv, log,
                                                    origin=report["models"][name].get("started_from"),
                                                    keep_texts=trained_texts(labelled, val, transfer)
                                                    if name == ladder.SMALL_NAME else None,
                                                    max_bytes=round(config.max_model_mb * 1e6) if config.max_model_mb else None)
            if exported is not None:
                trained[name] = exported
                report["models"][name]["exported"] = exported[1]["exported"]
    candidates = make_candidates({name: trained[name] for name in config.candidates if name in trained}, val, test,
                                 fconfig)
    if not candidates:
        from kd_train.data import UserError

        raise UserError(f"item {item.item!r}: none of the candidates {', '.join(config.candidates)} could be trained "
                        "(see the lines above); add student, ann, hashing_lr or sequence to --candidates")
    shipped, quality_report = ship(candidates, val, test, values, report["models"],
                                   max_bytes=round(config.max_model_mb * 1e6) if config.max_model_mb else None,
                                   max_ms=config.max_ms_per_answer)
    quality_report["selection"] = selection_note(cv, len(val), config.student.cv_folds, bool(folds) if cv else None)
    # what selection saw, answer by answer (report.json only, never the scorer): to study selection rules on
    # validation answers without training again
    report["validation_predictions"] = {"ids": list(val.ids), "scores": list(val.scores),
                                        "by_candidate": {c.name: [int(s) for s in c.predict_val(values)]
                                                         for c in candidates}}
    report["models"]["shipped"] = {"params": param_count(shipped), "model": quality_report["shipped"],
                                   **quality_report["metrics"]}
    report["quality"] = quality_report
    report["validity"] = quality_report["validity"]
    for split, m in quality_report["metrics"].items():   # the student's and ANN's agreement with the teacher
        if "teacher_agreement" in report["models"][quality_report["shipped"]].get(split, {}):
            m["teacher_agreement"] = report["models"][quality_report["shipped"]][split]["teacher_agreement"]
    for line in quality_lines(item.item, quality_report):
        log(line)

    profile, report["detectors"] = fit_detectors(item, table, test)
    log(detector_line(report["detectors"]))
    report["probes"] = probe_shipped(item, train.labelled(), test_table, profile, shipped,
                                     quality_report["calibration"]["decision"]["cutpoints"], fconfig, values)
    log(probes.summary_line(report["probes"]))

    teacher_fp = soft_train.fingerprint | {"test_metrics": report["models"]["teacher"].get("test")}
    training = student["training"] | {"student_config": asdict(config.student)}
    if quality_report["shipped"] == "teacher":
        training = {"labelled": len(labelled), "fit": meta["train_rows"], "val": meta["val_rows"], "transfer": 0,
                    "exported_teacher": trained["teacher"][1]["exported"]}
    if quality_report["shipped"] == ladder.SMALL_NAME:
        small_meta = folders[ladder.SMALL_NAME][1]
        training = {"labelled": len(labelled), "fit": small_meta["train_rows"], "val": small_meta["val_rows"],
                    "transfer": len(transfer) if transfer is not None else 0,
                    "exported_small_transformer": trained[ladder.SMALL_NAME][1]["exported"]}
    if quality_report["shipped"] == "sequence":
        seq_report = trained["sequence"][1]
        training = seq_report["training"] | {"student_config": asdict(config.student),
                                             "sequence_config": asdict(config.sequence),
                                             "embeddings": seq_report["embeddings"]}
    write_scorer(out / "scorer", shipped, item=item.item, question=item.question, score_values=values,
                 featurizer_config=input_config(shipped, fconfig), metrics=quality_report["metrics"], teacher=teacher_fp, training=training,
                 quality=quality_report, detectors=profile, probes=report["probes"], force=config.force)
    report["wall_s"] = round(time.time() - started, 1)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def trained_texts(labelled: Table, val: Table, transfer: Table | None) -> list[str]:
    """The answers the small transformer trained on (the fit split and the transfer set): its vocabulary."""
    held_out = set(val.ids)
    return [r for rid, r in zip(labelled.ids, labelled.responses) if rid not in held_out] + \
        (transfer.responses if transfer is not None else [])


def small_transformer(out: Path, item: Item, values: list[int], train: Table, test: Table | None,
                      config: PipelineConfig, teacher_meta: dict, teacher_dir: Path, soft: soft_labels.SoftLabels,
                      transfer: Table | None, log=print) -> tuple:
    """The small transformer student (kd_train/ladder.py), distilled from ``soft`` on the fit split and the
    transfer answers into out/tinybert_like/: ((its folder, its teacher.json), its report row); a cached one is
    reused only when it started from the teacher now in ``teacher_dir``."""
    small = ladder.small_config(config.teacher, teacher_dir, teacher_meta, config.tinybert_layers)
    targets = teacher.SoftTargets(soft.ids, soft.probs, partial(kd_loss, alpha=1.0, temperature=1.0, lam=0.0), transfer)
    folder = out / ladder.SMALL_NAME
    cached = _cached_teacher(folder, small, train)
    if cached is not None and ladder.starts_from(cached, teacher_dir):
        log(f"  {ladder.SMALL_NAME}: reusing {folder}")
        tiny = cached
    else:
        log(f"  {ladder.SMALL_NAME}: the teacher's first {small.layers} layers, distilled from its probabilities")
        tiny = teacher.fine_tune(train, item.item, values, folder, small, question=item.question, test=test,
                                 soft=targets, force=config.force)
    row = {"params": tiny["params"], "layers": small.layers, "fit": tiny["train_rows"],
           "started_from": f"the first {small.layers} layers of "
                           + ("the fine-tuned teacher" if small.model != config.teacher.model else "the teacher's base model")
                           + f", {teacher_meta['base_model']}",
           **tiny["metrics"]}
    return (folder, tiny), row


def sequence_student(teacher_dir: Path | None, train: Table, item: str, values: list[int], config: PipelineConfig,
                     soft: soft_labels.SoftLabels | None, transfer: Table | None, test: Table | None, log=print,
                     folds: list[tuple[list[Path], FoldTeacher]] | None = None) -> tuple:
    """The sequence student (kd_train/student.py), distilled like the bag student from the same soft labels
    and transfer answers, its embeddings started from the teacher's encoder (``config.sequence.init``; without
    ``teacher_dir``, from the packaged base encoder): (model, its distill_item report + "embeddings", where they
    came from). With ``folds`` (:func:`kd_train.folds.fold_teachers`), each fold of the cross-validation starts from its own
    fold teacher's encoder where that encoder was fine-tuned (its vectors learnt the scores)."""
    seq = config.sequence
    texts = train.responses + (transfer.responses if transfer is not None else [])
    counts: dict[str, int] = {}
    for text in texts:
        for word in featurize.tokens(text)[: seq.tokens.max_tokens]:
            counts[word] = counts.get(word, 0) + 1
    table, source = None, "random vectors"
    words = sorted((w for w, n in counts.items() if n >= 2), key=lambda w: (-counts[w], w))[:SEQUENCE_WORDS_MAX]
    if seq.init == "teacher" and words:
        vectors, source = teacher.word_vectors(teacher_dir, words) if teacher_dir is not None else base_word_vectors(words)
        table = embedding_table(words, [counts[w] for w in words], vectors, seq, config.student.seed)
    log(f"  candidate: sequence student (words in order, embeddings from {source}"
        f"{f', {len(words):,} words' if table is not None else ''})")
    student_config = replace(config.student, lr=seq.lr, epochs=seq.epochs, patience=seq.patience, dropout=seq.dropout)

    def network(start: np.ndarray | None):
        return lambda _, n_classes: SequenceStudent(seq, n_classes, start)

    per_fold = None
    if folds:
        per_fold = [replace(fold, make_model=network(embedding_table(words, [counts[w] for w in words],
                                                                     teacher.word_vectors(dirs[0], words)[0], seq,
                                                                     config.student.seed)))
                    if table is not None and teacher.fine_tuned(dirs[0]) else fold for dirs, fold in folds]
    model, report = distill_item(train, item, values, config.featurizer, student_config, soft, transfer, test,
                                 features=lambda t: token_matrix(t.responses, seq), make_model=network(table),
                                 fold_teachers=per_fold)
    return model, report | {"embeddings": source}


def base_word_vectors(words: list[str]) -> tuple[np.ndarray, str]:
    """(static vectors of ``words`` from the packaged base encoder, which encoder gave them): for a sequence
    student distilled without a teacher folder at hand (``kd-train distill --student sequence``)."""
    from kd_train import encoder

    return (encoder.word_vectors(encoder.load_encoder(encoder.resolve_model(None)), words),
            f"all-MiniLM-L6-v2 from {encoder.DEFAULT_MODEL_PACKAGE}, the base encoder, not fine-tuned (no teacher given)")


def _augmented(out: Path, train: Table, item: str, config: PipelineConfig, log) -> Table:
    """config.augment perturbed copies of each answer the student fits on (never of its validation
    answers: the teacher's labels of their copies would leak them into training), written to
    out/augmented.csv for the teacher to label (``data.augmented_answers``)."""
    fit = validation_split(train, item, config.student)[0]
    copies = augmented_answers(fit, config.augment, config.student.seed)
    atomic_write_text(out / "augmented.csv", copies.to_csv(scores=False))
    log(f"  augmented: {config.augment} perturbed copies of each of the {len(fit)} answers the student fits on, "
        "for the teacher to label")
    return read_responses(out / "augmented.csv", score_column=False)


def fit_detectors(item: Item, train: Table, test: Table | None, seed: int = 0) -> tuple[dict, dict]:
    """The detector profile of ``item`` (kd_train/detect.py) from its training answers, its question,
    reading text and reference answer, and the table's answers to other questions (at most
    OTHER_ANSWERS_MAX of them, drawn with ``seed``); and what it flags: out-of-fold on the training
    answers, and on test."""
    texts = train.for_item(item.item).responses
    others = [r for i, r in zip(train.items, train.responses) if i != item.item]
    if len(others) > OTHER_ANSWERS_MAX:
        others = random.Random(seed).sample(others, OTHER_ANSWERS_MAX)
    profile = detect_fit.fit(texts, [item.question, item.stimulus, item.reference_answer], seed=seed,
                         scores=train.for_item(item.item).scores, others=others)
    fitted = profile["fitted_on"]
    summary = {"share_target": fitted["share"], "val": {"n": fitted["answers"], "flagged": fitted["flagged"],
                                                         "flagged_by": fitted["flagged_by"], "how": f"{fitted['folds']}-fold out-of-fold"}}
    if test is not None and len(test):
        summary["test"] = flag_shares([detect.flags(t, profile) for t in test.responses])
    return profile, summary


def probe_shipped(item: Item, train: Table, test: Table | None, profile: dict, model, cutpoints: list[float] | None,
                  fconfig: FeaturizerConfig, values: list[int], seed: int = 0) -> dict:
    """The gaming probes of kd_train/probes.py made from ``item``'s scored training answers, and what the
    detectors and the shipped ``model`` (scoring by ``cutpoints`` where it has them, as the page does) do
    with them. Answers to other items come from ``test`` (the held-out answers to the table's other
    questions, which the detectors never saw); without one there is no such probe."""
    others = [r for i, r in zip(test.items, test.responses) if i != item.item and len(detect.words(r)) >= 5] \
        if test is not None else []

    def score(texts: list[str]) -> list[int]:
        probs = teacher.softmax(logits(model, model_inputs(model, texts, fconfig)))
        return [values[i] for i in decide(probs, cutpoints)]

    return probes.probe_item(item, train, others, profile, score, values[0], seed)


def detector_line(summary: dict) -> str:
    """One CLI line: the share of real answers the detectors flag."""
    text = f"  detectors: flag {summary['val']['flagged']:.1%} of the training answers ({summary['val']['how']})"
    if "test" in summary:
        text += f", {summary['test']['flagged']:.1%} of the {summary['test']['n']} test answers"
    return text


def validation_split(train: Table, item: str, config: StudentConfig) -> tuple[Table, Table]:
    """The (fit, validation) split every candidate was trained and early-stopped on (the same seed)."""
    return stratified_split(train.for_item(item).labelled(), config.val_fraction, config.seed)


def make_candidates(models: dict, val: Table, test: Table | None, fconfig: FeaturizerConfig) -> list[Candidate]:
    """Each model's logits on the validation and test answers, as the shipped model.onnx would give them.

    ``models``: {name: (model, its training report)}; a report with out-of-fold logits ("oof", from
    cross-validation) gives those for the validation answers instead of the final model's. Each is exported
    once, measured (model.onnx's bytes) and timed on validation answers (student.answer_ms) for the budgets and
    the report.
    """
    inputs: dict = {}   # the bag candidates share their features

    def x(model, table: Table) -> np.ndarray:
        key = (type(model).__name__, id(table))
        if key not in inputs:
            inputs[key] = model_inputs(model, table.responses, fconfig)
        return inputs[key]

    has_test = test is not None and len(test)
    candidates = []
    for name, (model, report) in models.items():
        if "oof" in report:
            row = {rid: i for i, rid in enumerate(report["oof"]["ids"])}
            val_logits = np.asarray(report["oof"]["logits"])[[row[rid] for rid in val.ids]]
        else:
            val_logits = logits(model, x(model, val))
        size, ms = onnx_cost(model, val.responses, fconfig)
        candidates.append(Candidate(name, model, val_logits, logits(model, x(model, test)) if has_test else None,
                                    ms_per_answer=ms, bytes=size))
    return candidates


def ship(candidates: list[Candidate], val: Table, test: Table | None, values: list[int],
         models: dict | None = None, max_bytes: int | None = None, max_ms: float | None = None) -> tuple:
    """Tune every candidate on validation (temperature, decision rule), choose the one to ship there
    among those within the budget (model.onnx at most ``max_bytes``, an answer scored in at most ``max_ms``
    milliseconds by its ``ms_per_answer``; None: no limit), and gate it (and every model in ``models``, a
    report's {name: {"val": metrics, ...}}, each by the scores its decision rule gives: a candidate's tuned
    one, else its "decided" figures where it has them); returns (model to export, quality report).
    UserError when no candidate is within the budget."""
    to_index = {v: i for i, v in enumerate(values)}
    val_index = np.array([to_index[s] for s in val.scores], dtype=np.int64)
    tuned = {c.name: quality.tune(c, val_index, values) for c in candidates}
    sizes = {c.name: c.bytes if c.bytes is not None else onnx_bytes(c.model) for c in candidates}
    if max_ms is not None and any(c.ms_per_answer is None for c in candidates):
        raise ValueError("a time budget needs every candidate timed (make_candidates times them)")
    over = {c.name: over_budget(sizes[c.name], c.ms_per_answer, max_bytes, max_ms) for c in candidates}
    fitting = [c for c in candidates if not over[c.name]]
    if not fitting:
        raise UserError(f"no candidate is within the budget ({'; '.join(f'{n}: {w}' for n, w in over.items())}): "
                        "raise --max-model-mb or --max-ms-per-answer, or list smaller candidates with --candidates")
    chosen, why = quality.choose(fitting, val.scores, values)
    if any(over.values()):
        why += f"; over the budget, not chosen: {', '.join(f'{n} ({w})' for n, w in over.items() if w)}"
    predicted = {c.name: {"val": c.predict_val(values)}
                 | ({"test": c.predict(c.test_logits, values)} if c.test_logits is not None else {}) for c in candidates}
    scored = {name: {split: score_metrics((val if split == "val" else test).scores, pred, values)
                     for split, pred in p.items()} for name, p in predicted.items()}
    metrics = scored[chosen.name]
    validity = {split: metrics_validity(val if split == "val" else test, pred, values)
                for split, pred in predicted[chosen.name].items()}
    reasons = quality.degenerate_reasons(metrics["val"], values)
    common = quality.against_common(metrics["val"], values)
    # every model is judged by the scores it would give: the candidates' and the teacher's own decision rule
    gates = {name: quality.degenerate_reasons(scored[name]["val"] if name in scored else m.get("decided", m)["val"], values)
             for name, m in (models or {}).items() if "val" in m}
    table = {c.name: {"val_qwk": scored[c.name]["val"]["qwk"],
                      "test_qwk": scored[c.name]["test"]["qwk"] if "test" in scored[c.name] else None,
                      "decision": tuned[c.name]["decision"]["rule"], "params": param_count(c.model),
                      "bytes": sizes[c.name], "ms_per_answer": c.ms_per_answer} for c in candidates}
    report = {"shipped": chosen.name, "why": why, "candidates": table, "fit_for_use": not reasons,
              "unfit_reasons": reasons, "gate_rule": quality.GATE_RULE, "gates": gates, "validity": validity,
              "against_common": common, "caution": quality.caution(common, metrics["val"]["qwk"]) if not reasons else "",
              "calibration": tuned[chosen.name], "metrics": metrics}
    return quality.shipped_model(chosen), report


def over_budget(size: int, ms: float | None, max_bytes: int | None, max_ms: float | None) -> str:
    """Why a candidate of ``size`` bytes scoring an answer in ``ms`` is over the budget; "" when it is within."""
    why = []
    if max_bytes is not None and size > max_bytes:
        why.append(f"{size / 1e6:.2f} MB > {max_bytes / 1e6:g} MB")
    if max_ms is not None and ms is not None and ms > max_ms:
        why.append(f"{ms:.2f} ms per answer > {max_ms:g} ms")
    return ", ".join(why)


def selection_note(cross_validated: bool, n_val: int, folds: int, fold_teachers: bool | None = None) -> str:
    """What the shipped model was chosen on, for scorer.json, the model card and report.md (``fold_teachers``:
    whether the distilled students learnt each fold from a teacher that never saw it; None: not said)."""
    if cross_validated:
        note = f"{folds}-fold cross-validation (out-of-fold predictions on all {n_val} scored answers)"
        if fold_teachers is not None:
            note += ("; the distilled students learnt each fold from a teacher that never saw its scores" if fold_teachers
                     else "; the distilled students' out-of-fold figures are optimistic: their teacher saw every fold")
        return note
    return f"the validation split ({n_val} answers)"


def metrics_validity(table: Table, predicted: list[int], values: list[int]) -> dict:
    """The ETS-style validity figures of these predicted scores (with a second rater where the table
    has a score2 column, as ASAP-SAS's training answers do)."""
    second = table.extras.get("score2")
    human2 = [int(v) if str(v).strip().lstrip("-").isdigit() else None for v in second] if second else None
    return validity(table.scores, predicted, values, human2=human2)


def ranking_note(reports: list[dict]) -> str:
    """The end-of-run line naming the items whose scorer passed the gate with a caution (its exact
    scores right less often than always giving the most common score); "" when there are none."""
    items = [r["item"] for r in reports if r["quality"].get("caution")]
    if not items:
        return ""
    return (f"note: {len(items)} of {len(reports)} item(s) pass the quality check but their exact scores are right "
            f"less often than always giving the most common score ({', '.join(items[:10])}"
            f"{', ...' if len(items) > 10 else ''}): read them as a ranking to review, not as exact marks; see each "
            "item's MODEL_CARD.md")


def quality_lines(item: str, quality_report: dict) -> list[str]:
    """What the CLI prints about the shipped scorer: which, why, and loudly when it must not be used."""
    q = quality_report
    lines = [f"  shipped: {q['shipped']} ({q['why']}); calibration T = {q['calibration']['temperature']:.3g}, "
             f"validation ECE {q['calibration']['ece_val_before']:.3f} -> {q['calibration']['ece_val_after']:.3f}"]
    decision = q["calibration"]["decision"]
    if decision["cutpoints"]:
        lines.append(f"  score given by cutpoints {', '.join(f'{c:.2f}' for c in decision['cutpoints'])} on the expected "
                     f"score (validation QWK {decision['val_qwk_cutpoints']:.3f}, most probable score "
                     f"{decision['val_qwk_most_probable']:.3f})")
    for name, reasons in q["gates"].items():
        if reasons and name != q["shipped"]:
            lines.append(f"  note: {name} is degenerate: {'; '.join(reasons)}")
    if q.get("caution"):
        lines.append(f"  note: {q['caution']}")
    if not q["fit_for_use"]:
        lines.append(f"  WARNING: the scorer for item {item} is NOT FIT FOR USE: {'; '.join(q['unfit_reasons'])}. "
                     "kd-train build refuses it unless --allow-unfit. Score more answers for this item, or try "
                     "another base model (--model) or more teacher epochs.")
    return lines
