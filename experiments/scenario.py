"""Build a scenario (cluster, cascade, workload, simulator config) from a composed experiment config, and run planners on it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.inputs import check_top_level, parse_cascade, parse_cluster, trace_window
from experiments.load import capacity_rps
from sim.spec.cascade import CascadeSpec
from sim.spec.plan import CascadePlan
from sim.common.errors import ConfigError
from sim.spec.hardware import ClusterSpec
from sim.workload.types import Workload


@dataclass(frozen=True)
class Scenario:
    cluster: ClusterSpec
    cascade: CascadeSpec
    workload: Workload  # the simulated workload (rate-scaled, horizon-cut)
    sim_cfg: Any  # sim.simulator.SimConfig
    q_min: float
    seed: int
    extras: dict = field(default_factory=dict, compare=False)
    config_dirs: tuple[str, ...] = ()  # the user's config folders (planner plug-ins, model and hardware files)


def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def rate_factor(cfg: DictConfig, workload: Workload, window: tuple[float, float] | None) -> float:
    """What the arrival times are divided by: rate_rps over the window's own mean rate (requests per second of the
    trace window), or rate_scale. rate_rps, when set, replaces rate_scale (summary.json records the factor used)."""
    if window is not None and cfg.get("load_fraction") is not None:
        own_rps = workload.num_requests / (window[1] - window[0])
        return float(cfg.load_fraction) * single_model_capacity(cfg)["capacity_rps"] / own_rps
    if window is not None and cfg.get("rate_rps") is not None:
        own_rps = workload.num_requests / (window[1] - window[0])
        return float(cfg.rate_rps) / own_rps
    return float(cfg.rate_scale)


_CAPACITY: dict[str, dict] = {}  # per (cluster, cascade, workload, window, seed, engine): capacity_rps's answer


def single_model_capacity(cfg: DictConfig) -> dict:
    """experiments.load.capacity_rps for cfg's cluster, cascade and workload over its trace_window, at the run's base
    seed (cfg.seed), so every seed, planner and quality level of a case gets the same rates."""
    from sim.simulator import sim_config_from_dict
    from sim.workload import build_workload

    window = trace_window(cfg)
    parts = {k: _container(cfg.get(k)) for k in ("cluster", "cascade", "workload", "sim")}
    key = repr((parts, window, int(cfg.seed)))
    if key not in _CAPACITY:
        cluster, cascade = parse_cluster(cfg), parse_cascade(cfg)  # the one parse step (user config dirs too)
        extra = {} if window is None else {"window": {"start_s": window[0], "end_s": window[1]}}
        workload = build_workload(parts["workload"], cascade=cascade, seed=int(cfg.seed), **extra)
        _CAPACITY[key] = capacity_rps(cascade, cluster, workload, sim_config_from_dict(parts["sim"]).engine)
    return _CAPACITY[key]


def build_scenario(cfg: DictConfig, seed: int | None = None, bind_questions=None) -> Scenario:
    """The scenario of cfg; seed (default cfg.seed) and bind_questions: see experiments.protocol."""
    from sim.simulator import sim_config_from_dict
    from sim.workload import build_workload

    check_top_level(cfg)
    cluster, cascade = parse_cluster(cfg), parse_cascade(cfg)
    seed = int(cfg.seed) if seed is None else int(seed)
    # Two separate knobs: trace_window picks the part of the trace (in trace time), the rate knob (rate_rps or
    # rate_scale) re-times exactly those requests. Without trace_window, the legacy cut: the first horizon_s seconds
    # of the rate-scaled trace, so a higher rate_scale also takes in more of the trace.
    window = trace_window(cfg)
    extra = {} if window is None else {"window": {"start_s": window[0], "end_s": window[1]}}
    workload = build_workload(_container(cfg.workload), cascade=cascade, seed=seed, bind_questions=bind_questions,
                              **extra)
    factor = rate_factor(cfg, workload, window)
    if factor != 1.0:
        workload = workload.scale_rate(factor)
    if cfg.horizon_s is not None:  # with a trace_window only in a smoke run (check_top_level)
        workload = workload.window(float(workload.arrival_s[0]), float(workload.arrival_s[0]) + float(cfg.horizon_s))
    if workload.num_requests == 0:
        raise ConfigError("the workload has no requests inside the horizon; raise horizon_s or rate_scale")
    sim_cfg = sim_config_from_dict(_container(cfg.sim))
    span_s = (window[1] - window[0]) / factor if window is not None else (
        None if cfg.horizon_s is None else float(cfg.horizon_s))
    return Scenario(cluster, cascade, workload, sim_cfg, resolve_q_min(cfg, workload), seed,
                    extras={"rate_factor": factor, "window_s": span_s, "trace_window": window},
                    config_dirs=tuple(str(d) for d in (cfg.get("config_dirs") or ())))


def resolve_q_min(cfg: DictConfig, workload: Workload) -> float:
    return float(cfg.q_min) if cfg.q_min is not None else workload.quality_at_level(float(cfg.q_min_level))


def make_plan(name: str, settings: dict, scenario: Scenario, sample_size: int) -> tuple[CascadePlan, float]:
    """(plan, plan_s) of planner `name` on the scenario. plan_s is what the plan would take cold: its wall seconds
    plus the build seconds of the replica models and latency tables it took from the process planning cache
    (planners.plan_cache) instead of building them, i.e. what earlier plans of this process spent building them
    on equal inputs. The plan's solver_stats carry both parts: wall_s and reused_s."""
    from planners import plan_cache
    from planners.base import get_planner
    from planners.checker import check_plan
    from planners.problem import PlanningProblem

    planner = get_planner(name, config_dirs=scenario.config_dirs, **(settings or {}))
    problem = PlanningProblem(cascade=scenario.cascade, cluster=scenario.cluster,
                              workload=scenario.workload, q_min=scenario.q_min, engine=scenario.sim_cfg.engine,
                              max_sample_requests=sample_size, context_policy=scenario.sim_cfg.context_policy)
    plan, wall_s, reused_s = plan_cache.timed(lambda: planner.plan(problem))
    plan_s = wall_s + reused_s
    plan = replace(plan, solver_stats={**(plan.solver_stats or {}), "wall_s": wall_s, "reused_s": reused_s})
    if not any(t.replicas for t in plan.tiers):  # no model fits the pool: the user's cluster, not a planner bug
        from sim.common.errors import DeploymentDoesNotFit

        c = scenario.cluster
        raise DeploymentDoesNotFit(f"planner {name} found no model of cascade {scenario.cascade.name!r} that fits "
                                   f"cluster {c.name!r} ({c.num_nodes} x {c.gpus_per_node} {c.gpu.name}); "
                                   "use more or larger GPUs, or lower-precision weights")
    problems = check_plan(plan, scenario.cascade, scenario.cluster)
    if problems:
        raise RuntimeError(f"planner {name} produced an infeasible plan: {'; '.join(problems)}")
    return plan, plan_s
