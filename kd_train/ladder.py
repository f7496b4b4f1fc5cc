"""The page's transformer rungs as candidates: the small transformer student and the teacher itself, each
exported to ONNX with int8 weights (kd_train/transformer.py) and judged by its int8 model's own probabilities
on the students' validation answers.

The small transformer student (``tinybert_like``: TinyBERT-4L-312D's own weights are in no package here, so it
is a stand-in, named as one) is the teacher's first ``layers`` encoder layers, its embeddings and its
classification head, copied from the *fine-tuned* teacher (the way DistilBERT starts from its teacher's layers)
and then fine-tuned against the teacher's probabilities on the students' fit split and transfer set
(prediction-layer distillation, as TinyBERT's task distillation does). Where the teacher has no fine-tuned
encoder (a frozen teacher on a small item) it starts from the teacher's base model instead. It keeps the
teacher's width and tokenizer, so the page reads it with the teacher's wordpiece.py config and vocab.txt;
its exported embedding table keeps only the rows of the tokens of the answers it trained on (an answer's
other tokens read as [UNK]): for all-MiniLM-L6-v2 the 30,522-row table is most of an int8 model, so this
takes 3 layers from about 17.6 MB to about 6-7 MB. The teacher rung keeps its whole table: it is the
teacher, by construction.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from kd_train import teacher
from kd_train.data import Table
from kd_train.encoder import weights_sha256
from kd_train.ensemble import averaged_logits
from kd_train.teacher_judge import teacher_validation

TRANSFORMER_CANDIDATES = ("tinybert_like", "teacher")   # the candidates exported by transformer_candidate
SMALL_NAME = "tinybert_like"   # its candidate name, report key and folder (OUT/<item>/tinybert_like/)


def small_config(base: teacher.TeacherConfig, teacher_dir: Path, teacher_meta: dict, layers: int) -> teacher.TeacherConfig:
    """The small transformer student's training settings: the teacher's, with its first ``layers`` layers started
    from the fine-tuned teacher in ``teacher_dir`` (from the base model where the teacher is frozen), no
    cross-fitting, and the teacher's reading of the question."""
    fine_tuned = teacher_meta.get("kind") != teacher.FROZEN_KIND and bool(weights_sha256(Path(teacher_dir)))
    start = str(Path(teacher_dir).resolve()) if fine_tuned else base.model
    return teacher.TeacherConfig(**{**asdict(base), "model": start, "layers": min(layers, fewer_layers(start)),
                                    "folds": 0, "with_question": teacher_meta["config"]["with_question"]})


def fewer_layers(model: str | None) -> int:
    """The most layers a smaller copy of ``model`` keeps: one fewer than it has (at least 1)."""
    from kd_train.encoder import resolve_model

    config = json.loads((Path(resolve_model(model)) / "config.json").read_text(encoding="utf-8"))
    return max(1, int(config.get("num_hidden_layers", 2)) - 1)


def starts_from(small_meta: dict, teacher_dir: Path) -> bool:
    """Whether a cached small student was started from the teacher now in ``teacher_dir`` (the cache's settings
    name the teacher's folder, not its weights, which a new fine-tuning replaces)."""
    wanted = weights_sha256(Path(teacher_dir)) if Path(small_meta["config"].get("model") or "") == Path(teacher_dir).resolve() \
        else None
    return wanted is None or small_meta.get("base_weights_sha256") == wanted


def transformer_candidate(name: str, folder: Path | list[Path], meta: dict, train: Table, val: Table,
                          cross_validated: bool, log=print, origin: str | None = None,
                          keep_texts: list[str] | None = None, max_bytes: int | None = None) -> tuple | None:
    """The transformer in ``folder`` (the teacher, or the small transformer student; a list: the teacher's members,
    their probabilities averaged in one graph) exported to ONNX with int8 weights, as a candidate judged by its
    int8 model's own probabilities on the validation answers: (model, {"exported": what it is, "params"}), or
    None (logged) when it cannot be one. It must not have trained on those answers: one validated on the same
    split as the students qualifies; a cross-validated one (its final model saw every answer), or one whose
    validation answers are not these, does not. ``meta`` is the (first) folder's teacher.json; ``origin`` says
    where its weights came from (default: its base model); with ``keep_texts`` its embedding table keeps only
    the tokens they use (``transformer.export_teacher``). Members whose graph is over ``max_bytes`` (a school's
    size budget) give way to the first member alone, judged by itself."""
    from kd_train import transformer

    folders = list(folder) if isinstance(folder, (list, tuple)) else [folder]
    what = f"{name} ({len(folders)} members averaged)" if len(folders) > 1 else name
    why = next((w for w in map(transformer.exportable, folders) if w is not None), None)
    if why is None and (cross_validated or meta.get("cross_validation") is not None):
        why = "it was cross-validated, so its final model trained on every answer the candidates are judged on"
    if why is None:
        found = [teacher_validation(f, teacher.read_meta(f), None, train) for f in folders]
        if any(f is None or sorted(f[0].ids) != sorted(val.ids) for f in found):
            why = "its validation answers are not the students' (another seed or split), so it cannot be judged beside them"
    if why is not None:
        log(f"  candidate: {what} (int8) skipped: {why}")
        return None
    log(f"  candidate: {what}, exported to ONNX with int8 weights")
    started = time.time()
    model = transformer.export_teacher(folders if len(folders) > 1 else folders[0], keep_texts=keep_texts)
    labelled_with = len(folders)
    if max_bytes is not None and len(folders) > 1 and len(model.onnx_model) > max_bytes:
        log(f"    {len(model.onnx_model) / 1e6:.1f} MB is over the {max_bytes / 1e6:g} MB budget: the first member alone "
            "instead, judged on validation by itself")
        folders, found = folders[:1], found[:1]
        model = transformer.export_teacher(folders[0], keep_texts=keep_texts)
    model.summary["base_model"] = origin or meta.get("base_model")
    stored = averaged_logits([f[1][[f[0].ids.index(rid) for rid in val.ids]] for f in found])
    int8 = model.probs(val.responses)
    agreement = transformer.agreement(teacher.softmax(stored), int8)
    rows = model.summary.get("embedding_rows")
    cut = f" ({rows:,} of {model.summary['vocabulary']:,} token embeddings kept: those of the answers it trained on)" \
        if rows else ""
    log(f"    {len(model.onnx_model) / 1e6:.1f} MB{cut}; on the {len(val)} validation answers its probabilities are within "
        f"{agreement['max_abs_diff']:.4f} of the float32 model's, same most probable score for "
        f"{agreement['argmax_agreement']:.1%}")
    exported = {"kind": "transformer", "weights": "int8", "bytes": len(model.onnx_model), "params": model.params,
                "layers": model.summary["layers"], "base_model": model.summary["base_model"],
                "weights_sha256": [teacher.read_meta(f).get("weights_sha256") for f in folders] if len(folders) > 1
                else meta.get("weights_sha256"), "max_length": model.config["max_length"],
                **({"members": len(folders)} if len(folders) > 1 else {}),
                **({"first_of_members": labelled_with} if len(folders) < labelled_with else {}),
                **({"embedding_rows": rows, "vocabulary": model.summary["vocabulary"]} if rows else {}),
                "agreement_with_float32_val": agreement, "wall_s": round(time.time() - started, 1)}
    return model, {"exported": exported, "params": model.params}
