"""Replaying cascade thresholds on a workload sample: which tier answers each request, quality, per-tier loads."""
from __future__ import annotations

import numpy as np

# Thresholds live on the 0-100 judge scale; an answer is accepted when its gate score >= threshold.
# Threshold 0 accepts every answer; 100 forwards everything except perfect answers.
THRESHOLD_MIN = 0.0
THRESHOLD_MAX = 100.0


def final_tiers(scores: np.ndarray, thresholds: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """(n,) index of the tier whose answer is returned: the first tier i < C-1 with score >= thresholds[i],
    else the last tier."""
    n, num_tiers = scores.shape
    final = np.full(n, num_tiers - 1, dtype=np.int64)
    undecided = np.ones(n, dtype=bool)
    for i, h in enumerate(thresholds):
        accept = undecided & (scores[:, i] >= h)
        final[accept] = i
        undecided &= ~accept
    return final


def reach_mask(final: np.ndarray, num_tiers: int) -> np.ndarray:
    """(n, C) True where the request is served by tier i (in a cascade, every tier up to its final one)."""
    return final[:, None] >= np.arange(num_tiers)[None, :]


def quality(scores: np.ndarray, final: np.ndarray) -> float:
    """Mean real score of the returned answers (0-100)."""
    return float(scores[np.arange(scores.shape[0]), final].mean())


def direct_final_tiers(scores: np.ndarray, thresholds, error_rate: float, rng: np.random.Generator) -> np.ndarray:
    """RouteLLM-style routing: the router predicts the cascade's answering tier, and with probability
    error_rate picks a uniformly random other tier instead."""
    final = final_tiers(scores, thresholds)
    num_tiers = scores.shape[1]
    wrong = rng.random(final.shape[0]) < error_rate
    shift = rng.integers(1, num_tiers, size=final.shape[0])
    return np.where(wrong, (final + shift) % num_tiers, final)


def expected_direct_quality(scores: np.ndarray, thresholds, error_rate: float) -> float:
    """Quality of direct routing in expectation over router errors (no sampling noise)."""
    final = final_tiers(scores, thresholds)
    n, num_tiers = scores.shape
    right = scores[np.arange(n), final]
    others = (scores.sum(axis=1) - right) / (num_tiers - 1)
    return float(((1 - error_rate) * right + error_rate * others).mean())


def candidate_thresholds(tier_scores: np.ndarray, max_candidates: int = 24) -> np.ndarray:
    """Thresholds worth trying for one tier: every distinct score (accepting exactly the answers at or above
    it) plus the bounds; if there are too many distinct scores, their quantiles."""
    distinct = np.unique(tier_scores)
    if distinct.size > max_candidates - 2:
        distinct = np.unique(np.quantile(tier_scores, np.linspace(0, 1, max_candidates - 2), method="lower"))
    return np.unique(np.concatenate([[THRESHOLD_MIN], distinct, [THRESHOLD_MAX]]))


def best_attainable_quality(scores: np.ndarray, max_candidates: int = 24) -> tuple[float, tuple[float, ...]]:
    """Highest quality any thresholds on the candidate grid reach (coordinate ascent from 'all to largest',
    then a full grid for <= 3 tiers), with the thresholds that reach it."""
    num_tiers = scores.shape[1]
    cands = [candidate_thresholds(scores[:, i], max_candidates) for i in range(num_tiers - 1)]
    best_th = tuple(THRESHOLD_MAX for _ in range(num_tiers - 1))
    best_q = float(scores[:, -1].mean())
    if num_tiers <= 3:
        grids = np.meshgrid(*cands, indexing="ij")
        for th in zip(*(g.ravel() for g in grids)):
            q = quality(scores, final_tiers(scores, th))
            if q > best_q + 1e-12:
                best_q, best_th = q, tuple(float(h) for h in th)
        return best_q, best_th
    th = list(best_th)
    for _ in range(3):
        for i in range(num_tiers - 1):
            for h in cands[i]:
                trial = th.copy()
                trial[i] = float(h)
                q = quality(scores, final_tiers(scores, trial))
                if q > best_q + 1e-12:
                    best_q, th = q, trial
    return best_q, tuple(th)
