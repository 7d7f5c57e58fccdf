"""Simulator benchmark: the default scenario (DeepSeek 7B/70B/671B AWQ cascade on 32 H100, fixed plan, Azure
conversation trace) in reference and fast mode on a window, the whole hour in fast mode, and --scaling.

python -m sim.bench [--window-s 300] [--scaling [--compare-split]]   ends with one JSON line:
{"requests", "fast_wall_s", "reference_speedup", "identical", "requests_per_s"} (requests and fast_wall_s for the
whole hour; identical and reference_speedup on the window). "identical" means the per-request DataFrames of both
modes are equal bit for bit (pandas assert_frame_equal with check_exact).

python -m sim.bench --case NAME   times one named case instead (CASES below) and ends with one JSON line:
{"case", "requests", "wall_s" (median of the runs), "requests_per_s", "identical" (fast == reference)}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.paths import CONF_DIR


def default_scenario(seed: int = 0, plan: str = "deepseek_default"):
    """(plan, cascade, cluster, workload, cfg) of the default scenario (another plan of conf/plan by name)."""
    from sim.spec.cascade import cascade_from_dict
    from sim.spec.hardware import load_cluster
    from sim.spec.plan_io import load_plan
    from sim.common.io import read_yaml
    from sim.simulator import SimConfig
    from sim.workload import build_workload

    cascade = cascade_from_dict(read_yaml(CONF_DIR / "cascade" / "deepseek3.yaml", "cascade file"))
    cfg = SimConfig()
    workload = build_workload("conversation", cascade, seed=seed)
    return load_plan(plan), cascade, load_cluster("paper_4x8_h100"), workload, cfg


# The scenario measured side by side with other simulators: the first 2,000 requests of the Azure conversation
# trace on one Llama-2-70B replica (TP8, BF16) filling one 8 x H100 node. A cascade needs two tiers, so the small
# tier is planned with no replicas and every request goes to the 70B (the last tier answers without a judge).
CASES = ("llama2_70b_tp8_azure2k",)


def llama2_70b_tp8_azure2k(seed: int = 0):
    """(plan, cascade, cluster, workload, cfg) of the named case llama2_70b_tp8_azure2k."""
    from sim.spec.cascade import cascade_from_dict
    from sim.spec.hardware import load_cluster
    from sim.spec.plan_io import plan_from_dict
    from sim.simulator import SimConfig
    from sim.workload import build_workload

    cascade = cascade_from_dict({"name": "llama2_70b_only", "tiers": [{"model": "llama2_7b"}, {"model": "llama2_70b"}]})
    cfg = SimConfig()  # the simulator's defaults (conf/sim/default.yaml repeats none of them)
    workload = build_workload("conversation", cascade, seed=seed, num_requests=2000)
    tp8 = {"tp": 8, "pp": 1, "gpus": [[0, g] for g in range(8)]}
    plan = plan_from_dict({"planner": "fixed", "thresholds": [0.0],
                           "tiers": [{"model": "llama2_7b", "replicas": []},
                                     {"model": "llama2_70b", "replicas": [tp8]}]})
    return plan, cascade, load_cluster("one_node_h100"), workload, cfg


def run_case(name: str, seed: int = 0, runs: int = 7) -> dict:
    """A named case in fast mode, `runs` times (median wall time: the machine may be shared), and once in
    reference mode to check that both modes give the same per-request table."""
    from sim.simulator import simulate

    plan, cascade, cluster, workload, cfg = {"llama2_70b_tp8_azure2k": llama2_70b_tp8_azure2k}[name](seed)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fast = simulate(plan, cascade, cluster, workload, cfg, seed=seed)
        walls.append(time.perf_counter() - t0)
    ref = simulate(plan, cascade, cluster, workload, replace(cfg, mode="reference"), seed=seed)
    wall = sorted(walls)[len(walls) // 2]
    completed = int((fast.requests["status"] == "completed").sum())
    print(f"{name}: {workload.num_requests} requests ({completed} completed, {workload.num_requests - completed} "
          f"dropped) in {1e3 * wall:.1f} ms of simulation (median of {runs}; best {1e3 * min(walls):.1f} ms)",
          file=sys.stderr)
    return {"case": name, "requests": int(workload.num_requests), "wall_s": round(wall, 4),
            "best_wall_s": round(min(walls), 4), "requests_per_s": round(workload.num_requests / wall, 1),
            "identical": identical(ref, fast)}


def identical(a, b) -> bool:
    try:
        pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
        return True
    except AssertionError:
        return False


def compare_modes(plan, cascade, cluster, workload, cfg, seed: int = 0, repeats: int = 5,
                  fast_repeats: int = 3, progress: bool = False) -> dict:
    """Both modes on the same input; wall times are the best of several runs, as timeit reports, because the
    machine is shared. The runs are interleaved (one reference run, then fast_repeats fast runs, `repeats`
    times) so that both modes see the same spells of load from the neighbours; the fast run lasts about 0.1 s,
    so it gets more runs, as each costs little."""
    from sim.simulator import simulate

    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: the scaling runs split tiers with os.fork (sim.runtime.tier_split)
    out = {"reference_wall_s": float("inf"), "fast_wall_s": float("inf")}
    for _ in tqdm(range(repeats), desc="reference vs fast, rounds", unit="round", file=sys.stderr,
                  disable=not progress, leave=False):
        for mode, n in (("reference", 1), ("fast", fast_repeats)):
            for _ in range(n):
                t0 = time.perf_counter()
                out[mode] = simulate(plan, cascade, cluster, workload, replace(cfg, mode=mode), seed=seed)
                out[f"{mode}_wall_s"] = min(out[f"{mode}_wall_s"], time.perf_counter() - t0)
    return out


def scaling(sizes=(10_000, 100_000, 1_000_000), seed: int = 0, compare_split: bool = False) -> list[dict]:
    """Fast-mode wall time for synthetic Poisson workloads at the trace's rate (conversation lengths and scores),
    with the default sim.tier_split (auto: the first tier in a second process from 200,000 requests on). compare_split:
    each size again in one process (tier_split off): its wall time, and whether the request tables are equal."""
    from sim.simulator import simulate
    from sim.workload import build_workload

    plan, cascade, cluster, _, cfg = default_scenario(seed)
    rows = []
    for n in sizes:
        w = build_workload("conversation", cascade, seed=seed, arrival_process="poisson", num_requests=int(n))
        t0 = time.perf_counter()
        r = simulate(plan, cascade, cluster, w, cfg, seed=seed)
        wall = time.perf_counter() - t0
        rows.append({"requests": int(w.num_requests), "wall_s": wall, "us_per_request": 1e6 * wall / w.num_requests,
                     "simulated_s": float(r.meta["makespan_s"]), "tier_split": bool(r.meta["tier_split"])})
        if r.meta["tier_split"]:
            rows[-1]["child_cpu_s"] = r.meta["tier_split_child_cpu_s"]
            rows[-1]["child_private_mb"] = r.meta["tier_split_child_private_mb"]
        split = ("first tier in a second process" if r.meta["tier_split"] else
                 f"one process: {r.meta.get('tier_split_not', '')}")
        print(f"scaling: {w.num_requests:>9,d} requests  {wall:7.2f} s  ({rows[-1]['us_per_request']:.0f} us/request, "
              f"{rows[-1]['simulated_s'] / 3600:.1f} h simulated; {split})", file=sys.stderr)
        if compare_split:
            t0 = time.perf_counter()
            one = simulate(plan, cascade, cluster, w, replace(cfg, tier_split="off"), seed=seed)
            rows[-1]["one_process_wall_s"] = time.perf_counter() - t0
            rows[-1]["identical_to_one_process"] = identical(r, one)
            del one
            print(f"scaling: {w.num_requests:>9,d} requests  {rows[-1]['one_process_wall_s']:7.2f} s in one process, "
                  f"identical {rows[-1]['identical_to_one_process']}", file=sys.stderr)
    return rows


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--window-s", type=float, default=300.0, help="window for the reference comparison (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scaling", action="store_true", help="also time 10k, 100k and 1M synthetic requests")
    ap.add_argument("--sizes", type=str, default="10000,100000,1000000")
    ap.add_argument("--compare-split", action="store_true",
                    help="--scaling: run each size again in one process (sim.tier_split off) and compare the tables")
    ap.add_argument("--plan", default="deepseek_default",
                    help="plan of conf/plan (deepseek_disaggregated: the same GPUs with prefill/decode pools)")
    ap.add_argument("--case", choices=CASES, help="time one named case instead of the default scenario")
    args = ap.parse_args(argv)
    from sim.common.errors import ConfigError
    from sim.simulator import simulate

    if not args.window_s > 0:
        raise ConfigError(f"--window-s must be positive seconds, got {args.window_s:g}")
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated request counts, got {args.sizes!r}") from None
    if any(n < 1 for n in sizes):
        raise ConfigError(f"--sizes must be positive request counts, got {args.sizes!r}")

    if args.case:
        print(json.dumps(run_case(args.case, args.seed)))
        return 0
    from sim.common.quick import announce, quick_mode

    repeats = 5
    if quick_mode():
        args.window_s, repeats, sizes = min(args.window_s, 30.0), 1, tuple(dict.fromkeys(min(n, 2000) for n in sizes))
        announce("30 s window, one round, at most 2,000 requests per scaling size")
    print("loading the default scenario (plan, cascade, the whole conversation trace) ...", file=sys.stderr)
    plan, cascade, cluster, workload, cfg = default_scenario(args.seed, args.plan)
    window = workload.window(0.0, args.window_s)
    print(f"timing reference and fast mode on the first {args.window_s:g} s, {repeats} interleaved rounds ...",
          file=sys.stderr)
    cmp = compare_modes(plan, cascade, cluster, window, cfg, args.seed, repeats=repeats, progress=True)
    same = identical(cmp["reference"], cmp["fast"])
    speedup = cmp["reference_wall_s"] / cmp["fast_wall_s"]
    print(f"window {args.window_s:g} s: {window.num_requests} requests, reference {cmp['reference_wall_s']:.2f} s "
          f"({cmp['reference'].meta['iterations']:,} iterations), fast {cmp['fast_wall_s']:.3f} s "
          f"({cmp['fast'].meta['jumps']:,} jumps), speedup {speedup:.1f}x, identical {same}", file=sys.stderr)
    print(f"simulating the whole trace ({workload.num_requests} requests) in fast mode ...", file=sys.stderr)
    t0 = time.perf_counter()
    full = simulate(plan, cascade, cluster, workload, cfg, seed=args.seed)
    wall = time.perf_counter() - t0
    completed = int((full.requests["status"] == "completed").sum())
    print(f"whole trace: {workload.num_requests} requests over {workload.duration_s:.0f} s simulated in {wall:.2f} s "
          f"({completed} completed, {len(full.requests) - completed} dropped)", file=sys.stderr)
    result = {"requests": int(workload.num_requests), "fast_wall_s": round(wall, 3),
              "reference_speedup": round(speedup, 1), "identical": bool(same),
              "requests_per_s": round(workload.num_requests / wall, 1)}
    if args.scaling:
        result["scaling"] = scaling(sizes, args.seed, args.compare_split)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
