"""The main job's logic, importable: plan the scenario with every configured planner over the protocol's seeds,
simulate each plan, and write summary.json, table.csv, the per-request tables and the figure (experiments.run only
launches it)."""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from experiments.online import (build_controller, check_online_config, gear_controller, online_entries, online_summary,
                                planner_of, planning_scenario, replans, write_timeseries)
from experiments.progress import in_sweep, report_done
from experiments.protocol import (SEED_METRICS, SeedSplit, attainment_shares, combine_seeds,
                                  format_mean_ci, run_seeds, seed_split, split_meta, throughput_cap_rps,
                                  versus_reference)
from experiments.scenario import Scenario, make_plan
from experiments.stats import at_cap
from planners.base import colocated_settings
from planners.routellm import router_report
from sim.common.errors import ConfigError, UserError
from sim.common.io import claim_run_dir, mark_complete, mark_failed, write_json, write_table

TABLE_KEYS = ["planner", *SEED_METRICS, *(f"{k}_ci95" for k in SEED_METRICS), "throughput_lower_bound",
              "throughput_cap_rps", "tier_share", "tier_gpus", "plan_s"]


def simulate_plan(plan, scenario: Scenario, workload=None, seed: int | None = None, controller=None,
                  slo_target: float | None = None):
    """Simulate the plan on the scenario (or the given workload). slo_target: the run only has to tell whether
    it meets that SLO scale, so it may stop early with sim.runtime.slo_stop.SloMissed (sim.metrics.slo_stop)."""
    from sim.metrics import slo_stop
    from sim.simulator import simulate

    cfg = scenario.sim_cfg
    overrides = plan.estimates.get("sim_overrides") or {}
    if overrides:
        cfg = replace(cfg, **overrides)
    workload = workload or scenario.workload
    stop = None
    if slo_target is not None:
        stop = slo_stop(workload, slo_target, scenario.cascade, scenario.cluster, cfg, scenario.sim_cfg.engine)
    return simulate(plan, scenario.cascade, scenario.cluster, workload, cfg,
                    seed=scenario.seed if seed is None else seed, controller=controller, slo_stop=stop)


def throughput_rps(plan, scenario: Scenario, tcfg: DictConfig, cache=None, replan: tuple | None = None,
                   hint_rps: float | None = None, trace: list | None = None) -> float:
    """Highest arrival rate (requests/s) at which the plan keeps the attainment target within tcfg.slo_scale,
    by bisection on a rate factor applied to the first tcfg.horizon_s seconds of the scenario's workload.
    cache (experiments.sim_cache.ThroughputCache): a bisection already made on equal inputs is reused (a hinted
    search also takes the plain bisection of the same plan, or a search of it from another hint, when only that one
    was made).
    hint_rps: a throughput the answer is expected near (the same planner's on an earlier seed): the search starts
    there on the bisection's own grid (sim.metrics.throughput_at_slo's hint), the same answer when the verdict is
    monotone in the rate, in fewer runs. trace: receives (rate factor, verdict) per run made.

    replan = (planner, settings, planning scenario, sample size): at every rate factor the planner plans anew on its
    planning split re-timed by the same factor (throughput.replan_per_rate), instead of keeping `plan` fixed (never
    cached: the plans differ per factor)."""
    from sim.metrics import throughput_at_slo

    base = scenario.workload.window(float(scenario.workload.arrival_s[0]),
                                    float(scenario.workload.arrival_s[0]) + float(tcfg.horizon_s))

    def run(rate_factor: float):
        w = base.scale_rate(rate_factor)  # CascadeServe's gears follow the measured rate of each factor
        p = plan
        if replan is not None:
            planner, settings, seen, sample = replan
            p, _ = make_plan(planner, settings, replace(seen, workload=seen.workload.scale_rate(rate_factor)), sample)
        return simulate_plan(p, scenario, workload=w, controller=gear_controller(p, w),
                             slo_target=float(tcfg.slo_scale))

    hint = None
    if hint_rps is not None and replan is None and np.isfinite(hint_rps) and base.rate_rps > 0:
        hint = float(hint_rps) / base.rate_rps
    key = any_key = None
    if cache is not None and replan is None:
        from experiments.sim_cache import throughput_key
        from sim.metrics import rate_grid_index

        settings = OmegaConf.to_container(tcfg, resolve=True) if isinstance(tcfg, DictConfig) else dict(tcfg)
        plain_key = throughput_key(plan, scenario, settings)
        key = any_key = plain_key
        if hint is not None:  # the search's start is one of its inputs (its answer differs only if not monotone)
            any_key = throughput_key(plan, scenario, {**settings, "hint_grid_index": "any"})
            settings["hint_grid_index"] = rate_grid_index(hint, float(tcfg.lo), float(tcfg.hi), int(tcfg.iters))
            key = throughput_key(plan, scenario, settings)
        # else the plain bisection of this plan made earlier (e.g. an unhinted first seed at a lower quality level
        # whose plan did not change), else a search of it from another hint (another planner arriving at the same
        # plan): the answer this search finds under a monotone verdict
        for k in dict.fromkeys((key, plain_key, any_key)):
            factor = cache.get(k)
            if factor is not None:
                return float(factor * base.rate_rps)
    trace = [] if trace is None else trace
    factor = throughput_at_slo(run, float(tcfg.slo_scale), lo=float(tcfg.lo), hi=float(tcfg.hi),
                               iters=int(tcfg.iters), cascade=scenario.cascade, cluster=scenario.cluster,
                               engine=scenario.sim_cfg.engine, hint=hint, trace=trace)
    if key is not None:
        cache.put(key, factor, trace)
        if any_key != key:  # found by a later search of the same plan from another hint (no runs of its own)
            cache.put(any_key, factor)
    return float(factor * base.rate_rps)


def saturation(requests: pd.DataFrame, plan) -> str:
    """Why the run looks saturated (arrivals outpace service, so the queue grows with the run's length and its SLO
    scale says more about the horizon than about the plan), or "" when it does not. Measured: the time a request
    spends in the system by Little's law, W = N / rate (N: requests arrived and not finished; rate: arrivals over
    the preceding quarter of them), at the last arrival against half way through the arrivals: a stable queue keeps W
    level, a saturated one grows it; over 1.5x (and 10 more requests waiting) is called saturated, once the first
    half of the arrivals lasted at least twice the first quarter's median latency (before that the queue is still
    filling from empty). Estimated: the
    planner's own estimate says its deployment cannot carry the load."""
    why = []
    arrival = np.sort(requests["arrival_s"].to_numpy())
    finished = requests["completion_s"].to_numpy()
    done = np.sort(finished[np.isfinite(finished)])
    n = arrival.size
    if n >= 40:
        w, waiting = [], []
        for a, b in ((n // 4, n // 2), (3 * n // 4, n - 1)):
            rate = (b - a) / max(arrival[b] - arrival[a], 1e-9)
            waiting.append(int(b + 1 - np.searchsorted(done, arrival[b], "right")))
            w.append(waiting[-1] / rate)
        order = np.argsort(requests["arrival_s"].to_numpy(), kind="stable")
        early = np.nanmedian((finished - requests["arrival_s"].to_numpy())[order[: n // 4]])
        warmed_up = arrival[n // 2] - arrival[0] >= 2 * early  # a queue still filling from empty is no saturation
        if warmed_up and w[1] > 1.5 * w[0] and waiting[1] > waiting[0] + 10:
            why.append(f"the queue grows: a request spends about {w[0]:.3g} s in the system half way through the "
                       f"arrivals and {w[1]:.3g} s at the last (Little's law; {waiting[0]} and {waiting[1]} waiting)")
    if plan.estimates.get("saturated"):
        why.append("the planner's estimate says the deployment cannot carry the planned load")
    return "; ".join(why)


def run_experiment(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Everything the main job does, importable (tests and other experiments call this). Every planner runs over
    the protocol's seeds (experiments.protocol): planned on each seed's planning split, scored on its test split.
    out_dir must be new or empty (sim.common.io.claim_run_dir): one folder, one run."""
    claim_run_dir(out_dir)  # RUNNING until every output is written: aggregate skips runs that still hold it
    try:
        return _run_experiment(cfg, out_dir)
    except UserError:
        mark_failed(out_dir)  # a refused input is not an interrupted run
        raise


def _run_experiment(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    splits = [seed_split(cfg, seed) for seed in run_seeds(cfg)]
    scenario = splits[0].test
    check_online_config(cfg, scenario)
    planners = dict(OmegaConf.to_container(cfg.planner, resolve=True) or {})
    if not planners:
        raise ConfigError("no planner selected; choose at least one, e.g. planner=[cascadia]")
    chosen, planners = planners, online_entries(cfg, planners)  # + <name>_online runs when re-planning
    warnings: list[str] = []
    rows, summary = [], {"scenario": {**_scenario_meta(cfg, scenario), "split": split_meta(splits[0]),
                                      "seeds": [sp.seed for sp in splits]}, "planners": {}}
    from experiments.sim_cache import simulation_cache, sweep_cache

    cache = sweep_cache()  # bisections on equal inputs, shared by the planners, seeds and the sweep's jobs
    runs_cache = simulation_cache(cache)  # whole test-split and in-sample runs on equal inputs (make results only)
    bar = tqdm(total=len(planners) * len(splits), desc="planning + simulating", unit="run",
               disable=not cfg.progress or in_sweep(), file=sys.stderr)
    for name, settings in planners.items():
        runs = []
        for k, split in enumerate(splits):
            bar.set_postfix_str(f"{name} seed {split.seed}")
            # the previous seed's throughput starts this seed's search (the same answer in fewer runs); the first
            # seed's has no hint: the same planner's answer at the nearest lower quality level was measured as a
            # start too (docs/performance.md, sweep21) and saved no runs (739 against 737 on slo_throughput)
            hint = runs[-1]["throughput_rps"] if runs else None
            runs.append(run_one(cfg, name, settings, split, out_dir, write_files=k == 0, chosen=chosen,
                                throughput_cache=cache, throughput_hint_rps=hint, simulation_cache=runs_cache))
            bar.update(1)
        summary["planners"][name] = combine_seeds(runs)
        saturated = {r["seed"]: r["saturated"] for r in runs if r["saturated"]}
        summary["planners"][name]["saturated_seeds"] = saturated  # seed -> why; empty: none
        if saturated:
            seed, why = next(iter(saturated.items()))
            warnings.append(f"warning: {name} looks saturated in {len(saturated)} of {len(runs)} seed(s) (seed "
                            f"{seed}: {why}); its SLO scale ({summary['planners'][name]['slo_scale']:.3g}) grows with "
                            "the horizon: lower the load (rate_scale) or give it more GPUs before comparing it")
        rows.append({key: summary["planners"][name].get(key) for key in TABLE_KEYS})
    bar.close()
    summary["versus_cascadia"] = versus_reference(summary["planners"])
    summary["warnings"] = warnings
    table = pd.DataFrame(rows)
    write_json(summary, out_dir / "summary.json", indent=2, default=_json_default)
    write_table(table, out_dir / "table.csv")
    written = [out_dir / "summary.json", out_dir / "table.csv"]
    if cfg.figure:
        from experiments.figures.main_job import plot_main_job

        written.append(plot_main_job(table, out_dir / "main_job.png", title=_title(cfg, scenario),
                                     throughput_cap_rps=throughput_cap_rps(scenario, cfg.throughput)))
    mark_complete(out_dir)
    report_done(_format_table(table), written)
    for line in warnings:  # after the table, where the reader is
        print(line, file=sys.stderr)
    return summary


def run_one(cfg: DictConfig, name: str, settings: dict, split: SeedSplit, out_dir: Path, write_files: bool,
            chosen: dict | None = None, throughput_cache=None, throughput_hint_rps: float | None = None,
            simulation_cache=None) -> dict:
    """One planner on one seed: plan on the planning split, simulate on the test split (and, for
    slo_scale_in_sample, on the planning split itself), throughput on the test split (its search started at
    throughput_hint_rps where given). simulation_cache (experiments.sim_cache.SimulationCache): runs without a
    controller already made on equal inputs are reused."""
    from sim.metrics import summarize

    scenario = split.test
    seen = planning_scenario(cfg, split.plan)
    chosen = {name: settings} if chosen is None else chosen
    planner = planner_of(name, chosen)  # <name>_online entries re-plan with <name>
    if replans(cfg, name, chosen):  # online re-planning reconfigures colocated tiers only (planners.base)
        settings = colocated_settings(planner, settings)
    plan, plan_s = make_plan(planner, settings, seen, int(cfg.plan_sample_size))
    t0 = time.perf_counter()
    # faults, re-planning and CascadeServe's gears; None without
    controller = build_controller(cfg, scenario, planner, settings, plan, name, chosen)
    result, run_key = _simulate_cached(simulation_cache, plan, scenario, controller)
    s = summarize(result, scenario.cascade, plan, cluster=scenario.cluster, engine=scenario.sim_cfg.engine)
    sim_s = time.perf_counter() - t0
    if not cfg.get("in_sample", True):
        s_in = {"slo_scale": float("nan"), "quality": float("nan")}
    elif seen.workload is scenario.workload and controller is None:
        s_in = s  # no split and nothing online: the plan's own workload is the test workload
    else:
        s_in = summarize(_simulate_cached(simulation_cache, plan, seen, gear_controller(plan, seen.workload))[0],
                         seen.cascade, plan, cluster=seen.cluster, engine=seen.sim_cfg.engine)
    thr = (throughput_rps(plan, scenario, cfg.throughput, throughput_cache, hint_rps=throughput_hint_rps)
           if cfg.throughput.enabled else float("nan"))
    thr_replan = float("nan")
    if cfg.throughput.enabled and cfg.throughput.get("replan_per_rate"):
        thr_replan = throughput_rps(plan, scenario, cfg.throughput,
                                    replan=(planner, settings, seen, int(cfg.plan_sample_size)))
    cap = throughput_cap_rps(scenario, cfg.throughput) if cfg.throughput.enabled else float("nan")
    record = {
        "planner": name, "seed": split.seed, "slo_scale": s["slo_scale"], "slo_scale_in_sample": s_in["slo_scale"],
        "throughput_rps": thr, "throughput_replan_rps": thr_replan, "throughput_cap_rps": cap,
        "throughput_at_cap": at_cap(thr, cap), "quality": s["quality"], "quality_in_sample": s_in["quality"],
        "gpu_s_per_request": s["gpu_s_per_request"], "p95_latency_s": s["p95_latency_s"],
        "tier_share": s["tier_share"], "tier_gpus": list(plan.gpus_per_tier()), "plan_s": plan_s,
        "sim_s": sim_s, "dropped": s["dropped"], "completed_rps": s["completed_rps"],
        "saturated": saturation(result.requests, plan),
        "thresholds": list(plan.thresholds), "plan": plan.describe(),
        "tier_deployment": [t.deployment() for t in plan.tiers],  # colocated | P<n>:D<m> | none
    }
    record.update(attainment_curve(result, scenario))
    if write_files:
        if cfg.faults or cfg.replan:  # not for gears alone: their switches are counted in the summary
            write_timeseries(result, out_dir, name)
        if run_key is None:
            write_table(result.requests, out_dir / f"requests_{name}.csv.gz")
        else:  # the same run's table, written once per run however many planners made its plan
            simulation_cache.write_requests(run_key, result.requests, out_dir / f"requests_{name}.csv.gz")
    return {**s, **record, **online_summary(result, scenario), **router_report(plan, scenario.workload)}


def _simulate_cached(cache, plan, scenario: Scenario, controller):
    """(simulate_plan's result, its simulation_key), the result reused from cache on equal inputs when the run has no
    controller (a controller's faults, re-planning or gears are not in the key); the key is None when not cached."""
    if cache is None or controller is not None:
        return simulate_plan(plan, scenario, controller=controller), None
    from experiments.sim_cache import simulation_key

    key = simulation_key(plan, scenario)
    return cache.run(key, plan, lambda: simulate_plan(plan, scenario)), key


def attainment_curve(result, scenario: Scenario) -> dict:
    """attain_at_<s>: the share of the run's requests finishing within s x ref(r), for each s of ATTAINMENT_SCALES."""
    from sim.metrics import request_slo_ratios

    ref, _ = request_slo_ratios(result, scenario.cascade, scenario.cluster, scenario.sim_cfg.engine)
    lat = result.requests["latency_s"].to_numpy()
    ratio = np.where(np.isfinite(lat), lat / ref, np.inf)
    return attainment_shares(ratio)


def _title(cfg: DictConfig, sc: Scenario) -> str:
    return (f"{sc.cascade.name} on {sc.cluster.num_gpus} x {sc.cluster.gpu.name}, {cfg.workload.name} x"
            f"{sc.extras.get('rate_factor', cfg.rate_scale):.3g} rate, q_min {sc.q_min:.1f}")


def _scenario_meta(cfg: DictConfig, sc: Scenario) -> dict:
    return {"name": cfg.name, "cascade": sc.cascade.model_names, "cluster": sc.cluster.name,
            "num_gpus": sc.cluster.num_gpus, "workload": cfg.workload.name, "requests": sc.workload.num_requests,
            "rate_rps": sc.workload.rate_rps, "rate_scale": sc.extras.get("rate_factor", cfg.rate_scale),
            "rate_rps_target": cfg.get("rate_rps"), "load_fraction": cfg.get("load_fraction"), "trace_window": sc.extras.get("trace_window"), "q_min": sc.q_min,
            "q_min_level": cfg.q_min_level if cfg.q_min is None else None, "seed": sc.seed,
            "throughput_slo_scale": cfg.throughput.slo_scale, "reference_length": sc.sim_cfg.reference_length,
            "config": OmegaConf.to_container(cfg, resolve=True)}


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _format_table(table: pd.DataFrame) -> str:
    t = table.copy()
    t["tier_share"] = t["tier_share"].map(lambda v: "/".join(f"{100 * x:.0f}%" for x in v))
    t["tier_gpus"] = t["tier_gpus"].map(lambda v: "/".join(str(x) for x in v))
    for key in ("slo_scale", "slo_scale_in_sample", "throughput_rps", "quality"):
        bound = t["throughput_lower_bound"] if key == "throughput_rps" else [False] * len(t)
        t[key] = [format_mean_ci(m, ci, b) for m, ci, b in zip(t[key], t[f"{key}_ci95"], bound)]
    cols = ["planner", "slo_scale", "slo_scale_in_sample", "throughput_rps", "quality", "gpu_s_per_request",
            "p95_latency_s", "tier_share", "tier_gpus", "plan_s"]
    note = ("\n>=: at the throughput bisection's cap in some seed (the plan met the SLO at every rate tried): a lower "
            "bound" if t["throughput_lower_bound"].any() else "")
    return ("mean over seeds [95% bootstrap CI]; test split (in_sample: the plan on its own planning split)\n"
            + t[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}") + note)
