"""Replaying cascade thresholds on a workload sample: which tier answers each request, quality, per-tier loads."""
from __future__ import annotations

import numpy as np

# Thresholds live on the 0-100 judge scale; an answer is accepted when its gate score >= threshold.
# Threshold 0 accepts every answer; 100 forwards everything except perfect answers.
THRESHOLD_MIN = 0.0
THRESHOLD_MAX = 100.0
# A search-only threshold above the scale: the tier is skipped (no request served, no GPU, no judge call). With
# scores that reach 100 (binary correctness, as MBPP) no threshold on the scale forwards everything, so without
# it "every request to the largest model" (the single-model plan) would lie outside the search space. Plans
# carry THRESHOLD_MAX for such a tier: a tier without replicas is skipped by the simulator.
THRESHOLD_SKIP = float("inf")


def context_ok(input_tokens: np.ndarray, output_tokens: np.ndarray, max_context) -> np.ndarray:
    """(n, C) True where tier i can take request r: its prompt plus the answer tier i would generate fit the
    tier model's context window (the simulator's rule, sim.runtime.flow)."""
    need = np.asarray(input_tokens, dtype=np.int64)[:, None] + np.maximum(np.asarray(output_tokens, np.int64), 1)
    return need <= np.asarray(max_context, dtype=np.int64)[None, :]


def final_tiers(scores: np.ndarray, thresholds: np.ndarray | tuple[float, ...], accepts: np.ndarray | None = None
                ) -> np.ndarray:
    """(n,) index of the tier whose answer is returned: the first tier i < C-1 with score >= thresholds[i],
    else the last tier. accepts (n, C) (context_policy skip): a request passes over the tiers that cannot take
    it, and the last tier that can take it answers."""
    n, num_tiers = scores.shape
    final = np.full(n, num_tiers - 1, dtype=np.int64)
    if accepts is not None:
        final -= np.argmax(accepts[:, ::-1], axis=1)  # last accepting tier (rows with none are planned away)
    undecided = np.ones(n, dtype=bool)
    for i, h in enumerate(thresholds):
        accept = undecided & (scores[:, i] >= h)
        if accepts is not None:
            accept &= accepts[:, i]
        final[accept] = i
        undecided &= ~accept
    return final


def reach_mask(final: np.ndarray, num_tiers: int, thresholds=None, accepts: np.ndarray | None = None) -> np.ndarray:
    """(n, C) True where the request is served by tier i (in a cascade, every tier up to its final one, except
    tiers whose threshold is THRESHOLD_SKIP and, under context_policy skip, tiers that cannot take it)."""
    mask = final[:, None] >= np.arange(num_tiers)[None, :]
    if thresholds is not None:
        for i, h in enumerate(thresholds):
            if h == THRESHOLD_SKIP:
                mask[:, i] = False
    if accepts is not None:
        mask &= accepts
    return mask


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


def search_thresholds(tier_scores: np.ndarray, max_candidates: int = 24) -> np.ndarray:
    """Cascadia's candidates for one tier: candidate_thresholds plus THRESHOLD_SKIP (forward everything)."""
    return np.concatenate([candidate_thresholds(tier_scores, max_candidates), [THRESHOLD_SKIP]])


def plan_thresholds(thresholds) -> tuple[float, ...]:
    """Thresholds as a plan carries them: THRESHOLD_SKIP becomes THRESHOLD_MAX (its tier gets no replicas)."""
    return tuple(min(float(h), THRESHOLD_MAX) for h in thresholds)


def replay_thresholds(thresholds, gpus_per_tier) -> tuple[float, ...]:
    """The search thresholds a cascade plan stands for: a tier without GPUs before the last deployed one is
    skipped by the simulator, i.e. THRESHOLD_SKIP (inverse of plan_thresholds for cascade plans)."""
    deployed = [i for i, f in enumerate(gpus_per_tier) if f > 0]
    last = deployed[-1] if deployed else len(gpus_per_tier) - 1
    return tuple(THRESHOLD_SKIP if i < last and gpus_per_tier[i] == 0 else float(h) for i, h in enumerate(thresholds))


def best_attainable_quality(scores: np.ndarray, max_candidates: int = 24) -> tuple[float, tuple[float, ...]]:
    """Highest quality any thresholds on the candidate grid reach, with the thresholds that reach it: the full grid
    for <= 3 tiers, three sweeps of coordinate ascent beyond (the grid would cost prod(candidates) replays). Both
    start from 'all to the largest' and move only for a gain above 1e-12 (a tie keeps the earlier thresholds)."""
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
