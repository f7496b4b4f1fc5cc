"""The teacher judged like every candidate: the validation answers and logits its "val" figures came from,
the score its own decision rule gives (temperature, then cutpoints on the expected score where they beat
the most probable score out of fold: ``quality.tune``), and its figures on test from its soft labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kd_train import quality, soft_labels, teacher
from kd_train.data import Table, stratified_split
from kd_train.metrics import score_metrics
from kd_train.quality import Candidate

def teacher_metrics(labels: soft_labels.SoftLabels, table: Table, values: list[int]) -> dict:
    """The teacher's metrics on ``table``'s answers: the argmax of its soft labels against the human scores."""
    pred = [values[i] for i in labels.lookup(table.ids).argmax(axis=1)]
    return score_metrics(table.scores, pred, values)


def _log_probs(labels: soft_labels.SoftLabels, ids: list[str]) -> np.ndarray:
    """Logits, up to a constant per answer, from soft labels (the teacher's softmax at T = 1)."""
    return np.log(np.clip(labels.lookup(ids), 1e-30, None))


def teacher_validation(folder: Path, meta: dict, soft_train: soft_labels.SoftLabels | None, train: Table) -> tuple | None:
    """(validation answers, the teacher's logits on them) that teacher.json's "val" metrics came from:
    its val-logits.npz, or, for a teacher saved before that file existed and validated on a split, the
    split redrawn with its seed (its soft labels there come from a model that did not train on them);
    None for such a cross-validated teacher, whose out-of-fold logits were not kept (or without ``soft_train``)."""
    labelled = train.labelled()
    path = folder / teacher.VAL_LOGITS_FILE
    if path.is_file():
        stored = np.load(path)
        row = {rid: i for i, rid in enumerate(labelled.ids)}
        ids = stored["ids"].tolist()
        if all(rid in row for rid in ids):   # else it was trained on other answers than these
            return labelled.take([row[rid] for rid in ids]), stored["logits"]
        return None
    if meta.get("cross_validation") is None and meta["val_rows"] and soft_train is not None:
        val = stratified_split(labelled, meta["config"]["val_fraction"], meta["config"]["seed"])[1]
        return val, _log_probs(soft_train, val.ids)
    return None


def decide_teacher(folder: Path, meta: dict, soft_train: soft_labels.SoftLabels, soft_test: soft_labels.SoftLabels | None,
                   train: Table, test: Table | None, values: list[int], validation: tuple | None = None) -> dict:
    """The teacher's figures: "val" and "test" for its most probable score (as the other models' rows),
    and "decided", for the score its own decision rule gives, chosen on its validation logits exactly as
    every candidate's is (``quality.tune``: temperature, then cutpoints on the expected score where they
    beat the most probable score out of fold). The quality gate reads "decided". A teacher whose
    validation logits are gone keeps its most probable score there. ``validation``: (answers, logits) of a
    teacher of several members (their averaged logits) instead of the folder's own."""
    figures = {"val": meta["metrics"]["val"] if validation is None else
               score_metrics(validation[0].scores, [values[i] for i in validation[1].argmax(axis=1)], values)
               | ({"cross_validated": True} if meta["metrics"]["val"].get("cross_validated") else {})} | (
        {"test": teacher_metrics(soft_test, test, values)} if soft_test is not None else {})
    found = validation or teacher_validation(folder, meta, soft_train, train)
    if found is None:
        return figures | {"decided": figures | {"decision": {
            "rule": "most probable score", "cutpoints": None,
            "judged_by": "none: the out-of-fold logits of this teacher were not kept"}}}
    val, val_logits = found
    test_logits = _log_probs(soft_test, test.ids) if soft_test is not None else None
    candidate, decision = _tuned_teacher(val, val_logits, test_logits, values)
    decided = {"val": score_metrics(val.scores, candidate.predict_val(values), values)
               | ({"cross_validated": True} if meta["metrics"]["val"].get("cross_validated") else {})}
    if test_logits is not None:
        decided["test"] = score_metrics(test.scores, candidate.predict(test_logits, values), values)
    return figures | {"decided": decided | {"decision": decision}}


def _tuned_teacher(val: Table, val_logits: np.ndarray, test_logits: np.ndarray | None, values: list[int]) -> tuple:
    """(the teacher as a Candidate with its temperature and decision rule tuned on ``val``, the decision)."""
    candidate = Candidate("teacher", None, val_logits, test_logits)
    to_index = {v: i for i, v in enumerate(values)}
    tuned = quality.tune(candidate, np.array([to_index[s] for s in val.scores], dtype=np.int64), values)
    return candidate, tuned["decision"] | {"temperature": candidate.temperature}


def decided_qwk(val: Table, val_logits: np.ndarray, values: list[int]) -> float:
    """Validation QWK of the score the teacher's own decision rule, tuned on these logits, gives."""
    candidate, _ = _tuned_teacher(val, val_logits, None, values)
    return score_metrics(val.scores, candidate.predict_val(values), values)["qwk"]


def teacher_val_qwk(folder: Path, meta: dict, train: Table, values: list[int]) -> float:
    """A teacher's validation QWK by its own decision rule (its most probable score's, where its
    validation logits were not kept)."""
    found = teacher_validation(folder, meta, None, train)
    if found is None:
        return meta["metrics"]["val"]["qwk"]
    candidate, _ = _tuned_teacher(*found, None, values)
    return score_metrics(found[0].scores, candidate.predict_val(values), values)["qwk"]
