"""The teacher itself as the page's top rung: how far its int8 ONNX export is from the float32 teacher.

    python -m bench.teacher_int8 TEACHER_DIR [--out bench/results/teacher-int8]

TEACHER_DIR: a fine-tuned teacher folder (with weights) of an ASAP-SAS item. Exports it
(kd_train/transformer.py: ONNX, int8 MatMul and embedding weights, per channel) and compares, on the
teacher's own validation answers (its val-logits.npz, the float32 model's) and on the item's test_public
answers (the float32 teacher run here): the largest and mean absolute difference of the probabilities,
how often the most probable score agrees, QWK of the most probable score of each, the model's size, and the
time per answer in CPython's onnxruntime (one answer per run, as the page runs it). Writes OUT/report.json
and OUT/README.md. Answers are read through kd_train.data from the shared ASAP-SAS folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from kd_train import teacher, transformer
    from kd_train.data import load_asap
    from kd_train.metrics import qwk

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("teacher", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/results/teacher-int8"))
    args = ap.parse_args(argv)
    meta = teacher.read_meta(args.teacher)
    values = meta["score_values"]
    ds = load_asap()
    labelled = ds.train.for_item(meta["item"]).labelled()
    stored = np.load(args.teacher / teacher.VAL_LOGITS_FILE)
    row = {rid: i for i, rid in enumerate(labelled.ids)}
    val = labelled.take([row[r] for r in stored["ids"].tolist()])
    test = ds.test.for_item(meta["item"]).labelled()
    started = time.time()
    model = transformer.export_teacher(args.teacher)
    export_s = time.time() - started
    result = {"teacher": str(args.teacher.name), "item": meta["item"], "base_model": meta["base_model"],
              "max_length": meta["max_length"], "teacher_epochs_run": meta["epochs_run"],
              "int8_bytes": len(model.onnx_model), "vocab_bytes": len(model.vocab_text.encode()),
              "params": model.params, "export_s": round(export_s, 1), "splits": {}}
    fp32_bytes = len(transformer.export_teacher(args.teacher, quantize=False).onnx_model)
    result["float32_bytes"] = fp32_bytes
    to_index = {v: i for i, v in enumerate(values)}
    for name, table, reference in (("val", val, teacher.softmax(stored["logits"])),
                                   ("test", test, None)):
        if reference is None:
            reference = teacher.softmax(teacher.predict_logits(args.teacher, table.responses, progress=False))
        t = time.perf_counter()
        int8 = model.probs(table.responses)
        per_answer = (time.perf_counter() - t) / max(1, len(table))
        truth = [to_index[s] for s in table.scores]
        labels = list(range(len(values)))
        result["splits"][name] = transformer.agreement(reference, int8) | {
            "qwk_float32": round(qwk(truth, reference.argmax(axis=1).tolist(), labels), 4),
            "qwk_int8": round(qwk(truth, int8.argmax(axis=1).tolist(), labels), 4),
            "ms_per_answer_cpython_onnxruntime": round(1000 * per_answer, 2)}
        print(name, result["splits"][name], file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [f"# The teacher as a scorer: int8 against float32 (ASAP-SAS item {meta['item']})", "",
             f"`python -m bench.teacher_int8 {args.teacher.name}`: {meta['base_model']}, fine-tuned "
             f"{meta['epochs_run']:g} epoch(s), max_length {meta['max_length']}.", "",
             f"model.onnx: {result['int8_bytes'] / 1e6:.1f} MB int8 (float32: {fp32_bytes / 1e6:.1f} MB), plus "
             f"vocab.txt {result['vocab_bytes'] / 1e6:.2f} MB.", "",
             "| split | answers | max abs diff | mean abs diff | same most probable score | QWK float32 | QWK int8 | ms/answer (CPython) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in result["splits"].items():
        lines.append(f"| {name} | {s['n']} | {s['max_abs_diff']:.4f} | {s['mean_abs_diff']:.5f} | "
                     f"{s['argmax_agreement']:.2%} | {s['qwk_float32']:.3f} | {s['qwk_int8']:.3f} | "
                     f"{s['ms_per_answer_cpython_onnxruntime']:.1f} |")
    (args.out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
