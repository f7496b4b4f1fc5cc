"""The scorer directory (contract 4): model.onnx + scorer.json + MODEL_CARD.md, one per item.

``write_scorer`` builds the directory beside its destination and renames it into place, so an
interrupted run never leaves a half-written scorer. ``Scorer`` loads one, checks its hashes, and
scores answers with onnxruntime exactly as the web page does (featurize.py, then model.onnx).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kd_train import featurize
from kd_train.data import UserError
from kd_train.files import replace_dir, sha256_file
from kd_train.student import Student, export_onnx, featurize_all, onnx_session, param_count

FORMAT_VERSION = 1
FEATURIZE_PATH = Path(featurize.__file__)


def featurize_sha256() -> str:
    return sha256_file(FEATURIZE_PATH)


def _render_card(info: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kd_train", "templates"), keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    return env.get_template("MODEL_CARD.md.j2").render(**info)


def write_scorer(
    out_dir: str | os.PathLike,
    model: Student,
    *,
    item: str,
    question: str,
    score_values: list[int],
    featurizer_config: dict,
    metrics: dict,
    teacher: dict | None,
    training: dict,
    baselines: dict | None = None,
) -> dict:
    """Write the scorer directory atomically; returns scorer.json's content.

    ``baselines`` (optional): {name: {params, acc, qwk, f1}} of other models on the same split,
    shown in the model card.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        export_onnx(model, tmp / "model.onnx")
        info = {
            "format_version": FORMAT_VERSION,
            "item": item,
            "question": question,
            "score_values": score_values,
            "featurizer": featurize.validate_config(featurizer_config),
            "model": {
                "file": "model.onnx",
                "sha256": sha256_file(tmp / "model.onnx"),
                "bytes": (tmp / "model.onnx").stat().st_size,
                "params": param_count(model),
                "hidden": model.hidden,
                "input": "features",
                "output": "probs",
            },
            "featurize_sha256": featurize_sha256(),
            "metrics": metrics,
            "teacher": teacher,
            "training": training,
            "baselines": baselines or {},
        }
        (tmp / "scorer.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(_render_card(info), encoding="utf-8")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def read_scorer(folder: str | os.PathLike, check_featurizer: bool = True) -> dict:
    """scorer.json of a scorer directory, after checking model.onnx (and featurize.py) against it."""
    folder = Path(folder)
    meta_path = folder / "scorer.json"
    if not meta_path.is_file():
        raise UserError(f"{folder}: not a scorer directory (no scorer.json); make one with kd-train distill")
    info = json.loads(meta_path.read_text(encoding="utf-8"))
    if info.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{meta_path}: format_version {info.get('format_version')} is not {FORMAT_VERSION}; re-run kd-train distill")
    model = folder / info["model"]["file"]
    if not model.is_file() or sha256_file(model) != info["model"]["sha256"]:
        raise UserError(f"{model}: missing or its sha256 does not match scorer.json; the scorer was changed, re-run kd-train distill")
    if check_featurizer and info["featurize_sha256"] != featurize_sha256():
        raise UserError(
            f"{folder}: trained with a different featurize.py (sha256 {info['featurize_sha256'][:12]}…, this one "
            f"{featurize_sha256()[:12]}…); its scores would be wrong: re-run kd-train distill with this version"
        )
    return info


class Scorer:
    """A loaded scorer directory: featurize.py + model.onnx through onnxruntime."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.info = read_scorer(self.folder)
        self.session = onnx_session(self.folder / self.info["model"]["file"])

    @property
    def score_values(self) -> list[int]:
        return self.info["score_values"]

    def predict_proba(self, responses: list[str], batch_size: int = 512) -> np.ndarray:
        out = []
        for start in range(0, len(responses), batch_size):
            x = featurize_all(responses[start:start + batch_size], self.info["featurizer"])
            out.append(self.session.run(["probs"], {"features": x})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.score_values)), dtype=np.float32)

    def predict(self, responses: list[str]) -> list[int]:
        return [self.score_values[i] for i in self.predict_proba(responses).argmax(axis=1)]
