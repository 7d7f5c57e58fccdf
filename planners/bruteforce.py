"""Brute force for small instances: every threshold combination on the candidate grid x every allocation."""
from __future__ import annotations

import itertools

import numpy as np

from planners.milp import brute_force_allocation
from planners.routing import candidate_thresholds
from planners.search import SearchContext


def brute_force_objective(problem, planner) -> tuple[float, tuple[float, ...], tuple[int, ...]]:
    """min over thresholds and allocations of Cascadia's J (same estimator and penalty as planner), by
    enumeration; returns (J, thresholds, GPUs per tier)."""
    ctx = SearchContext(problem, planner.parallelism_search)
    scores = problem.workload.scores
    cands = [candidate_thresholds(scores[:, i], planner.max_candidates) for i in range(ctx.num_tiers - 1)]
    best = (np.inf, (), ())
    for th in itertools.product(*cands):
        loads = ctx.cascade_loads(th)
        tables = [t.latency_s for t in ctx.tables(loads)]
        gpus, lat = brute_force_allocation(tables, ctx.num_gpus)
        if not gpus:
            continue
        j = lat + planner.penalty(problem, ctx.quality(th))
        if j < best[0] - 1e-12:
            best = (j, tuple(float(h) for h in th), gpus)
    return best


def gap_pct(j_planner: float, j_best: float) -> float:
    return 100.0 * (j_planner - j_best) / max(abs(j_best), 1e-12)
