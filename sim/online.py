"""Online re-planning inside the simulation: drift detection on a live sample, re-planning on the surviving GPUs,
and rolling reconfiguration with a weight-loading downtime (DESIGN 7.5; issue 6 online part, issue 7).

Choices, and why:
- Surviving GPUs: the planner sees a ClusterSpec of the nodes with no failed GPU (the simplest correct mask: the
  planners assume whole, identical nodes); its node indices are mapped back onto those nodes. The healthy GPUs
  of a node with a failed GPU stay idle until the repair, as an operator draining the node would do.
- Rolling reconfiguration: per tier, a current replica (live or loading) whose TP x PP the new plan also asks
  for keeps its GPUs and keeps serving; the other new replicas are placed first-fit on the free healthy GPUs
  (falling back to the planner's own placement when fragmentation forbids). A removed replica whose GPUs no
  new replica needs keeps serving until its tier's new replicas are up, then hands its visits back; one whose
  GPUs are needed hands them back at once (KV lost: they prefill again). New replicas come up after
  weight bytes per GPU / reload_bandwidth_gbps + startup_s. Thresholds switch at once.
- Drift: every interval_s, the last sample_requests arrivals are compared with the workload the current plan
  was made for: arrival rate, median prompt and tier-0 answer length (relative change) and a two-sample
  Kolmogorov-Smirnov statistic on tier-0 real scores; the rate is counted over the last interval_s. Any
  statistic above its threshold triggers a re-plan (a rate drop only once it persists for scale_down_checks
  checks: re-planning for a lull would strand the next burst while replicas reload) on the last interval_s of arrivals (at most plan_requests,
  re-spaced at the window's rate). Planning takes no simulated time (a plan takes seconds of wall time,
  small beside the reload downtime), which keeps runs deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np

from sim.errors import ConfigError, UserError


@dataclass(frozen=True)
class ReplanConfig:
    """cfg.replan. Weight reloads (reload_bandwidth_gbps, startup_s) also time repairs when enabled is false."""

    enabled: bool = False
    planner: str | None = None  # None: the planner that made the run's initial plan (cascadia when unknown)
    planner_settings: dict = field(default_factory=dict)
    on_failure: bool = True  # re-plan when GPUs fail and when they are repaired
    drift_detection: bool = True
    sample_requests: int = 50  # the live sample compared with the planned workload
    interval_s: float = 300.0
    rate_threshold: float = 0.5  # relative change of the arrival rate
    # A rate drop must persist for this many consecutive checks before it re-plans (a rise re-plans at once):
    # scaling down for a lull strands the next burst on a shrunken deployment while replicas reload.
    scale_down_checks: int = 2
    length_threshold: float = 0.5  # relative change of the median prompt or tier-0 answer length
    ks_threshold: float = 0.3  # two-sample KS statistic on tier-0 scores
    plan_requests: int = 500  # at most this many arrivals of the last interval_s for a drift re-plan
    reload_bandwidth_gbps: float = 5.0  # per GPU, from host memory or local NVMe
    startup_s: float = 20.0  # engine start, CUDA graph capture
    plan_window_s: float | None = None  # the initial plan sees only the first plan_window_s s (None: whole run)

    def __post_init__(self) -> None:
        def bad(key, valid):
            raise ConfigError(f"replan.{key} = {getattr(self, key)!r} is not valid; {valid}")

        for key in ("enabled", "on_failure", "drift_detection"):
            if not isinstance(getattr(self, key), bool):
                bad(key, "it must be true or false")
        for key in ("sample_requests", "plan_requests"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                bad(key, "it must be an integer >= 2")
        v = self.scale_down_checks
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            bad("scale_down_checks", "it must be an integer >= 1")
        for key in ("interval_s", "rate_threshold", "length_threshold", "ks_threshold", "reload_bandwidth_gbps"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                bad(key, "it must be a positive number")
        if not isinstance(self.startup_s, (int, float)) or isinstance(self.startup_s, bool) or self.startup_s < 0:
            bad("startup_s", "it must be a number >= 0")
        if self.plan_window_s is not None and (not isinstance(self.plan_window_s, (int, float))
                                               or isinstance(self.plan_window_s, bool) or self.plan_window_s <= 0):
            bad("plan_window_s", "it must be positive seconds or null")
        if self.planner is not None and not isinstance(self.planner, str):
            bad("planner", "it must be a planner name or null")
        if not isinstance(self.planner_settings, dict):
            bad("planner_settings", "it must be a mapping of planner settings")


def replan_config_from_dict(data) -> ReplanConfig:
    data = dict(data or {})
    names = {f.name for f in fields(ReplanConfig)}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ConfigError(f"replan: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    if data.get("planner_settings") is not None:
        data["planner_settings"] = dict(data["planner_settings"])
    else:
        data.pop("planner_settings", None)
    return ReplanConfig(**data)


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


def drifted(stats: dict, cfg: ReplanConfig, drops_in_a_row: int = 1) -> list[str]:
    """The statistics above their thresholds (empty: no drift). A rate drop counts only once it has been seen
    in drops_in_a_row >= cfg.scale_down_checks consecutive checks."""
    out = []
    if stats["rate_change"] > cfg.rate_threshold:
        rising = stats["recent_rate_rps"] > stats["planned_rate_rps"]
        if rising or drops_in_a_row >= cfg.scale_down_checks:
            out.append("rate")
    if max(stats["input_change"], stats["output_change"]) > cfg.length_threshold:
        out.append("length")
    if stats["ks_tier0"] > cfg.ks_threshold:
        out.append("scores")
    return out


# ---- placement onto surviving GPUs ---------------------------------------------------------------
def healthy_nodes(spec, dead_gpus) -> list[int]:
    dead_nodes = {n for n, _ in dead_gpus}
    return [n for n in range(spec.num_nodes) if n not in dead_nodes]


def remap_nodes(plan, nodes: list[int]):
    """A plan made on a cluster of len(nodes) nodes, moved onto those real nodes."""
    from planners.plan import ReplicaPlan, TierPlan

    tiers = tuple(TierPlan(t.model, tuple(ReplicaPlan(r.tp, r.pp, tuple((nodes[n], g) for n, g in r.gpus))
                                          for r in t.replicas)) for t in plan.tiers)
    return replace(plan, tiers=tiers)


def _first_fit(todo: list, free: dict, gpus_per_node: int) -> dict | None:
    """todo = [(tier, tp, pp)], free = {node: [gpu, ...]}; largest replicas first, each TP group in one node
    (a replica that fits a node stays in one). Returns {index in todo: gpus} or None when they do not fit."""
    free = {n: list(g) for n, g in free.items()}
    order = sorted(range(len(todo)), key=lambda i: (-todo[i][1] * todo[i][2], -todo[i][1], todo[i][0], i))
    placed = {}
    for i in order:
        _, tp, pp = todo[i]
        groups = [tp * pp] if tp * pp <= gpus_per_node else [tp] * pp
        gpus = []
        for size in groups:
            node = next((n for n in sorted(free) if len(free[n]) >= size), None)
            if node is None:
                return None
            gpus.extend((node, free[node].pop(0)) for _ in range(size))
        placed[i] = tuple(gpus)
    return placed


def reconcile(new_plan, current: list[list], usable: set, gpus_per_node: int):
    """Keep current replicas (lists of ReplicaPlan per tier) that the new plan's TP x PP counts allow, place the
    rest on the usable GPUs they leave free; the planner's own placement when that does not fit."""
    from planners.plan import ReplicaPlan, TierPlan

    kept: list[list] = [[] for _ in new_plan.tiers]
    todo = []
    for t, tier in enumerate(new_plan.tiers):
        want = [(r.tp, r.pp) for r in tier.replicas]
        for rp in current[t]:
            if (rp.tp, rp.pp) in want and usable.issuperset(rp.gpus):
                want.remove((rp.tp, rp.pp))
                kept[t].append(rp)
        todo.extend((t, tp, pp) for tp, pp in want)
    taken = {g for reps in kept for r in reps for g in r.gpus}
    free: dict = {}
    for node, g in sorted(usable - taken):
        free.setdefault(node, []).append(g)
    placed = _first_fit(todo, free, gpus_per_node)
    if placed is None:
        return new_plan
    for i, (t, tp, pp) in enumerate(todo):
        kept[t].append(ReplicaPlan(tp, pp, placed[i]))
    return replace(new_plan, tiers=tuple(TierPlan(tier.model, tuple(kept[t])) for t, tier in enumerate(new_plan.tiers)))


# ---- rolling reconfiguration -----------------------------------------------------------------------
def load_time_s(tier_spec, replica_plan, cfg: ReplanConfig) -> float:
    """Downtime of a new replica: its weight shard per GPU over the reload bandwidth, plus engine start-up."""
    per_gpu = tier_spec.model.weight_bytes(tier_spec.weights) / replica_plan.num_gpus
    return per_gpu / (cfg.reload_bandwidth_gbps * 1e9) + cfg.startup_s


def apply_plan(cluster, flow, new_plan, cfg: ReplanConfig) -> dict[str, Any]:
    """Move the running deployment to new_plan (replicas on real GPUs) with no request lost."""
    env = cluster.env
    needed = {g for tier in new_plan.tiers for r in tier.replicas for g in r.gpus}
    kept = removed = added = 0
    downtime = 0.0
    for t, tier in enumerate(new_plan.tiers):  # first, so visits handed back skip tiers leaving the deployment
        cluster.routers[t].planned = bool(tier.replicas)
    for t, tier in enumerate(new_plan.tiers):
        router = cluster.routers[t]
        want = list(tier.replicas)
        stay, go = [], []
        for r in list(router.replicas):
            (stay if r.plan in want else go).append(r)
            if r.plan in want:
                want.remove(r.plan)
        for p in cluster.pending:
            if p.tier == t and not p.cancelled:
                if p.plan in want:
                    want.remove(p.plan)
                    stay.append(p)
                else:
                    p.cancelled = True
                    removed += 1
        procs = []
        for rp in want:
            load = load_time_s(cluster.cascade.tiers[t], rp, cfg)
            downtime = max(downtime, load)
            procs.append(cluster.add_replica(t, rp, load))
        linger = []
        for r in go:
            if procs and not needed.intersection(r.plan.gpus):
                linger.append(r)  # serves until this tier's new replicas are up
            else:
                cluster.take_down(r)
        if linger:
            env.all_of(procs).callbacks.append(lambda _ev, reps=linger: _retire(cluster, reps))
        kept += len(stay)
        removed += len(go)
        added += len(want)
    flow.set_thresholds(new_plan.thresholds)
    flow.reroute_unplanned()
    cluster.plan = new_plan
    return {"kept": kept, "removed": removed, "added": added, "downtime_s": downtime}


def _retire(cluster, replicas) -> None:
    for r in replicas:
        if r in cluster.routers[r.tier].replicas:
            cluster.take_down(r)


# ---- the re-planner ------------------------------------------------------------------------------
@dataclass
class Replanner:
    """Plans again through the planners' interface (planners.base.get_planner) and applies the plan.

    reference: the workload the current plan was made for. q_min_for(workload) -> the quality requirement of a
    re-plan (the experiment keeps the same q_min_level on the new sample). cost_fn: PlanningProblem's cost_fn.
    """

    cfg: ReplanConfig
    reference: Any  # Workload
    q_min_for: Callable
    engine: str = "vllm"
    gpu_memory_utilization: float = 0.9
    cost_fn: Callable | None = None

    def recent(self, flow, workload, count: int):
        """The last count arrivals so far."""
        k = flow.arrived
        return workload.take(np.arange(max(0, k - count), k))

    def window(self, flow, workload, now: float, count: int):
        """What a drift re-plan plans for: the arrivals of the last interval_s (at most count, evenly chosen),
        spaced evenly at the window's arrival rate."""
        k = flow.arrived
        lo = int(np.searchsorted(workload.arrival_s[:k], now - self.cfg.interval_s, side="left"))
        n = k - lo
        if n < 2:
            return self.recent(flow, workload, max(count, 2))
        idx = np.unique(np.linspace(lo, k - 1, min(n, count)).round().astype(np.int64))
        rate = n / self.cfg.interval_s
        return workload.take(idx).with_arrivals(now - (idx.size - 1) / rate + np.arange(idx.size) / rate)

    def replan(self, cluster, flow, reason: str, sample=None) -> dict[str, Any]:
        """Plan for sample (default: the current reference) on the healthy nodes, apply it; returns the event."""
        from planners.base import get_planner
        from planners.checker import check_plan
        from planners.problem import PlanningProblem

        event: dict[str, Any] = {"time_s": cluster.env.now, "event": "replan", "reason": reason}
        spec = cluster.spec
        nodes = healthy_nodes(spec, cluster.dead_gpus)
        workload = sample if sample is not None else self.reference
        if not nodes:
            return {**event, "applied": False, "why": "no node without a failed GPU is left"}
        try:
            problem = PlanningProblem(
                cascade=cluster.cascade, cluster=replace(spec, num_nodes=len(nodes), name=f"{spec.name}-surviving"),
                workload=workload, q_min=float(self.q_min_for(workload)), engine=self.engine,
                gpu_memory_utilization=self.gpu_memory_utilization, cost_fn=self.cost_fn,
                context_policy=getattr(cluster.cfg, "context_policy", "skip"))
            planned = get_planner(self.cfg.planner or "cascadia", **self.cfg.planner_settings).plan(problem)
        except UserError as exc:  # nothing fits the survivors, or q_min is out of reach: keep what runs
            return {**event, "applied": False, "why": str(exc)}
        planned = remap_nodes(planned, nodes)
        usable = {(n, g) for n in nodes for g in range(spec.gpus_per_node)}
        current = [[r.plan for r in router.replicas] for router in cluster.routers]
        for p in cluster.pending:
            if not p.cancelled:
                current[p.tier].append(p.plan)
        new_plan = reconcile(planned, current, usable, spec.gpus_per_node)
        problems = check_plan(new_plan, cluster.cascade, spec)
        if problems or cluster.dead_gpus.intersection(g for t in new_plan.tiers for r in t.replicas for g in r.gpus):
            return {**event, "applied": False, "why": "; ".join(problems) or "the plan uses a failed GPU"}
        change = apply_plan(cluster, flow, new_plan, self.cfg)
        self.reference = workload
        return {**event, "applied": True, "plan": new_plan.describe(), "gpus_per_tier": list(new_plan.gpus_per_tier()),
                "thresholds": list(new_plan.thresholds), "planned_rate_rps": workload.rate_rps,
                "q_min": float(problem.q_min), **change}

    def monitor(self, env, cluster, flow, workload, record: Callable):
        """SimPy process: every interval_s while arrivals remain, test the live sample for drift."""
        cfg = self.cfg
        last = float(workload.arrival_s[-1]) if workload.num_requests else 0.0
        t = float(workload.arrival_s[0]) + cfg.interval_s if workload.num_requests else last
        drops = 0  # consecutive checks that saw the rate drop beyond rate_threshold
        while t < last:  # checks after the last arrival would only stretch the run
            yield env.timeout(max(0.0, t - env.now))
            t += cfg.interval_s
            if flow.arrived < cfg.sample_requests:
                continue
            sample = self.recent(flow, workload, cfg.sample_requests)
            k = flow.arrived
            rate = (k - int(np.searchsorted(workload.arrival_s[:k], env.now - cfg.interval_s))) / cfg.interval_s
            stats = drift_statistics(sample, self.reference, rate)
            dropped = stats["rate_change"] > cfg.rate_threshold and rate < stats["planned_rate_rps"]
            drops = drops + 1 if dropped else 0
            why = drifted(stats, cfg, drops)
            record({"time_s": env.now, "event": "drift_check", **stats, "drift": ",".join(why)})
            if why:
                record(self.replan(cluster, flow, "drift:" + ",".join(why),
                                   sample=self.window(flow, workload, env.now, cfg.plan_requests)))
                drops = 0  # the reference the drops were measured against has changed
