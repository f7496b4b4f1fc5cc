"""Shared fixtures: a tiny randomly initialised BERT (seconds to train) and small response tables."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def toy_rows(n: int, seed: int = 0, item: str = "q1", prefix: str = "a") -> list[list]:
    """Answers whose score is learnable from a few keywords (0-2)."""
    rng = random.Random(seed)
    words = {0: ["banana", "purple", "dunno"], 1: ["heat", "warm"], 2: ["heat", "conducts", "metal", "energy"]}
    filler = ["the", "it", "because", "so", "and", "ice", "plate"]
    rows = []
    for i in range(n):
        score = i % 3
        text = " ".join(rng.sample(words[score], min(2, len(words[score]))) + rng.sample(filler, 3))
        rows.append([f"{prefix}{i}", item, text, score])
    return rows


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with the packaged MiniLM tokenizer, saved like a pretrained model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kd_train.encoder import default_model_dir

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def toy_tables(tmp_path) -> dict[str, Path]:
    header = ["id", "item", "response", "score"]
    return {
        "train": write_csv(tmp_path / "train.csv", header, toy_rows(90)),
        "test": write_csv(tmp_path / "test.csv", header, toy_rows(30, seed=1, prefix="t")),
        "unlabeled": write_csv(tmp_path / "unlabeled.csv", header,
                               [[r[0].replace("a", "u"), r[1], r[2], ""] for r in toy_rows(20, seed=2)]),
        "items": write_csv(tmp_path / "items.csv", ["item", "question", "score_min", "score_max"],
                           [["q1", "Why does ice melt faster on a metal plate?", 0, 2]]),
    }
