"""The scoring and web verbs of the command line: predict, evaluate, build, verify, serve."""

from __future__ import annotations

import argparse
import sys

from kd_train.data import UserError
from kd_train.cli_inputs import check_replaceable, check_run_folder, input_paths, say


PREDICT_COLUMNS = ("id", "item", "score", "p_<score>...", "flagged", "flags")   # kd-train predict's output
MANY_ANSWERS = 10_000   # predict says what it is doing from this many answers on (100,000 take 8-14 s)


def run_predict(args: argparse.Namespace) -> None:
    import csv
    import io

    from kd_train import data
    from kd_train.files import check_output_file
    from kd_train.temps import atomic_write_text
    from kd_train.scorer import Scorer

    check_output_file(args.out, "scores", inputs=input_paths(args), force=args.force)
    scorer = Scorer(args.scorer)
    table = data.read_responses(args.input, score_column=False)
    item = scorer.info["item"]
    rows = table.for_item(item)
    if len(rows) == 0:
        raise UserError(f"{args.input}: no answers for the scorer's item {item!r} (items: {', '.join(table.item_ids()[:10])})")
    refused = refused_rows(scorer, rows.responses)
    if len(rows) >= MANY_ANSWERS:
        say(f"checking {len(rows):,} answers for text the scorer should not judge")
    flags = [["refused"] if r else f for r, f in zip(refused, scorer.flags(rows.responses))]
    scored = [i for i, r in enumerate(refused) if not r]   # an over-long answer is not featurized
    if len(rows) >= MANY_ANSWERS:
        say(f"scoring {len(scored):,} answers")
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


def run_evaluate(args: argparse.Namespace) -> None:
    from kd_train import data, detect, probes
    from kd_train.files import replace_dir
    from kd_train.temps import discard_temp, make_temp_dir
    from kd_train.metrics import flag_shares, score_metrics
    from kd_train.report import write_report
    from kd_train.validity import SMALL_SAMPLE_N, validity
    from kd_train.scorer import Scorer

    out = check_run_folder(args.out, "evaluation", args)
    test = data.read_responses(args.test)
    reports = []
    for folder in args.scorer:
        scorer = Scorer(folder)
        item = scorer.info["item"]
        rows = test.for_item(item).labelled()
        if len(rows) == 0:
            raise UserError(f"{args.test}: no scored answers for item {item!r} of scorer {folder}")
        check_scores_in_range(rows, scorer.score_values)
        refused = refused_rows(scorer, rows.responses)
        if any(refused):   # never featurized, never counted in the metrics: counted apart, as predict leaves them blank
            rows = rows.take([i for i, r in enumerate(refused) if not r])
            limit = max_chars(scorer)
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
                  if i != item and len(r) <= max_chars(scorer) and len(detect.words(r)) >= 5]
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


def max_chars(scorer) -> int:
    from kd_train import detect

    return int((scorer.info.get("detectors") or {}).get("max_chars", detect.MAX_CHARS))


def refused_rows(scorer, responses: list[str]) -> list[bool]:
    """Which answers are too long to score: the one limit (detect.MAX_CHARS, or the scorer's profile's
    max_chars) that predict, evaluate and the page apply alike, also for a scorer without detectors."""
    limit = max_chars(scorer)
    return [len(text) > limit for text in responses]


def check_scores_in_range(rows, values: list[int]) -> None:
    """A human score the scorer cannot give means the wrong test file or the wrong scorer."""
    from kd_train.data import DataError, where

    for score, row in zip(rows.scores, rows.rows):
        if score not in values:
            raise DataError(f"{where(rows.path, row, column='score')}: score {score} is not one of the scorer's "
                            f"score values {values} for item {rows.items[0]!r}; fix the score, or check that "
                            "this is the right scorer for this file")


def build_bundle(scorers: list, out, force: bool, allow_unfit: bool, snapshot: bool = True, sizes: bool = True) -> None:
    from kd_train import bundle

    bundle.run(scorers, out, force, allow_unfit, snapshot, report_sizes=sizes)


def run_build(args: argparse.Namespace) -> None:
    from kd_train import bank   # neither torch nor ray
    from kd_train.bundle import check_out

    scorers = bank.run_folder_scorers(args.scorers, args.allow_unfit)
    check_out(scorers, args.out, args.force)   # before any work: the bundle takes seconds to make
    check_replaceable(args.out, "dist")
    build_bundle(scorers, args.out, args.force, args.allow_unfit, args.snapshot, args.size_report)


def run_verify(args: argparse.Namespace) -> None:
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


def run_serve(args: argparse.Namespace) -> None:
    from kd_train import serve

    serve.serve(args.folder, args.port, host=args.host)
