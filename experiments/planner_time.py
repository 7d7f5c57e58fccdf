"""Planner run time against GPU count (the paper's planner scalability): Cascadia on the 3-tier cascade, load scaled with GPUs.

python -m experiments.planner_time [--gpus 8 16 32 ...] writes outputs/planner_time/<stamp>/planner_time.json (raw;
--raw-dir elsewhere) and results/planner_time.csv (tidy). The first plan in the process pays the cost model's cache fills; each size is
planned twice and both times are kept (cold_s, warm_s): a long-lived planner re-planning online sees warm_s. The
process planning cache (planners.plan_cache) is emptied before each plan, so neither reuses the other's tables."""
from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from sim.common.cli import exit_on_user_error
from sim.common.errors import ConfigError
from sim.common.io import prepare_output_dir, write_json, write_table
from sim.common.paths import PROJECT_ROOT

DEFAULT_GPUS = [8, 16, 32, 64, 80, 128, 256, 512, 1024]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from planners import plan_cache
    from planners.base import get_planner
    from planners.bench import BASE_RATE_SCALE_32, conversation, deepseek_cascade, h100_cluster
    from planners.checker import check_plan
    from planners.problem import PlanningProblem

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gpus", type=int, nargs="+", default=DEFAULT_GPUS, help="cluster sizes (multiples of 8)")
    ap.add_argument("--level", type=float, default=0.7, help="q_min level between smallest (0) and largest (1) model")
    ap.add_argument("--out", default=str(PROJECT_ROOT / "results" / "planner_time.csv"))
    ap.add_argument("--raw-dir", default=None, help="folder for planner_time.json (default: outputs/planner_time/<stamp>)")
    args = ap.parse_args(argv)
    from sim.common.quick import announce, quick_mode

    if quick_mode():
        args.gpus = [g for g in args.gpus if g <= 16] or args.gpus[:1]
        announce(f"cluster sizes {args.gpus} only")
    bad = [g for g in args.gpus if g <= 0 or g % 8]
    if bad:
        raise ConfigError(f"--gpus must be positive multiples of 8 (whole 8-GPU nodes), got {bad}")
    cascade = deepseek_cascade()
    rows = []
    for gpus in tqdm(args.gpus, desc="planning", unit="size"):
        wl = conversation(cascade, BASE_RATE_SCALE_32 * gpus / 32, 600.0)
        problem = PlanningProblem(cascade, h100_cluster(gpus // 8), wl, wl.quality_at_level(args.level))
        times = []
        for _ in range(2):
            planner = get_planner("cascadia")
            plan_cache.clear()  # both plans build their tables: warm_s is a warm cost model, not a reused plan
            t0 = time.perf_counter()
            plan = planner.plan(problem)
            times.append(time.perf_counter() - t0)
        problems = check_plan(plan, cascade, problem.cluster)
        if problems:
            raise RuntimeError(f"infeasible plan at {gpus} GPUs: {problems}")
        rows.append({"num_gpus": gpus, "rate_rps": wl.rate_rps, "cold_s": times[0], "warm_s": times[1],
                     "plan_s": min(times), "rounds": plan.solver_stats.get("rounds"),
                     "tier_gpus": "/".join(map(str, plan.gpus_per_tier())), "plan": plan.describe()})
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    raw_dir = Path(args.raw_dir or PROJECT_ROOT / "outputs" / "planner_time" / stamp)
    prepare_output_dir(raw_dir, "--raw-dir")
    write_json(rows, raw_dir / "planner_time.json", indent=2)
    table = pd.DataFrame(rows)
    write_table(table.drop(columns=["plan"]), args.out)
    print(table[["num_gpus", "rate_rps", "cold_s", "warm_s", "tier_gpus"]].to_string(index=False,
                                                                                    float_format=lambda x: f"{x:.3g}"))
    print(f"raw: {raw_dir / 'planner_time.json'}; tidy: {args.out}")


if __name__ == "__main__":
    main()
