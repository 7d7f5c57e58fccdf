"""Online control in the main job: build the controller from cfg.faults and cfg.replan, and report what it did.

experiments.run calls planning_scenario (what the initial plan may see), build_controller (None when there is
nothing to control, so ordinary runs are untouched) and online_summary / write_timeseries after each run.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from sim.errors import ConfigError
from sim.io import write_table
from sim.faults import faults_from_config
from sim.online import ReplanConfig, Replanner, replan_config_from_dict

WINDOW_S = 60.0  # width of the time-series windows (by arrival time)


def _container(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def replan_config(cfg: DictConfig) -> ReplanConfig:
    return replan_config_from_dict(_container(cfg.get("replan")) or {})


def check_online_config(cfg: DictConfig, scenario) -> None:
    """Validate cfg.faults and cfg.replan before any planning (one clear error each)."""
    faults_from_config(_container(cfg.get("faults")), scenario.cluster)
    rc = replan_config(cfg)
    if rc.planner is not None:
        from planners.base import get_planner

        get_planner(rc.planner, **rc.planner_settings)


def planning_scenario(cfg: DictConfig, scenario):
    """The scenario the initial plan is made on: with replan.plan_window_s, only the first plan_window_s seconds
    of the workload (what a system knows when it starts), with q_min placed on that window."""
    window = replan_config(cfg).plan_window_s
    if window is None:
        return scenario
    from experiments.scenario import resolve_q_min

    w = scenario.workload
    first = float(w.arrival_s[0])
    head = w.take(np.nonzero(w.arrival_s < first + window)[0])
    if head.num_requests < 2:
        raise ConfigError(f"replan.plan_window_s {window:g} holds {head.num_requests} request(s); the initial plan "
                          "needs at least 2, so raise it")
    return replace(scenario, workload=head, q_min=resolve_q_min(cfg, head))


def q_min_rule(cfg: DictConfig):
    """q_min of a re-plan: the same q_min_level on the new sample (absolute q_min capped at what it can attain)."""
    from planners.routing import best_attainable_quality

    def q_min_for(workload) -> float:
        best, _ = best_attainable_quality(workload.scores)
        if cfg.q_min is not None:
            return min(float(cfg.q_min), best)
        return min(workload.quality_at_level(float(cfg.q_min_level)), best)

    return q_min_for


def build_controller(cfg: DictConfig, scenario, planner_name: str, planner_settings: dict | None = None):
    """The OnlineController for this run's faults and re-planning, or None when there is neither."""
    from sim.controller import OnlineController

    faults = faults_from_config(_container(cfg.get("faults")), scenario.cluster)
    rc = replan_config(cfg)
    if not faults and not rc.enabled:
        return None
    replanner = None
    if rc.enabled:
        if rc.planner is None:
            rc = replace(rc, planner=planner_name, planner_settings={**(planner_settings or {}), **rc.planner_settings})
        # The whole planned window, not planning_sample's re-timed subset: drift is judged against its true rate.
        reference = planning_scenario(cfg, scenario).workload
        replanner = Replanner(rc, reference, q_min_rule(cfg), engine=scenario.sim_cfg.engine,
                              gpu_memory_utilization=scenario.sim_cfg.gpu_memory_utilization)
    return OnlineController(faults, replanner, scenario.workload, rc)


def online_summary(result) -> dict:
    """Faults, controller decisions and their effect: requests handed back, drops by reason, latency before and
    after the first fault (by arrival time)."""
    meta = result.meta
    if "controller_events" not in meta:
        return {}
    df = result.requests
    events = meta["controller_events"]
    out = {"faults": meta["faults"], "controller_events": events, "replans": meta["replans"],
           "drop_reasons": {str(k): int(v) for k, v in df.loc[df.status != "completed", "drop_reason"]
                            .value_counts().items()}}
    fault_times = [e["time_s"] for e in events if e["event"] in ("gpu_down", "node_down", "straggler",
                                                                   "link_degraded")]
    if fault_times:
        t0 = min(fault_times)
        done = df.status == "completed"
        before, after = done & (df.arrival_s < t0), done & (df.arrival_s >= t0)
        out["fault_effect"] = {
            "first_fault_s": t0,
            "p95_latency_before_s": _p95(df.latency_s[before]), "p95_latency_after_s": _p95(df.latency_s[after]),
            "mean_latency_before_s": _mean(df.latency_s[before]), "mean_latency_after_s": _mean(df.latency_s[after]),
            "in_flight_at_fault": int(((df.arrival_s < t0) & ~(df.completion_s < t0)).sum()),
            "completed": int(done.sum()), "dropped": int((~done).sum()), "requests": int(len(df)),
        }
    return out


def _p95(s: pd.Series) -> float:
    return float(s.quantile(0.95)) if len(s) else float("nan")


def _mean(s: pd.Series) -> float:
    return float(s.mean()) if len(s) else float("nan")


def timeseries(result, window_s: float = WINDOW_S) -> pd.DataFrame:
    """Tidy per-window table by arrival time: arrivals, completed, dropped, mean and p95 latency, final tiers."""
    df = result.requests
    w = np.floor(df.arrival_s.to_numpy() / window_s).astype(int)
    rows = []
    for k in np.unique(w):
        part = df[w == k]
        done = part.status == "completed"
        rows.append({"window_start_s": k * window_s, "arrivals": len(part), "completed": int(done.sum()),
                     "dropped": int((~done).sum()), "mean_latency_s": _mean(part.latency_s[done]),
                     "p95_latency_s": _p95(part.latency_s[done]),
                     "mean_final_tier": float(part.final_tier[done].mean()) if done.any() else float("nan")})
    return pd.DataFrame(rows)


def write_timeseries(result, out_dir: Path, planner: str) -> Path:
    path = Path(out_dir) / f"timeseries_{planner}.csv"
    write_table(timeseries(result), path)
    return path
