"""The validity table of automated scores against human ones (ETS's thresholds, as reported by RSMTool):
QWK, Pearson r, standardized mean difference and the degradation from human-human agreement, with
bootstrap confidence intervals and small-sample notes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kd_train.metrics import qwk, qwk_rows

# --- Validity table for automated scores (Williamson, Xi & Breyer 2012, as reported by ETS's RSMTool) ---

# Williamson, Xi & Breyer (2012), "A framework for evaluation and use of automated scoring": human-machine
# QWK and Pearson r at least 0.70, |SMD| at most 0.15, and human-machine QWK at most 0.10 below human-human QWK.
ETS_THRESHOLDS = {"qwk": 0.70, "r": 0.70, "smd": 0.15, "degradation": -0.10}
SMALL_SAMPLE_N = 50
# RSMTool 12 (rsmtool/analyzer.py, utils/metrics.py standardized_mean_difference) reports, by default, SMD with
# method "unpooled" = (mean_sys - mean_h) / sd_h (ddof=1) in its human-system evaluation table; its consistency
# (human-human) table uses "pooled" = sqrt((sd_h1^2 + sd_h2^2)/2) (ddof=1); its "williamson" option pools the
# human and system SDs of the whole test set (for subgroup SMDs). Here: pooled over human and machine on the
# same answers with ddof=0: an SD sqrt((n-1)/n) times RSMTool's "pooled" one.
SMD_SD = "pooled: sqrt((sd_h^2 + sd_m^2)/2), ddof=0"


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r; None where undefined (fewer than 2 answers or a constant side), as RSMTool's NaN."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import pearsonr

    return float(pearsonr(a, b).statistic)


def _smd(human: np.ndarray, machine: np.ndarray) -> float | None:
    """(mean machine - mean human) / pooled SD (see SMD_SD); None where both sides are constant."""
    sd = math.sqrt((np.var(human) + np.var(machine)) / 2)
    return None if sd == 0 else float((machine.mean() - human.mean()) / sd)


def _agreement(a: np.ndarray, b: np.ndarray, labels: Sequence[int]) -> dict:
    return {"n": len(a), "qwk": qwk(a.tolist(), b.tolist(), labels),
            "exact": float(np.mean(a == b)), "adjacent": float(np.mean(np.abs(a - b) <= 1)), "r": _pearson(a, b)}


def _qwk_ci(h: np.ndarray, m: np.ndarray, k: int, n_boot: int, seed: int) -> list[float] | None:
    """Percentile bootstrap 95% CI of QWK over answers; resamples where QWK is undefined (both sides constant)
    are dropped; None when none is left."""
    rng = np.random.default_rng(seed)
    n = len(h)
    kappas = []
    chunk = max(1, 2_000_000 // n)  # bounds the (resamples x answers) index array
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        kappas.append(qwk_rows(h[idx], m[idx], k))
    kappas = np.concatenate(kappas) if kappas else np.empty(0)
    kappas = kappas[~np.isnan(kappas)]
    if not len(kappas):
        return None
    lo, hi = np.percentile(kappas, [2.5, 97.5])
    return [float(lo), float(hi)]


def _verdicts(qwk_: float, r: float | None, smd: float | None, degradation: float | None) -> dict:
    """Booleans against ETS_THRESHOLDS; None where the statistic is undefined (a constant side also gives
    QWK <= 0, so meets_all cannot pass through a None)."""
    t = ETS_THRESHOLDS
    oks = {"qwk_ok": qwk_ >= t["qwk"],
           "r_ok": None if r is None else r >= t["r"],
           "smd_ok": None if smd is None else abs(smd) <= t["smd"],
           "degradation_ok": None if degradation is None else degradation >= t["degradation"]}
    return oks | {"meets_all": all(v for v in oks.values() if v is not None)}


def validity(human: Sequence[int], machine: Sequence[int], score_values: Sequence[int],
             human2: Sequence[int | None] | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """ETS-style validity statistics of machine against human scores for one item (JSON-serialisable).

    Keys: n, qwk, qwk_ci ([lo, hi], seeded percentile bootstrap over answers; None if undefined), exact,
    adjacent, r (None where a side is constant), smd, smd_sd (SMD_SD), human_human ({n, qwk, exact, adjacent,
    r} of human vs human2 on the double-scored rows; None without them), degradation (QWK machine vs human
    minus QWK human vs human2, both on the double-scored rows; None without them), thresholds (see
    _verdicts) and small_sample: n < SMALL_SAMPLE_N, where the 95% CI of QWK is wide (about 0.2 at n = 50,
    more below), so a pass or fail against the 0.70 line says little.
    """
    h, m = np.asarray(human, dtype=int), np.asarray(machine, dtype=int)
    if len(h) != len(m) or not len(h):
        raise ValueError(f"human and machine need the same, non-zero length (got {len(h)} and {len(m)})")
    labels = sorted(score_values)
    pos = {v: i for i, v in enumerate(labels)}
    if bad := sorted((set(h.tolist()) | set(m.tolist())) - pos.keys()):
        raise ValueError(f"scores {bad} are not among score_values {labels}")
    out = _agreement(h, m, labels)
    to_idx = np.vectorize(pos.__getitem__, otypes=[int])
    out["qwk_ci"] = _qwk_ci(to_idx(h), to_idx(m), len(labels), n_boot, seed)
    out["smd"], out["smd_sd"] = _smd(h, m), SMD_SD
    out["human_human"] = out["degradation"] = None
    if human2 is not None:
        if len(human2) != len(h):
            raise ValueError(f"human2 has {len(human2)} scores for {len(h)} answers")
        rows = np.array([not _is_missing(v) for v in human2])
        if rows.any():
            h2 = np.array([int(v) for v in human2 if not _is_missing(v)])
            # RSMTool's degradation table (use_all_responses=True) takes human-system on all answers; here
            # both sides use the same double-scored answers, so the difference is not a sample artefact.
            out["human_human"] = _agreement(h[rows], h2, labels)
            out["degradation"] = qwk(h[rows].tolist(), m[rows].tolist(), labels) - out["human_human"]["qwk"]
    out["thresholds"] = _verdicts(out["qwk"], out["r"], out["smd"], out["degradation"])
    out["small_sample"] = out["n"] < SMALL_SAMPLE_N
    return out


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _failed(thresholds: dict) -> str:
    names = {"qwk_ok": "QWK", "r_ok": "r", "smd_ok": "SMD", "degradation_ok": "degradation"}
    if thresholds["meets_all"]:
        return "yes"
    return "no: " + ", ".join(name for key, name in names.items() if thresholds[key] is False)


def validity_markdown(rows: dict[str, dict]) -> str:
    """A Markdown table of validity() results, one row per item id (in the dict's order), the thresholds and
    the SD the SMD uses below it, and a line naming the items with small samples and their QWK CI."""
    lines = ["| item | N | QWK [95% CI] | exact | adjacent | r | SMD | degradation | meets ETS thresholds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for item, v in rows.items():
        ci = "" if v["qwk_ci"] is None else f" [{v['qwk_ci'][0]:.2f}, {v['qwk_ci'][1]:.2f}]"
        lines.append(f"| {item} | {v['n']} | {v['qwk']:.3f}{ci} | {_fmt(v['exact'])} | {_fmt(v['adjacent'])} "
                     f"| {_fmt(v['r'])} | {_fmt(v['smd'])} | {_fmt(v['degradation'])} | {_failed(v['thresholds'])} |")
    t = ETS_THRESHOLDS
    lines += ["", f"Thresholds (Williamson, Xi & Breyer 2012): QWK ≥ {t['qwk']:.2f}, r ≥ {t['r']:.2f}, "
                  f"|SMD| ≤ {t['smd']:.2f}, degradation (human–machine QWK − human–human QWK, on the double-scored "
                  f"answers) ≥ {t['degradation']:.2f}. SMD = (mean machine − mean human) / SD, {SMD_SD}."]
    small = [f"item {item}: QWK on {v['n']} answers: "
             + ("no CI" if v["qwk_ci"] is None else f"95% CI {v['qwk_ci'][0]:.2f}–{v['qwk_ci'][1]:.2f}")
             for item, v in rows.items() if v["n"] < SMALL_SAMPLE_N]
    if small:
        lines += ["", f"Small samples (n < {SMALL_SAMPLE_N}; the CI is wide, read the verdict with care): "
                  + "; ".join(small) + "."]
    return "\n".join(lines) + "\n"
