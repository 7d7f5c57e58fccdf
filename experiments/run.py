"""Main job: plan the scenario with every configured planner, simulate each plan, print a table, write summary.json and a figure."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sim.cli import exit_on_user_error
from sim.errors import ConfigError
from experiments.config import register_configs
from experiments.online import (build_controller, check_online_config, gear_controller, online_entries, online_summary,
                                planner_of, planning_scenario, write_timeseries)
from experiments.scenario import Scenario, build_scenario, make_plan
from sim.paths import CONF_DIR

register_configs()


def simulate_plan(plan, scenario: Scenario, workload=None, seed: int | None = None, controller=None):
    from sim.simulator import simulate

    cfg = scenario.sim_cfg
    overrides = plan.estimates.get("sim_overrides") or {}
    if overrides:
        cfg = replace(cfg, **overrides)
    return simulate(plan, scenario.cascade, scenario.cluster, workload or scenario.workload, cfg,
                    seed=scenario.seed if seed is None else seed, controller=controller)


def throughput_rps(plan, scenario: Scenario, tcfg: DictConfig) -> float:
    """Highest arrival rate (requests/s) at which the plan keeps the attainment target within tcfg.slo_scale,
    by bisection on a rate factor applied to the first tcfg.horizon_s seconds of the scenario's workload."""
    from sim.metrics import throughput_at_slo

    base = scenario.workload.window(float(scenario.workload.arrival_s[0]),
                                    float(scenario.workload.arrival_s[0]) + float(tcfg.horizon_s))

    def run(rate_factor: float):
        w = base.scale_rate(rate_factor)  # CascadeServe's gears follow the measured rate of each factor
        return simulate_plan(plan, scenario, workload=w, controller=gear_controller(plan, w))

    factor = throughput_at_slo(run, float(tcfg.slo_scale), lo=float(tcfg.lo), hi=float(tcfg.hi),
                               iters=int(tcfg.iters), cascade=scenario.cascade, cluster=scenario.cluster,
                               engine=scenario.sim_cfg.engine)
    return float(factor * base.rate_rps)


def run_experiment(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Everything the main job does, importable (tests and other experiments call this)."""
    from sim.metrics import summarize

    scenario = build_scenario(cfg)
    check_online_config(cfg, scenario)
    planners = dict(OmegaConf.to_container(cfg.planner, resolve=True) or {})
    if not planners:
        raise ConfigError("no planner selected; choose at least one, e.g. planner=[cascadia]")
    chosen, planners = planners, online_entries(cfg, planners)  # + <name>_online runs when re-planning
    rows, summary = [], {"scenario": _scenario_meta(cfg, scenario), "planners": {}}
    bar = tqdm(total=len(planners), desc="planning + simulating", unit="planner",
               disable=not cfg.progress, file=sys.stderr)
    for name, settings in planners.items():
        bar.set_postfix_str(name)
        plan, plan_s = make_plan(planner_of(name, chosen), settings, planning_scenario(cfg, scenario),
                                 int(cfg.plan_sample_size))
        t0 = time.perf_counter()
        # faults, re-planning and CascadeServe's gears; None without
        controller = build_controller(cfg, scenario, planner_of(name, chosen), settings, plan, name, chosen)
        result = simulate_plan(plan, scenario, controller=controller)
        s = summarize(result, scenario.cascade, plan, cluster=scenario.cluster, engine=scenario.sim_cfg.engine)
        sim_s = time.perf_counter() - t0
        thr = throughput_rps(plan, scenario, cfg.throughput) if cfg.throughput.enabled else float("nan")
        record = {
            "planner": name, "slo_scale": s["slo_scale"], "throughput_rps": thr, "quality": s["quality"],
            "gpu_s_per_request": s["gpu_s_per_request"], "p95_latency_s": s["p95_latency_s"],
            "tier_share": s["tier_share"], "tier_gpus": list(plan.gpus_per_tier()), "plan_s": plan_s,
            "sim_s": sim_s, "dropped": s["dropped"], "completed_rps": s["completed_rps"],
            "thresholds": list(plan.thresholds), "plan": plan.describe(),
        }
        summary["planners"][name] = {**s, **record, **online_summary(result, scenario)}
        if controller is not None or cfg.faults or cfg.replan:
            write_timeseries(result, out_dir, name)
        result.requests.to_csv(out_dir / f"requests_{name}.csv.gz", index=False)
        rows.append(record)
        bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    table.to_csv(out_dir / "table.csv", index=False)
    written = [out_dir / "summary.json", out_dir / "table.csv"]
    if cfg.figure:
        from experiments.figures.main_job import plot_main_job

        written.append(plot_main_job(table, out_dir / "main_job.png", title=_title(cfg, scenario)))
    print(_format_table(table))
    print("\nwrote " + ", ".join(map(str, written)))
    return summary


def _title(cfg: DictConfig, sc: Scenario) -> str:
    return (f"{sc.cascade.name} on {sc.cluster.num_gpus} x {sc.cluster.gpu.name}, {cfg.workload.name} x"
            f"{cfg.rate_scale:g} rate, q_min {sc.q_min:g}")


def _scenario_meta(cfg: DictConfig, sc: Scenario) -> dict:
    return {"name": cfg.name, "cascade": sc.cascade.model_names, "cluster": sc.cluster.name,
            "num_gpus": sc.cluster.num_gpus, "workload": cfg.workload.name, "requests": sc.workload.num_requests,
            "rate_rps": sc.workload.rate_rps, "rate_scale": cfg.rate_scale, "q_min": sc.q_min,
            "q_min_level": cfg.q_min_level if cfg.q_min is None else None, "seed": sc.seed,
            "throughput_slo_scale": cfg.throughput.slo_scale, "config": OmegaConf.to_container(cfg, resolve=True)}


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
    cols = ["planner", "slo_scale", "throughput_rps", "quality", "gpu_s_per_request", "p95_latency_s",
            "tier_share", "tier_gpus", "plan_s"]
    return t[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}")


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(HydraConfig.get().runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_guarded(cfg, out_dir)


@exit_on_user_error
def run_guarded(cfg: DictConfig, out_dir: Path) -> None:
    run_experiment(cfg, out_dir)


@exit_on_user_error
def validate_overrides(argv: list[str]) -> None:
    """Compose the config once with the compose API so a bad override fails as one line with exit 2
    (Hydra's own handler prints several lines and exits 1)."""
    from hydra import compose, initialize_config_dir

    if any(a in ("-m", "--multirun") for a in argv):
        return  # sweeps are validated per job
    overrides = [a for a in argv if not a.startswith("-") and "=" in a and not a.startswith("hydra")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose(config_name="config", overrides=overrides)
        except (ValueError, TypeError) as exc:
            # Hydra raises bare ValueError/TypeError for a number, list or dict given as a group option
            # (cluster=0, cluster=[1,2]).
            from sim.errors import ConfigError

            raise ConfigError(f"invalid override in {overrides}: {exc}") from None
    from experiments.scenario import check_top_level

    check_top_level(cfg)


def main() -> None:
    validate_overrides(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
