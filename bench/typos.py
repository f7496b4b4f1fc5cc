"""Typos and the score: how much mistyped letters move the hashing + logistic regression scorer, and
whether training on mistyped copies of the training answers makes it steadier without losing QWK.

    python -m bench.typos [--items 1 2 ...] [--rates 10 20 30] [--seed 0] [--out bench/results]

Per ASAP-SAS item: the pipeline's split (kd_train.pipeline.validation_split) and the regression's C
chosen by kd_train.baselines.hashing_lr on clean answers; then the same regression refitted on the
fit answers plus one copy of each with 10% of its letters mistyped (kd_train.probes.mistype). Both are
scored on test_public as it is and with 10/20/30% of letters mistyped: QWK, and the share of
answers whose score changes from the clean answer's. Writes typos.md and typos.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from kd_train import baselines
from kd_train.config import FeaturizerConfig, StudentConfig
from kd_train.data import load_asap
from kd_train.metrics import qwk
from kd_train.pipeline import validation_split
from kd_train.probes import mistype

ROOT = Path(__file__).resolve().parent.parent
TRAIN_RATE = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.typos", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding asap-sas/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--items", nargs="+", default=[str(i) for i in range(1, 11)])
    ap.add_argument("--rates", nargs="+", type=int, default=[10, 20, 30], help="percent of letters mistyped")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return ap.parse_args(argv)


def letters_of(texts: list[str]) -> str:
    return "".join(sorted({c for t in texts for c in t.lower() if c.isalpha()}))


def measure_item(ds, item: str, rates: list[int], seed: int) -> dict:
    values = sorted({s for s in ds.train.for_item(item).labelled().scores})
    config, features = StudentConfig(seed=seed), FeaturizerConfig()
    fit, _ = validation_split(ds.train, item, config)
    test = ds.test.for_item(item).labelled()
    chosen = baselines.hashing_lr(ds.train, item, values, features, None, seed=seed)["C"]
    letters = letters_of(fit.responses)
    rng = random.Random(f"{seed}:{item}")
    noisy_fit = [mistype(t, TRAIN_RATE, rng, letters) for t in fit.responses]

    def model(texts: list[str], scores: list[int]):   # the baseline's own fit, at the C it chose
        return baselines._fit(baselines._features(texts, features), scores, chosen, seed)

    models = {"clean": model(fit.responses, fit.scores),
              "augmented": model(fit.responses + noisy_fit, fit.scores + fit.scores)}
    tests = {0: test.responses} | {r: [mistype(t, r / 100, rng, letters) for t in test.responses] for r in rates}
    out = {"C": chosen, "n_fit": len(fit), "n_test": len(test)}
    for name, m in models.items():
        preds = {r: m.predict(baselines._features(texts, features)).tolist() for r, texts in tests.items()}
        out[name] = {str(r): {"qwk": qwk(test.scores, p, values),
                              "changed": float(np.mean([a != b for a, b in zip(p, preds[0])]))}
                     for r, p in preds.items()}
    return out


def render(result: dict) -> str:
    rates = result["rates"]
    lines = ["# Typos and the score (hashing + logistic regression, ASAP-SAS test_public)", "",
             f"Command (repo root): `{result['command']}`  ", f"Date: {result['date']}; wall time {result['wall_s']:.0f} s.", "",
             "QWK on test answers as written and with a share of their letters mistyped, and the share of answers whose "
             f"score changes; **clean**: trained on the answers as written; **augmented**: plus one copy of each training "
             f"answer with {TRAIN_RATE:.0%} of its letters mistyped (same C, same split).", "",
             "| item | model | QWK clean | " + " | ".join(f"QWK {r}% / changed" for r in rates) + " |",
             "|---|---|---:|" + "---|" * len(rates)]
    for item, r in result["items"].items():
        for name in ("clean", "augmented"):
            m = r[name]
            lines.append(f"| {item} | {name} | {m['0']['qwk']:.3f} | "
                         + " | ".join(f"{m[str(x)]['qwk']:.3f} / {m[str(x)]['changed']:.0%}" for x in rates) + " |")
    mean = lambda name, x, key: np.mean([r[name][str(x)][key] for r in result["items"].values()])  # noqa: E731
    lines += ["", "| mean | QWK clean | " + " | ".join(f"QWK {r}% / changed" for r in rates) + " |",
              "|---|---:|" + "---|" * len(rates)]
    for name in ("clean", "augmented"):
        lines.append(f"| {name} | {mean(name, 0, 'qwk'):.3f} | "
                     + " | ".join(f"{mean(name, x, 'qwk'):.3f} / {mean(name, x, 'changed'):.0%}" for x in rates) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    ds = load_asap(args.data)
    result = {"command": "python -m bench.typos " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rates": args.rates, "items": {}}
    for item in args.items:
        print(f"  item {item}", flush=True)
        result["items"][item] = measure_item(ds, item, args.rates, args.seed)
    result["wall_s"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "typos.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "typos.md").write_text(render(result), encoding="utf-8")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
