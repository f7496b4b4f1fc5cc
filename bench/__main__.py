"""The ASAP-SAS benchmark: the paper's comparison, size, CPU speed, the browser and the ablations.

    python -m bench [--cache runs/asap-train] [--items 1 2 ...] [--seeds 3] [--ablation-seeds 2]
                    [--skip-browser] [--skip-speed] [--skip-probes] [--quick] [--out bench/results]

Reads ASAP-SAS ($KD_TRAIN_DATA or ../shared/datasets) and the teacher outputs that
`kd-train train --asap --out runs/asap-train --baselines` cached per item (teacher, soft labels,
scorer); trains only the cheap models (KD student, ANN, hashing + logistic regression, fastText)
and never a transformer. Rows that need something not in the cache are reported "not run", with
the command that would produce it. Writes asap-sas.md, asap-sas.json and asap-sas-*.png to --out,
then runs the gaming probes of bench/probes.py (probes.md, probes.json) unless --skip-probes.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import RESULTS, add_out, command, utc_now, write_result
from bench import ablations, fasttext_baseline, others, probes, report, speed
from bench.cache import CachedItem, find_items
from bench.students import Results, aggregate, run_variants
from kd_train import encoder, teacher
from kd_train.data import Dataset, load_asap
from kd_train.metrics import mean_metrics
from kd_train.student import export_onnx

TINYBERT_COMMAND = "kd-train train --asap --out runs/asap-train --baselines --tinybert"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("runs/asap-train"), help="teacher outputs (default: %(default)s)")
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--items", nargs="+", help="items to include (default: every item whose teacher outputs are cached)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for the student and the ANN (default: %(default)s)")
    ap.add_argument("--ablation-seeds", type=int, default=2, help="seeds for each ablation setting (default: %(default)s)")
    ap.add_argument("--skip-browser", action="store_true", help="read bench/results/browser.json instead of running Chromium")
    ap.add_argument("--skip-speed", action="store_true", help="do not measure CPU speed")
    ap.add_argument("--skip-probes", action="store_true",
                    help="do not run the gaming probes (python -m bench.probes: probes.md, probes.json)")
    ap.add_argument("--quick", action="store_true", help="one seed, small grids, few answers timed: a smoke test")
    ap.add_argument("--speed-answers", type=int, default=300, help="answers timed per scorer (default: %(default)s)")
    add_out(ap)
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: re-write asap-sas.md, the README section, the plots and the goal rows from OUT/asap-sas.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.ablation_seeds, args.speed_answers = 1, 1, 64
    return args


log = functools.partial(print, flush=True)


def single_model(per_item: dict[str, dict], **extra) -> dict:
    """A model scored once per item: means, Fisher-z and per-item {acc, qwk, f1, n}."""
    items = {i: {k: m[k] for k in ("acc", "qwk", "f1", "n")} for i, m in per_item.items()}
    return {**extra, **mean_metrics(list(per_item.values())), "items": items}


def not_run(reason: str, command: str, **extra) -> dict:
    return {**extra, "not_run": reason, "command": command, "mean_acc": None, "mean_qwk": None, "fisher_qwk": None,
            "mean_f1": None, "items": {}}


def seeded_models(results: Results, items: list[CachedItem], seeds: list[int], work: Path) -> dict:
    """Student and ANN rows; bytes: their seed-0 models of the first item exported as the scorer's model.onnx
    (written to ``work``; the student's is also what the speed test runs)."""
    rows = {}
    for name, variant in (("student", ablations.STUDENT), ("ann", ablations.ANN)):
        rows[name] = aggregate(results[variant], "test", seeds)
        export_onnx(results[variant][0][items[0].item]["model"], work / f"{name}.onnx")
        rows[name]["bytes"] = (work / f"{name}.onnx").stat().st_size
    return rows


def fasttext_models(items: list[CachedItem], work: Path, quick: bool) -> tuple[dict, dict, dict]:
    grid = fasttext_baseline.QUICK_GRID if quick else fasttext_baseline.GRID
    runs = {}
    for item in items:
        runs[item.item] = fasttext_baseline.run_item(item, work, grid)
        r = runs[item.item].report
        log(f"  fastText item {item.item}: {r['settings']} → val QWK {r['val']['qwk']:.3f}, test QWK "
            f"{r['test']['qwk']:.3f} (.ftz {r['ftz']['test']['qwk']:.3f})")
    reports = {i: r.report for i, r in runs.items()}
    settings = {i: r["settings"] for i, r in reports.items()}
    ft = single_model({i: r["test"] for i, r in reports.items()}, params=max(r["params"] for r in reports.values()),
                      bytes=max(r["bytes"] for r in reports.values()), settings=settings)
    ftz = single_model({i: r["ftz"]["test"] for i, r in reports.items()}, params=ft["params"],
                       bytes=max(r["ftz"]["bytes"] for r in reports.values()))
    return ft, ftz, runs


def tinybert_row(items: list[CachedItem], size: dict | None) -> dict:
    cached = {i.item: others.tinybert_cached(i) for i in items}
    base = items[0].teacher_meta.get("base_model", items[0].teacher_meta["config"]["model"])
    size_note = (f"TinyBERT-like size: the teacher's base model ({base}) cut to its first 3 layers with a 4-class head "
                 "(as `--tinybert` builds it), counted and saved here; training does not change it.")
    size = size or {"params": None, "bytes": None}
    if all(cached.values()):
        return single_model({i: c["test"] for i, c in cached.items()}, **size, size_note=size_note)
    missing = [i for i, c in cached.items() if not c]
    return not_run(f"the 3-layer stand-in has not been fine-tuned for items {', '.join(missing)} (no GPU this session, "
                   f"and about 10 min per item on this CPU)", TINYBERT_COMMAND, **size, size_note=size_note)


def teacher_bytes(items: list[CachedItem]) -> int | None:
    """Size of the cached teacher weights (None where the cache keeps teacher.json only)."""
    files = [i.folder / "teacher" / "model.safetensors" for i in items]
    return max((f.stat().st_size for f in files if f.is_file()), default=None)


def accuracy_models(data: Dataset, items: list[CachedItem], results: Results, seeds: list[int], work: Path,
                    quick: bool) -> tuple[dict, dict]:
    log("\n== 1. accuracy on test_public")
    meta = items[0].teacher_meta
    how = "frozen + logistic regression" if meta.get("kind") == teacher.FROZEN_KIND else "fine-tuned"
    models = {"teacher": single_model({i.item: others.teacher_test(i) for i in items},
                                      params=max(i.teacher_meta["params"] for i in items), bytes=teacher_bytes(items),
                                      label=f"Teacher: {meta.get('base_model', meta['config']['model'])} {how}")}
    models |= seeded_models(results, items, seeds, work)
    models["tinybert_like"] = tinybert_row(items, None)
    lr = {i.item: others.hashing_lr(data, i) for i in items}
    models["hashing_lr"] = single_model({i: r["test"] for i, r in lr.items()}, params=max(r["params"] for r in lr.values()),
                                        bytes=None, C={i: r["C"] for i, r in lr.items()},
                                        bytes_note="Hashing + LR is not saved as a file here (its weights as float32 "
                                                   "would take 4 bytes per parameter).")
    models["fasttext"], models["fasttext_ftz"], ft_runs = fasttext_models(items, work, quick)
    models["human"] = single_model({i.item: others.human_agreement(data, i) for i in items})
    for name in report.MODEL_ORDER:
        m = models[name]
        if not m.get("not_run"):
            log(f"  {name:<14} mean acc {m['mean_acc']:.3f}  mean QWK {m['mean_qwk']:.3f}  Fisher-z {m['fisher_qwk']:.3f}"
                f"  macro-F1 {m['mean_f1']:.3f}")
    return models, ft_runs


def speed_block(items: list[CachedItem], ft_runs: dict, n_answers: int, quick: bool, work: Path) -> tuple[dict, dict]:
    """Throughput of every scorer on the same answers, and the TinyBERT-like stand-in's size."""
    log("\n== 3. CPU speed")
    item = items[0]
    answers = speed.sample_answers([i.test for i in items], n_answers)
    base_model = encoder.resolve_model(item.teacher_meta["config"]["model"])
    n_classes = max(len(i.values) for i in items)
    has_weights = teacher_bytes([item]) is not None
    teacher_model, teacher_tok = (encoder.load_model(str(item.folder / "teacher")) if has_weights
                                  else speed.tinybert_like(base_model, len(item.values), layers=None))
    tiny_model, tiny_tok = speed.tinybert_like(base_model, n_classes)
    tiny_size = speed.transformer_size(tiny_model)
    max_len = encoder.input_length(item.teacher_meta)
    predictors = {
        "student": speed.student_predictor(work / "student.onnx", item.featurizer),
        "fasttext": speed.fasttext_predictor(ft_runs[item.item].bin_path),
        "fasttext_ftz": speed.fasttext_predictor(ft_runs[item.item].ftz_path),
        "tinybert_like": speed.transformer_predictor(tiny_model, tiny_tok, max_len),
        "teacher": speed.transformer_predictor(teacher_model, teacher_tok, max_len),
    }
    repeats = {"tinybert_like": 1, "teacher": 1} if not quick else {k: 1 for k in predictors}
    measured = speed.measure(predictors, answers, repeats, log)
    ratios = {f"student / {name}": {b: measured["student"][b] / measured[name][b] for b in ("batch_1", "batch_64")}
              for name in ("tinybert_like", "teacher", "fasttext")}
    notes = [f"{len(answers)} answers drawn at random (seed 0) from the included items' test_public answers; item "
             f"{item.item}'s models; best of {repeats.get('student', 3)} pass(es) for the student and fastText, one pass for "
             "the transformers, after a warm-up batch; batches of 64 are formed longest answers first.",
             "Student = the featurizer + onnxruntime on model.onnx, as `kd-train predict` runs it: "
             f"`kd_train/featurize_batch.py` ({speed.featurizer_path()}; bit-identical to `kd_train/featurize.py`, the file "
             "the page runs, checked by tests/test_featurize_batch.py); fastText "
             "includes the same lower-casing/tokenising it was trained with; transformers include their tokenizer "
             f"(up to {max_len} tokens, padded to the longest answer in the batch).",
             ("Teacher: the fine-tuned item model from the cache." if has_weights else
              "Teacher: its weights are not in the cache, so the base model it was fine-tuned from (same architecture, "
              "untrained head) was timed instead.")
             + " TinyBERT-like: the packaged base model cut to 3 layers with an untrained head: weights need not be "
             "fine-tuned to time them. Student: the seed-0 student of this run, exported as the scorer's model.onnx.",
             speed.cpu_note() + "."]
    block = {f"{name}_per_s": measured[name]["batch_64"] for name in ("student", "tinybert_like", "teacher", "fasttext",
                                                                      "fasttext_ftz")}
    block |= {"measured": measured, "ratios": ratios, "notes": notes, "answers": len(answers)}
    for name, r in ratios.items():
        log(f"  {name}: ×{r['batch_1']:.1f} (batch 1), ×{r['batch_64']:.1f} (batch 64)")
    return block, tiny_size


def browser_from(raw: dict, source: str) -> dict:
    med = statistics.median
    su = raw["start_up"]
    return {"usable_ms": med(su["page_usable_ms"]), "first_score_ms": med(su["first_score_ms"]),
            "bare_pyodide_ms": med(su["bare_pyodide_page_ms"]), "bare_load_pyodide_call_ms": med(su["bare_load_pyodide_ms"]),
            "per_answer_ms_p50": raw["single_ms"]["median"], "per_answer_ms_p90": raw["single_ms"]["p90"],
            "batch200_per_answer_ms_p50": raw["batch200_per_answer_ms"]["median"],
            "batch200_per_answer_ms_p90": raw["batch200_per_answer_ms"]["p90"], "batch5000_s": raw["batch5000_s"],
            "bundle_bytes": raw["sizes"]["raw"], "bundle_gzip_bytes": raw["sizes"]["gzip"],
            "bundle_brotli_bytes": raw["sizes"]["brotli"], "source": source}


def browser_block(args: argparse.Namespace, item: CachedItem, command_line: str) -> dict:
    saved = RESULTS / "browser.json"
    if args.skip_browser:
        raw = json.loads(saved.read_text(encoding="utf-8"))
        return browser_from(raw, f"Not measured in this run (--skip-browser): read from bench/results/browser.json, measured "
                                 f"{raw['date']} by `{raw['command']}`.")
    from bench import browser

    log("\n== 4. browser (headless Chromium)")
    scorer = item.folder / "scorer" if (item.folder / "scorer" / "scorer.json").is_file() else None
    quick = ["--starts", "1", "--repeat", "2", "--cpu-quota", "0"] if args.quick else []   # else browser.py's defaults
    raw = browser.run(browser.parse_args([*([str(scorer)] if scorer else []), *quick, "--out", str(args.out)]))
    raw["command"] = f"{command_line}  (its browser part: bench/browser.py {scorer or ''})".replace(" )", ")")
    log(browser.write_report(raw, args.out))
    on = f"item {item.item}'s scorer" if scorer else "its demo scorer (the cache holds no scorer directory)"
    return browser_from(raw, f"Measured in this run with bench/browser.py on {on} (also written to browser.md/json).")


def goal_rows(models: dict, speed_: dict, browser: dict) -> list[tuple[str, str, str]]:
    s = models["student"]
    gap = models["teacher"]["mean_qwk"] - s["mean_qwk"]
    rows = [("default student ≤ 0.03M parameters", f"{s['params']:,}", "yes" if s["params"] <= 30_000 else "no"),
            ("within 0.02 mean QWK of its teacher", f"gap {gap:+.3f}", "yes" if gap <= 0.02 else "no")]
    for name in ("ann", "tinybert_like", "hashing_lr", "fasttext"):
        other, label = models[name].get("mean_qwk"), f"mean QWK above {report.LABELS[name].split(':')[0]}"
        if other is None:
            rows.append((label, "not run", "unknown"))
        else:
            rows.append((label, f"{s['mean_qwk']:.3f} vs {other:.3f}", "yes" if s["mean_qwk"] > other else "no"))
    if speed_.get("measured"):
        r = speed_["ratios"]["student / tinybert_like"]
        rows.append(("≥ 100× the TinyBERT-like stand-in's CPU throughput",
                     f"×{r['batch_1']:.0f} (batch 1), ×{r['batch_64']:.0f} (batch 64)",
                     "yes" if min(r.values()) >= 100 else ("in batches only" if r["batch_64"] >= 100 else "no")))
        f = speed_["ratios"]["student / fasttext"]
        rows.append(("about fastText's throughput (at least half of it)",
                     f"×{f['batch_1']:.2f} of fastText (batch 1), ×{f['batch_64']:.2f} (batch 64)",
                     "yes" if min(f.values()) >= 0.5 else ("in batches only" if f["batch_64"] >= 0.5 else "no")))
    rows.append(("browser: < 2 ms per answer", f"{browser['per_answer_ms_p50']:.1f} ms single, "
                 f"{browser['batch200_per_answer_ms_p50']:.2f} ms in a batch", "yes" if browser["per_answer_ms_p50"] < 2 else
                 ("in batches only" if browser["batch200_per_answer_ms_p50"] < 2 else "no")))
    rows.append(("page usable in < 1 s", f"{browser['usable_ms']:.0f} ms usable, first score after "
                 f"{browser['first_score_ms'] / 1000:.1f} s", "yes (typing); scoring no" if browser["usable_ms"] < 1000
                 and browser["first_score_ms"] >= 1000 else ("yes" if browser["usable_ms"] < 1000 else "no")))
    return rows


def accuracy_notes(items: list[CachedItem], seeds: list[int], models: dict) -> list[str]:
    folds = {i.soft_train.fingerprint.get("folds", 0) for i in items}
    cfg = items[0].student_config   # the settings the pipeline distilled with (scorer.json), not hand-written
    differ = [i.item for i in items if i.student_config != items[0].student_config or i.featurizer != items[0].featurizer]
    return ([f"Items {', '.join(differ)} were distilled by the pipeline with other settings than item {items[0].item}; "
             f"the ablation grid follows item {items[0].item}'s."] if differ else []) + [
        f"Student and ANN: mean ± std over seeds {seeds} (each seed its own stratified {cfg.val_fraction:.0%} validation "
        "split of train.csv, "
        f"initialisation and shuffling); the pipeline's settings ({cfg.hidden} hidden units, "
        f"{items[0].featurizer.n_buckets:,} buckets, α {cfg.alpha:g}, T {cfg.temperature:g}, transfer set = "
        "test_private_unlabeled.csv). Both are trained by the pipeline's own function, "
        "`kd_train.distill.distill_item` (the ANN with `StudentConfig.without_teacher()`), on features computed once per item.",
        "Teacher: argmax of its cached soft labels for test_public (soft-test.csv); trained on each item's train.csv "
        f"answers except a {items[0].teacher_meta['config']['val_fraction']:.0%} validation split (for early stopping); "
        f"its soft labels for train.csv are {'in-sample' if folds == {0} else f'cross-fitted ({folds} folds)'}.",
        "Hashing + LR: `kd_train.baselines.hashing_lr`, the student's featurizer, C chosen on the seed-0 val split "
        f"(per item: {models['hashing_lr']['C']}); one seed (deterministic).",
        "fastText: settings chosen per item on the seed-0 val split (grid: lr × epoch × wordNgrams × char n-grams, "
        f"dim {fasttext_baseline.FIXED['dim']}, bucket {fasttext_baseline.FIXED['bucket']:,}, "
        f"{fasttext_baseline.FIXED['thread']} thread, seed 0), trained on the rest of train.csv; .ftz = that model "
        "quantized (qnorm, no retraining). "
        "Chosen: " + "; ".join(f"item {i}: lr {s['lr']}, epoch {s['epoch']}, wordNgrams {s['wordNgrams']}, "
                               f"char {s['minn']}–{s['maxn']}" for i, s in models["fasttext"]["settings"].items()) + ".",
        "Human–human: score vs score2 on train.csv (test_public.csv carries one score only), all of each item's answers.",
        "Macro-F1 averages F1 over every score value of the item (a value a model never predicts counts as 0).",
        "Collapsed runs (one score value for every test answer): " + "; ".join(
            f"{name} {', '.join(models[name]['constant_runs']) or 'none'}" for name in ("student", "ann")) + ".",
    ]


def select_items(args: argparse.Namespace, data: Dataset) -> tuple[list[CachedItem], dict[str, str]]:
    items, missing = find_items(args.cache, args.items, data)
    log(f"items included: {', '.join(i.item for i in items) or 'none'}")
    for item, why in missing.items():
        log(f"item {item} missing: {why}")
    if not items:
        sys.exit(f"python -m bench: no item in {args.cache} has complete teacher outputs; run "
                 f"`kd-train train --asap --out {args.cache} --baselines` first")
    return items, missing


def run_ablations(items: list[CachedItem], results: Results, quick: bool, seeds: list[int]) -> dict:
    log("\n== 5. ablations")
    return {"sizes": ablations.sizes(results, items[0], quick, seeds),
            "alpha_t": ablations.alpha_t(results, items[0], quick, seeds),
            "transfer": ablations.transfer(results, seeds),
            "max_epochs": items[0].student_config.epochs, "patience": items[0].student_config.patience}


def not_run_list(models: dict, missing: dict[str, str]) -> list[str]:
    out = [f"TinyBERT-like stand-in accuracy: {models['tinybert_like']['not_run']}; `{TINYBERT_COMMAND}`"
           ] if models["tinybert_like"].get("not_run") else []
    return out + ([f"items {', '.join(missing)}: {'; '.join(sorted(set(missing.values())))}"] if missing else [])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render:
        result = json.loads((args.out / "asap-sas.json").read_text(encoding="utf-8"))
        result["goal"] = goal_rows(result["models"], result["speed"], result["browser"])   # the current rules
        write_outputs(result, args.out)
        return
    if importlib.util.find_spec("fasttext") is None:
        sys.exit("python -m bench: the fastText baseline needs the package fasttext-wheel: pip install -e '.[bench]'")
    command_line = command("python -m bench", argv)
    started, load = time.time(), ", ".join(f"{x:.1f}" for x in os.getloadavg())
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_asap(args.data)
    items, missing = select_items(args, data)
    seeds, abl_seeds = list(range(args.seeds)), list(range(min(args.seeds, args.ablation_seeds)))
    log(f"\n== training students: seeds {seeds} (main table), {abl_seeds} (ablations)")
    results = run_variants(items, ablations.plan(items[0], args.quick, seeds, abl_seeds),
                           keep_models={(ablations.ANN, 0, items[0].item), (ablations.STUDENT, 0, items[0].item)})
    with tempfile.TemporaryDirectory() as tmp:
        models, ft_runs = accuracy_models(data, items, results, seeds, Path(tmp), args.quick)
        speed_result, tiny_size = ({"not_run": "--skip-speed"}, None) if args.skip_speed else \
            speed_block(items, ft_runs, args.speed_answers, args.quick, Path(tmp))
    models["tinybert_like"] = tinybert_row(items, tiny_size)
    browser = browser_block(args, items[0], command_line)
    abl = run_ablations(items, results, args.quick, abl_seeds)
    result = {
        "command": command_line, "wall_s": round(time.time() - started, 1), "quick": args.quick, "date": utc_now(),
        "machine": f"Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPUs (load average "
                   f"{load} at the start), every model on 1 thread",
        "items_included": [i.item for i in items], "items_missing": missing,
        "settings": {"seeds": seeds, "ablation_seeds": abl_seeds, "cache": str(args.cache),
                     "student_config": vars(items[0].student_config), "featurizer": items[0].featurizer.as_dict()},
        "models": {k: models[k] for k in report.MODEL_ORDER},
        "speed": speed_result, "browser": browser, "ablations": abl,
        "notes": {"accuracy": accuracy_notes(items, seeds, models)}, "not_run": not_run_list(models, missing),
        "goal": goal_rows(models, speed_result, browser),
    }
    write_outputs(result, args.out)
    if not args.skip_probes:
        log("\n== gaming probes (bench/probes.py): ASAP-SAS from the cache, SAF German legal from runs/saf-german-legal")
        probes.main(["--asap-run", str(args.cache), "--out", str(args.out)] + (["--data", str(args.data)] if args.data else []))


def write_outputs(result: dict, out: Path) -> None:
    items = result["items_included"]
    report.plot_items(result["models"], items, out / "asap-sas-items.png")
    report.plot_sizes(result["ablations"]["sizes"], out / "asap-sas-sizes.png")
    report.plot_alpha_t(result["ablations"]["alpha_t"], out / "asap-sas-alpha-T.png")
    log("\n" + write_result(out, "asap-sas", result, report.markdown(result)))
    readme = report.readme_results(result)
    (out / "asap-sas-readme.md").write_text(readme, encoding="utf-8")
    log("\nREADME section (also in asap-sas-readme.md):\n\n" + readme)
    log(f"wrote {out / 'asap-sas.md'}, {out / 'asap-sas.json'} and plots ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
