"""Baseline planners: single model, Sarathi-Serve, CascadeServe-style gears, a noisy-oracle direct router
(the learned RouteLLM-style router is planners.routellm).

Shared simplifications, stated once: every baseline uses the same latency estimator and placement as
Cascadia, so differences between planners come from their decisions, not from different models of the
hardware. "Fixed TP" means the smallest TP inside one node that holds the weights (PP only when no node
does), as a system without parallelism search would deploy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from sim.common.errors import ConfigError

from sim.spec.plan import CascadePlan
from planners.routing import THRESHOLD_MAX, expected_direct_quality, final_tiers, reach_mask
from planners.search import SearchContext
from planners.strategy import latency_table


def _single_thresholds(num_tiers: int, tier: int) -> tuple[float, ...]:
    # Tiers before the served one forward everything (they have no replicas and are skipped); the served
    # tier accepts everything.
    return tuple(THRESHOLD_MAX if i < tier else 0.0 for i in range(num_tiers - 1))


@dataclass(frozen=True)
class SingleModelPlanner:
    """One model on all GPUs with its best parallel configuration. model: "largest", or "smallest_meeting"
    (the smallest model whose answers alone meet q_min). deployment: best (the better of colocated and
    disaggregated prefill/decode with its P:D split, as DistServe or Splitwise would deploy it), colocated, or
    disaggregated (forced, for the estimator's check in planners.bench)."""

    name: str = "single_model"
    model: str = "largest"
    batching: str = "vllm"
    deployment: str = "colocated"  # best | colocated | disaggregated; colocated by default (CascadiaPlanner says why)

    def __post_init__(self) -> None:
        if self.model not in ("largest", "smallest_meeting"):
            raise ConfigError(f"planner {self.name}: model {self.model!r} is unknown; valid: largest, smallest_meeting")
        if self.deployment not in ("best", "colocated", "disaggregated"):
            raise ConfigError(f"planner {self.name}: deployment {self.deployment!r} is unknown; valid: best, "
                              "colocated, disaggregated")

    def choose_tier(self, problem) -> int:
        c = problem.cascade.num_tiers
        if self.model == "largest":
            return c - 1
        means = problem.workload.scores.mean(axis=0)
        return next((i for i in range(c) if means[i] >= problem.q_min - 1e-9), c - 1)

    def plan(self, problem) -> CascadePlan:
        t0 = time.perf_counter()
        ctx = SearchContext(problem, disaggregation=self.deployment)
        tier = self.choose_tier(problem)
        mask = np.zeros((ctx.sample.num_requests, ctx.num_tiers), dtype=bool)
        mask[:, tier] = True
        loads = ctx.loads_from_mask(mask)
        tables = ctx.tables(loads)
        # Every GPU serves the model: the shared table keeps the fewest GPUs that reach its best estimate, which
        # at a light planning load (a short horizon, quick mode) left 8 of 32 idle.
        served = tables[tier]
        tables[tier] = latency_table(list(served.models), served.rate_rps, ctx.num_gpus, problem.slo_attainment,
                                     idle_ok=False, **ctx.table_gate)
        gpus = tuple(ctx.num_gpus if i == tier else 0 for i in range(ctx.num_tiers))
        est = {"model": problem.cascade.tiers[tier].model.name}
        if self.batching != "vllm":
            est["sim_overrides"] = {"batching": self.batching}
        stats = {"solver": "none", "status": "ENUMERATED", "time_s": time.perf_counter() - t0}
        th = _single_thresholds(ctx.num_tiers, tier)
        plan = ctx.build_plan(self.name, th, tables, gpus, loads, est, stats)
        return plan


def load_weights(ctx: SearchContext, mask: np.ndarray) -> np.ndarray:
    """Expected work per tier without length awareness: requests x the sample's overall mean tokens x model size."""
    mean_tokens = float(ctx.sample.input_tokens.mean() + ctx.sample.output_tokens.mean())
    params = np.array([t.model.active_params for t in ctx.problem.cascade.tiers], dtype=np.float64)
    return mask.sum(axis=0) * mean_tokens * params


def proportional_gpus(ctx: SearchContext, work: np.ndarray) -> tuple[int, ...]:
    """GPUs proportional to work, in whole replicas of each tier's fixed configuration, greedy: every loaded
    tier gets one replica, then each next replica goes to the tier with the most work per GPU so far."""
    sizes = []
    for i, cfgs in enumerate(ctx.configs):
        sizes.append(cfgs[0][0] * cfgs[0][1] if cfgs else 0)
    gpus = [sizes[i] if work[i] > 0 else 0 for i in range(ctx.num_tiers)]
    if sum(gpus) > ctx.num_gpus:
        return tuple(gpus)  # does not fit; the plan will be rejected by placement with a clear message
    while True:
        cands = [i for i in range(ctx.num_tiers) if work[i] > 0 and sum(gpus) + sizes[i] <= ctx.num_gpus]
        if not cands:
            return tuple(gpus)
        i = max(cands, key=lambda k: (work[k] / gpus[k], -k))
        gpus[i] += sizes[i]


@dataclass(frozen=True)
class CascadeServePlanner:
    """CascadeServe-style: thresholds from a coarse grid, GPUs proportional to expected load with a fixed TP,
    no length awareness, no parallelism search. Gears: one placed (thresholds, GPUs) plan per load level, in
    plan.estimates["gears"]; the plan itself is the gear for the problem's rate. During a run online.gears
    switches gears on the measured arrival rate (switch_gears; every gear_interval_s, at most once per
    gear_min_dwell_s). Following ferdiko/ken_submission, a gear meets the quality requirement and, among those
    that do, has the lowest estimated latency; it deviates in deploying each gear's own GPU split (LLM replicas
    cannot all be co-resident as ken's BERT-sized models are, so a switch may reload weights) and in a
    per-gear rather than QPS-weighted quality constraint (docs/online.md, "CascadeServe").
    """

    name: str = "cascadeserve"
    grid_step: float = 10.0
    load_levels: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    switch_gears: bool = True
    gear_interval_s: float = 60.0
    gear_min_dwell_s: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.switch_gears, bool):
            raise ConfigError(f"planner {self.name}: switch_gears must be true or false, got {self.switch_gears!r}")
        for key in ("gear_interval_s", "gear_min_dwell_s", "grid_step"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < float("inf") or (
                    key != "gear_min_dwell_s" and v == 0):
                raise ConfigError(f"planner {self.name}: {key} must be a positive finite number, got {v!r}")
        if not self.load_levels or any(not (isinstance(x, (int, float)) and x > 0) for x in self.load_levels):
            raise ConfigError(f"planner {self.name}: load_levels must be positive rate multiples, "
                              f"got {self.load_levels!r}")

    def candidates(self, ctx: SearchContext) -> list[tuple]:
        """(thresholds, quality, GPUs, loads at the planned rate) of every grid point that meets q_min: the same at
        every load level, so made once per plan."""
        grid = np.arange(0.0, 100.0 + 1e-9, self.grid_step)
        c = ctx.num_tiers - 1
        out = []
        for th in np.array(np.meshgrid(*[grid] * c, indexing="ij")).reshape(c, -1).T:
            q = ctx.quality(th)
            if q < ctx.problem.q_min - 1e-9:
                continue
            final = final_tiers(ctx.sample.scores, th, ctx.accepts)
            mask = reach_mask(final, ctx.num_tiers, accepts=ctx.accepts)
            out.append((th, q, proportional_gpus(ctx, load_weights(ctx, mask)), ctx.loads_from_mask(mask)))
        return out

    def gear(self, ctx: SearchContext, rate_factor: float, candidates: list[tuple] | None = None):
        """Best grid thresholds for one load level: meet q_min, then lowest estimated worst-tier p95."""
        best = None
        for th, q, gpus, loads in (self.candidates(ctx) if candidates is None else candidates):
            loads = [replace(ld, rate_rps=ld.rate_rps * rate_factor, key=ld.key + (rate_factor,)) for ld in loads]
            tables = ctx.tables(loads)
            lat = max(float(t.latency_s[g]) for t, g in zip(tables, gpus))
            key = (lat, -q)
            if best is None or key < best[0]:
                best = (key, tuple(float(h) for h in th), gpus, loads, tables, q)
        return best

    def plan(self, problem) -> CascadePlan:
        t0 = time.perf_counter()
        ctx = SearchContext(problem, parallelism_search=False)
        from sim.spec.plan_io import plan_to_dict

        gears = []
        chosen = None
        candidates = self.candidates(ctx)
        for level in sorted(set(self.load_levels) | {1.0}):
            g = self.gear(ctx, level, candidates)
            if g is None:
                raise ConfigError(f"planner {self.name}: no grid thresholds meet q_min {problem.q_min:.2f}; "
                                  "lower q_min or q_min_level")
            placed = ctx.build_plan(self.name, g[1], g[4], g[2], g[3], {}, {})
            gears.append({"rate_rps": problem.rate_rps * level, "level": level, "thresholds": list(placed.thresholds),
                          "gpus_per_tier": list(g[2]), "p95_objective_s": g[0][0], "plan": plan_to_dict(placed)})
            if level == 1.0:
                chosen = g
        _, th, gpus, loads, tables, q = chosen
        stats = {"solver": "none", "status": "GRID", "time_s": time.perf_counter() - t0}
        online = {"switch_gears": self.switch_gears, "gear_interval_s": self.gear_interval_s,
                  "gear_min_dwell_s": self.gear_min_dwell_s}
        return ctx.build_plan(self.name, th, tables, gpus, loads, {"gears": gears, "gear_switching": online}, stats)


@dataclass(frozen=True)
class NoisyOracleRouterPlanner:
    """A noisy-oracle router (the RouteLLM stand-in before planners.routellm learned one from prompt text): it
    knows every request's true scores and sends each request straight to the tier it predicts suffices (the cascade's
    answering tier for grid thresholds), wrong with probability router_error_rate (then a random other
    tier); no cascading. Thresholds: the grid point meeting q_min in expectation with the least work;
    GPUs proportional to the expected load with a fixed TP."""

    name: str = "routellm_oracle_noisy"
    router_error_rate: float = 0.1
    grid_step: float = 10.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.router_error_rate <= 1.0:
            raise ConfigError(f"planner {self.name}: router_error_rate must be in [0, 1], got {self.router_error_rate}")

    def plan(self, problem) -> CascadePlan:
        t0 = time.perf_counter()
        ctx = SearchContext(problem, parallelism_search=False)
        grid = np.arange(0.0, 100.0 + 1e-9, self.grid_step)
        c = ctx.num_tiers - 1
        scores = problem.workload.scores
        best = None
        e = self.router_error_rate
        for th in np.array(np.meshgrid(*[grid] * c, indexing="ij")).reshape(c, -1).T:
            q = expected_direct_quality(scores, th, e)
            if q < problem.q_min - 1e-9:
                continue
            final = final_tiers(ctx.sample.scores, th)
            onehot = final[:, None] == np.arange(ctx.num_tiers)[None, :]
            share = (1 - e) * onehot + e * (~onehot) / c  # expected routing with errors
            work = load_weights(ctx, share)
            key = (float(work.sum()), -q)
            if best is None or key < best[0]:
                best = (key, tuple(float(h) for h in th), q)
        if best is None:  # even the strictest grid point misses q_min in expectation: route everything up
            th = tuple(THRESHOLD_MAX for _ in range(c))
            best = ((0.0, 0.0), th, expected_direct_quality(scores, th, e))
        _, th, q = best
        # Loads: a deterministic draw of the router's mistakes on the sample (seeded from the thresholds).
        rng = np.random.default_rng(np.random.SeedSequence([int(h * 10) for h in th] + [int(e * 1e6)]))
        from planners.routing import direct_final_tiers

        final = direct_final_tiers(ctx.sample.scores, th, e, rng)
        mask = final[:, None] == np.arange(ctx.num_tiers)[None, :]
        loads = ctx.loads_from_mask(mask)
        tables = ctx.tables(loads)
        gpus = proportional_gpus(ctx, load_weights(ctx, mask))
        stats = {"solver": "none", "status": "GRID", "time_s": time.perf_counter() - t0}
        return ctx.build_plan(self.name, th, tables, gpus, loads, {"quality": q, "expected_quality": q}, stats,
                              routing="direct", router_error_rate=e)
