"""Drift-driven re-planning (a sim.control.policy.ControlPolicy): detect drift with hysteresis, re-plan through the
planners' interface, and apply the new plan only when its estimated gain over a look-ahead exceeds the estimated
cost of the transition (re-planning that costs more than it gains would make drift worse). docs/online.md explains every threshold.

- Drift: every interval_s, the last sample_requests arrivals are compared with the workload the current plan was
  made for: arrival rate over the last interval_s, median prompt and tier-0 answer length (relative change) and a
  two-sample Kolmogorov-Smirnov statistic on tier-0 real scores. A statistic above its threshold raises an alarm
  (a rate drop only once it persists for scale_down_checks checks: planning for a lull strands the next burst);
  the alarm clears only when every statistic is back below hysteresis x its threshold, so a statistic hovering
  at its threshold neither flaps nor is missed. While the alarm is up and at least min_dwell_s have passed since
  the last applied re-plan, the planner plans for the last interval_s of arrivals (at most plan_requests).
- Worth it: gain = arrival rate x (estimated mean latency of the current deployment on the new sample - that of
  the new plan) x the part of lookahead_s left after planning and weight loading; cost = the KV of visits on
  replicas that leave (each re-queued visit pays about one more mean latency) + the queueing while a staged
  step leaves a tier short of GPUs (arrivals to that tier during the load x the missing share x half the load
  time). Applied when gain > cost x gain_margin, or at once when the current thresholds miss q_min on the new
  sample by more than the CI of the quality estimate, or its deployment is estimated to saturate.
- q_min is the user's: fixed (default) keeps the q_min resolved on the planning data for every re-plan (capped at
  the best quality the new sample can reach, recorded as q_min_capped); per_phase re-resolves q_min_level on
  each new sample.
- The planner's run time is charged as simulated time before the plan applies: planner_time_s seconds, or the
  measured wall time when it is null (then runs are not bit-for-bit repeatable).
- Failures re-plan at once on the healthy nodes (capacity is gone, there is nothing to weigh); repairs are
  weighed like drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from sim.control.policy import LiveView, PlanChange
from sim.common.config_checks import NON_NEGATIVE, POSITIVE, POSITIVE_INT, Range, check_fields, from_mapping, setting
from sim.common.errors import UserError
from sim.control.transition import TRANSITION_KEYS, TransitionConfig, estimate, healthy_nodes, reconcile, remap_nodes


MIN_INTERVAL_S = 1.0  # a rate measured over less than a second of a 5-10 req/s trace is noise


@dataclass(frozen=True)
class ReplanConfig:
    """cfg.replan. Weight reloads (reload_bandwidth_gbps, startup_s) also time repairs when enabled is false."""

    enabled: bool = False
    planner: str | None = None  # None: the planner that made the run's initial plan (cascadia when unknown)
    planner_settings: dict = field(default_factory=dict)
    on_failure: bool = True  # re-plan when GPUs fail and when they are repaired
    drift_detection: bool = True
    sample_requests: int = setting(50, valid=Range(2.0, integer=True))  # the live sample compared with the planned workload
    # a rate measured over less than MIN_INTERVAL_S of a 5-10 req/s trace is noise
    interval_s: float = setting(120.0, valid=Range(MIN_INTERVAL_S))  # between drift checks
    rate_threshold: float = setting(0.5, valid=POSITIVE)  # relative change of the arrival rate
    scale_down_checks: int = setting(2, valid=POSITIVE_INT)  # consecutive checks a rate drop must persist (a rise counts at once)
    length_threshold: float = setting(0.5, valid=POSITIVE)  # relative change of the median prompt or tier-0 answer length
    ks_threshold: float = setting(0.3, valid=POSITIVE)  # two-sample KS statistic on tier-0 scores
    hysteresis: float = setting(0.5, valid=Range(0.0, 1.0, lo_open=True))  # an alarm clears when every statistic is below hysteresis x its threshold
    min_dwell_s: float = setting(300.0, valid=NON_NEGATIVE)  # least simulated time between two applied re-plans
    lookahead_s: float = setting(600.0, valid=POSITIVE)  # the horizon over which a re-plan must pay for its transition
    gain_margin: float = setting(1.0, valid=POSITIVE)  # apply when estimated gain > gain_margin x estimated cost
    # Charged before a plan applies. 5 s is above Cascadia's measured 1.3-2.3 s for 32 GPUs (python -m
    # planners.bench) to cover a busy controller host; null = the measured wall time (not repeatable).
    planner_time_s: float | None = setting(5.0, valid=NON_NEGATIVE)
    q_min_rule: str = setting("fixed", valid=("fixed", "per_phase"))  # fixed | per_phase
    plan_requests: int = setting(500, valid=Range(2.0, integer=True))  # at most this many arrivals of the last interval_s for a drift re-plan
    # sim.control.transition.TransitionConfig states these defaults and bounds (and their sources)
    reload_bandwidth_gbps: float = TransitionConfig.reload_bandwidth_gbps
    startup_s: float = TransitionConfig.startup_s
    inflight_policy: str = TransitionConfig.inflight_policy
    plan_window_s: float | None = setting(None, valid=POSITIVE)  # the initial plan sees only the first plan_window_s s (None: whole run)

    def __post_init__(self) -> None:
        check_fields(self, "replan")  # each field's type and bound are stated on the field
        self.transition  # validates the transition keys

    @property
    def transition(self) -> TransitionConfig:
        return TransitionConfig(**{k: getattr(self, k) for k in TRANSITION_KEYS})


def replan_config_from_dict(data) -> ReplanConfig:
    data = dict(data or {})
    if "planner_settings" in data and data["planner_settings"] is None:  # null: the planner's own defaults
        del data["planner_settings"]
    return from_mapping(ReplanConfig, data, "replan")


# ---- drift statistics ----------------------------------------------------------------------------
def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    if a.size == 0 or b.size == 0:
        return 0.0
    x = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, x, side="right") / a.size
    cdf_b = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _rel(new: float, old: float) -> float:
    return abs(new - old) / old if old > 0 else (0.0 if new == old else float("inf"))


def drift_statistics(recent, reference, recent_rate_rps: float) -> dict[str, float]:
    """How far a live sample (a Workload) and the live arrival rate are from the workload the plan was made for.
    The rate is counted over a whole window: 50 arrivals of a bursty trace span too little time to say it."""
    return {
        "rate_change": _rel(recent_rate_rps, reference.rate_rps),
        # Medians: one long answer among 50 moves a mean of heavy-tailed lengths by more than a phase change.
        "input_change": _rel(float(np.median(recent.input_tokens)), float(np.median(reference.input_tokens))),
        "output_change": _rel(float(np.median(recent.output_tokens[:, 0])),
                              float(np.median(reference.output_tokens[:, 0]))),
        "ks_tier0": ks_statistic(recent.scores[:, 0], reference.scores[:, 0]),
        "recent_rate_rps": recent_rate_rps, "planned_rate_rps": reference.rate_rps,
    }


def drifted(stats: dict, cfg: ReplanConfig, drops_in_a_row: int = 1, scale: float = 1.0) -> list[str]:
    """The statistics above scale x their thresholds (empty: no drift). A rate drop counts only once it has been
    seen in drops_in_a_row >= cfg.scale_down_checks consecutive checks."""
    out = []
    if stats["rate_change"] > scale * cfg.rate_threshold:
        rising = stats["recent_rate_rps"] > stats["planned_rate_rps"]
        if rising or drops_in_a_row >= cfg.scale_down_checks:
            out.append("rate")
    if max(stats["input_change"], stats["output_change"]) > scale * cfg.length_threshold:
        out.append("length")
    if stats["ks_tier0"] > scale * cfg.ks_threshold:
        out.append("scores")
    return out


def calm(stats: dict, cfg: ReplanConfig) -> bool:
    """Every statistic below hysteresis x its threshold: an alarm may clear."""
    h = cfg.hysteresis
    return (stats["rate_change"] <= h * cfg.rate_threshold
            and max(stats["input_change"], stats["output_change"]) <= h * cfg.length_threshold
            and stats["ks_tier0"] <= h * cfg.ks_threshold)


# ---- the planner's estimates of a deployment -----------------------------------------------------
def deployment_estimate(problem, thresholds, gpus_per_tier) -> dict[str, float]:
    """The planners' estimator on a deployment given by thresholds and GPUs per tier (each tier's best
    configuration for its GPU count; a tier without GPUs is skipped): mean and p95 end-to-end latency (inf when
    a tier saturates), quality, and the share of requests reaching each tier."""
    from planners.estimator import SATURATED_S
    from planners.routing import replay_thresholds
    from planners.search import SearchContext

    ctx = SearchContext(problem)
    gpus = tuple(int(g) for g in gpus_per_tier)
    thresholds = replay_thresholds(thresholds, gpus)  # tiers without replicas are skipped, as the simulator does
    loads = ctx.cascade_loads(thresholds)
    tables = ctx.tables(loads)
    lat = ctx.request_latencies(tables, gpus, loads)
    saturated = any(ld.num_requests and (g == 0 or float(t.latency_s[g]) >= SATURATED_S)
                    for t, g, ld in zip(tables, gpus, loads))
    ok = np.all(np.isfinite(lat)) and not saturated
    n = ctx.sample.num_requests
    return {"mean_latency_s": float(lat.mean()) if ok else float("inf"),
            "p95_latency_s": float(np.quantile(lat, problem.slo_attainment)) if ok else float("inf"),
            "quality": ctx.quality(thresholds), "reach_share": [ld.num_requests / n for ld in loads]}


def quality_ci_halfwidth(scores: np.ndarray) -> float:
    """Half-width of a normal 95% CI of a mean score over the sample (the quality estimate's own noise)."""
    top = np.asarray(scores, float)[:, -1]
    return float(1.96 * top.std(ddof=1) / np.sqrt(top.size)) if top.size > 1 else float("inf")


def worth_it(cur: dict, new: dict, trans: dict, rate_rps: float, delay_s: float, cfg: ReplanConfig,
             q_min: float, q_tol: float) -> dict[str, Any]:
    """Gain and cost of a re-plan in request-seconds of latency over the look-ahead (see the module doc)."""
    must = []
    if cur["quality"] < q_min - q_tol:
        must.append("quality")
    if not np.isfinite(cur["mean_latency_s"]):
        must.append("saturated")
    useful_s = max(0.0, cfg.lookahead_s - delay_s - trans["load_s"])
    if np.isfinite(new["mean_latency_s"]) and np.isfinite(cur["mean_latency_s"]):
        gain = rate_rps * useful_s * (cur["mean_latency_s"] - new["mean_latency_s"])
    else:
        gain = float("inf") if np.isfinite(new["mean_latency_s"]) else float("-inf")
    new_lat = new["mean_latency_s"] if np.isfinite(new["mean_latency_s"]) else 0.0
    kv_cost = trans["kv_lost_visits"] * new_lat
    staged_cost = 0.0
    for t, missing in enumerate(trans["missing_gpu_s_per_tier"]):
        have = trans["gpus_per_tier_now"][t]
        if missing > 0 and have > 0:
            share = cur["reach_share"][t] if t < len(cur["reach_share"]) else 1.0
            staged_cost += rate_rps * share * (missing / have) * trans["load_s"] / 2.0
    cost = kv_cost + staged_cost
    apply = bool(must) or (gain > cfg.gain_margin * cost and gain > 0)
    if not np.isfinite(new["mean_latency_s"]) and "quality" not in must:
        apply = False  # the new plan saturates too: moving costs a transition and buys nothing the estimator sees
    return {"gain_request_s": gain, "cost_request_s": cost, "kv_cost_request_s": kv_cost,
            "staged_cost_request_s": staged_cost, "useful_s": useful_s, "must": ",".join(must), "worth_it": apply,
            "est_mean_latency_now_s": cur["mean_latency_s"], "est_mean_latency_new_s": new["mean_latency_s"],
            "est_quality_now": cur["quality"], "est_quality_new": new["quality"]}


# ---- the policy ------------------------------------------------------------------------------------
@dataclass
class DriftReplanPolicy:
    """ControlPolicy: re-plans through planners.base.get_planner when the workload drifts or the cluster
    changes, applying a plan only when it is worth its transition (module doc).

    reference: the workload the current plan was made for. q_min: the user's requirement resolved on the planning
    data; q_min_level: used when cfg.q_min_rule is per_phase (None: q_min was absolute).
    """

    cfg: ReplanConfig
    reference: Any  # Workload
    q_min: float
    q_min_level: float | None = None
    engine: str = "vllm"
    gpu_memory_utilization: float = 0.9
    cost_fn: Callable | None = None
    _alarm: set = field(default_factory=set)
    _drops: int = 0
    _last_applied_s: float | None = None
    _planner_free_s: float = float("-inf")  # the planner is busy until then (one planning run at a time)

    @property
    def interval_s(self) -> float | None:
        return self.cfg.interval_s if self.cfg.drift_detection else None

    # ---- q_min -------------------------------------------------------------------------------------
    def q_min_for(self, workload) -> tuple[float, bool]:
        """(q_min of a re-plan on workload, whether it was capped at the best the workload can reach)."""
        from planners.routing import best_attainable_quality

        best, _ = best_attainable_quality(workload.scores)
        want = self.q_min
        if self.cfg.q_min_rule == "per_phase" and self.q_min_level is not None:
            want = workload.quality_at_level(self.q_min_level)
        return (min(want, best), want > best)

    # ---- sampling ----------------------------------------------------------------------------------
    def window(self, view: LiveView, count: int):
        """What a drift re-plan plans for: the arrivals of the last interval_s (at most count, evenly chosen),
        spaced evenly at the window's arrival rate."""
        idx_all = view.since(view.now_s - self.cfg.interval_s)
        n = idx_all.size
        if n < 2:
            return view.recent(max(count, 2))
        pick = np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))
        idx = idx_all[pick]
        rate = n / self.cfg.interval_s
        return view.workload.take(idx).with_arrivals(view.now_s - (idx.size - 1) / rate + np.arange(idx.size) / rate)

    # ---- ControlPolicy -------------------------------------------------------------------------------
    def observe(self, view: LiveView) -> PlanChange | None:
        cfg = self.cfg
        if view.arrived < cfg.sample_requests:
            return None
        stats = drift_statistics(view.recent(cfg.sample_requests), self.reference, view.rate_rps(cfg.interval_s))
        dropped = stats["rate_change"] > cfg.rate_threshold and stats["recent_rate_rps"] < stats["planned_rate_rps"]
        self._drops = self._drops + 1 if dropped else 0
        fired = drifted(stats, cfg, self._drops)
        self._alarm |= set(fired)
        if self._alarm and not fired and calm(stats, cfg):
            self._alarm = set()
        dwell_left = 0.0
        if self._last_applied_s is not None:
            dwell_left = max(0.0, self._last_applied_s + cfg.min_dwell_s - view.now_s)
        view.record({"time_s": view.now_s, "event": "drift_check", **stats, "drift": ",".join(fired),
                     "alarm": ",".join(sorted(self._alarm)), "dwell_left_s": dwell_left})
        if not self._alarm or dwell_left > 0 or view.now_s < self._planner_free_s:
            return None
        return self.replan(view, "drift:" + ",".join(sorted(self._alarm)),
                           self.window(view, cfg.plan_requests), weigh=True)

    def on_cluster_change(self, view: LiveView, reason: str) -> PlanChange | None:
        if not self.cfg.on_failure:
            return None
        return self.replan(view, reason, None, weigh=reason.startswith("repair"))

    def _applied(self, change: PlanChange, sample) -> None:
        self.reference = sample
        self._alarm = set()
        self._drops = 0
        self._last_applied_s = float(change.info["decided_s_at"]) + change.delay_s

    def replan(self, view: LiveView, reason: str, sample, weigh: bool) -> PlanChange | None:
        """Plan for sample (default: the current reference) on the healthy nodes; returns the change to apply,
        or None (recorded with why) when nothing fits or it is not worth its transition."""
        from planners import plan_cache
        from planners.base import colocated_settings, get_planner
        from planners.checker import check_plan
        from planners.problem import PlanningProblem

        cluster = view.cluster
        workload = sample if sample is not None else self.reference
        event: dict[str, Any] = {"time_s": view.now_s, "event": "replan", "reason": reason}
        spec = cluster.spec
        nodes = healthy_nodes(spec, cluster.dead_gpus)
        if not nodes:
            view.record({**event, "applied": False, "why": "no node without a failed GPU is left"})
            return None
        if any(r.role != "colocated" for reps in view.current_replicas() for r in reps):
            view.record({**event, "applied": False, "why": "a disaggregated tier is running: rolling reconfiguration "
                         "moves colocated replicas only (plan the initial deployment colocated to re-plan online)"})
            return None
        q_min, capped = self.q_min_for(workload)
        survivors = replace(spec, num_nodes=len(nodes), name=f"{spec.name}-surviving")
        try:
            problem = PlanningProblem(cascade=cluster.cascade, cluster=survivors, workload=workload, q_min=q_min,
                                      engine=self.engine, gpu_memory_utilization=self.gpu_memory_utilization,
                                      cost_fn=self.cost_fn,
                                      context_policy=getattr(getattr(cluster, "cfg", None), "context_policy", "skip"))
            name = self.cfg.planner or "cascadia"
            # Rolling reconfiguration moves colocated replicas only: re-plans keep every tier colocated.
            planner = get_planner(name, **colocated_settings(name, self.cfg.planner_settings))
            # Tables an earlier plan of this process built count as built here (planners.plan_cache): the simulated
            # planner's delay must not depend on what the process planned before.
            planned, wall_s, reused_s = plan_cache.timed(lambda: planner.plan(problem))
            wall_s += reused_s
        except UserError as exc:  # nothing fits the survivors, or q_min is out of reach: keep what runs
            view.record({**event, "applied": False, "why": str(exc)})
            return None
        delay_s = wall_s if self.cfg.planner_time_s is None else float(self.cfg.planner_time_s)
        self._planner_free_s = view.now_s + delay_s
        planned = remap_nodes(planned, nodes)
        usable = {(n, g) for n in nodes for g in range(spec.gpus_per_node)}
        current = view.current_replicas()
        busy = {g for reps in current for r in reps for g in r.gpus}
        new_plan = reconcile(planned, current, usable, spec.gpus_per_node, busy)
        problems = check_plan(new_plan, cluster.cascade, spec)
        if problems or cluster.dead_gpus.intersection(g for t in new_plan.tiers for r in t.replicas for g in r.gpus):
            view.record({**event, "applied": False, "why": "; ".join(problems) or "the plan uses a failed GPU"})
            return None
        info = {"planned_rate_rps": workload.rate_rps, "q_min": float(q_min), "q_min_capped": bool(capped),
                "planner_wall_s": wall_s, "decided_s_at": view.now_s}
        if weigh:
            trans = estimate(cluster, new_plan, self.cfg.transition)
            live_gpus = [len({g for r in reps for g in r.gpus}) for reps in current]
            cur = deployment_estimate(problem, cluster.plan.thresholds, live_gpus)
            new = deployment_estimate(problem, new_plan.thresholds, new_plan.gpus_per_tier())
            verdict = worth_it(cur, new, trans, workload.rate_rps, delay_s, self.cfg, q_min,
                               quality_ci_halfwidth(workload.scores))
            info.update(verdict)
            info.update({"load_s": trans["load_s"], "staged_steps": trans["staged_steps"],
                         "loading_gpu_s": trans["loading_gpu_s"]})
            if not verdict["worth_it"]:
                view.record({**event, **info, "applied": False, "why": "estimated gain below the transition cost"})
                return None
        return PlanChange(new_plan, reason, delay_s, info, on_applied=lambda ch, s=workload: self._applied(ch, s))
