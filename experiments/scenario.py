"""Build a scenario (cluster, cascade, workload, simulator config) from a composed experiment config, and run planners on it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sim.spec.plan import CascadePlan
from experiments.inputs import check_top_level, parse_cascade, parse_cluster
from sim.spec.cascade import CascadeSpec
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


def build_scenario(cfg: DictConfig, seed: int | None = None, bind_questions=None) -> Scenario:
    """The scenario of cfg; seed (default cfg.seed) and bind_questions: see experiments.protocol."""
    from sim.simulator import sim_config_from_dict
    from sim.workload import build_workload

    check_top_level(cfg)
    cluster, cascade = parse_cluster(cfg), parse_cascade(cfg)
    seed = int(cfg.seed) if seed is None else int(seed)
    workload = build_workload(_container(cfg.workload), cascade=cascade, seed=seed, bind_questions=bind_questions)
    if float(cfg.rate_scale) != 1.0:
        workload = workload.scale_rate(float(cfg.rate_scale))
    if cfg.horizon_s is not None:
        workload = workload.window(float(workload.arrival_s[0]), float(workload.arrival_s[0]) + float(cfg.horizon_s))
    if workload.num_requests == 0:
        raise ConfigError("the workload has no requests inside the horizon; raise horizon_s or rate_scale")
    sim_cfg = sim_config_from_dict(_container(cfg.sim))
    return Scenario(cluster, cascade, workload, sim_cfg, resolve_q_min(cfg, workload), seed,
                    config_dirs=tuple(str(d) for d in (cfg.get("config_dirs") or ())))


def resolve_q_min(cfg: DictConfig, workload: Workload) -> float:
    return float(cfg.q_min) if cfg.q_min is not None else workload.quality_at_level(float(cfg.q_min_level))


def make_plan(name: str, settings: dict, scenario: Scenario, sample_size: int) -> tuple[CascadePlan, float]:
    from planners.base import get_planner
    from planners.checker import check_plan
    from planners.problem import PlanningProblem

    planner = get_planner(name, config_dirs=scenario.config_dirs, **(settings or {}))
    problem = PlanningProblem(cascade=scenario.cascade, cluster=scenario.cluster,
                              workload=scenario.workload, q_min=scenario.q_min, engine=scenario.sim_cfg.engine,
                              max_sample_requests=sample_size, context_policy=scenario.sim_cfg.context_policy)
    t0 = time.perf_counter()
    plan = planner.plan(problem)
    plan_s = time.perf_counter() - t0
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
