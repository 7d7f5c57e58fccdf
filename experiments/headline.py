"""The paper's headline ratios recomputed from our tidy results: Cascadia against single-model and CascadeServe.

python -m experiments.headline [results/slo_throughput.csv] prints a markdown table (docs/results.md quotes it):
per baseline, the mean and max over (workload, quality level) of baseline SLO scale / Cascadia SLO scale
(> 1: Cascadia's SLO is tighter) and Cascadia throughput / baseline throughput, beside the paper's figures."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sim.cli import exit_on_user_error
from sim.errors import DataError
from sim.paths import PROJECT_ROOT

# Cascadia (Jiang et al., ICLR 2026), abstract: "up to 4x (2.3x on average) tighter latency SLOs and up to 5x
# (2.4x on average) higher throughput" against single-model deployments and CascadeServe together.
PAPER = {"slo_mean": 2.3, "slo_max": 4.0, "thr_mean": 2.4, "thr_max": 5.0}
BASELINES = ("single_model", "sarathi", "routellm", "cascadeserve")


def ratios(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    keys = ["workload", "q_min_level"]
    c = df[df.planner == "cascadia"].set_index(keys).add_suffix("_c")
    b = df[df.planner == baseline].set_index(keys).add_suffix("_b")
    both = c.join(b, how="inner")
    out = pd.DataFrame({"slo_ratio": both.slo_scale_b / both.slo_scale_c})
    thr_b = both.throughput_rps_b.replace(0, np.nan)
    out["thr_ratio"] = both.throughput_rps_c / thr_b
    return out


def table(df: pd.DataFrame) -> str:
    lines = ["| Cascadia against | SLO scale ratio, mean (max) | throughput ratio, mean (max) | cases |",
             "|---|---|---|---|",
             f"| paper: single model and CascadeServe | {PAPER['slo_mean']:.1f}x ({PAPER['slo_max']:.0f}x) | "
             f"{PAPER['thr_mean']:.1f}x ({PAPER['thr_max']:.0f}x) | paper Figs. 5-6 |"]
    for base in BASELINES:
        if base not in set(df.planner):
            continue
        r = ratios(df, base)
        lines.append(f"| ours: {base} | {r.slo_ratio.mean():.2f}x ({r.slo_ratio.max():.2f}x) | "
                     f"{r.thr_ratio.mean():.2f}x ({r.thr_ratio.max():.2f}x) | {len(r)} |")
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("table", nargs="?", type=Path, default=PROJECT_ROOT / "results" / "slo_throughput.csv")
    args = ap.parse_args(argv)
    if not args.table.exists():
        raise DataError(f"{args.table} does not exist; run `make results` (or the slo_throughput sweep) first")
    df = pd.read_csv(args.table)
    if "cascadia" not in set(df.planner):
        raise DataError(f"{args.table} has no cascadia rows")
    print(table(df))
    per_case = pd.concat({b: ratios(df, b).slo_ratio for b in BASELINES if b in set(df.planner)}, axis=1)
    print("\nbaseline SLO scale / Cascadia SLO scale per case:\n" + per_case.round(2).to_string(), file=sys.stderr)


if __name__ == "__main__":
    main()
