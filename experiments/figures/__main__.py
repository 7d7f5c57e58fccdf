"""Regenerate every figure from the tidy tables in results/ (python -m experiments.figures)."""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.io import prepare_output_dir

# figure module -> the tidy table it reads (results/<table>.csv) and the command that makes that table.
FIGURES = {
    "slo_scale": "slo_throughput",
    "throughput": "slo_throughput",
    "cost": "slo_throughput",
    "ablation": "ablation",
    "quality_shift": "quality_shift",
    "llama3": "llama3",
    "llama31": "llama31",
    "drift": "drift",
    "node_failure": "node_failure",
    "planner_time": "planner_time",
    "load_attainment": "load_sweep",
    "load_rate": "load_sweep",
    "load_map": "load_sweep",
    "disaggregation": "disaggregation",
}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help=f"figures to draw (default: all): {', '.join(FIGURES)}")
    ap.add_argument("--results-dir", default=None, help="folder of tidy tables (default: results/)")
    ap.add_argument("--out-dir", default=None, help="folder for PNGs (default: results/figures/)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        raise DataError(f"unknown figure(s) {unknown}; valid: {', '.join(FIGURES)}")
    if args.results_dir is not None and not Path(args.results_dir).is_dir():
        raise DataError(f"--results-dir {args.results_dir} is not a folder; give the folder of tidy tables "
                        "(default: results/)")
    if args.out_dir is not None:
        prepare_output_dir(args.out_dir, "--out-dir")
    missing = []
    for name in args.names or list(FIGURES):
        t0 = time.perf_counter()
        module = importlib.import_module(f"experiments.figures.{name}")
        try:
            path = module.plot(results_dir=args.results_dir, out_dir=args.out_dir)
        except DataError as exc:
            missing.append(f"{name}: {exc}")
            continue
        print(f"{name:<14} {time.perf_counter() - t0:5.1f} s  -> {path}")
    if missing:
        print("error: not drawn (their tables are missing or malformed):\n  " + "\n  ".join(missing), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
