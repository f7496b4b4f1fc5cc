"""The command line's inputs: options turned into configs, and the tables and paths checked before any work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kd_train.data import UserError


INPUT_OPTIONS = ("train", "test", "items", "unlabeled", "transfer", "soft", "input", "samples", "teacher", "scorer",
                 "scorers", "model")


def input_paths(args: argparse.Namespace) -> list[str]:
    """Every path the verb reads: an output may not be, contain or sit inside one of them."""
    from kd_train import data

    paths: list[str] = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        paths += value if isinstance(value, list) else [value] if value else []
    if getattr(args, "asap", False):
        paths.append(str(Path(args.data or data.default_data_root()) / "asap-sas"))
    return paths


def check_run_folder(out: str, kind: str, args: argparse.Namespace, inputs: list[str] | None = None) -> Path:
    """Check a folder that a verb writes into (train, demo) or replaces (evaluate) and lock it for this run;
    nothing is created yet: the inputs are checked first."""
    from kd_train.files import check_output_dir

    return check_output_dir(out, kind, inputs=input_paths(args) if inputs is None else inputs, force=args.force)


def check_replaceable(out: str, example: str) -> None:
    """A folder kd-train replaces as a whole (teacher, scorer, bundle) is built beside it and renamed into
    place: never the folder the command runs in, or one above it (checked before any work)."""
    here, target = Path.cwd().resolve(), Path(out).resolve()
    if target == here or target in here.parents:
        raise UserError(f"--out {out} is the folder you are in{'' if target == here else ' (or above it)'}; kd-train "
                        "writes its output beside --out and renames it into place, which it cannot do to the "
                        f"folder you run it from: give a new folder, e.g. --out {example}")


def student_configs_of(args: argparse.Namespace):
    """The student's and the featurizer's settings from the options: the featurizer's checked here, once."""
    from kd_train.config import FeaturizerConfig, StudentConfig

    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    check_positive(temperature=args.temperature, student_lr=args.student_lr, student_epochs=args.student_epochs)
    try:
        fconfig = FeaturizerConfig(n_buckets=args.buckets, word_ngram_range=list(args.word_ngrams),
                                   char_ngram_range=list(args.char_ngrams))
    except ValueError as err:
        raise UserError(f"featurizer options: {err}") from None
    config = StudentConfig(hidden=args.hidden, dropout=args.dropout, alpha=args.alpha, temperature=args.temperature,
                           lam=args.lam, lr=args.student_lr, epochs=args.student_epochs, patience=args.student_patience,
                           seed=args.seed, val_fraction=args.val_fraction)
    return config, fconfig


def load_tables(args: argparse.Namespace):
    """(train, test or None, items or None) from --asap or --train/--test/--items."""
    from kd_train import data

    if args.asap:
        ds = data.load_asap(args.data)
        return ds.train, ds.test, ds.items
    if not args.train:
        raise UserError("give --train CSV (labelled answers), or --asap to use ASAP-SAS")
    items = data.read_items(args.items) if args.items else None
    train = data.read_responses(args.train, items)
    test = data.read_responses(args.test, items) if getattr(args, "test", None) else None
    for table in (train, test):
        if table is not None:
            check_answer_lengths(table)
    if test is not None:
        check_held_out(train, test)
    return train, test, items


def check_answer_lengths(table) -> None:
    """No verb scores an answer over detect.MAX_CHARS characters, so none trains or labels on one either."""
    from kd_train.data import DataError, where
    from kd_train.detect import MAX_CHARS

    for row, text in zip(table.rows, table.responses):
        if len(text) > MAX_CHARS:
            raise DataError(f"{where(table.path, row, column='response')}: the answer is {len(text):,} characters "
                            f"long, over the {MAX_CHARS:,} that kd-train scores (kd-train predict and the page "
                            "refuse such answers); shorten or remove it, or check the file for an unclosed quote")


def check_held_out(train, test) -> None:
    """A test table that shares answers with the training table reports a QWK the scorer was fitted to."""
    from kd_train.data import DataError

    if Path(train.path).resolve() == Path(test.path).resolve():
        raise DataError(f"--test {test.path} is the --train table; its QWK would be measured on the answers the "
                        "models were fitted to: give held-out answers to --test, or leave --test out")
    trained = set(zip(train.items, train.ids))
    shared = [(item, rid) for item, rid in zip(test.items, test.ids) if (item, rid) in trained]
    if shared:
        items = sorted({item for item, _ in shared})
        raise DataError(f"{Path(test.path).name}: {len(shared)} of its {len(test)} answers have ids that "
                        f"{Path(train.path).name} also holds for the same item (first: id {shared[0][1]!r} of item "
                        f"{shared[0][0]!r}{f', in {len(items)} items' if len(items) > 1 else ''}); a test set must be "
                        "held out: remove those answers from --test (or from --train), or leave --test out")


def pick_item(table, item: str | None) -> str:
    ids = table.item_ids()
    if item is None:
        if len(ids) > 1:
            raise UserError(f"{Path(table.path).name} holds {len(ids)} items ({', '.join(ids[:10])}); choose one with --item")
        return ids[0]
    if item not in ids:
        raise UserError(f"--item {item!r} has no answers in {Path(table.path).name} (items: {', '.join(ids[:10])})")
    return item


def say(text: str) -> None:
    """What a step that takes seconds is doing, on stderr (stdout carries the results)."""
    print(text, file=sys.stderr, flush=True)


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def check_model_path(model: str) -> None:
    """A --model that names a path must be a model folder: said now, not as a model hub error after loading."""
    path = Path(model)
    looks_like_path = (path.is_absolute() or model.startswith((".", "~")) or "\\" in model
                       or model.count("/") > 1 or path.exists())
    if not looks_like_path:
        return   # a model hub id (org/name): loading tells whether it can be reached
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise UserError(f"--model {model} {what}; give a model folder saved by save_pretrained (with config.json), "
                        "a model hub id such as sentence-transformers/all-MiniLM-L6-v2, or leave --model out for "
                        "the packaged all-MiniLM-L6-v2")
    if not (path / "config.json").is_file():
        raise UserError(f"--model {model} is not a model folder (no config.json); give a folder saved by "
                        "save_pretrained, or leave --model out for the packaged all-MiniLM-L6-v2")


def teacher_config_of(args: argparse.Namespace):
    from kd_train import teacher

    check_positive(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    if args.max_length < 0:
        raise UserError(f"--max-length must be > 0, or 0 for auto, got {args.max_length}")
    if args.patience < 1:
        raise UserError(f"--patience must be at least 1, got {args.patience}")
    if args.folds == 1 or args.folds < 0:
        raise UserError(f"--folds must be 0 (off) or at least 2, got {args.folds}")
    if args.teacher_min_steps < 0:
        raise UserError(f"--teacher-min-steps must be 0 (count patience from the start) or more, got {args.teacher_min_steps}")
    if args.teacher_cv_below < 0:
        raise UserError(f"--teacher-cv-below must be 0 (never) or a number of answers, got {args.teacher_cv_below}")
    if args.model:
        check_model_path(args.model)
    return teacher.TeacherConfig(
        model=args.model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, val_fraction=args.val_fraction, patience=args.patience, with_question=args.with_question == "yes",
        folds=args.folds, class_weights=args.class_weights, cv_below=args.teacher_cv_below,
        min_steps=args.teacher_min_steps, frozen=not args.no_frozen_teacher,
    )


def check_port_free(port: int) -> None:
    import socket

    from kd_train.serve import LOOPBACK_HOST, check_port

    check_port(port)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server binds
        probe.bind((LOOPBACK_HOST, port))
    except OSError as err:
        raise UserError(f"cannot listen on {LOOPBACK_HOST}:{port} ({err.strerror or err}), where the demo serves "
                        "its page; choose another port with --port (0: any free port), or add --no-serve") from None
    finally:
        probe.close()
