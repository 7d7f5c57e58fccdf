"""Brute force for small instances: every threshold combination on the candidate grid x every allocation."""
from __future__ import annotations

import itertools

import numpy as np

from planners.milp import breakpoints, brute_force_allocation
from planners.routing import search_thresholds
from planners.search import SearchContext


def brute_force_objective(problem, planner) -> tuple[float, tuple[float, ...], tuple[int, ...]]:
    """min over thresholds and allocations of Cascadia's J (same estimator, latency objective and penalty as
    planner), by enumeration; returns (J, thresholds, GPUs per tier). For the end-to-end objectives every
    allocation of table breakpoints is tried (a deployment changes only at a breakpoint)."""
    ctx = planner.search_context(problem) if hasattr(planner, "search_context") else SearchContext(
        problem, planner.parallelism_search)
    scores = problem.workload.scores
    cands = [search_thresholds(scores[:, i], planner.max_candidates) for i in range(ctx.num_tiers - 1)]
    kind = getattr(planner, "latency_objective", "max_tier")
    best = (np.inf, (), ())
    for th in itertools.product(*cands):
        loads = ctx.cascade_loads(th)
        tables = ctx.tables(loads)
        if kind == "max_tier":
            gpus, lat = brute_force_allocation([t.latency_s for t in tables], ctx.num_gpus)
        else:
            gpus, lat = _brute_force_end_to_end(ctx, tables, loads, kind)
        if not gpus:
            continue
        j = lat + planner.penalty(problem, ctx.quality(th))
        if j < best[0] - 1e-12:
            best = (j, tuple(float(h) for h in th), gpus)
    return best


def gap_pct(j_planner: float, j_best: float) -> float:
    return 100.0 * (j_planner - j_best) / max(abs(j_best), 1e-12)


def _brute_force_end_to_end(ctx: SearchContext, tables, loads, kind: str) -> tuple[tuple[int, ...], float]:
    points = [breakpoints(t.latency_s) for t in tables]
    best, best_l = (), np.inf
    for alloc in itertools.product(*points):
        if sum(alloc) > ctx.num_gpus:
            continue
        lat = ctx.latency_objective(kind, tables, alloc, loads)
        if lat < best_l - 1e-12:
            best, best_l = tuple(int(g) for g in alloc), lat
    return best, best_l
