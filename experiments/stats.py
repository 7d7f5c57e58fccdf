"""Uncertainty over seeds: percentile-bootstrap 95% confidence intervals and the win/tie/loss rule.

One place for the statistics every table, figure and headline uses, so a "win" means the same everywhere:
a difference (or a ratio's distance from 1) whose 95% bootstrap CI contains zero (one) is a tie.
The bootstrap has its own seeded generator (no global state), so the intervals are reproducible.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

N_BOOT = 4000
Outcome = Literal["win", "tie", "loss"]


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def bootstrap_ci95(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 95% CI of the mean of `values` (non-finite values are left out).
    One value gives a zero-width interval at that value; none gives (nan, nan)."""
    a = _clean(values)
    if a.size == 0:
        return (float("nan"), float("nan"))
    if a.size == 1:
        return (float(a[0]), float(a[0]))
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def mean_ci95(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float | list[float]]:
    """{"mean": .., "ci95": [lo, hi], "n": ..} over the finite values."""
    a = _clean(values)
    lo, hi = bootstrap_ci95(a, n_boot=n_boot, seed=seed)
    return {"mean": float(a.mean()) if a.size else float("nan"), "ci95": [lo, hi], "n": int(a.size)}


def paired_ratio_ci95(numerator: Sequence[float], denominator: Sequence[float], *, n_boot: int = N_BOOT,
                      seed: int = 0) -> dict[str, float | list[float]]:
    """Ratio of means sum(num)/sum(den) over paired samples (same seed for both), with a paired bootstrap CI:
    the pairs are resampled together, so seed-to-seed variation common to both cancels."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    if num.shape != den.shape:
        raise ValueError(f"paired samples differ in length: {num.shape} vs {den.shape}")
    keep = np.isfinite(num) & np.isfinite(den)
    num, den = num[keep], den[keep]
    if num.size == 0 or den.sum() == 0:
        return {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": int(num.size)}
    ratio = float(num.sum() / den.sum())
    if num.size == 1:
        return {"mean": ratio, "ci95": [ratio, ratio], "n": 1}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, size=(n_boot, num.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"mean": ratio, "ci95": [float(lo), float(hi)], "n": int(num.size)}


def outcome(ci95: Sequence[float], *, null: float = 0.0, higher_is_better: bool = True) -> Outcome:
    """Win, tie or loss from a CI of a difference (null 0) or a ratio (null 1): a CI that contains the
    null value is a tie; otherwise the side of the null it lies on decides."""
    lo, hi = float(ci95[0]), float(ci95[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= null <= hi:
        return "tie"
    better = lo > null if higher_is_better else hi < null
    return "win" if better else "loss"


# A throughput the rate bisection reports at its cap (its highest rate factor) is a lower bound: the plan met the
# SLO at every rate tried. A ratio of two throughputs is then one-sided.
Bound = Literal["exact", "at_least", "at_most", "unknown"]


def ratio_bound(numerator_capped: Sequence[bool], denominator_capped: Sequence[bool]) -> Bound:
    """What a ratio of summed throughputs is, given which seeds' values sit at the cap: exact (none), at_least
    (only numerators capped: the true ratio is at least the one measured), at_most (only denominators), unknown
    (both)."""
    num, den = bool(np.any(numerator_capped)), bool(np.any(denominator_capped))
    return "unknown" if num and den else "at_least" if num else "at_most" if den else "exact"


def bounded_outcome(result: Outcome, bound: Bound) -> str:
    """Win/tie/loss of a ratio > 1 = better, read through its bound: a measured win that can only grow stays a win,
    a measured loss that can only shrink stays a loss; anything else cannot be decided from capped values."""
    if bound == "exact" or (bound == "at_least" and result == "win") or (bound == "at_most" and result == "loss"):
        return result
    return "undecided"


def at_cap(value: float, cap: float) -> bool:
    """Whether a bisected throughput sits at the bisection's cap (relative tolerance for float round-off)."""
    return bool(np.isfinite(value) and np.isfinite(cap) and value >= cap * (1 - 1e-9))
