"""Items per hour: `kd-train train` one item after another against `--ray` with N workers, on the same
items of SAF German legal; and Ray's own overhead on one tiny item (a 2-layer, 32-wide random BERT).

    python -m bench.item_bank [--data DIR] [--items L01 L02 L03 L04] [--workers 2] [--epochs 2]
                              [--out bench/results/item-bank] [--run /tmp/kd-item-bank]

Every mode trains into its own fresh folder under --run (no teacher is reused). The data is read
from its folder ($KD_TRAIN_DATA or ../shared/datasets/saf-german-legal), never copied. The machine's
load average is recorded before and after each run: other work on the machine slows both modes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import utc_now
from kd_train.data import default_data_root

ATTRIBUTION = "SAF German legal, CC BY 4.0, Filighera et al., ACL 2022"


def kd_train(args: list[str]) -> tuple[float, int, str]:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "kd_train.cli", *args], env=env, capture_output=True, text=True)
    return time.time() - started, done.returncode, (done.stdout + done.stderr)[-2000:]


def portable(args: list[str], places: dict[str, Path]) -> str:
    """The command as recorded: each folder of ``places`` written as its name ($KD_TRAIN_DATA, $RUN), so the
    result holds no path of the machine that ran it."""
    text = "kd-train " + " ".join(args)
    for name, folder in sorted(places.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(folder), name)
    return text


def timed(label: str, args: list[str], n_items: int, places: dict[str, Path]) -> dict:
    load = os.getloadavg()
    wall, rc, tail = kd_train(args)
    row = {"mode": label, "items": n_items, "wall_s": round(wall, 1), "items_per_hour": round(n_items * 3600 / wall, 1),
           "rc": rc, "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
           "command": portable(args, places)}
    print(json.dumps(row), flush=True)
    if rc != 0:
        print(tail, file=sys.stderr)
    return row


def tiny_item(folder: Path) -> tuple[Path, Path]:
    """A 60-answer toy item and a 2-layer random BERT with the packaged tokenizer (seconds to train)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kd_train.teacher import default_model_dir

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    model = folder / "tiny-bert"
    BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=128)).save_pretrained(model)
    tokenizer.save_pretrained(model)
    rng = random.Random(0)
    words = {0: ["banana", "purple", "dunno"], 1: ["heat", "warm"], 2: ["heat", "conducts", "metal", "energy"]}
    filler = ["the", "it", "because", "so", "and", "ice", "plate"]
    lines = ["id,item,response,score"]
    for i in range(60):
        s = i % 3
        lines.append(f"a{i},q1,{' '.join(rng.sample(words[s], min(2, len(words[s]))) + rng.sample(filler, 3))},{s}")
    (folder / "tiny.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "tiny.csv", model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.item_bank", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder holding saf-german-legal/ (default: $KD_TRAIN_DATA or ../shared/datasets)")
    ap.add_argument("--items", nargs="+", default=["L01", "L02", "L03", "L04"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--out", type=Path, default=Path("bench/results/item-bank"))
    ap.add_argument("--run", type=Path, default=Path("/tmp/kd-item-bank"))
    ap.add_argument("--skip-saf", action="store_true", help="only the tiny item's Ray overhead")
    ap.add_argument("--ray-first", action="store_true", help="run --ray before the sequential run (the machine's load changes)")
    ap.add_argument("--name", default="item-bank", help="result file name, without .json (default: %(default)s)")
    a = ap.parse_args(argv)
    saf = (a.data or Path(default_data_root())) / "saf-german-legal"
    if a.run.exists():
        shutil.rmtree(a.run)
    rows = []
    places = {"$KD_TRAIN_DATA": saf.parent, "$RUN": a.run}
    common = ["--teacher-cv-below", "0", "--epochs", a.epochs, "--augment", "0"]
    if not a.skip_saf:
        base = ["train", "--train", str(saf / "train.csv"), "--items", str(saf / "items.csv"), "--test",
                str(saf / "test.csv"), "--item", *a.items, *common]
        modes = [("sequential", ["--out", str(a.run / "sequential")]),
                 (f"ray, {a.workers} workers", ["--out", str(a.run / "ray"), "--ray", "--workers", str(a.workers)])]
        for label, extra in modes[::-1] if a.ray_first else modes:
            rows.append(timed(label, base + extra, len(a.items), places))
    table, model = tiny_item(a.run / "tiny")
    tiny = ["train", "--train", str(table), "--model", str(model), "--epochs", "1", "--max-length", "32",
            "--student-epochs", "3", "--augment", "0"]
    overhead = [timed("tiny item, sequential", tiny + ["--out", str(a.run / "tiny-seq")], 1, places),
                timed("tiny item, --ray --workers 1", tiny + ["--out", str(a.run / "tiny-ray"), "--ray", "--workers", "1"], 1,
                      places),
                timed("tiny item, --ray, rerun (skipped)", tiny + ["--out", str(a.run / "tiny-ray"), "--ray", "--workers",
                                                                    "1"], 1, places)]
    result = {"date": utc_now(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work)",
              "python": platform.python_version(), "data": ATTRIBUTION, "items": a.items, "runs": rows,
              "ray_overhead": overhead}
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"{a.name}.json"
    (a.out / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out / name}")


if __name__ == "__main__":
    main()
