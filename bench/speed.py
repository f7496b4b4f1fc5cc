"""CPU throughput of every scorer on the same answers, in one run, one thread each; and model sizes.

Student: the featurizer (`kd_train.featurize_batch`: compiled for ASCII answers where pip built
kd_train/_featurize_ascii.c, featurize.py otherwise; bit-identical to `kd_train.featurize`, the file the page runs)
+ onnxruntime on model.onnx. fastText: the
same preprocessing as training + its C++ predict, .bin and .ftz. Teacher and TinyBERT-like
stand-in: tokenizer + torch forward pass. Batch 1 (one answer at a time) and batch 64. The
TinyBERT-like stand-in is the packaged base model cut to its first 3 layers with an untrained
classification head: its speed and size do not depend on its weights.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kd_train.config import FeaturizerConfig
from kd_train.scorer import onnx_session
from kd_train.student import featurize_all
from kd_train.encoder import load_model, truncate_layers

BATCHES = (1, 64)
TINYBERT_LAYERS = 3


def sample_answers(tables: list, n: int, seed: int = 0) -> list[str]:
    answers = [r for t in tables for r in t.responses if r.strip()]
    return random.Random(seed).sample(answers, min(n, len(answers)))


def throughput(predict_batch: Callable[[list[str]], object], answers: list[str], batch: int, repeat: int) -> float:
    """Answers per second, best of ``repeat`` passes after one warm-up batch. Batches are formed longest answers
    first (as `kd_train.teacher.predict_logits` does), so a batch pads to answers of similar length."""
    if batch > 1:
        answers = sorted(answers, key=len, reverse=True)
    predict_batch(answers[:batch])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(answers), batch):
            predict_batch(answers[i:i + batch])
        best = min(best, time.perf_counter() - start)
    return len(answers) / best


def _onnx_runner(model_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    session = onnx_session(model_path, threads=1)
    return lambda x: session.run(["probs"], {"features": x})[0]


def featurizer_path() -> str:
    """Which featurizer the student's timings went through, in words."""
    from kd_train import featurize_batch

    if featurize_batch._featurize_ascii_c is not None:
        return "compiled C for ASCII answers, featurize.py for the rest"
    return "featurize.py: the C extension was not built"


def student_predictor(model_path: Path, featurizer: FeaturizerConfig) -> Callable[[list[str]], np.ndarray]:
    """What scoring costs: the featurizer, then onnxruntime on model.onnx."""
    run = _onnx_runner(model_path)
    return lambda texts: run(featurize_all(texts, featurizer))


def fasttext_predictor(path: Path) -> Callable[[list[str]], list]:
    import fasttext

    from bench.fasttext_baseline import predict_one

    fasttext.FastText.eprint = lambda *args, **kwargs: None  # its load_model warning about return types
    model = fasttext.load_model(str(path))
    return lambda texts: [predict_one(model, t) for t in texts]


def transformer_predictor(model, tokenizer, max_length: int) -> Callable[[list[str]], np.ndarray]:
    import torch

    model.eval()

    def predict(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            return model(**enc).logits.numpy()

    return predict


def tinybert_like(base_model_path: str, n_classes: int, layers: int | None = TINYBERT_LAYERS):
    """The base model's first ``layers`` layers (None: all) + a new classification head, as `--tinybert` builds it
    (model, tokenizer)."""
    model, tokenizer = load_model(base_model_path, n_classes)
    if layers is not None:
        truncate_layers(model, layers)
    return model, tokenizer


def transformer_size(model) -> dict:
    """Parameters and the bytes of its weights as safetensors (what a saved model holds)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        size = sum(p.stat().st_size for p in Path(tmp).glob("*.safetensors"))
    return {"params": sum(p.numel() for p in model.parameters()), "bytes": size}


def measure(predictors: dict[str, Callable], answers: list[str], repeats: dict[str, int], log=print) -> dict:
    """{name: {"batch_1": answers/s, "batch_64": answers/s}} for every predictor."""
    out: dict[str, dict] = {}
    for name, predict in predictors.items():
        out[name] = {}
        for batch in BATCHES:
            out[name][f"batch_{batch}"] = throughput(predict, answers, batch, repeats.get(name, 3))
            log(f"  speed {name:<16} batch {batch:>2}: {out[name][f'batch_{batch}']:>9.1f} answers/s")
    return out


def cpu_note() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, shared with whatever else runs (load average {load} after timing); every scorer on 1 thread"
