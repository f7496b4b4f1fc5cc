"""Gaming probes: what the detectors (kd_train/detect.py) and the shipped scorer do with answers made
to fool them, generated per item from the item's own data, on ASAP-SAS and SAF German legal.

    python -m bench.probes [--asap-run runs/asap-train] [--saf-run runs/saf-german-legal]
                           [--datasets asap saf] [--seed 0] [--out bench/results]

The probes are kd_train/probes.py's (the ones `kd-train train` measures on every item); answers to
other items are real test answers of the same dataset's other items, also measured with the
detectors refitted without the probe's own item in the training table.

The detector profile is the one this version of `kd-train train` writes (kd_train.pipeline.fit_detectors
on the item's training answers), for every item, so that all items measure the same detectors; the
JSON says for each scorer whether its own scorer.json holds the same profile (a scorer trained by an
earlier version may not). Scores come from the scorer in the run folder when it exists. Writes probes.md and
probes.json to --out. The data is read from its folder ($KD_TRAIN_DATA or ../shared/datasets).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from bench import add_out, command, table, utc_now, write_result
from bench.saf_german import ATTRIBUTION
from kd_train import data, detect, probes
from kd_train.data import Item, Table, default_data_root, item_folder
from kd_train.metrics import flag_shares
from kd_train.probes import MEANING, MUST_FLAG, SCORE_SHIFT, share

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ and saf-german-legal/ "
                                              "(default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--datasets", nargs="+", choices=("asap", "saf"), default=["asap", "saf"])
    ap.add_argument("--asap-run", type=Path, default=Path("runs/asap-train"), help="kd-train train --out for ASAP-SAS")
    ap.add_argument("--saf-run", type=Path, default=Path("runs/saf-german-legal"), help="kd-train train --out for SAF")
    ap.add_argument("--seed", type=int, default=0)
    add_out(ap)
    return ap.parse_args(argv)


# ---- measuring ------------------------------------------------------------------------------

def unseen_source_flags(item: Item, train: Table, rows: list[dict], sources: dict[str, str]) -> list[bool]:
    """Each answer to another item flagged by a profile fitted without that item's training answers: how
    other_question does on answers to a question the training table does not hold."""
    from kd_train import pipeline

    profiles = {}
    for source in {sources[p["text"]] for p in rows}:
        keep = [i for i, it in enumerate(train.items) if it != source]
        profiles[source] = pipeline.fit_detectors(item, train.take(keep), None)[0]
    return [bool(detect.flags(p["text"], profiles[sources[p["text"]]])) for p in rows]


def measure_item(item: Item, train: Table, test: Table, others: dict[str, str], scorer_dir: Path, seed: int) -> dict:
    """``train``: the whole training table (the detectors learn other_question from the other items'
    answers); ``others``: {answer to another item (test side): its item}."""
    from kd_train import pipeline
    from kd_train.scorer import Scorer

    rng = random.Random(f"{seed}:{item.item}")
    full_train = train
    scorer = Scorer(scorer_dir) if (scorer_dir / "scorer.json").is_file() else None
    profile = pipeline.fit_detectors(item, train, None)[0]           # this version's detectors, for every item
    train = train.for_item(item.item).labelled()
    stored = scorer.info.get("detectors") if scorer else None
    values = scorer.score_values if scorer else None
    score = (lambda texts: scorer.predict([t if len(t) <= profile["max_chars"] else "" for t in texts])) if scorer else None
    t0 = time.perf_counter()
    real = [detect.flags(t, profile) for t in test.responses]
    per_answer_us = (time.perf_counter() - t0) / max(len(test), 1) * 1e6
    result = {"scorer": str(scorer_dir) if scorer else None,
              "profile_as_shipped": None if stored is None else stored == profile,
              "thresholds": profile["thresholds"], "score_values": values, "real_test": flag_shares(real),
              "detect_us_per_answer": round(per_answer_us, 1)}
    made = probes.make_probes(item, train, list(others), rng)
    result["kinds"] = probes.measure(made, profile, score, values[0] if values else None)
    if "other" in profile and made["other_item"]:
        result["kinds"]["other_item"]["flagged_source_unseen"] = share(
            unseen_source_flags(item, full_train, made["other_item"], others))
    return result


def dataset_items(root: Path, dataset: str, run: Path, seed: int) -> dict:
    """measure_item for every item of ASAP-SAS ("asap": train.csv, test_public.csv) or SAF ("saf": train.csv, test.csv)."""
    if dataset == "asap":
        ds = data.load_asap(root)
        items, train, test = ds.items, ds.train, ds.test
    else:
        folder = root / "saf-german-legal"
        items = data.read_items(folder / "items.csv")
        train, test = (data.read_responses(folder / f"{part}.csv", items) for part in ("train", "test"))
    out = {}
    for item_id in train.item_ids():
        others = {t: o for o in test.item_ids() if o != item_id for t in test.for_item(o).responses if len(detect.words(t)) >= 5}
        print(f"  {dataset} item {item_id}", flush=True)
        out[item_id] = measure_item(items[item_id], train, test.for_item(item_id).labelled(), others,
                                    run / item_folder(item_id) / "scorer", seed)
    return out


# ---- report -----------------------------------------------------------------------------------

def pct(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def dataset_markdown(name: str, items: dict) -> list[str]:
    kinds = list(dict.fromkeys(k for r in items.values() for k in r["kinds"]))
    flagged = lambda r, k: r["kinds"].get(k, {}).get("flagged")  # noqa: E731
    real = {item: r["real_test"]["flagged"] for item, r in items.items()}
    means = [sum(v) / len(v) for k in kinds for v in [[flagged(r, k) for r in items.values() if k in r["kinds"]]]]
    lines = [f"## {name}", "", "Share of probes **flagged** by the detectors (per kind), and of real test answers flagged:", "",
             *table(["item", "real test flagged", *kinds],
                    [*([item, f"{pct(real[item], 1)} of {r['real_test']['n']}", *(pct(flagged(r, k)) for k in kinds)]
                       for item, r in items.items()),
                     ["mean", pct(sum(real.values()) / len(real), 1), *map(pct, means)]]),
             "", "Goal (issue 14, set for ASAP-SAS items 1–10): ≥ 90% of gibberish, key-term lists, question copies and "
             "answers to other items flagged (for gibberish and other items: or scored lowest and flagged), and (issue 30) "
             "≥ 90% of negated top answers and lowest-scored answers with key terms appended, with ≤ 5% of "
             "real test answers flagged (all detectors together):", ""]

    def goal_row(item: str, r: dict) -> list[str]:
        met = {k: flagged(r, k) >= 0.9 for k in MUST_FLAG + MEANING if k in r["kinds"]}
        return [item, *(f"{pct(flagged(r, k))} {'yes' if met[k] else 'no'}" if k in met else "—" for k in MUST_FLAG + MEANING),
                f"{pct(real[item], 1)} {'yes' if real[item] <= 0.05 else 'no'}",
                "yes" if all(met.values()) and real[item] <= 0.05 else "no",
                pct(r["kinds"].get("other_item", {}).get("flagged_source_unseen"))]

    lines += table(["item", "gibberish", "key terms", "question copy", "other item", "negated", "lowest + key terms",
                    "real flagged ≤ 5%", "all met", "other item, its item left out of the detectors' training table"],
                   (goal_row(item, r) for item, r in items.items()), "lllllllllr")
    if any(r["score_values"] for r in items.values()):
        shift = lambda m: (f"{m['mean_shift']:+.2f} / {pct(m['flagged'])} / {pct(m['unflagged_kept_score'])}"  # noqa: E731
                           if "mean_shift" in m else "—")
        lines += ["", "What the shipped scorer does with answers made from its top-scored answers (score shift = probe's "
                      "score minus the original answer's; kept = same score as the original; unflagged and kept = "
                      "the probe fooled both):", "",
                  *table(["item", *(f"{k}: shift / flagged / unflagged & kept" for k in SCORE_SHIFT)],
                         ([item, *(shift(r["kinds"].get(k, {})) for k in SCORE_SHIFT)] for item, r in items.items()),
                         "l" * (1 + len(SCORE_SHIFT))),
                  "", "Scored lowest (share of probes given the item's lowest score):", "",
                  *table(["item", *kinds], ([item, *(pct(r["kinds"].get(k, {}).get("lowest")) for k in kinds)]
                                            for item, r in items.items()))]
    missing = [i for i, r in items.items() if not r["score_values"]]
    if missing:
        lines += ["", f"No scorer in the run folder for item(s) {', '.join(missing)}: flags only."]
    older = [i for i, r in items.items() if r["scorer"] and r.get("profile_as_shipped") is not True]
    if older:
        lines += ["", f"The scorers of item(s) {', '.join(older)} were trained by an earlier version whose detectors "
                      "differ (or that had none); the flags here are this version's."]
    us = [r["detect_us_per_answer"] for r in items.values()]
    lines += ["", f"detect.py in CPython: {sum(us) / len(us):.0f} µs per real answer on average (all detectors).", ""]
    return lines


def render(result: dict) -> str:
    lines = ["# Gaming probes: detectors and scorers", "",
             f"Command (repo root): `{result['command']}`  ", f"Date: {result['date']}; wall time {result['wall_s']:.0f} s.", "",
             "Every probe is generated from the item's own data with a fixed seed (bench/probes.py): no hand-picked "
             "strings. The detectors are this version's, fitted on each item's training answers (thresholds set out "
             "of fold so that at most 3% of them are flagged); the real test answers below were never seen by them.", ""]
    if "asap" in result["datasets"]:
        lines += dataset_markdown("ASAP-SAS", result["datasets"]["asap"])
    if "saf" in result["datasets"]:
        lines += dataset_markdown("SAF German legal", result["datasets"]["saf"])
        lines += [f"Data: {ATTRIBUTION}", ""]
    lines += ["## Reading the tables", "",
              "- Answers to other items: `other_question` learns, per item, which words answers to the training "
              "table's other items use more than this item's answers do; the probes are those items' test answers. "
              "The last column of the goal table refits the detectors without the probe's own item, as for an "
              "answer to a question the table does not hold: the other measures and the remaining items' words "
              "must catch it.",
              "- Negation (half of the probes with \"not\" after the first auxiliary verb, half with \"It is not true "
              "that\" in front): `negated` flags a negation where the item's top-scored answers write the same two words "
              "without one, or one that opens an answer otherwise made of top-scored answers' word pairs. Where top-scored "
              "answers themselves negate the same statements, it cannot tell, and says nothing.",
              "- Lowest-scored answers with key terms appended (comma list, plain words, or \"This is because of …\"): "
              "`stuffed` flags key terms after the answer's last glue words in pairs answers do not write; on items whose "
              "real answers end in lists of terms it must stay quiet on those.",
              "- Typos: mistyped letters make unknown words; the detectors flag an answer when many of its words are "
              "unknown, and the score shift shows how the model's score moves before that.",
              "- Key-term lists: on items whose good answers are themselves lists of terms, a list is hard to tell "
              "from an answer; the per-item rows show where that happens.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.data) if args.data else default_data_root()
    started = time.time()
    result = {"command": command("python -m bench.probes", argv), "date": utc_now(), "seed": args.seed, "datasets": {}}
    for dataset in args.datasets:
        result["datasets"][dataset] = dataset_items(root, dataset, args.asap_run if dataset == "asap" else args.saf_run,
                                                    args.seed)
    result["wall_s"] = round(time.time() - started, 1)
    write_result(args.out, "probes", result, render(result))
    print(f"wrote {args.out / 'probes.md'} and probes.json ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
