"""The top rung of the page's ladder: the fine-tuned teacher itself, exported to ONNX and quantized to int8.

``export_teacher`` turns a teacher folder (fine-tuned, with its weights) into a :class:`TransformerModel`:
model.onnx (input ``input_ids`` int32 [batch, length], padded with -1; the attention mask is ``input_ids >= 0``
inside the graph; output ``probs``, the softmax of its logits), the vocabulary (vocab.txt, in the tokenizer's
id order) and the config of kd_train/wordpiece.py that reproduces the teacher's tokenizer and truncation. The
weights of its MatMuls and embeddings are quantized to int8 (``onnxruntime.quantization.quantize_dynamic``);
what selection judges are the int8 model's own probabilities.

One answer per run, here as in the page: dynamic quantization scales each run's activations by their range
over the whole input, so answers batched together would change each other's probabilities (by about 1e-3).
Run alone, an answer gets the same probabilities from onnxruntime in CPython and onnxruntime-web's wasm
(measured: within 3e-8 with per-channel weights; per-tensor int8 weights differed by 3e-3 between the two).

Refused, with a reason: a frozen teacher (no fine-tuned encoder), a teacher folder without weights, a
teacher that reads the question with the answer (``with_question``: wordpiece.py encodes one answer), and a
tokenizer other than an uncased BERT WordPiece one. Importing this module needs neither torch nor
transformers: only exporting does (scoring needs numpy and onnxruntime).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from kd_train import wordpiece
from kd_train.data import UserError

INPUT = "input_ids"
PAD = -1            # the padding id of input_ids (a real token id is >= 0)
ONNX_OPSET = 17
VOCAB_FILE = wordpiece.DEFAULT_CONFIG["vocab_file"]


class TransformerModel:
    """An exported transformer scorer: model.onnx's bytes, its vocabulary and wordpiece config, and what
    scorer.json says of it. ``probs``/``logits`` run it with onnxruntime as the page does."""

    kind = "transformer"

    def __init__(self, onnx_model: bytes, vocab_text: str, config: dict, summary: dict, params: int):
        self.onnx_model, self.vocab_text, self.params = onnx_model, vocab_text, params
        self.config = wordpiece.validate_config(config)
        self.summary = summary
        self._session = None

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(self.onnx_model, options, providers=["CPUExecutionProvider"])
        return self._session

    def ids(self, responses: list[str]) -> np.ndarray:
        return id_matrix(responses, self.vocab_text, self.config)

    def probs(self, responses: list[str]) -> np.ndarray:
        return run(self.session, responses, self.vocab_text, self.config)

    def logits(self, responses: list[str]) -> np.ndarray:
        """Log-probabilities (float64): logits up to a constant per answer, which softmax ignores."""
        return np.log(np.clip(self.probs(responses).astype(np.float64), 1e-30, None))

    def with_temperature(self, temperature: float) -> TransformerModel:
        """A copy whose probabilities are the softmax of its logits divided by ``temperature`` (a Mul before
        the graph's last Softmax)."""
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load_from_string(self.onnx_model)
        graph = model.graph
        softmax = [n for n in graph.node if n.op_type == "Softmax" and n.output[0] == "probs"]
        if len(softmax) != 1:
            raise ValueError("model.onnx has no Softmax giving 'probs'")
        node = softmax[0]
        scale = numpy_helper.from_array(np.array(1.0 / temperature, dtype=np.float32), "kd_train_inverse_temperature")
        graph.initializer.append(scale)
        scaled = node.input[0] + "_tempered"
        mul = helper.make_node("Mul", [node.input[0], scale.name], [scaled], name="kd_train_temperature")
        node.input[0] = scaled
        index = list(graph.node).index(node)
        graph.node.insert(index, mul)
        summary = self.summary | {"temperature": round(float(temperature), 6)}
        return TransformerModel(model.SerializeToString(), self.vocab_text, self.config, summary, self.params)


def id_matrix(responses: list[str], vocab_text: str, config: dict) -> np.ndarray:
    """wordpiece.encode of each answer, padded on the right with PAD to the longest: int32 [n, length]."""
    vocab = wordpiece.read_vocab(vocab_text)
    rows = [wordpiece.encode(text, vocab, config) for text in responses]
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), PAD, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def run(session, responses: list[str], vocab_text: str, config: dict) -> np.ndarray:
    """The model's probabilities float32 [answers, scores], one answer per run (see the module's note)."""
    vocab = wordpiece.read_vocab(vocab_text)
    out = [session.run(["probs"], {INPUT: np.array([wordpiece.encode(text, vocab, config)], dtype=np.int32)})[0]
           for text in responses]
    if out:
        return np.concatenate(out)
    n_out = session.get_outputs()[0].shape[1]
    return np.zeros((0, n_out if isinstance(n_out, int) else 0), dtype=np.float32)


def wordpiece_config(teacher_dir: str | os.PathLike, meta: dict) -> tuple[dict, str]:
    """(wordpiece.py's config for this teacher, the text of its vocab.txt); UserError when wordpiece.py cannot
    reproduce its tokenizer."""
    from kd_train.encoder import HEAD_SHARE, input_reading

    folder = Path(teacher_dir)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder}: no tokenizer.json (a fast tokenizer), so its WordPiece rules cannot be checked")
    spec = json.loads(path.read_text(encoding="utf-8"))
    norm, pre, model, post = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}, \
        spec.get("post_processor") or {}
    uncased_bert = (norm.get("type") == "BertNormalizer" and norm.get("clean_text") and norm.get("handle_chinese_chars")
                    and norm.get("lowercase") and norm.get("strip_accents") in (None, True)
                    and pre.get("type") == "BertPreTokenizer" and model.get("type") == "WordPiece"
                    and model.get("continuing_subword_prefix") == "##")
    if not uncased_bert:
        raise UserError(f"{folder}: its tokenizer is not an uncased BERT WordPiece tokenizer (normalizer "
                        f"{norm.get('type')}, model {model.get('type')}); the page's wordpiece.py reads only those")
    added = spec.get("added_tokens") or []
    if any(t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
        raise UserError(f"{folder}: its tokenizer has added tokens matched after normalisation or with stripping, "
                        "which wordpiece.py does not reproduce")
    vocab = model.get("vocab") or {}
    by_id = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in by_id] != list(range(len(by_id))) or any("\n" in t or "\r" in t for t in by_id):
        raise UserError(f"{folder}: its vocabulary's ids are not 0 .. {len(by_id) - 1}, one token per line")
    template = [s.get("SpecialToken", {}).get("id") or ("A" if "Sequence" in s else None) for s in post.get("single", [])]
    cls = sep = None
    if post.get("type") == "TemplateProcessing" and len(template) == 3 and template[1] == "A":
        cls, sep = template[0], template[2]
    elif post.get("type") == "BertProcessing":
        cls, sep = post["cls"][0], post["sep"][0]
    question, max_length, head_tail = input_reading(meta)
    if question is not None:
        raise UserError(f"{folder}: this teacher reads the question with the answer (--with-question); the page's "
                        "transformer scorer encodes the answer alone: use a teacher trained without it")
    specials = [t["content"] for t in added if t.get("special")]
    config = dict(wordpiece.DEFAULT_CONFIG, max_length=max_length, truncation="head+tail" if head_tail else "end",
                  head_share=HEAD_SHARE, unk=model.get("unk_token"), cls=cls, sep=sep, pad="[PAD]" if "[PAD]" in vocab
                  else by_id[0], specials=specials, max_chars_per_word=model.get("max_input_chars_per_word", 100))
    try:
        wordpiece.validate_config(config)
    except ValueError as err:
        raise UserError(f"{folder}: its tokenizer cannot be read by wordpiece.py ({err})") from None
    missing = [config[k] for k in ("unk", "cls", "sep") if config[k] not in vocab]
    if missing:
        raise UserError(f"{folder}: its vocabulary lacks {missing[0]!r}")
    return config, "".join(t + "\n" for t in by_id)


def exportable(teacher_dir: str | os.PathLike) -> str | None:
    """Why this teacher folder cannot be exported as a transformer scorer, or None when it can."""
    return _reading(teacher_dir)[0]


def _reading(teacher_dir: str | os.PathLike) -> tuple[str | None, tuple[dict, str] | None]:
    """(why it cannot be exported, None), or (None, its wordpiece_config) when it can."""
    from kd_train.encoder import weights_sha256
    from kd_train.teacher import read_meta
    from kd_train.teacher_frozen import FROZEN_KIND

    meta = read_meta(teacher_dir)
    if meta.get("kind") == FROZEN_KIND:
        return "the teacher is the frozen encoder + logistic regression, not a fine-tuned model", None
    if not weights_sha256(Path(teacher_dir)):
        return "the teacher folder holds no model weights", None
    try:
        return None, wordpiece_config(teacher_dir, meta)
    except UserError as err:
        return str(err).split(": ", 1)[-1], None


def export_teacher(teacher_dir: str | os.PathLike | list[str | os.PathLike], quantize: bool = True,
                   keep_texts: list[str] | None = None) -> TransformerModel:
    """The teacher of ``teacher_dir`` as a :class:`TransformerModel` (int8 weights unless ``quantize`` is False).

    A list of teacher folders (the members of ``--teachers K``, which read answers alike) gives one model whose
    probabilities are the mean of the members' (kd_train/ensemble.py's average), in one graph.

    With ``keep_texts``, the embedding table keeps only the rows of the tokens those texts use (and the
    special tokens): inside the graph a constant table maps every vocabulary id to its kept row, or to
    [UNK]'s. The tokenizer and vocab.txt stay whole, so the page's ids are the teacher tokenizer's; only a
    token the texts never use reads as [UNK]."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from kd_train.teacher import read_meta

    dirs = [teacher_dir] if isinstance(teacher_dir, (str, os.PathLike)) else list(teacher_dir)
    readings = []
    for folder in dirs:
        why, reading = _reading(folder)
        if why is not None:
            raise UserError(f"{folder}: cannot export the teacher as a scorer: {why}")
        readings.append(reading)
    if any(r != readings[0] for r in readings[1:]):
        raise UserError(f"{dirs[1]}: this member reads answers unlike {dirs[0]} (tokenizer or input length), so "
                        "their probabilities cannot be averaged in one model")
    meta = read_meta(dirs[0])
    config, vocab_text = readings[0]
    members = torch.nn.ModuleList(
        AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32,
                                                           attn_implementation="eager").eval() for folder in dirs)
    model = members[0]
    remap = None
    if keep_texts is not None:
        keep, unk = kept_ids(keep_texts, vocab_text, config), wordpiece.read_vocab(vocab_text)[config["unk"]]
        for member in members:   # the same map for every member
            remap = cut_vocabulary(member, keep, unk)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            mask = (ids >= 0).to(torch.int64)
            ids64 = ids.clamp(min=0).to(torch.int64)
            if remap is not None:
                ids64 = remap[ids64].to(torch.int64)
            types = torch.zeros_like(ids64)
            probs = [torch.softmax(m(input_ids=ids64, attention_mask=mask, token_type_ids=types).logits, dim=-1)
                     for m in self.inner]
            return probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)

    with tempfile.TemporaryDirectory(prefix="kd-train-export-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapped(members).eval(), (torch.full((2, 8), 1000, dtype=torch.int32),), str(fp32),
                              dynamo=False, opset_version=ONNX_OPSET, input_names=[INPUT], output_names=["probs"],
                              dynamic_axes={INPUT: {0: "batch", 1: "length"}, "probs": {0: "batch"}},
                              do_constant_folding=True)
        target = fp32
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            target = Path(folder) / "int8.onnx"
            quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul", "Gather"])
        data = target.read_bytes()
    summary = {"kind": "transformer", "base_model": meta.get("base_model"), "layers": model.config.num_hidden_layers,
               "hidden": model.config.hidden_size, "weights": "int8" if quantize else "float32",
               "max_length": config["max_length"], "vocab_file": VOCAB_FILE,
               **({} if remap is None else {"embedding_rows": model.base_model.embeddings.word_embeddings.num_embeddings,
                                            "vocabulary": len(remap)}),
               **({"members": len(members)} if len(members) > 1 else {})}
    params = sum(p.numel() for p in members.parameters())
    return TransformerModel(data, vocab_text, config, summary, params)


def kept_ids(texts: list[str], vocab_text: str, config: dict) -> list[int]:
    """The vocabulary ids ``texts`` use, with the special tokens', sorted."""
    vocab = wordpiece.read_vocab(vocab_text)
    used = {i for text in texts for i in wordpiece.encode(text, vocab, config)}
    return sorted(used | {vocab[t] for t in [config["unk"], config["cls"], config["sep"], config["pad"],
                                            *config["specials"]] if t in vocab})


def cut_vocabulary(model, keep: list[int], unk: int):
    """Keep only the rows ``keep`` (which holds ``unk``) of ``model``'s word embeddings; returns the table (int32)
    that maps each old id to its new row (an id not kept: the row of ``unk``)."""
    import torch

    table = model.base_model.embeddings.word_embeddings
    keep_t = torch.tensor(keep, dtype=torch.int64)
    remap = torch.full((table.num_embeddings,), keep.index(unk), dtype=torch.int32)   # half of int64's bytes
    remap[keep_t] = torch.arange(len(keep), dtype=torch.int32)
    smaller = torch.nn.Embedding(len(keep), table.embedding_dim)
    smaller.weight.data = table.weight.data[keep_t].clone()
    model.base_model.embeddings.word_embeddings = smaller
    model.config.vocab_size = len(keep)
    return remap


def agreement(reference: np.ndarray, probs: np.ndarray) -> dict:
    """How closely ``probs`` (e.g. the int8 model's) follow ``reference`` (the fp32 teacher's softmax)."""
    reference, probs = np.asarray(reference, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    diff = np.abs(reference - probs)
    return {"n": int(len(reference)), "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "argmax_agreement": float((reference.argmax(axis=1) == probs.argmax(axis=1)).mean()) if len(reference) else
            math.nan}
