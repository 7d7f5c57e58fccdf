"""The one parse-and-validate pass of an experiment: a composed config becomes typed, frozen inputs, or one ConfigError.

Every user input of a run passes here before any output folder is made or any planner runs: the numbers of the whole
tree (sim.common.config_checks: finiteness and ranges, with the key path and the valid range), the cluster and its
hardware file, the cascade and its model files (sim.spec: unknown keys, precisions, sizes), the workload schema
(sim.workload.config), the simulator settings (sim.simulator.SimConfig), the evaluation protocol and every selected
planner's settings (planners.base), the faults (sim.spec.faults) and the re-planning settings (online.replan), and
the data files the workload names: its trace and quality table are read and checked here (sim.workload.
check_workload_data names the file and line), for every trace part the run will use. Each typed schema states its
defaults and bounds once, on its fields (sim.common.config_checks.setting). Files named by config (model, hardware,
cluster, planner) are looked up in the user's config folders first (`config_dirs`, filled from --config-dir /
hydra.searchpath), then in conf/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from online.replan import ReplanConfig, replan_config_from_dict
from sim.common.config_checks import (EXPERIMENT_RULES, NON_NEGATIVE_INT, Range, check_experiment_numbers, check_numbers,
                                     from_mapping, setting)
from sim.common.errors import ConfigError
from sim.common.quick import quick_mode
from sim.spec.cascade import CascadeSpec, cascade_from_dict
from sim.spec.faults import Fault, faults_from_config
from sim.spec.hardware import ClusterSpec, available, cluster_from_dict, load_gpu
from sim.simulator import SimConfig, sim_config_from_dict
from sim.workload.build import check_workload_data
from sim.workload.config import WorkloadConfig, workload_config_from_dict


@dataclass(frozen=True)
class OnlineRuns:
    """The run-level keys of cfg.replan (experiments.online reads them; the policy's own keys are ReplanConfig's)."""

    planners: Optional[tuple[str, ...]] = None  # the planners that re-plan (null: all)
    keep_static: bool = False  # also run each re-planning planner without re-planning, as <name>_online's baseline


ONLINE_RUN_KEYS = tuple(OnlineRuns.__dataclass_fields__)


@dataclass(frozen=True)
class ExperimentInputs:
    """What a composed experiment config says, parsed and checked (the workload is built per seed from `workload`)."""

    cluster: ClusterSpec
    cascade: CascadeSpec
    workload: WorkloadConfig
    sim: SimConfig
    planners: tuple[tuple[str, Any], ...]  # (name, planner object with its settings), in the configured order
    seeds: tuple[int, ...]
    config_dirs: tuple[str, ...]
    faults: tuple[Fault, ...] = ()
    replan: ReplanConfig = ReplanConfig()
    online: OnlineRuns = OnlineRuns()


def container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def config_dirs(cfg) -> tuple[str, ...]:
    return tuple(str(d) for d in (cfg.get("config_dirs") or ()))


def parse_replan(cfg) -> tuple[ReplanConfig, OnlineRuns]:
    """cfg.replan split into the policy's settings and the run-level keys, both checked."""
    data = dict(container(cfg.get("replan")) or {})
    runs = {k: data.pop(k) for k in ONLINE_RUN_KEYS if k in data}
    return replan_config_from_dict(data), from_mapping(OnlineRuns, runs, "replan")


def parse_cluster(cfg) -> ClusterSpec:
    data = dict(container(cfg.cluster))
    where = f"cluster {data.get('name')}"
    if not data.get("hardware"):
        raise ConfigError(f"{where}: hardware is missing; valid: {available('hardware', config_dirs(cfg))}")
    return cluster_from_dict(data, load_gpu(data["hardware"], config_dirs(cfg)), where)


def parse_cascade(cfg) -> CascadeSpec:
    return cascade_from_dict(container(cfg.cascade), config_dirs(cfg))


@dataclass(frozen=True)
class SplitSpec:
    enabled: bool = True
    # share of the scenario's window (its earlier part) the planners see
    plan_fraction: float = setting(0.5, valid=Range(0.0, 1.0, lo_open=True, hi_open=True))
    # share of the dataset's questions bound to planning requests
    question_fraction: float = setting(0.5, valid=Range(0.0, 1.0, lo_open=True, hi_open=True))
    seed: int = setting(0, valid=NON_NEGATIVE_INT)  # with the run's seed, picks which questions are planning questions


def split_spec(cfg: DictConfig) -> SplitSpec:
    return from_mapping(SplitSpec, container(cfg.get("split")) or {}, "split")


def run_seeds(cfg: DictConfig) -> list[int]:
    """The seeds every planner runs over: cfg.seed, cfg.seed + 1, ..., cfg.seed + cfg.seeds - 1."""
    n = cfg.get("seeds", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ConfigError(f"seeds must be a positive integer (the number of repeats), got {n!r}")
    check_numbers({"seeds": n}, EXPERIMENT_RULES)
    return [int(cfg.seed) + k for k in range(n)]


def trace_window(cfg: DictConfig) -> tuple[float, float] | None:
    """The trace part [start_s, end_s) in trace time chosen by trace_window, or None for the legacy cut."""
    tw = cfg.get("trace_window")
    if tw is None or tw.get("duration_s") is None:
        return None
    start = float(tw.get("start_s") or 0.0)
    return start, start + float(tw.duration_s)


def check_top_level(cfg: DictConfig) -> None:
    """Every number of the tree against its range (sim.common.config_checks holds the ranges, once), then the
    settings that only make sense together: the trace part and what re-times it."""
    check_experiment_numbers(cfg)
    window = trace_window(cfg)
    # Both would cut the run; a smoke run (sim.common.quick) may keep its short horizon on top of the window.
    if window is not None and cfg.get("horizon_s") is not None and not quick_mode():
        raise ConfigError(f"trace_window.duration_s={window[1] - window[0]:g} picks the part of the trace to simulate, "
                          f"horizon_s={cfg.horizon_s:g} would cut it again after the rate change; set horizon_s=null")
    if window is not None and cfg.workload.get("phases"):
        raise ConfigError(f"trace_window does not apply to the phased workload {cfg.workload.name!r}: its phases "
                          "name their own trace parts")
    if (cfg.get("rate_rps") is not None or cfg.get("load_fraction") is not None) and window is None:
        raise ConfigError("rate_rps and load_fraction need trace_window.duration_s: the part of the trace whose requests "
                          "it re-times (e.g. trace_window.duration_s=600 horizon_s=null)")


def parse_experiment(cfg: DictConfig, planners: bool = True) -> ExperimentInputs:
    """Every input of cfg in one pass; the first problem is one ConfigError (or a DataError for a data file) naming
    the key or file and what is valid."""
    check_top_level(cfg)
    cluster, cascade = parse_cluster(cfg), parse_cascade(cfg)
    workload = workload_config_from_dict(container(cfg.workload))
    sim = sim_config_from_dict(container(cfg.sim))
    split_spec(cfg)
    seeds = tuple(run_seeds(cfg))
    faults = faults_from_config(container(cfg.get("faults")), cluster)
    replan, online = parse_replan(cfg)
    window = trace_window(cfg)
    check_workload_data(workload, cascade=cascade,
                        **({} if window is None else {"window": {"start_s": window[0], "end_s": window[1]}}))
    chosen: tuple = ()
    if planners:
        from planners.base import get_planner

        settings = dict(container(cfg.planner) or {})
        chosen = tuple((name, get_planner(name, config_dirs=config_dirs(cfg), **(s or {})))
                       for name, s in settings.items())
        if replan.planner is not None:
            get_planner(replan.planner, config_dirs=config_dirs(cfg), **replan.planner_settings)
    return ExperimentInputs(cluster, cascade, workload, sim, chosen, seeds, config_dirs(cfg), faults, replan, online)
