"""The student: a tiny network over the featurizer's hashed vector, and its ONNX export.

Input: the dense float32 vector of ``featurize(text, config)`` (length ``n_buckets``). One hidden
layer of ``hidden`` ReLU units (0: none, a linear model), then one logit per score value. With
2,048 buckets, 14 hidden units and 4 score values it has 28,746 parameters.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from kd_train import featurize_batch
from kd_train.config import FeaturizerConfig

ONNX_OPSET = 17


class Student(nn.Module):
    def __init__(self, n_buckets: int, n_classes: int, hidden: int = 14, dropout: float = 0.1):
        super().__init__()
        self.n_buckets, self.n_classes, self.hidden, self.dropout = n_buckets, n_classes, hidden, dropout
        if hidden > 0:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_buckets, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_buckets, n_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits, shape [batch, n_classes]."""
        return self.net(features)


class _WithSoftmax(nn.Module):
    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.student(features), dim=-1)


def logits(model: Student, x: np.ndarray) -> np.ndarray:
    """The model's logits (float64) for dense features ``x``, in eval mode."""
    with torch.no_grad():
        return model.eval()(torch.from_numpy(np.asarray(x, dtype=np.float32))).double().numpy()


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def featurize_all(responses: list[str], config: FeaturizerConfig) -> np.ndarray:
    """Dense float32 features, one row per response (the model's input), bit-identical to featurize.py
    (through kd_train/featurize_batch.py: compiled for ASCII answers, featurize.py for the rest)."""
    return featurize_batch.featurize_dense(responses, config)


def export_onnx(model: Student, path: str | os.PathLike) -> None:
    """One self-contained ONNX file: input ``features`` [batch, n_buckets], output ``probs`` [batch, n_classes]."""
    wrapped = _WithSoftmax(model).eval()  # export restores the training flag of what it is given
    example = torch.zeros(1, model.n_buckets)
    torch.onnx.export(
        wrapped,
        (example,),
        str(path),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=["features"],
        output_names=["probs"],
        dynamic_axes={"features": {0: "batch"}, "probs": {0: "batch"}},
    )
