"""Online control in the main job: build the controller from cfg.faults, cfg.replan and CascadeServe's gears, and
report what it did.

experiments.run calls online_entries (a planner with re-planning on also runs as <name>_online beside its static
plan when replan.keep_static), planning_scenario (what the initial plan may see), build_controller (None when
there is nothing to control, so ordinary runs are untouched), gear_controller (a fresh CascadeServe gear switcher
for every simulated rate of the throughput bisection) and online_summary / write_timeseries after each run.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from online.gears import GearPolicy
from experiments.inputs import parse_replan
from online.replan import DriftReplanPolicy, ReplanConfig
from sim.common.errors import ConfigError
from sim.common.io import write_table
from sim.spec.faults import faults_from_config

WINDOW_S = 60.0  # width of the time-series windows (by arrival time)
ONLINE_SUFFIX = "_online"


def _container(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def replan_config(cfg: DictConfig) -> ReplanConfig:
    return parse_replan(cfg)[0]


def check_online_config(cfg: DictConfig, scenario) -> None:
    """Validate cfg.faults and cfg.replan before any planning (one clear error each; the parse step's own checks,
    experiments.inputs, for callers that start from a scenario)."""
    faults_from_config(_container(cfg.get("faults")), scenario.cluster)
    rc, _ = parse_replan(cfg)
    if rc.planner is not None:
        from planners.base import get_planner

        get_planner(rc.planner, **rc.planner_settings)


def online_entries(cfg: DictConfig, planners: dict) -> dict:
    """The runs of the job: every planner, plus <name>_online for each planner that re-plans (replan.enabled and
    in replan.planners, null = all) when replan.keep_static is true; without keep_static the planner itself
    re-plans."""
    raw = _container(cfg.get("replan")) or {}
    if not raw.get("enabled"):
        return dict(planners)
    chosen = raw.get("planners")
    out = {}
    for name, settings in planners.items():
        out[name] = settings
        if raw.get("keep_static") and (chosen is None or name in chosen):
            out[name + ONLINE_SUFFIX] = settings
    return out


def planner_of(entry: str, planners: dict) -> str:
    """The planner name of a run entry (<name>_online -> <name>)."""
    if entry not in planners and entry.endswith(ONLINE_SUFFIX):
        return entry[:-len(ONLINE_SUFFIX)]
    return entry


def replans(cfg: DictConfig, entry: str, planners: dict) -> bool:
    raw = _container(cfg.get("replan")) or {}
    if not raw.get("enabled"):
        return False
    if raw.get("keep_static"):
        return entry.endswith(ONLINE_SUFFIX) and entry not in planners
    chosen = raw.get("planners")
    return chosen is None or entry in chosen


def planning_scenario(cfg: DictConfig, scenario):
    """The scenario the initial plan is made on: with replan.plan_window_s, only the first plan_window_s seconds
    of the workload (what a system knows when it starts), with q_min resolved on that window."""
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


def gear_controller(plan, workload, faults=(), transition=None):
    """A fresh OnlineController switching CascadeServe's gears (None for any other plan or switching off)."""
    from sim.control.controller import OnlineController

    online = plan.estimates.get("gear_switching") or {}
    gears = plan.estimates.get("gears")
    if not gears or not online.get("switch_gears"):
        return None
    current = min(range(len(gears)), key=lambda i: abs(gears[i].get("level", 1.0) - 1.0))
    policy = GearPolicy(list(gears), sorted(range(len(gears)), key=lambda i: gears[i]["rate_rps"]).index(current),
                        float(online["gear_interval_s"]), float(online["gear_min_dwell_s"]))
    return OnlineController(faults, policy, workload, transition)


def build_controller(cfg: DictConfig, scenario, planner_name: str, planner_settings: dict | None = None,
                     plan=None, entry: str | None = None, planners: dict | None = None):
    """The OnlineController for this run's faults, re-planning and gears, or None when there is none of them."""
    from sim.control.controller import OnlineController

    faults = faults_from_config(_container(cfg.get("faults")), scenario.cluster)
    rc = replan_config(cfg)
    entry = entry or planner_name
    on = replans(cfg, entry, planners or {planner_name: planner_settings}) if rc.enabled else False
    if plan is not None and not on:
        gears = gear_controller(plan, scenario.workload, faults, rc.transition)
        if gears is not None:
            return gears
    if not faults and not on:
        return None
    policy = None
    if on:
        if rc.planner is None:
            rc = replace(rc, planner=planner_name, planner_settings={**(planner_settings or {}), **rc.planner_settings})
        # The whole planned window, not planning_sample's re-timed subset: drift is judged against its true rate.
        planning = planning_scenario(cfg, scenario)
        policy = DriftReplanPolicy(rc, planning.workload, planning.q_min,
                                   None if cfg.q_min is not None else float(cfg.q_min_level),
                                   engine=scenario.sim_cfg.engine,
                                   gpu_memory_utilization=scenario.sim_cfg.gpu_memory_utilization)
    return OnlineController(faults, policy, scenario.workload, rc.transition)


def phase_summary(result, scenario) -> list[dict]:
    """Per drift phase (Workload.meta["phases"], by arrival time): SLO scale, quality with the half-width of its
    95% CI over the phase's requests, p95 latency, completed and dropped requests."""
    from sim.metrics import request_slo_ratios, slo_scale

    phases = scenario.workload.meta.get("phases") or []
    if not phases:
        return []
    df = result.requests
    ref, _ = request_slo_ratios(result, scenario.cascade, scenario.cluster, scenario.sim_cfg.engine)
    att = float(scenario.sim_cfg.attainment)
    lat = df.latency_s.to_numpy(dtype=float)
    done = (df.status == "completed").to_numpy()
    out = []
    for p in phases:
        m = ((df.arrival_s >= p["start_s"]) & (df.arrival_s < p["end_s"])).to_numpy()
        scores = df.final_score.to_numpy(dtype=float)[m & done]
        half = float(1.96 * scores.std(ddof=1) / np.sqrt(scores.size)) if scores.size > 1 else float("nan")
        out.append({"phase": p["workload"], "start_s": p["start_s"], "end_s": p["end_s"],
                    "slo_scale": slo_scale(np.where(done[m], lat[m], np.nan), ref[m], att) if m.any() else np.nan,
                    "quality": float(scores.mean()) if scores.size else float("nan"), "quality_ci95_half": half,
                    "p95_latency_s": _p95(df.latency_s[m & done]), "requests": int(m.sum()),
                    "dropped": int((m & ~done).sum())})
    return out


def online_summary(result, scenario=None) -> dict:
    """Faults, controller decisions and their effect: requests handed back, drops by reason, latency before and
    after the first fault (by arrival time); per drift phase, phase_summary."""
    meta = result.meta
    phases = phase_summary(result, scenario) if scenario is not None else []
    if "controller_events" not in meta:
        return {"phases": phases} if phases else {}
    df = result.requests
    events = meta["controller_events"]
    out = {"faults": meta["faults"], "controller_events": events, "replans": meta["replans"],
           "gear_switches": meta.get("gear_switches", 0), "policy": meta.get("policy"),
           "drop_reasons": {str(k): int(v) for k, v in df.loc[df.status != "completed", "drop_reason"]
                            .value_counts().items()}}
    if phases:
        out["phases"] = phases
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
