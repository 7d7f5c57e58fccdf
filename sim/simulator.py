"""Entry point of the simulator: SimConfig and simulate(plan, cascade, cluster, workload) -> SimResult."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from sim.runtime.batching import POLICIES
from sim.runtime.cluster import Cluster, validate_plan
from sim.common.config_checks import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, Range, check_fields,
                                     dataclass_from_mapping, setting)
from sim.common.errors import ConfigError, DataError
from sim.runtime.flow import CascadeFlow
from sim.runtime.loop import EventLoop
from sim.runtime.records import SimResult
from sim.runtime.replica import ITERATION_COLUMNS
from sim.runtime import tier_split
from sim.runtime.router import LOAD_BALANCERS, question_routes
from sim.workload.config import judge_config_from_dict

MODES = ("fast", "reference")
CONTEXT_POLICIES = ("skip", "drop")


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings (conf/sim/*.yaml). Engine defaults follow vLLM V0."""

    batching: str = setting("vllm", valid=tuple(POLICIES))  # vllm (prefill first) | sarathi (chunked prefill) | static
    chunk_tokens: int = setting(512, valid=POSITIVE_INT)  # Sarathi-Serve token budget per iteration
    max_num_seqs: int = setting(256, valid=POSITIVE_INT)
    max_batched_tokens: int = setting(8192, valid=POSITIVE_INT)  # vllm/static: prompt tokens per prefill iteration
    kv_block_size: int = setting(16, valid=POSITIVE_INT)
    kv_watermark: float = setting(0.01, valid=Range(0.0, 1.0, hi_open=True))  # share of KV blocks admission keeps free (at least one block)
    prefix_caching: bool = True  # reuse cached prompt-prefix KV blocks when the workload has block hash ids
    gpu_memory_utilization: float = setting(0.9, valid=Range(0.0, 1.0, lo_open=True))
    load_balancer: str = setting("least_work", valid=tuple(LOAD_BALANCERS))  # least_work | round_robin | jsq | prefix_aware
    lb_output_tokens_estimate: int = setting(256, valid=NON_NEGATIVE_INT)  # least_work's guess of a visit's output tokens
    lb_prefill_weight: float = setting(0.05, valid=NON_NEGATIVE)  # least_work: a prompt token counts this much of a decode token
    judge: dict = field(default_factory=dict)  # sim.workload.Judge config {kind, noise_std, latency}
    forward_with_draft: bool = False  # a forwarded request prefills prompt + the previous tier's answer
    mode: str = setting("fast", valid=MODES)  # fast (jump over decode iterations) | reference (one event per iteration)
    record_iterations: bool = False
    engine: str = "vllm"  # engine overhead profile for the cost model (conf/engine)
    cost_model: str = setting("analytical", valid=("analytical", "table"))  # analytical | table (a measured table: sim.perf.measured_table)
    cost_table: str = ""  # cost_model table: the CSV of measured iteration times
    cost_table_extrapolate: bool = False  # cost_model table: extend the table's lines beyond its measured range
    reference_tier: int = setting(-1, valid=Range(-64.0, 63.0, integer=True))  # metrics: the tier whose model defines ref(r) (-1 = largest)
    attainment: float = setting(0.95, valid=Range(0.0, 1.0, lo_open=True, hi_open=True))  # metrics: the SLO attainment percentile
    # metrics: ref(r)'s answer length, the reference tier's answer (largest_tier) or the answer returned
    # (returned); see sim.metrics.REFERENCE_LENGTHS for the default's reason
    reference_length: str = setting("largest_tier", valid=("largest_tier", "returned"))
    # A request whose prompt plus answer exceeds a tier model's max_context: skip (served by the next tier that
    # can take it) | drop (dropped with reason context_exceeded). Either way none that no tier takes is served.
    context_policy: str = setting("skip", valid=CONTEXT_POLICIES)
    # Disaggregated tiers (replica roles prefill/decode, sim.runtime.disagg): when the prompt's KV moves to the
    # decode instance: after_prefill (vLLM, SGLang, Dynamo) | layerwise (overlapping the prefill, Splitwise)
    kv_transfer: str = setting("after_prefill", valid=("after_prefill", "layerwise"))
    # Speed only (the records never depend on it): simulate the first tier and its verdicts in a forked process beside
    # the rest of the cascade (sim.runtime.tier_split): auto (runs of 200,000 requests or more, two CPUs or more, no
    # other thread) | on | off
    tier_split: str = setting("auto", valid=("auto", "on", "off"))

    def __post_init__(self) -> None:
        # Each field's type and bound are stated on the field (sim.common.config_checks.setting); here only what
        # needs two fields, and the judge's own schema.
        check_fields(self, "sim")
        if self.cost_model == "table" and not self.cost_table:
            raise ConfigError(f"sim.cost_table = {self.cost_table!r} is not valid; cost_model 'table' needs the path "
                              "of a measured table CSV")
        judge_config_from_dict(self.judge, "sim.judge")


def sim_config_from_dict(data: dict | None, where: str = "sim") -> SimConfig:
    """SimConfig from a config mapping; unknown keys fail with the list of valid ones."""
    data = dict(data or {})
    if "judge" in data and data["judge"] is not None:
        data["judge"] = dict(data["judge"])
    return dataclass_from_mapping(SimConfig, data, where)


def default_cost_factory(cfg: SimConfig) -> Callable:
    """replica_cost_for with the run's memory settings (the cost model caches built costs), or the measured table."""
    if cfg.cost_model == "table":
        from sim.perf.measured_table import table_cost_factory

        return table_cost_factory(cfg)
    from sim.perf.cost_model import replica_cost_for

    def factory(tier, replica, cluster, engine="vllm"):
        return replica_cost_for(tier, replica, cluster, engine=engine,
                                gpu_memory_utilization=cfg.gpu_memory_utilization, kv_block_size=cfg.kv_block_size)

    return factory


def _direct_tiers(scores: np.ndarray, thresholds, error_rate: float, rng: np.random.Generator) -> np.ndarray:
    """RouteLLM-style prediction: the smallest tier whose real score reaches its threshold (last if none);
    with probability error_rate, a uniformly drawn other tier instead."""
    n, c = scores.shape
    ok = np.zeros((n, c), dtype=bool)
    ok[:, : c - 1] = scores[:, : c - 1] >= np.asarray(thresholds, dtype=np.float64)[None, :]
    ok[:, c - 1] = True
    tier = ok.argmax(axis=1)
    wrong = rng.random(n) < error_rate
    other = rng.integers(0, c - 1, size=n)  # one of the c-1 other tiers
    other = other + (other >= tier)
    return np.where(wrong, other, tier).astype(np.int64)


def simulate(plan, cascade, cluster, workload, cfg: SimConfig = SimConfig(), seed: int = 0, controller=None,
             cost_factory: Callable | None = None, judge=None, arrivals=None, slo_stop=None) -> SimResult:
    """Run the workload through the plan; returns per-request records, optional iterations and run metadata.

    cost_factory(tier_spec, replica_plan, cluster, engine=...) -> ReplicaCost (default: the calibrated cost
    model). judge: an object with gate_scores(scores, tier, rng) and latency_s(rng, n) (default:
    sim.workload.Judge(cfg.judge)). arrivals: an object that admits requests during the run (start(env, flow),
    on_finish(i, now); e.g. sim.fidelity.clients.BenchmarkClient) instead of the workload's arrival times. Random streams: one SeedSequence(seed), spawned per use.
    slo_stop (sim.runtime.slo_stop.SloStop, from sim.metrics.slo_stop): raise SloMissed as soon as the run's SLO scale
    is certain to exceed the target, or SloMet as soon as it is certain to be within it, instead of simulating on
    (records up to there are identical).
    """
    if not isinstance(cfg, SimConfig):
        cfg = sim_config_from_dict(cfg)
    if int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    validate_plan(plan, cascade, cluster)
    if workload.num_tiers != cascade.num_tiers:
        raise ConfigError(f"workload {workload.name!r} has scores for {workload.num_tiers} tiers but cascade "
                          f"{cascade.name!r} has {cascade.num_tiers}")
    cascade.tier_index(cfg.reference_tier)  # out of range: an error before the run, not a wrapped-around tier
    empty = np.flatnonzero(np.asarray(workload.input_tokens) < 1)
    if empty.size:  # vLLM refuses an empty prompt; simulated, it got its first token with no prefill at all
        raise DataError(f"workload {workload.name!r}: {empty.size} request(s) with a prompt of "
                        f"{int(workload.input_tokens[empty[0]])} tokens (first: request {int(empty[0])}); a prompt "
                        "needs at least 1 token")
    if judge is None:
        from sim.workload import Judge

        judge = Judge(cfg.judge)
    wall0 = time.perf_counter()
    c = cascade.num_tiers
    n = workload.num_requests
    gate_ss, lat_ss, route_ss = np.random.SeedSequence(seed).spawn(3)
    gate_rngs = [np.random.default_rng(s) for s in gate_ss.spawn(c)]
    lat_rngs = [np.random.default_rng(s) for s in lat_ss.spawn(c)]
    # Every random draw is made up front per tier, so results do not depend on event order or mode.
    gate = np.full((n, c), np.nan)
    lat = np.zeros((n, c))
    for t in range(c - 1):
        gate[:, t] = judge.gate_scores(workload.scores[:, t], t, gate_rngs[t])
        lat[:, t] = np.asarray(judge.latency_s(lat_rngs[t], n), dtype=np.float64)
    direct = None
    if plan.routing == "direct":
        direct = (question_routes(plan.routes, workload.question_ids) if plan.routes else
                  _direct_tiers(workload.scores, plan.thresholds, plan.router_error_rate, np.random.default_rng(route_ss)))

    env = EventLoop()
    log = [] if cfg.record_iterations else None
    cost_factory = cost_factory or default_cost_factory(cfg)
    cl = Cluster(env, plan, cascade, cluster, cfg, cost_factory, log)
    if hasattr(cost_factory, "check_workload"):  # a measured table checks its range before the run
        cost_factory.check_workload(workload)
    flow = CascadeFlow(env, workload, plan.thresholds, plan.routing, cl.routers, cfg, gate, lat, direct, arrivals,
                       max_context=[t.model.max_context for t in cascade.tiers], slo_stop=slo_stop)
    cl.attach_flow(flow)
    split = {"tier_split": False}
    why_not = tier_split.split_reason(cfg, cl.routers, n, controller, arrivals, slo_stop)
    if not why_not:
        try:
            split = tier_split.run_split(env, flow)
        except tier_split.TierSplitTie as tie:  # an order the split cannot know: the whole run in one process
            result = simulate(plan, cascade, cluster, workload, dataclasses.replace(cfg, tier_split="off"), seed,
                              cost_factory=cost_factory, judge=judge)
            result.meta.update(sim_config=dataclasses.asdict(cfg), tier_split=False, tier_split_not=f"tie: {tie}",
                               wall_s=time.perf_counter() - wall0)
            return result
    elif controller is None:
        flow.arm_precut()  # a run with one engine: its jumps end where the next arrival would cut them
        env.run()
    else:
        controller.start(env, cl, flow)
        _run_until_done(env, flow)
    end_s = env.now
    flow.drop_parked(end_s)  # visits still waiting for a tier that never came back
    wall_s = time.perf_counter() - wall0
    if flow.finished != n:
        raise RuntimeError(f"simulation ended with {n - flow.finished} of {n} requests neither completed nor "
                           "dropped (a simulator bug)")
    requests = flow.book.to_frame()
    iterations = pd.DataFrame(log, columns=ITERATION_COLUMNS) if log is not None else None
    meta = _meta(cfg, plan, seed, cl, flow, end_s, wall_s, workload)
    meta.update(split)
    if why_not:
        meta["tier_split_not"] = why_not
    if controller is not None:
        meta.update(controller.report())
    return SimResult(requests, iterations, meta)


def _run_until_done(env, flow) -> None:
    """With a controller, stop when the last request finishes: its timers (a repair, the next drift check) must
    not stretch the run. If the schedule empties first, visits are stranded at a tier with no replica left."""
    try:
        env.run(until=flow.done)
    except RuntimeError as exc:
        if flow.done.triggered or "No scheduled events left" not in str(exc):
            raise


def _meta(cfg, plan, seed, cl: Cluster, flow: CascadeFlow, end_s: float, wall_s: float, workload) -> dict[str, Any]:
    replicas = []
    for r in cl.replicas:
        replicas.append({
            "replica_id": r.replica_id, "tier": r.tier, "tp": r.plan.tp, "pp": r.plan.pp, "num_gpus": r.num_gpus,
            "role": r.plan.role,
            "busy_s": r.busy_s, "start_s": r.start_s,
            "iterations": sum(e.iterations for e in r.engines), "jumps": sum(e.jumps for e in r.engines),
            "kv_capacity_blocks": sum(e.kv.capacity_blocks for e in r.engines),
            "kv_peak_used_blocks": max(e.kv.peak_used_blocks for e in r.engines),
            # Blocks still held when the run ends (prefix-cached ones count as free): 0 unless a block leaked.
            "kv_used_blocks_end": sum(e.kv.used_blocks for e in r.engines),
        })
    busy_gpu_s = sum(r["busy_s"] * r["num_gpus"] for r in replicas)
    first = float(workload.arrival_s[0]) if workload.num_requests else 0.0
    return {
        "mode": cfg.mode, "batching": cfg.batching, "seed": seed, "sim_config": dataclasses.asdict(cfg),
        "plan": plan.describe(), "routing": plan.routing, "thresholds": list(plan.thresholds),
        "end_s": end_s, "makespan_s": end_s - first, "wall_s": wall_s,
        "gpu_s": cl.gpu_seconds(end_s), "busy_gpu_s": busy_gpu_s,
        "iterations": sum(r["iterations"] for r in replicas), "jumps": sum(r["jumps"] for r in replicas),
        "replicas": replicas,
        "mean_in_system": flow.area / end_s if end_s > 0 else 0.0,
        "attainment": cfg.attainment, "reference_tier": cfg.reference_tier,
        "context_skipped": len(flow.context_skipped),
    }
