"""What makes a scorer fit to ship: the quality gate, the choice among candidate scorers, and
calibrated probabilities — all decided on the validation split, never on test.

- ``degenerate_reasons``: a model that gives one score to ≥ 95% of validation answers, reaches a
  validation QWK ≤ 0.20, or is less accurate than always giving the most common score by more than
  chance explains, is unfit. "More than chance" is a one-sided exact sign test (p < WORSE_P) on the
  answers where the two disagree about being right: on imbalanced items a scorer that ranks answers
  well was refused by one answer in 201 (168 right against 169).
- ``calibrate``: one temperature T, fitted on validation by log-loss, divides the model's last
  layer (so model.onnx outputs softmax(logits / T) and the page needs no change); kept only when it
  lowers the validation ECE. With fewer than ``MIN_ERRORS_TO_SHARPEN`` wrong answers on validation
  the log-loss always wants T → 0 (every answer right: sharpen without limit), so there T is kept
  ≥ 1 (softened, never sharpened); a T at the search's edge is not kept; the report says which.
- ``fit_cutpoints``: the score is the most probable one, unless cutpoints on the expected score
  index (Σ p_i·i of the calibrated probabilities), fitted on validation to maximise QWK, raise the
  validation QWK (judged out of fold) without failing the gate where the most probable score passes (``tune``). QWK
  punishes a miss by its squared distance, and the expected score weighs the neighbours the argmax
  ignores.
- ``choose``: the candidate with the best validation QWK, with its own temperature and decision rule,
  is shipped (ties go to the earlier one in ``PREFERENCE``: the KD student first).
  ``review_threshold`` then puts the page's "flag for review" line where it flags ``REVIEW_SHARE``
  of validation answers (by the probability of the score given).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kd_train.config import CANDIDATES
from kd_train.metrics import qwk_rows, decide, expected_index, score_metrics
from kd_train.teacher import softmax  # the one softmax(logits, temperature) of the project

if TYPE_CHECKING:
    from kd_train.student import Student

ONE_SCORE_SHARE = 0.95   # one score for at least this share of validation answers: degenerate
MIN_QWK = 0.20           # validation QWK at or below this: no better than chance for a scorer
WORSE_P = 0.05           # less accurate than the most common score at this significance: degenerate
REVIEW_SHARE = 0.20      # the page flags this share of validation answers (the least sure) for review
ECE_BINS = 10
CUT_FOLDS = 5            # cutpoints are judged out of fold over the validation answers
PREFERENCE = CANDIDATES   # on a tie, the first listed
GATE_RULE = (f"gives one score to at least {ONE_SCORE_SHARE:.0%} of the validation answers, reaches a validation "
             f"QWK of at most {MIN_QWK:.2f}, or is less accurate than always giving the most common score by more than "
             f"chance explains (one-sided sign test, p < {WORSE_P})")


@dataclass
class Candidate:
    """A trained scorer that could be shipped: a Student network (hidden = 0 for a linear model), its
    logits on the validation (and test) answers, and, once ``tune`` has run, its temperature and
    cutpoints (None: the most probable score)."""

    name: str
    model: "Student"
    val_logits: np.ndarray
    test_logits: np.ndarray | None = None
    temperature: float = 1.0
    cutpoints: list[float] | None = None
    val_predictions: list[int] | None = None   # with cutpoints: each validation answer's score out of fold
    ms_per_answer: float | None = None   # student.answer_ms: its cost per answer (None: not timed)
    bytes: int | None = None   # its model.onnx's size (None: not measured yet; pipeline.ship measures it)

    def predict(self, logits: np.ndarray, score_values: list[int]) -> list[int]:
        """The scores this candidate gives, as its shipped model.onnx and scorer.json would give them."""
        return [score_values[i] for i in decide(softmax(logits, self.temperature), self.cutpoints)]

    def predict_val(self, score_values: list[int]) -> list[int]:
        """Its validation scores: out of fold where cutpoints decide (``tune``), else ``predict``'s."""
        return self.val_predictions if self.val_predictions is not None else self.predict(self.val_logits, score_values)


def degenerate_reasons(metrics: dict, score_values: list[int]) -> list[str]:
    """Why a model is unfit to ship, from its validation metrics (n, acc, qwk and the confusion matrix,
    rows true, columns predicted, as metrics.score_metrics gives them); empty: fit."""
    confusion = np.asarray(metrics.get("confusion") or [[0]])
    n = int(confusion.sum())
    if n == 0:
        return ["there were no validation answers to check it on"]
    reasons = []
    given = confusion.sum(axis=0)
    if given.max() / n >= ONE_SCORE_SHARE:
        reasons.append(f"it gives the score {score_values[int(given.argmax())]} to {given.max() / n:.0%} of the "
                       "validation answers")
    if metrics["qwk"] <= MIN_QWK:
        reasons.append(f"its validation QWK is {metrics['qwk']:.2f} (at most {MIN_QWK:.2f}: little better than chance)")
    common = against_common(metrics, score_values)
    if common["worse"]:
        reasons.append(f"it is less accurate on validation ({common['acc']:.2f}) than always giving the most common "
                       f"score {common['score']} ({common['common_acc']:.2f}), by more than chance explains: of the "
                       f"{common['wins'] + common['losses']} answers where only one of the two is right, it is right on "
                       f"{common['wins']} (sign test p = {common['p']:.3f})")
    return reasons


def against_common(metrics: dict, score_values: list[int]) -> dict:
    """A model's validation accuracy beside always giving the most common score's, and whether it is worse
    beyond chance (``worse_than_majority``): what the gate's third rule reads, and what the model card
    says when a scorer that passes is still exactly right less often than that constant."""
    confusion = np.asarray(metrics.get("confusion") or [[0]])
    true, n = confusion.sum(axis=1), max(int(confusion.sum()), 1)   # no answers: nothing to compare
    worse, wins, losses, p = worse_than_majority(confusion)
    return {"score": score_values[int(true.argmax())], "common_acc": float(true.max() / n),
            "acc": float(np.trace(confusion) / n), "wins": wins, "losses": losses, "p": p, "worse": worse}


def caution(c: dict, qwk: float) -> str:
    """A plain sentence when a model the gate passes is exactly right on fewer validation answers than
    always giving the most common score (by a margin chance explains; ``c``: ``against_common``'s
    figures, ``qwk``: its validation QWK); else ""."""
    if c["acc"] >= c["common_acc"] or c["worse"]:
        return ""
    return (f"Its exact score is right on fewer validation answers ({c['acc']:.1%}) than always giving {c['score']} "
            f"would be ({c['common_acc']:.1%}), a difference chance explains (sign test p = {c['p']:.2f}), so the "
            f"quality gate passes it. It orders answers better than that constant (validation QWK {qwk:.2f}): "
            "read its scores as a ranking to review, not as exact marks.")


def worse_than_majority(confusion: np.ndarray) -> tuple[bool, int, int, float]:
    """Is a model less accurate than always giving the most common true score, beyond chance? From its
    confusion matrix (rows true): (worse, wins: answers it gets right and the constant gets wrong,
    losses: the reverse, p: the chance of so few wins among wins + losses if the two were equally accurate)."""
    from scipy.stats import binomtest

    confusion = np.asarray(confusion)
    common = int(confusion.sum(axis=1).argmax())
    wins = int(np.trace(confusion) - confusion[common, common])
    losses = int(confusion[common].sum() - confusion[common, common])
    if losses <= wins:
        return False, wins, losses, 1.0
    p = float(binomtest(wins, wins + losses, 0.5, alternative="less").pvalue)
    return p < WORSE_P, wins, losses, p


def choose(candidates: list[Candidate], val_scores: list[int], score_values: list[int]) -> tuple[Candidate, str]:
    """The candidate with the best validation QWK (ties: PREFERENCE order), and why in one sentence."""
    def val_qwk(c: Candidate) -> float:
        return score_metrics(val_scores, c.predict_val(score_values), score_values)["qwk"]

    rank = {name: i for i, name in enumerate(PREFERENCE)}
    ordered = sorted(candidates, key=lambda c: rank.get(c.name, len(rank)))
    qwks = {c.name: val_qwk(c) for c in ordered}
    best = max(ordered, key=lambda c: qwks[c.name])   # max keeps the first of equals
    others = ", ".join(f"{c.name} {qwks[c.name]:.3f}" for c in ordered if c is not best)
    reason = f"best validation QWK: {best.name} {qwks[best.name]:.3f}" + (f" (others: {others})" if others else "")
    return best, reason



def reliability(probs: np.ndarray, y_index: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin: answers, mean confidence and accuracy of the top class (the
    reliability diagram's points)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y_index)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [{"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()) if (which == b).any() else None,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else None} for b in range(bins)]


def ece(probs: np.ndarray, y_index: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |accuracy − confidence| of the top class, averaged over the
    reliability bins weighted by their answers."""
    points = reliability(probs, y_index, bins)
    n = sum(p["n"] for p in points)
    return float(sum(p["n"] / n * abs(p["accuracy"] - p["confidence"]) for p in points if p["n"])) if n else 0.0


T_RANGE = (1 / 20, 20.0)
MIN_ERRORS_TO_SHARPEN = 5   # wrong validation answers needed before a temperature below 1 is believed


def fit_temperature(logits: np.ndarray, y_index: np.ndarray, lowest: float = T_RANGE[0]) -> float:
    """The T minimising the log-loss of softmax(logits / T) (searched over log T in [lowest, 20])."""
    from scipy.optimize import minimize_scalar

    logits, y_index = np.asarray(logits, dtype=np.float64), np.asarray(y_index)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))[np.arange(len(y_index)), y_index]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    result = minimize_scalar(nll, bounds=(np.log(lowest), np.log(T_RANGE[1])), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def fold_temperature(model: "Student", temperature: float) -> "Student":
    """A copy of ``model`` whose logits are divided by ``temperature`` (its last layer scaled)."""
    import torch

    folded = copy.deepcopy(model)
    last = [m for m in folded.modules() if isinstance(m, torch.nn.Linear)][-1]   # the output layer of either student
    with torch.no_grad():
        last.weight /= temperature
        last.bias /= temperature
    return folded


def review_threshold(probs: np.ndarray, share: float = REVIEW_SHARE, cutpoints: list[float] | None = None) -> float:
    """The probability of the score given below which ``share`` of these answers fall (the page flags
    them for review)."""
    probs = np.asarray(probs)
    given = probs[np.arange(len(probs)), decide(probs, cutpoints)]
    return float(np.quantile(given, share))


def fit_cutpoints(probs: np.ndarray, y_index: np.ndarray, sweeps: int = 3) -> list[float]:
    """k − 1 increasing cutpoints on the expected score index that maximise QWK on these answers.

    Starts from rounding (j + 0.5) and moves one cutpoint at a time to the best place between its
    neighbours (every midpoint between two neighbouring expected scores is tried; among equal QWKs
    the one nearest the current place wins), ``sweeps`` times over all cutpoints.
    """
    probs, y_index = np.asarray(probs), np.asarray(y_index)
    k = probs.shape[1]
    expected = expected_index(probs)
    cuts = np.arange(k - 1, dtype=np.float64) + 0.5
    grid = np.unique(expected)
    grid = np.concatenate([[-0.5], (grid[1:] + grid[:-1]) / 2, [k - 0.5]])
    for _ in range(sweeps):
        for j in range(k - 1):
            lo = cuts[j - 1] if j else -np.inf
            hi = cuts[j + 1] if j + 1 < k - 1 else np.inf
            tries = grid[(grid > lo) & (grid < hi)]
            if not len(tries):
                continue
            trial = np.repeat(cuts[None, :], len(tries), axis=0)
            trial[:, j] = tries
            pred = (expected[None, :] > trial[:, :, None]).sum(axis=1)
            kappas = np.nan_to_num(qwk_rows(np.repeat(y_index[None, :], len(tries), axis=0), pred, k), nan=-1.0)
            best = np.flatnonzero(kappas >= kappas.max() - 1e-12)
            cuts[j] = tries[best[np.argmin(np.abs(tries[best] - cuts[j]))]]
    return [float(c) for c in cuts]


def tune(candidate: Candidate, val_index: np.ndarray, score_values: list[int]) -> dict:
    """Fit the candidate's temperature (``calibrate``) and decision rule on validation, in place;
    returns the calibration report with its "decision".

    Cutpoints fitted on the answers that judge them would flatter them (on a 90-answer item, an
    almost constant model reached a validation QWK of 0.5 and test 0): they are judged by
    ``CUT_FOLDS``-fold cross-validation over the validation answers (fitted on the others, applied
    to each fold), and those held-out scores are the candidate's validation predictions
    (``val_predictions``), for the choice and the gate alike. The cutpoints shipped are fitted on
    all validation answers.
    """
    report = calibrate(candidate, val_index)
    probs = softmax(candidate.val_logits, candidate.temperature)
    val_scores = [score_values[i] for i in val_index]
    argmax = score_metrics(val_scores, [score_values[i] for i in probs.argmax(axis=1)], score_values)
    held_out = cross_validated_cuts(probs, val_index) if len(score_values) > 2 else None
    cut = score_metrics(val_scores, [score_values[i] for i in held_out], score_values) if held_out is not None else None
    better = cut is not None and cut["qwk"] > argmax["qwk"] and (
        not degenerate_reasons(cut, score_values) or degenerate_reasons(argmax, score_values))
    candidate.cutpoints = fit_cutpoints(probs, val_index) if better else None
    candidate.val_predictions = [score_values[i] for i in held_out] if better else None
    report["decision"] = {
        "rule": "cutpoints on the expected score" if better else "most probable score",
        "cutpoints": candidate.cutpoints, "val_qwk_most_probable": argmax["qwk"],
        "val_qwk_cutpoints": cut["qwk"] if cut else None,
        "judged_by": f"{CUT_FOLDS}-fold cross-validation over the validation answers",
    }
    report["review_threshold"] = review_threshold(probs, cutpoints=candidate.cutpoints)
    return report


def cross_validated_cuts(probs: np.ndarray, y_index: np.ndarray, folds: int = CUT_FOLDS, seed: int = 0) -> np.ndarray | None:
    """Each answer's score index by cutpoints fitted on the other folds (stratified by score, seeded);
    None when there are fewer answers than two per fold."""
    y_index = np.asarray(y_index)
    if len(y_index) < 2 * folds:
        return None
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y_index), dtype=np.int64)
    offset = 0
    for label in np.unique(y_index):
        rows = rng.permutation(np.flatnonzero(y_index == label))
        fold[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)
    out = np.empty(len(y_index), dtype=np.int64)
    for f in range(folds):
        fit = fold != f
        out[~fit] = decide(probs[~fit], fit_cutpoints(probs[fit], y_index[fit]))
    return out


def fit_calibration_temperature(logits: np.ndarray, val_index: np.ndarray) -> tuple[float, str | None]:
    """The temperature to try, and a note when it was limited: never below 1 with fewer than
    ``MIN_ERRORS_TO_SHARPEN`` wrong validation answers, and 1 when the fit ran to the search's edge."""
    if not len(val_index):
        return 1.0, "no validation answers: not calibrated"
    errors = int((np.asarray(logits).argmax(axis=1) != np.asarray(val_index)).sum())
    few = errors < MIN_ERRORS_TO_SHARPEN
    lowest = 1.0 if few else T_RANGE[0]
    temperature = fit_temperature(logits, val_index, lowest=lowest)
    edges = T_RANGE[1:] if few else T_RANGE   # with few errors, T = 1 is the floor chosen, not a fit gone astray
    if min(abs(np.log(temperature / edge)) for edge in edges) < 1e-2:
        return 1.0, (f"the fitted temperature ran to the edge of its range ({temperature:.3g}): "
                     "not trusted, T = 1 kept")
    if few:
        return temperature, (f"only {errors} wrong answer(s) on validation (fewer than {MIN_ERRORS_TO_SHARPEN}): "
                             "too few to fit a sharper temperature, so T ≥ 1 (probabilities softened or left)")
    return temperature, None


def calibrate(candidate: Candidate, val_index: np.ndarray) -> dict:
    """Temperature-scale the candidate on validation when that lowers its ECE (sets its temperature);
    returns the report."""
    before = softmax(candidate.val_logits)
    temperature, note = fit_calibration_temperature(candidate.val_logits, val_index)
    after = softmax(candidate.val_logits, temperature)
    ece_before, ece_after = ece(before, val_index), ece(after, val_index)
    if not ece_after < ece_before:
        temperature, after, ece_after = 1.0, before, ece_before
    report = {"method": "temperature scaling on the validation split (log-loss), kept only if it lowers ECE",
              "temperature": temperature, "temperature_note": note,
              "ece_val_before": ece_before, "ece_val_after": ece_after,
              "reliability_val_before": reliability(before, val_index),
              "reliability_val_after": reliability(after, val_index),
              "review_threshold": review_threshold(after), "review_share_val": REVIEW_SHARE}
    candidate.temperature = temperature
    return report


def shipped_model(candidate: Candidate) -> "Student":
    """The candidate's network with its temperature folded into the last layer (the exported teacher: a Mul
    before its Softmax)."""
    if candidate.temperature != 1.0 and hasattr(candidate.model, "with_temperature"):
        return candidate.model.with_temperature(candidate.temperature)
    return fold_temperature(candidate.model, candidate.temperature) if candidate.temperature != 1.0 else candidate.model
