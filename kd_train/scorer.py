"""The scorer directory (contract 4 of docs/design.md): model.onnx + scorer.json + MODEL_CARD.md, one per item.

``write_scorer`` builds the directory beside its destination and renames it into place, so an
interrupted run never leaves a half-written scorer; the folder's ``kd-train.json`` records the
sha256 of all three files at write time. ``read_scorer`` is the one integrity rule that predict,
evaluate and build apply: every file matches its recorded hash, scorer.json is well-formed (its
featurizer config becomes a checked ``FeaturizerConfig`` there), and it was made with this featurize.py.
``Scorer`` also checks that the model has one output per score value, then scores answers with
onnxruntime exactly as the web page does (featurize.py, then model.onnx, then scorer.json's decision
rule: cutpoints on the expected score, or the most probable score). A transformer scorer (the
fine-tuned teacher exported to int8, kd_train/transformer.py) reads the answer through wordpiece.py
and its vocabulary file instead, which kd-train.json lists and read_scorer checks like the other files.
Nothing here imports torch: scoring needs only numpy and onnxruntime.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kd_train import detect, featurize, wordpiece
from kd_train.config import FeaturizerConfig, TokenConfig, WordpieceConfig
from kd_train.data import UserError
from kd_train.files import holds_lock, read_marker, replace_dir, sha256_file
from kd_train.temps import discard_temp, make_temp_dir, remove_leftovers
from kd_train.metrics import decide

if TYPE_CHECKING:
    from kd_train.student import Student

FORMAT_VERSION = 1
FEATURIZE_PATH = Path(featurize.__file__)
WORDPIECE_PATH = Path(wordpiece.__file__)
FILES = ("model.onnx", "scorer.json", "MODEL_CARD.md")   # and a transformer scorer's vocabulary file


def featurize_sha256() -> str:
    return sha256_file(FEATURIZE_PATH)


def wordpiece_sha256() -> str:
    return sha256_file(WORDPIECE_PATH)


def scorer_files(featurizer) -> tuple[str, ...]:
    """The files of a scorer directory with this input config: FILES, and a transformer scorer's vocabulary."""
    return FILES + ((featurizer.vocab_file,) if isinstance(featurizer, WordpieceConfig) else ())


def _render_card(info: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kd_train", "templates"), keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    from kd_train.validity import ETS_THRESHOLDS

    return env.get_template("MODEL_CARD.md.j2").render(**info, ets=ETS_THRESHOLDS)


def write_scorer(
    out_dir: str | os.PathLike,
    model: Student,
    *,
    item: str,
    question: str,
    score_values: list[int],
    featurizer_config: FeaturizerConfig | TokenConfig,
    metrics: dict,
    teacher: dict | None,
    training: dict,
    baselines: dict | None = None,
    quality: dict | None = None,
    detectors: dict | None = None,
    probes: dict | None = None,
    force: bool = False,
) -> dict:
    """Write the scorer directory atomically; returns scorer.json's content.

    ``baselines`` (optional): {name: {params, acc, qwk, f1}} of other models on the same split,
    shown in the model card. ``quality`` (optional): what pipeline.ship decided — the candidates,
    which was shipped and why, its calibration and the quality gate's verdict; without it the
    scorer's fitness is recorded as not checked (``fit_for_use`` None). ``detectors`` (optional): the
    profile of kd_train/detect.py that flags answers the scorer should not judge. ``probes``
    (optional): what kd_train/probes.py measured on this item's gaming probes. An existing ``out_dir`` is replaced only when it is a scorer directory
    (or ``force``).
    """
    from kd_train.student import export_onnx, input_name, model_summary, param_count
    from kd_train.transformer import TransformerModel

    out_dir = Path(out_dir)
    if detectors is not None:
        detect.check_profile(detectors)
    if not holds_lock(out_dir):   # else the verb did it when it took the lock (kd-train distill)
        remove_leftovers(out_dir)   # of a killed run that wrote this scorer (inside a train folder)
    tmp = make_temp_dir(out_dir)
    try:
        export_onnx(model, tmp / "model.onnx")
        transformer = isinstance(model, TransformerModel)
        if transformer:
            (tmp / featurizer_config.vocab_file).write_bytes(model.vocab_text.encode("utf-8"))
        info = {
            "format_version": FORMAT_VERSION,
            "item": item,
            "question": question,
            "score_values": score_values,
            "featurizer": featurizer_config.as_dict(),
            "model": {
                "file": "model.onnx",
                "sha256": sha256_file(tmp / "model.onnx"),
                "bytes": (tmp / "model.onnx").stat().st_size,
                "params": param_count(model),
                **model_summary(model),
                "input": input_name(model),
                "output": "probs",
            },
            "featurize_sha256": featurize_sha256(),
            **({"wordpiece_sha256": wordpiece_sha256(),
                "vocab": {"file": featurizer_config.vocab_file, "sha256": sha256_file(tmp / featurizer_config.vocab_file),
                          "bytes": (tmp / featurizer_config.vocab_file).stat().st_size}} if transformer else {}),
            "metrics": metrics,
            "teacher": teacher,
            "training": training,
            "baselines": baselines or {},
            "fit_for_use": quality["fit_for_use"] if quality else None,
            "unfit_reasons": quality["unfit_reasons"] if quality else [],
            "review_threshold": quality["calibration"]["review_threshold"] if quality else None,
            "cutpoints": quality["calibration"]["decision"]["cutpoints"] if quality else None,
            "quality": _without_plot_points(quality),
            "detectors": detectors,
            "probes": probes,
        }
        (tmp / "scorer.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(_render_card(info), encoding="utf-8")
        replace_dir(tmp, out_dir, "scorer", force=force)
    finally:
        discard_temp(tmp)
    return info


def _without_plot_points(quality: dict | None) -> dict | None:
    if quality is None:
        return None
    calibration = {k: v for k, v in quality["calibration"].items() if not k.startswith("reliability")}
    return {k: v for k, v in quality.items() if k not in ("metrics", "calibration")} | {"calibration": calibration}


def _bad(folder: Path, problem: str) -> UserError:
    return UserError(f"{folder}: {problem}; the scorer directory was changed or damaged: re-run kd-train distill "
                     "(or kd-train train) to make it again")


def check_files(folder: str | os.PathLike, names: tuple[str, ...] = FILES) -> dict:
    """Check model.onnx, scorer.json and MODEL_CARD.md (or ``names``) against the hashes kd-train.json recorded;
    return the marker."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give a scorer directory made by kd-train distill or train "
                        "(OUT/<item>/scorer)")
    if not (folder / "scorer.json").is_file():
        raise UserError(f"{folder}: not a scorer directory (no scorer.json); make one with kd-train distill")
    marker = read_marker(folder)
    if marker is None or marker["kind"] != "scorer":
        raise _bad(folder, "no valid kd-train.json (the record of its files' hashes), so its files cannot be "
                           "trusted; scorers made before this check need it too")
    for name in names:
        recorded = marker["files"].get(name)
        path = folder / name
        if not path.is_file():
            raise _bad(folder, f"{name} is missing")
        if not isinstance(recorded, dict) or sha256_file(path) != recorded.get("sha256"):
            raise _bad(folder, f"{name}'s sha256 does not match the one recorded in kd-train.json")
    return marker


def input_config(config: dict) -> FeaturizerConfig | TokenConfig | WordpieceConfig:
    """scorer.json's "featurizer", checked: the token config of a sequence scorer (``"kind": "tokens"``), the
    wordpiece config of a transformer scorer (``"kind": "wordpiece"``), else the bag featurizer's; ValueError
    or TypeError when it is none of them."""
    if isinstance(config, dict) and config.get("kind") == "tokens":
        return TokenConfig.from_dict(config)
    if isinstance(config, dict) and config.get("kind") == "wordpiece":
        return WordpieceConfig.from_dict(config)
    return FeaturizerConfig.from_dict(config)


def _check_info(folder: Path, info) -> FeaturizerConfig | TokenConfig:
    """scorer.json's shape: the keys predict, evaluate, build and the page rely on; returns its featurizer config."""
    if not isinstance(info, dict):
        raise _bad(folder, "scorer.json is not a JSON object")
    if info.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{folder / 'scorer.json'}: format_version {info.get('format_version')!r} is not "
                        f"{FORMAT_VERSION}; re-run kd-train distill with this version")
    missing = [k for k in ("item", "score_values", "featurizer", "model", "featurize_sha256") if k not in info]
    if missing:
        raise _bad(folder, f"scorer.json has no {', '.join(repr(k) for k in missing)}")
    values = info["score_values"]
    if (not isinstance(values, list) or not values or not all(type(v) is int for v in values)
            or values != sorted(set(values))):
        raise _bad(folder, f"scorer.json's score_values {values!r} are not distinct integers in increasing order")
    if not isinstance(info["item"], str) or not info["item"].strip():
        raise _bad(folder, f"scorer.json's item {info['item']!r} is not a non-empty string")
    model = info["model"]
    if not isinstance(model, dict) or model.get("file") != "model.onnx":
        raise _bad(folder, "scorer.json's model entry is not an object with \"file\": \"model.onnx\"")
    if not (isinstance(model.get("sha256"), str) and len(model["sha256"]) == 64
            and all(c in "0123456789abcdef" for c in model["sha256"])):
        raise _bad(folder, f"scorer.json's model.sha256 {model.get('sha256')!r} is not 64 hex digits")
    for key in ("params", "bytes"):
        if type(model.get(key)) is not int or model[key] < 0:
            raise _bad(folder, f"scorer.json's model.{key} {model.get(key)!r} is not a whole number >= 0")
    if not isinstance(info["featurize_sha256"], str):
        raise _bad(folder, f"scorer.json's featurize_sha256 {info['featurize_sha256']!r} is not a string")
    if info.get("question") is not None and not isinstance(info["question"], str):
        raise _bad(folder, f"scorer.json's question {info['question']!r} is not a string (or null)")
    if info.get("fit_for_use") not in (None, True, False):
        raise _bad(folder, f"scorer.json's fit_for_use {info['fit_for_use']!r} is not true, false or null")
    reasons = info.get("unfit_reasons")
    if reasons is not None and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        raise _bad(folder, f"scorer.json's unfit_reasons {reasons!r} is not a list of strings")
    threshold = info.get("review_threshold")
    if threshold is not None and not (type(threshold) in (int, float) and math.isfinite(threshold)
                                      and 0 <= threshold <= 1):
        raise _bad(folder, f"scorer.json's review_threshold {threshold!r} is not a number from 0 to 1 (or null)")
    for key in ("quality", "metrics", "training", "teacher", "baselines", "probes"):
        if info.get(key) is not None and not isinstance(info[key], dict):
            raise _bad(folder, f"scorer.json's {key} {str(info[key])[:40]!r} is not an object (or null)")
    try:
        featurizer = input_config(info["featurizer"])
    except (ValueError, TypeError) as err:
        raise _bad(folder, f"scorer.json's featurizer config is invalid ({err})") from None
    if isinstance(featurizer, WordpieceConfig):
        vocab = info.get("vocab")
        if not (isinstance(vocab, dict) and vocab.get("file") == featurizer.vocab_file
                and isinstance(info.get("wordpiece_sha256"), str)):
            raise _bad(folder, "scorer.json's transformer scorer has no vocab entry naming its featurizer's "
                               "vocab_file, or no wordpiece_sha256")
    cuts = info.get("cutpoints")
    if cuts is not None and not (
            isinstance(cuts, list) and len(cuts) == len(values) - 1
            and all(type(c) in (int, float) and math.isfinite(c) for c in cuts) and cuts == sorted(cuts)):
        raise _bad(folder, f"scorer.json's cutpoints {cuts!r} are not {len(values) - 1} increasing numbers (or null)")
    if info.get("detectors") is not None:
        try:
            detect.check_profile(info["detectors"])
        except ValueError as err:
            raise _bad(folder, f"scorer.json's detectors are invalid ({err})") from None
    return featurizer


def read_scorer(folder: str | os.PathLike, check_featurizer: bool = True) -> tuple[dict, FeaturizerConfig | TokenConfig]:
    """scorer.json of a scorer directory and its featurizer config, after checking all its files against
    kd-train.json (and featurize.py)."""
    folder = Path(folder)
    check_files(folder)
    try:
        info = json.loads((folder / "scorer.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(folder, f"scorer.json is not valid JSON ({err})") from None
    featurizer = _check_info(folder, info)
    if isinstance(featurizer, WordpieceConfig):
        check_files(folder, scorer_files(featurizer))   # its vocabulary too
        if check_featurizer and info["wordpiece_sha256"] != wordpiece_sha256():
            raise UserError(
                f"{folder}: made with a different wordpiece.py (sha256 {info['wordpiece_sha256'][:12]}…, this one "
                f"{wordpiece_sha256()[:12]}…); its scores would be wrong: re-run kd-train train with this version")
    if check_featurizer and info["featurize_sha256"] != featurize_sha256():
        raise UserError(
            f"{folder}: trained with a different featurize.py (sha256 {str(info['featurize_sha256'])[:12]}…, this one "
            f"{featurize_sha256()[:12]}…); its scores would be wrong: re-run kd-train distill with this version"
        )
    return info, featurizer


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session of the model at ``path`` (``threads``: its thread pools' size; None: onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])


def _check_model(folder: Path, session, info: dict, featurizer: FeaturizerConfig | TokenConfig) -> None:
    """The model's input and output match scorer.json: n_buckets features (or token ids, for a sequence
    scorer) in, one probability per score value out."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    tokens = isinstance(featurizer, (TokenConfig, WordpieceConfig))
    name, what = (("input_ids" if isinstance(featurizer, WordpieceConfig) else "token_ids", "[batch, length] of int32")
                  if tokens else ("features", "[batch, buckets]"))
    shape_in = inputs[0].shape if len(inputs) == 1 and inputs[0].name == name else None
    shape_out = outputs[0].shape if outputs and outputs[0].name == "probs" else None
    if (shape_in is None or shape_out is None or len(shape_in) != 2 or len(shape_out) != 2
            or info["model"].get("input") != name):
        raise _bad(folder, f"model.onnx does not have the input {name!r} {what} and output 'probs' "
                           "[batch, scores] that scorer.json's featurizer and model entry call for")
    if tokens:
        if inputs[0].type != "tensor(int32)":
            raise _bad(folder, f"model.onnx takes {inputs[0].type} token ids, not int32")
    elif shape_in[1] != featurizer.n_buckets:
        raise _bad(folder, f"model.onnx takes {shape_in[1]} features but scorer.json's featurizer makes "
                           f"{featurizer.n_buckets}")
    if shape_out[1] != len(info["score_values"]):
        raise _bad(folder, f"model.onnx gives {shape_out[1]} probabilities but scorer.json lists "
                           f"{len(info['score_values'])} score values {info['score_values']}")


class Scorer:
    """A loaded scorer directory, checked (read_scorer, model shape): featurize.py + model.onnx through onnxruntime."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.info, self.featurizer = read_scorer(self.folder)
        try:
            self.session = onnx_session(self.folder / self.info["model"]["file"])
        except Exception as err:  # onnxruntime raises its own exception types for a file it cannot load
            raise _bad(self.folder, f"onnxruntime cannot load model.onnx ({str(err).splitlines()[0][:200]})") from None
        _check_model(self.folder, self.session, self.info, self.featurizer)
        self.vocab_text = None
        if isinstance(self.featurizer, WordpieceConfig):
            try:
                self.vocab_text = (self.folder / self.featurizer.vocab_file).read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(self.folder, f"{self.featurizer.vocab_file} is not UTF-8 text") from None

    @property
    def score_values(self) -> list[int]:
        return self.info["score_values"]

    def predict_proba(self, responses: list[str], batch_size: int = 512) -> np.ndarray:
        from kd_train.featurize_batch import featurize_dense, token_matrix

        if self.vocab_text is not None:   # a transformer scorer: wordpiece.py, batched by length
            from kd_train.transformer import run

            return run(self.session, responses, self.vocab_text, self.featurizer.as_dict())
        out = []
        for start in range(0, len(responses), batch_size):
            batch = responses[start:start + batch_size]
            if isinstance(self.featurizer, TokenConfig):
                out.append(self.session.run(["probs"], {"token_ids": token_matrix(batch, self.featurizer)})[0])
            else:
                out.append(self.session.run(["probs"], {"features": featurize_dense(batch, self.featurizer)})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.score_values)), dtype=np.float32)

    def flags(self, responses: list[str]) -> list[list[str]]:
        """Per answer, why the scorer should not judge it (codes of detect.REASONS; [] when nothing is
        wrong, and always [] for a scorer written before detectors existed)."""
        profile = self.info.get("detectors")
        return [detect.flags(text, profile) for text in responses]

    def scores(self, probs: np.ndarray) -> list[int]:
        """The score given for each row of probabilities: by scorer.json's cutpoints on the expected
        score where it has them, else the most probable score (as the page gives it)."""
        return [self.score_values[i] for i in decide(probs, self.info.get("cutpoints"))]

    def predict(self, responses: list[str]) -> list[int]:
        return self.scores(self.predict_proba(responses))
