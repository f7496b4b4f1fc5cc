"""The students, and their ONNX export.

``Student`` (the bag student): the dense float32 vector of ``featurize(text, config)`` (length
``n_buckets``), one hidden layer of ``hidden`` ReLU units (0: none, a linear model), then one logit per
score value. With 2,048 buckets, 14 hidden units and 4 score values it has 28,746 parameters.

``SequenceStudent``: the answer's hashed token ids (``featurize.token_ids``, padded with 0), an
embedding table (initialised from the teacher's encoder: :func:`embedding_table`), 1-D convolutions of
a few widths, ReLU, max and mean pooling over the answer's positions, one logit per score value. It
sees word order ("not true", "does not"), which a bag of n-grams only sees as far as its n.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kd_train import featurize_batch
from kd_train import featurize
from kd_train.config import FeaturizerConfig, SequenceConfig, TokenConfig, WordpieceConfig
from kd_train.transformer import TransformerModel

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


class SequenceStudent(nn.Module):
    """Token ids [batch, length] (int32, 0 = padding) -> logits [batch, n_classes]."""

    def __init__(self, config: SequenceConfig, n_classes: int, embeddings: np.ndarray | None = None):
        super().__init__()
        self.config, self.n_classes = config, n_classes
        self.embedding = nn.Embedding(config.tokens.n_buckets, config.dim, padding_idx=0)
        if embeddings is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(torch.from_numpy(np.asarray(embeddings, dtype=np.float32)))
                self.embedding.weight[0] = 0.0
        self.convs = nn.ModuleList(nn.Conv1d(config.dim, config.channels, k) for k in config.kernels)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(2 * config.channels * len(config.kernels), n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.from_table(ids, self.embedding.weight)

    def from_table(self, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Logits with ``table`` as the embeddings (the export passes the float16 copy it stores)."""
        # Padded on the right with (widest kernel - 1) zeros, so that every position of the answer starts
        # a whole window however much padding its batch has: the same answer gets the same logits alone
        # (the page) or beside longer ones (kd-train predict).
        ids = nn.functional.pad(ids.to(torch.int64), (0, max(self.config.kernels) - 1))
        valid = (ids != 0).to(torch.float32)
        x = self.dropout(nn.functional.embedding(ids, table)).transpose(1, 2)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x)) * valid[:, : ids.shape[1] - conv.kernel_size[0] + 1].unsqueeze(1)
            pooled.append(h.amax(dim=2))   # ReLU output >= 0: a masked 0 never wins over a real window
            pooled.append(h.sum(dim=2) / valid.sum(dim=1, keepdim=True).clamp_min(1.0))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))

    def round_embeddings(self) -> None:
        """Round the embedding table to float16 and back, as model.onnx stores it: the model's figures are
        then those of the shipped file."""
        with torch.no_grad():
            self.embedding.weight.copy_(self.embedding.weight.half().float())


class _WithSoftmax(nn.Module):
    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.student(features), dim=-1)


class _SequenceExport(nn.Module):
    """The sequence student with its embedding table held as float16 (half the bytes) and cast on use."""

    def __init__(self, student: SequenceStudent):
        super().__init__()
        self.student = student
        self.register_buffer("table16", student.embedding.weight.detach().half())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.student.from_table(ids, self.table16.float()), dim=-1)


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The model's logits (float64) for dense features ``x``, in eval mode (for the exported teacher, ``x`` is
    the answers themselves and the logits are its int8 model's log-probabilities)."""
    if isinstance(model, TransformerModel):
        return model.logits(x)
    with torch.no_grad():
        return model.eval()(as_tensor(x)).double().numpy()


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """Token ids stay integers (int64 for torch's embedding); features are float32."""
    x = np.asarray(x)
    return torch.from_numpy(x.astype(np.int64 if x.dtype.kind in "iu" else np.float32, copy=False))


def param_count(model: nn.Module) -> int:
    if isinstance(model, TransformerModel):
        return model.params
    return sum(p.numel() for p in model.parameters())


def featurize_all(responses: list[str], config: FeaturizerConfig) -> np.ndarray:
    """Dense float32 features, one row per response (the model's input), bit-identical to featurize.py
    (through kd_train/featurize_batch.py: compiled for ASCII answers, featurize.py for the rest)."""
    return featurize_batch.featurize_dense(responses, config)


def token_matrix(responses: list[str], config: SequenceConfig) -> np.ndarray:
    """The sequence student's input: ``featurize_batch.token_matrix`` with its token config."""
    return featurize_batch.token_matrix(responses, config.tokens)


def model_inputs(model: nn.Module, responses: list[str], config: FeaturizerConfig) -> np.ndarray:
    """What ``model`` reads for ``responses``: token ids for a sequence student (its own token config),
    else the dense features of ``config``."""
    if isinstance(model, SequenceStudent):
        return token_matrix(responses, model.config)
    if isinstance(model, TransformerModel):
        return list(responses)   # it reads the text (wordpiece.py), inside ``logits``
    return featurize_all(responses, config)


def model_summary(model: nn.Module) -> dict:
    """What scorer.json says of the network: its kind and shape."""
    if isinstance(model, TransformerModel):
        return dict(model.summary)
    if isinstance(model, SequenceStudent):
        c = model.config
        return {"kind": "sequence", "dim": c.dim, "channels": c.channels, "kernels": list(c.kernels),
                "embeddings": "float16"}
    return {"kind": "bag", "hidden": model.hidden}


def input_config(model: nn.Module, config: FeaturizerConfig) -> FeaturizerConfig | TokenConfig | WordpieceConfig:
    """The input config scorer.json records for ``model``: its token config, its wordpiece config (the exported
    teacher), or the bag featurizer ``config``."""
    if isinstance(model, TransformerModel):
        return WordpieceConfig.from_dict(model.config)
    return model.config.tokens if isinstance(model, SequenceStudent) else config


def input_name(model: nn.Module) -> str:
    """The ONNX input of ``model``: ``token_ids`` (int32 [batch, length]), ``input_ids`` (the exported teacher:
    int32 [batch, length], padded with -1) or ``features`` (float32 [batch, n_buckets])."""
    if isinstance(model, TransformerModel):
        return "input_ids"
    return "token_ids" if isinstance(model, SequenceStudent) else "features"


def embedding_table(words: list[str], counts: list[int], vectors: np.ndarray, config: SequenceConfig,
                    seed: int = 0) -> np.ndarray:
    """The sequence student's starting embeddings [n_buckets, dim]: the teacher's vector of each word
    (``vectors``, one row per word), centred and reduced to ``dim`` dimensions by PCA, averaged per
    bucket weighted by how often the answers use the word; buckets no word reached get small random
    vectors, bucket 0 (padding) zeros."""
    tokens = config.tokens.as_dict()
    v = np.asarray(vectors, dtype=np.float64)
    v = v - v.mean(axis=0)
    _, _, components = np.linalg.svd(v, full_matrices=False)
    reduced = v @ components[: config.dim].T
    if reduced.shape[1] < config.dim:
        reduced = np.pad(reduced, ((0, 0), (0, config.dim - reduced.shape[1])))
    reduced *= 0.5 / max(float(reduced.std()), 1e-12)
    table = np.zeros((config.tokens.n_buckets, config.dim))
    weight = np.zeros(config.tokens.n_buckets)
    for word, count, row in zip(words, counts, reduced):
        ids = featurize.token_ids(word, tokens)
        if len(ids) == 1:   # a word featurize.py reads as one token
            table[ids[0]] += count * row
            weight[ids[0]] += count
    filled = weight > 0
    table[filled] /= weight[filled, None]
    rng = np.random.default_rng(seed)
    table[~filled] = rng.normal(0.0, 0.1, (int((~filled).sum()), config.dim))
    table[0] = 0.0
    return table.astype(np.float32)


def onnx_bytes(model: nn.Module) -> int:
    """The size of ``model``'s model.onnx (exported to a temporary folder and measured): what it adds to the page
    (for the exported teacher, model.onnx alone; its vocab.txt adds about 0.2 MB)."""
    if isinstance(model, TransformerModel):
        return len(model.onnx_model)
    with tempfile.TemporaryDirectory(prefix="kd-train-size-") as folder:
        export_onnx(model, Path(folder) / "model.onnx")
        return (Path(folder) / "model.onnx").stat().st_size


def one_answer_input(model: nn.Module, config: FeaturizerConfig):
    """A function text -> ``model``'s input for that one answer, made by the page's own Python (featurize.py, or
    wordpiece.py for a transformer), as the page makes it: what :func:`answer_ms` times."""
    from kd_train import wordpiece

    if isinstance(model, TransformerModel):
        vocab = wordpiece.read_vocab(model.vocab_text)
        return lambda text: np.array([wordpiece.encode(text, vocab, model.config)], dtype=np.int32)
    if isinstance(model, SequenceStudent):
        tokens = model.config.tokens.as_dict()
        return lambda text: np.array([featurize.token_ids(text, tokens) or [0]], dtype=np.int32)
    bag = config.as_dict()

    def features(text: str) -> np.ndarray:
        row = np.zeros((1, model.n_buckets), dtype=np.float32)
        for bucket, value in featurize.featurize(text, bag):
            row[0, bucket] = value
        return row
    return features


def answer_ms(model: nn.Module, responses: list[str], config: FeaturizerConfig, most: int = 40) -> float:
    """Median milliseconds to score one answer on this machine, the answers taken one at a time as the page
    takes them: :func:`one_answer_input` and model.onnx in onnxruntime on one thread, in CPython. A cost to
    compare candidates with: the page (Pyodide, onnxruntime-web's wasm) is slower, by a factor bench/browser.py
    measures; 0.0 when there are no answers."""
    return onnx_cost(model, responses, config, most)[1]


def onnx_cost(model: nn.Module, responses: list[str], config: FeaturizerConfig, most: int = 40) -> tuple[int, float]:
    """(bytes of ``model``'s model.onnx, :func:`answer_ms` on ``responses``), from one export of the model."""
    import time

    from kd_train.scorer import onnx_session

    texts = [t for t in responses if t.strip()][:most]
    with tempfile.TemporaryDirectory(prefix="kd-train-cost-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path)
        size = path.stat().st_size
        session = onnx_session(path, threads=1) if texts else None
    if session is None:
        return size, 0.0
    name, inputs = session.get_inputs()[0].name, one_answer_input(model, config)
    session.run(["probs"], {name: inputs(texts[0])})   # the first run allocates: not counted
    times = []
    for text in texts:
        start = time.perf_counter()
        session.run(["probs"], {name: inputs(text)})
        times.append(time.perf_counter() - start)
    return size, float(np.median(times) * 1000)


def export_onnx(model: nn.Module, path: str | os.PathLike) -> None:
    """One self-contained ONNX file, output ``probs`` [batch, n_classes]; input ``features`` [batch, n_buckets]
    (the bag student) or ``token_ids`` int32 [batch, length] (the sequence student, its embedding table
    stored as float16), or the exported teacher's model.onnx as it is."""
    if isinstance(model, TransformerModel):
        Path(path).write_bytes(model.onnx_model)
        return
    if isinstance(model, SequenceStudent):
        wrapped, example = _SequenceExport(model).eval(), torch.ones(1, 3, dtype=torch.int32)
        axes = {"token_ids": {0: "batch", 1: "length"}, "probs": {0: "batch"}}
    else:
        wrapped, example = _WithSoftmax(model).eval(), torch.zeros(1, model.n_buckets)
        axes = {"features": {0: "batch"}, "probs": {0: "batch"}}
    # export restores the training flag of what it is given
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[input_name(model)],
            output_names=["probs"],
            dynamic_axes=axes,
            # folding would store the float16 table's float32 cast: twice the bytes
            do_constant_folding=not isinstance(model, SequenceStudent),
        )
