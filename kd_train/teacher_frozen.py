"""The teacher's other candidate on small items: the pretrained encoder frozen, logistic regression on its
sentence embeddings, fitted out of fold on the same folds as fine-tuning (kd_train/teacher.py keeps the
better of the two). A frozen teacher is stored as one linear layer (``frozen-head.npz``) over the base
encoder's embeddings, which it checks by sha256 before it labels.
"""

from __future__ import annotations

from pathlib import Path

from kd_train.config import TeacherConfig
from kd_train.data import Table, stratified_folds
from kd_train.encoder import ModelError, embed, input_reading, load_encoder, resolve_model, weights_sha256

FROZEN_HEAD_FILE = "frozen-head.npz"
FROZEN_KIND = "frozen encoder + logistic regression"
FROZEN_C = (0.3, 1.0, 3.0, 10.0, 30.0)   # the regression's inverse regularisation, chosen out of fold
MISSING_LOGIT = -30.0    # a frozen head's logit for a score no answer of its training fit had


def linear_head(regression, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, b), one row per score value, with softmax(x @ W.T + b) equal to ``regression.predict_proba(x)``
    (its classes are score indices); a score its fit never saw gets the bias MISSING_LOGIT."""
    import numpy as np

    weights = np.zeros((n_values, regression.coef_.shape[1]), dtype=np.float32)
    bias = np.full(n_values, MISSING_LOGIT, dtype=np.float32)
    classes = regression.classes_.tolist()
    if len(classes) == 2:   # scikit-learn keeps one row: the log-odds of the second class against the first
        bias[classes[0]] = 0.0
        weights[classes[1]], bias[classes[1]] = regression.coef_[0], regression.intercept_[0]
    else:
        weights[classes], bias[classes] = regression.coef_, regression.intercept_
    return weights, bias


def regression(x: np.ndarray, y: np.ndarray, c: float, class_weights: str):
    """Logistic regression of score indices ``y`` on embeddings ``x`` (``class_weights``: "balanced" or "none")."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if class_weights == "balanced" else None).fit(x, y)


def _head_logits(x: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return (x @ head[0].T + head[1]).astype("float32")


def fold_heads(x: np.ndarray, y: np.ndarray, folds: list[list[int]], c: float, n_values: int,
               class_weights: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """One head per fold: the regression fitted on the other folds."""
    import numpy as np

    rest = [np.setdiff1d(np.arange(len(y)), held_out) for held_out in folds]
    return [linear_head(regression(x[r], y[r], c, class_weights), n_values) for r in rest]


def oof_logits(x: np.ndarray, folds: list[list[int]], heads: list[tuple[np.ndarray, np.ndarray]], n_values: int) -> np.ndarray:
    """Each answer's logits from the head of the fold that held it out."""
    import numpy as np

    logits = np.zeros((len(x), n_values), dtype=np.float32)
    for held_out, head in zip(folds, heads):
        logits[held_out] = _head_logits(x[held_out], head)
    return logits


def frozen_oof(x: np.ndarray, y: np.ndarray, folds: list[list[int]], c: float, n_values: int, class_weights: str) -> np.ndarray:
    """Each answer's logits from a regression fitted on the other folds."""
    return oof_logits(x, folds, fold_heads(x, y, folds, c, n_values, class_weights), n_values)


def head_sha256(weights: np.ndarray, bias: np.ndarray, base_sha256: str) -> str:
    """A frozen teacher's (or fold teacher's) weights_sha256: its head's bytes with its base encoder's hash."""
    import hashlib

    return hashlib.sha256(weights.tobytes() + bias.tobytes() + base_sha256.encode()).hexdigest()


def frozen_candidate(train: Table, score_values: list[int], question: str | None, config: TeacherConfig, chosen: dict,
                      tables: dict, head_tail: bool) -> dict:
    """The frozen encoder + logistic regression, out of fold on the folds the fine-tuning was cross-validated
    on (its C from FROZEN_C by pooled out-of-fold QWK), beside the fine-tuned teacher's best out-of-fold QWK;
    ``kept`` when it is higher. Returns the embeddings, the head fitted on every answer and its logits too."""
    import numpy as np

    from kd_train.metrics import qwk

    source = resolve_model(config.model)
    encoder = load_encoder(source)
    x = embed(encoder, train.responses, question, config.max_length, head_tail)
    to_index = {v: i for i, v in enumerate(score_values)}
    y = np.array([to_index[s] for s in train.scores])
    folds = stratified_folds(train, config.cv_folds, config.splits_seed)
    labels = list(range(len(score_values)))
    heads = {c: fold_heads(x, y, folds, c, len(score_values), config.class_weights) for c in FROZEN_C}
    tried = {c: oof_logits(x, folds, h, len(score_values)) for c, h in heads.items()}
    by_c = {c: qwk(y.tolist(), lg.argmax(axis=1).tolist(), labels) for c, lg in tried.items()}
    c = max(FROZEN_C, key=lambda k: by_c[k])
    fine_tuned = chosen["qwk_by_epoch"][chosen["best_epoch"] - 1]
    kept = by_c[c] > fine_tuned
    print(f"frozen encoder + logistic regression: out-of-fold QWK {by_c[c]:.3f} (C {c:g}) against the fine-tuned "
          f"teacher's {fine_tuned:.3f}: {'the frozen encoder labels' if kept else 'the fine-tuned teacher labels'}",
          flush=True)
    found = {"kept": kept, "C": c, "oof_logits": tried[c], "source": source, "x": x, "y": y,
             "folds": folds, "fold_heads": heads[c],   # what a kept frozen teacher saves as its fold teachers
             "encoder_params": sum(p.numel() for p in encoder[1].parameters()),
             "summary": {"kind": FROZEN_KIND, "oof_qwk": round(by_c[c], 4), "C": c,
                         "oof_qwk_by_C": {f"{k:g}": round(v, 4) for k, v in by_c.items()},
                         "fine_tuned_oof_qwk": round(fine_tuned, 4), "kept": kept}}
    if kept:
        found["head"] = linear_head(regression(x, y, c, config.class_weights), len(score_values))
        found["logits"] = {name: _head_logits(embed(encoder, t.responses, question, config.max_length, head_tail),
                                              found["head"]) for name, t in tables.items()}
    return found


def frozen_logits(teacher_dir: Path, meta: dict, responses: list[str], batch_size: int) -> np.ndarray:
    """A frozen teacher's logits: the base encoder's embeddings through the stored head."""
    import numpy as np

    source = resolve_model(meta["config"]["model"])
    if weights_sha256(Path(source)) != meta["base_weights_sha256"]:
        raise ModelError(f"{teacher_dir}: its base encoder {source} is not the one it was fitted on (sha256 of the "
                         "weights differs); re-run kd-train teacher (or kd-train train) with this encoder")
    head = np.load(teacher_dir / FROZEN_HEAD_FILE)
    x = embed(load_encoder(source), responses, *input_reading(meta), batch_size)
    return _head_logits(x, (head["weights"], head["bias"]))
