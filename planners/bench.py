"""Planner benchmark: Cascadia's run time for 32/80/1024 H100s, its gap to brute force on small instances, and the
estimator's p95 error against the simulator. `python -m planners.bench` prints a table, then one JSON line."""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from sim.spec.cascade import CascadeSpec, cascade_from_dict
from sim.common.cli import exit_on_user_error
from sim.spec.hardware import ClusterSpec, load_gpu
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR

from planners import plan_cache
from planners.base import get_planner
from planners.bruteforce import brute_force_objective, gap_pct
from planners.checker import check_plan
from planners.problem import PlanningProblem

# The paper's 3-tier cascade; DeepSeek-V3/R1 in FP8 as it is served (its BF16 weights need 17+ H100s).
SMALL3 = {"name": "small3", "tiers": [{"model": "llama3_8b"}, {"model": "codellama_34b"}, {"model": "llama3_70b"}]}
LLAMA2 = {"name": "llama3", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b"}]}
BASE_RATE_SCALE_32 = 4.0  # conversation trace x4 on 32 GPUs (~22 req/s); scaled with the GPU count


def h100_cluster(num_nodes: int, gpus_per_node: int = 8) -> ClusterSpec:
    return ClusterSpec(f"h100_{num_nodes}x{gpus_per_node}", load_gpu("h100_sxm"), num_nodes, gpus_per_node, 200.0, 5.0)


def deepseek_cascade() -> CascadeSpec:
    return cascade_from_dict(read_yaml(CONF_DIR / "cascade" / "deepseek3.yaml", "cascade file"))


def conversation(cascade: CascadeSpec, rate_scale: float, duration_s: float, seed: int = 0):
    from sim.workload import build_workload

    return build_workload("conversation", cascade, seed=seed, rate_scale=rate_scale, window=(0.0, duration_s))


def plan_times(level: float, sizes=(32, 80, 1024), cpu: dict | None = None,
               disaggregation: str = "colocated") -> dict[str, float]:
    """Wall seconds per cluster size; `cpu`, if given, receives the CPU seconds of the same plans (on a shared
    machine the wall time carries the neighbours' load, the CPU time much less of it). disaggregation="best": the
    search that may also disaggregate a tier (planners.disagg), as experiment=disaggregation plans."""
    cascade = deepseek_cascade()
    out = {}
    for gpus in sizes:
        wl = conversation(cascade, BASE_RATE_SCALE_32 * gpus / 32, 600.0)
        problem = PlanningProblem(cascade, h100_cluster(gpus // 8), wl, wl.quality_at_level(level))
        planner = get_planner("cascadia", disaggregation=disaggregation)
        planner.plan(problem) if gpus == 32 else None  # warm the cost model's cache once, as a live planner would
        plan_cache.clear()  # but not the tables: the warm-up planned this very problem (planners.plan_cache)
        t0, c0 = time.perf_counter(), time.process_time()
        plan = planner.plan(problem)
        out[str(gpus)] = time.perf_counter() - t0
        if cpu is not None:
            cpu[str(gpus)] = time.process_time() - c0
        assert not check_plan(plan, cascade, problem.cluster)
        print(f"  {gpus:5d} GPUs  {out[str(gpus)]:6.2f} s  {wl.rate_rps:6.1f} req/s  rounds "
              f"{plan.solver_stats['rounds']}  J {plan.estimates['J']:.2f}  {plan.describe()[:140]}")
    return out


BRUTE_FORCE_CASES = ((LLAMA2, 8, 0.5), (LLAMA2, 8, 1.0), (SMALL3, 8, 0.4), (SMALL3, 8, 1.0), (SMALL3, 4, 0.2))


def brute_force_gaps(level: float, cases=BRUTE_FORCE_CASES) -> list[float]:
    gaps = []
    for spec, gpus, rate_scale in cases:
        cascade = cascade_from_dict(spec)
        wl = conversation(cascade, rate_scale, 600.0)
        problem = PlanningProblem(cascade, h100_cluster(1, gpus), wl, wl.quality_at_level(level))
        planner = get_planner("cascadia")
        plan = planner.plan(problem)
        j_bf, th, alloc = brute_force_objective(problem, planner)
        gaps.append(gap_pct(plan.estimates["J"], j_bf))
        print(f"  {spec['name']:7s} {gpus} GPUs {wl.rate_rps:5.2f} req/s  Cascadia J {plan.estimates['J']:8.3f}  "
              f"brute force J {j_bf:8.3f} (thresholds {th}, GPUs {alloc})  gap {gaps[-1]:.2f}%")
    return gaps


# Plans whose tiers the estimator is checked on: the planners, plus the single model forced onto a disaggregated
# deployment, so that disaggregated tiers are checked whether or not a planner chooses one at these loads.
ESTIMATOR_PLANS = (("cascadia", {}), ("cascadia_colocated", {}), ("cascadia_no_parallelism", {}),
                   ("single_model", {"deployment": "colocated"}), ("single_model", {"deployment": "disaggregated"}))


def estimator_errors(level: float, duration_s: float, disaggregated: list | None = None) -> list[float]:
    """|estimated - simulated| / simulated per-tier p95 latency, for loaded tiers of several plans; the errors of
    disaggregated tiers are also appended to `disaggregated`."""
    from sim.simulator import SimConfig, simulate

    cascade = deepseek_cascade()
    cluster = h100_cluster(4)
    errors = []
    for rate_scale in (1.0, 2.0, 4.0):
        wl = conversation(cascade, rate_scale, duration_s)
        problem = PlanningProblem(cascade, cluster, wl, wl.quality_at_level(level))
        for name, kw in ESTIMATOR_PLANS:
            plan = get_planner(name, **kw).plan(problem)
            if kw:
                name = f"{name}[{kw['deployment']}]"
            cfg = SimConfig(batching=plan.estimates.get("sim_overrides", {}).get("batching", "vllm"))
            res = simulate(plan, cascade, cluster, wl, cfg, seed=0).requests
            done = res[res["status"] == "completed"]
            if plan.estimates["saturated"]:  # no finite estimate to compare; show what the simulator saw
                print(f"  x{rate_scale:.0f} {name:24s} saturated by the estimator; simulated end-to-end p95 "
                      f"{np.quantile(done['latency_s'], 0.95):.1f} s (not in the median)")
                continue
            row = []
            for t, est in enumerate(plan.estimates["p95_tier_s"]):
                tier_lat = (done[f"queue_s_t{t}"] + done[f"prefill_s_t{t}"] + done[f"decode_s_t{t}"]).dropna()
                if tier_lat.size < 20 or est <= 0:
                    continue
                sim_p95 = float(np.quantile(tier_lat, 0.95))
                errors.append(abs(est - sim_p95) / sim_p95 * 100)
                dis = plan.tiers[t].disaggregated
                if dis and disaggregated is not None:
                    disaggregated.append(errors[-1])
                row.append(f"t{t}{'[' + plan.tiers[t].deployment() + ']' if dis else ''} est {est:6.1f} "
                           f"sim {sim_p95:6.1f} ({errors[-1]:.0f}%)")
            e2e = float(np.quantile(done["latency_s"], 0.95))
            print(f"  x{rate_scale:.0f} {name:24s} " + "; ".join(row) +
                  f"; end-to-end est {plan.estimates['p95_end_to_end_s']:.1f} sim {e2e:.1f}")
    return errors


@exit_on_user_error
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--level", type=float, default=0.7, help="q_min as a share of the way from z2* to z1*")
    ap.add_argument("--sim-duration-s", type=float, default=300.0, help="trace window simulated per plan")
    ap.add_argument("--skip-sim", action="store_true", help="leave the estimator error out (null)")
    args = ap.parse_args(argv)
    from sim.common.quick import announce, quick_mode

    sizes, cases = (32, 80, 1024), BRUTE_FORCE_CASES
    if quick_mode():
        sizes, cases, args.sim_duration_s = (32,), BRUTE_FORCE_CASES[:1], min(args.sim_duration_s, 60.0)
        announce("32 GPUs only, one brute-force case, 60 s simulated per plan")
    print("Cascadia plan time (3-tier DeepSeek cascade, conversation):")
    plan_cpu_s: dict[str, float] = {}
    plan_s = plan_times(args.level, sizes, plan_cpu_s)
    print("Cascadia plan time with the disaggregation search (disaggregation=best):")
    plan_best_cpu_s: dict[str, float] = {}
    plan_best_s = plan_times(args.level, sizes, plan_best_cpu_s, disaggregation="best")
    print("Brute force on small instances (same estimator, every threshold x every allocation):")
    gaps = brute_force_gaps(args.level, cases)
    err = err_dis = None
    if not args.skip_sim:
        print("Estimator vs simulator, per-tier p95 latency (32 H100s):")
        dis: list[float] = []
        errs = estimator_errors(args.level, args.sim_duration_s, dis)
        err = float(np.median(errs)) if errs else None
        err_dis = float(np.median(dis)) if dis else None
    print(json.dumps({"plan_s": {k: round(v, 3) for k, v in plan_s.items()},
                      "plan_cpu_s": {k: round(v, 3) for k, v in plan_cpu_s.items()},
                      "plan_disaggregation_s": {k: round(v, 3) for k, v in plan_best_s.items()},
                      "plan_disaggregation_cpu_s": {k: round(v, 3) for k, v in plan_best_cpu_s.items()},
                      "bruteforce_gap_pct": round(max(gaps), 3),
                      "estimator_p95_error_pct": None if err is None else round(err, 1),
                      "estimator_p95_error_disaggregated_pct": None if err_dis is None else round(err_dis, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
