"""The training verbs of the command line: teacher, label, train (one item after another, or on Ray), report, distill, demo."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kd_train.data import UserError
from kd_train.cli_inputs import (check_answer_lengths, check_port_free, check_replaceable, check_run_folder, input_paths,
                                 load_tables, pick_item, say, student_configs_of, teacher_config_of)
from kd_train.cli_scoring import build_bundle


def run_teacher(args: argparse.Namespace) -> None:
    from kd_train import data, teacher

    from kd_train.files import check_output_dir

    check_output_dir(args.out, "teacher", inputs=input_paths(args), force=args.force)
    check_replaceable(args.out, "teacher")
    config = teacher_config_of(args)
    train, test, items = load_tables(args)
    item = pick_item(train, args.item)
    values = data.score_values(train, item, items)
    question = items[item].question if items and item in items else ""
    if args.with_question == "auto":
        raise UserError("--with-question auto is for kd-train train, which trains a teacher each way and keeps the "
                        "better; here, give --with-question (yes) or leave it out (no)")
    if args.with_question == "yes" and not question:
        raise UserError(f"--with-question needs the item's question: give --items with a 'question' for item {item!r}")
    data.check_trainable(train, item)   # (a mistake stays one line, without the line below)
    say(f"fine-tuning a teacher for item {item!r} on {len(train.for_item(item).labelled())} scored answers "
         f"({config.model or 'the packaged all-MiniLM-L6-v2'}; loading it takes seconds, training minutes)")
    meta = teacher.fine_tune(train, item, values, args.out, config, question=question, test=test, force=args.force)
    if not meta:
        return  # not the main process of a distributed run
    for split, m in meta["metrics"].items():
        print(f"item {item} {split:<8} n={m['n']:<5} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['f1']:.3f}")
    how = (f"{teacher.FROZEN_KIND}, C {meta['frozen_candidate']['C']:g}" if meta.get("kind") == teacher.FROZEN_KIND
           else f"{meta['epochs_run']:.1f} epochs")
    print(f"teacher saved to {args.out} ({meta['wall_s']:.0f} s, {how})")


def run_label(args: argparse.Namespace) -> None:
    from kd_train import data, soft_labels, teacher
    from kd_train.files import check_output_file

    check_output_file(args.out, "soft-labels", inputs=input_paths(args), force=args.force)
    check_output_file(soft_labels.sidecar(args.out), "soft-labels-sidecar", inputs=input_paths(args), force=args.force,
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
    check_answer_lengths(table)
    labels, cached = teacher.label(args.teacher, table, args.out, args.temperature, not args.no_cross_fit, args.batch_size)
    how = "reused cached" if cached else "wrote"
    skipped = len(table) - len(labels.ids)
    print(f"{how} {len(labels.ids)} soft labels for item {labels.items[0]} in {args.out}"
          + (f" ({skipped} rows of other items skipped: the teacher scores item {labels.items[0]!r} only)"
             if skipped else ""))


def run_train(args: argparse.Namespace) -> None:
    from kd_train import data, pipeline
    from kd_train.files import make_output_dir
    from kd_train.report import write_report

    out = check_run_folder(args.out, "run", args)   # made once the data checks out
    train, test, items = load_tables(args)
    unlabeled = data.read_responses(args.unlabeled, items) if args.unlabeled else None
    if unlabeled is not None:
        check_answer_lengths(unlabeled)
    if args.asap and not args.unlabeled:
        unlabeled = data.load_asap(args.data).unlabeled
    chosen = args.item or train.item_ids()
    for item in chosen:
        pick_item(train, item)
    if args.augment < 0:
        raise UserError(f"--augment must be 0 (none) or a number of copies per answer, got {args.augment}")
    if args.teachers < 1:
        raise UserError(f"--teachers must be 1 or more (the teacher's members), got {args.teachers}")
    if args.max_model_mb is not None and not 0 < args.max_model_mb < float("inf"):
        raise UserError(f"--max-model-mb must be a size in megabytes above 0, e.g. 1, got {args.max_model_mb}")
    if args.max_ms_per_answer is not None and not 0 < args.max_ms_per_answer < float("inf"):
        raise UserError(f"--max-ms-per-answer must be a time in milliseconds above 0, e.g. 5, got {args.max_ms_per_answer}")
    student_config, fconfig = student_configs_of(args)
    config = pipeline.PipelineConfig(teacher=teacher_config_of(args), student=student_config, featurizer=fconfig,
                                     use_transfer=not args.no_transfer,
                                     augment=args.augment, pair_question=args.with_question, force=args.force,
                                     candidates=tuple(dict.fromkeys(args.candidates + ["tinybert_like"] * args.tinybert)),
                                     max_model_mb=args.max_model_mb, max_ms_per_answer=args.max_ms_per_answer,
                                     teachers=args.teachers)
    specs = {item: (items or {}).get(item) or data.Item(item) for item in chosen}
    if args.ray or args.workers is not None or args.ray_address:
        return run_train_bank(args, chosen, specs, items, train, test, unlabeled, out, config)
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


def run_train_bank(args, chosen, specs, items, train, test, unlabeled, out, config) -> None:
    """kd-train train --ray: the items as Ray tasks (kd_train/bank.py), resumable, one report. An item whose
    data cannot be trained is checked up front like the sequential run's, but in a bank it is listed as
    failed while the others train."""
    from kd_train import bank, data, files, pipeline
    from kd_train.report import write_report

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


def run_report(args: argparse.Namespace) -> None:
    from kd_train.files import is_own_dir, lock_output
    from kd_train.report import collect_reports, write_report

    if not Path(args.out).is_dir() or not is_own_dir(args.out, "run"):
        raise UserError(f"{args.out} is not a folder made by kd-train train; give the --out folder of kd-train train")
    lock_output(args.out, option="folder")   # not while a train run writes into it
    reports = collect_reports(args.out)
    wall = sum(r.get("wall_s", 0.0) for r in reports)
    write_report(reports, args.out, f"kd-train report {args.out}", wall)
    print(f"report of {len(reports)} item(s) written to {args.out}/report.md (per-item wall times add up to {wall:.0f} s)")


def run_distill(args: argparse.Namespace) -> None:
    from kd_train import data, probes, soft_labels
    from kd_train.files import check_output_dir

    check_output_dir(args.out, "scorer", inputs=input_paths(args), force=args.force)
    check_replaceable(args.out, "scorer")
    from kd_train import pipeline
    from kd_train.distill import distill_item
    from kd_train.scorer import write_scorer
    from kd_train.student import input_config

    train, test, items = load_tables(args)
    item = pick_item(train, args.item)
    values = data.score_values(train, item, items)
    config, fconfig = student_configs_of(args)
    soft = soft_labels.merge([soft_labels.read(p) for p in args.soft]) if args.soft else None
    transfer = data.read_responses(args.transfer, items) if args.transfer else None
    if transfer is not None:
        check_answer_lengths(transfer)
    data.check_trainable(train, item)   # (a mistake stays one line, without the line below)
    sequence = args.student == "sequence"
    if args.teacher is not None:
        if not sequence:
            raise UserError("--teacher gives the sequence student's starting word vectors; add --student sequence "
                            "(the bag student learns from the soft labels of --soft only)")
        from kd_train import teacher

        teacher.read_meta(args.teacher)   # a folder that is not a teacher's is refused before any training
    say(f"training the {'sequence ' if sequence else ''}student for item {item!r} "
        f"({len(train.for_item(item).labelled())} scored answers"
        f"{f', {len(transfer.for_item(item))} transfer answers' if transfer is not None else ''})")
    if sequence:
        pconfig = pipeline.PipelineConfig(student=config, featurizer=fconfig)
        model, report = pipeline.sequence_student(args.teacher, train, item, values, pconfig, soft, transfer, test,
                                                  log=say)
    else:
        model, report = distill_item(train, item, values, fconfig, config, soft, transfer, test)
    say("checking the candidates, calibrating, fitting the detectors and writing the scorer")
    labelled = train.for_item(item).labelled()
    val = labelled if "oof" in report else pipeline.validation_split(train, item, config)[1]
    test_rows = test.for_item(item).labelled() if test is not None else None
    candidates = pipeline.make_candidates({"sequence" if sequence else "student": (model, report)}, val, test_rows,
                                          fconfig)
    shipped, quality = pipeline.ship(candidates, val, test_rows, values)
    quality["selection"] = pipeline.selection_note("oof" in report, len(val), config.cv_folds)
    spec = (items or {}).get(item) or data.Item(item)
    profile, found = pipeline.fit_detectors(spec, train, test_rows)
    probed = pipeline.probe_shipped(spec, labelled, test, profile, shipped,
                                    quality["calibration"]["decision"]["cutpoints"], fconfig, values)
    training = report["training"] | ({"embeddings": report["embeddings"]} if sequence else {})
    write_scorer(args.out, shipped, item=item, question=spec.question, score_values=values,
                 featurizer_config=input_config(shipped, fconfig), metrics=report["metrics"],
                 teacher=soft.fingerprint if soft else None, training=training,
                 quality=quality, detectors=profile, probes=probed, force=args.force)
    for split, m in report["metrics"].items():
        print(f"item {item} {split:<5} n={m['n']:<5} accuracy {m['acc']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['f1']:.3f}")
    for line in pipeline.quality_lines(item, quality):
        print(line.strip(), file=sys.stderr if "WARNING" in line else sys.stdout)
    print(pipeline.detector_line(found).strip())
    print(probes.summary_line(probed).strip())
    print(f"scorer ({report['params']:,} parameters) written to {args.out}")


def demo_dir() -> Path:
    """The demo item's answers: kd_train/demo/ in an installed wheel, examples/demo/ in a checkout."""
    from kd_train.bundle import DEMO

    if not (DEMO / "responses.csv").is_file():
        raise UserError(f"{DEMO}: the demo data is not there; reinstall kd-train or run from "
                        "a checkout of the kd-train repository")
    return DEMO


def run_demo(args: argparse.Namespace) -> None:
    from kd_train import data, pipeline, teacher
    from kd_train.config import StudentConfig
    from kd_train.files import make_output_dir
    from kd_train.report import write_report

    folder = demo_dir()
    if not args.no_serve:
        check_port_free(args.port)   # before minutes of training, not after
    out = check_run_folder(args.out, "run", args, inputs=[str(folder)])
    items = data.read_items(folder / "items.csv")
    train = data.read_responses(folder / "responses.csv", items)
    test = data.read_responses(folder / "test.csv", items)
    unlabeled = data.read_responses(folder / "unlabeled.csv", items)
    make_output_dir(out, "run")
    item = pick_item(train, None)
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
    build_bundle([scorer_dir], out / "dist", args.force, allow_unfit=True)   # the demo's page warns if it is unfit
    if not args.no_serve:
        from kd_train import serve

        try:
            serve.serve(out / "dist", args.port)
        except UserError as err:   # taken while the demo trained: say what demo's own options are
            raise UserError(f"{str(err).split(';')[0]}; the page is built in {out / 'dist'}: serve it with "
                            f"kd-train serve {out / 'dist'} --port PORT (0: any free port)") from None
