"""The paper's headline ratios from our tidy results (test split, over seeds): Cascadia against each baseline.

python -m experiments.headline [results/slo_throughput.csv] reads that table's per-seed sibling
(results/slo_throughput_seeds.csv, written by experiments.aggregate) and prints a markdown table (the README quotes
it), the per-case ratios (stderr), and last ONE JSON line:
{"baselines": {NAME: {"slo_ratio_mean", "slo_ratio_ci95", "throughput_ratio_mean", "throughput_ratio_ci95",
"wins", "ties", "losses"}}, "cases": N, ...}.
Per case (workload, quality level): baseline SLO scale / Cascadia SLO scale and Cascadia throughput / baseline
throughput (> 1: Cascadia is better), each a paired ratio over seeds with a paired bootstrap CI
(experiments.stats.paired_ratio_ci95); a case is a win, tie or loss for Cascadia by its SLO ratio's CI (a CI that
contains 1 is a tie; a single seed is always a tie). Over cases: the mean of the per-case ratios with a bootstrap
CI over cases."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.protocol import decide
from experiments.stats import bootstrap_ci95, paired_ratio_ci95
from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT

# Cascadia (Jiang et al., ICLR 2026), abstract: "up to 4x (2.3x on average) tighter latency SLOs and up to 5x
# (2.4x on average) higher throughput" against single-model deployments and CascadeServe together.
PAPER = {"slo_mean": 2.3, "slo_max": 4.0, "thr_mean": 2.4, "thr_max": 5.0}
# routellm_oracle_noisy stands in for the learned router on data without prompt text (the real DeepSeek tiers)
BASELINES = ("single_model", "sarathi", "routellm", "routellm_oracle_noisy", "cascadeserve")
CASE = ["workload", "q_min_level"]


def case_ratios(seeds: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per case: paired SLO and throughput ratios over seeds with their CIs and the SLO outcome."""
    c = seeds[seeds.planner == "cascadia"].set_index([*CASE, "seed"]).add_suffix("_c")
    b = seeds[seeds.planner == baseline].set_index([*CASE, "seed"]).add_suffix("_b")
    both = c.join(b, how="inner")
    rows = []
    for case, g in both.groupby(level=CASE):
        slo = paired_ratio_ci95(g.slo_scale_b, g.slo_scale_c)
        thr = paired_ratio_ci95(g.throughput_rps_c, g.throughput_rps_b.replace(0, np.nan))
        row = {**dict(zip(CASE, case)), "slo_ratio": slo["mean"], "slo_ci95": slo["ci95"],
               "thr_ratio": thr["mean"], "thr_ci95": thr["ci95"], "outcome": decide(slo), "seeds": slo["n"]}
        if "throughput_replan_rps_c" in g and g.throughput_replan_rps_c.notna().any():
            # every system re-planning at each bisected rate (throughput.replan_per_rate)
            re = paired_ratio_ci95(g.throughput_replan_rps_c, g.throughput_replan_rps_b.replace(0, np.nan))
            row.update({"thr_replan_ratio": re["mean"], "thr_replan_ci95": re["ci95"]})
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(seeds: pd.DataFrame) -> dict:
    out = {}
    for base in BASELINES:
        if base not in set(seeds.planner):
            continue
        r = case_ratios(seeds, base)
        if r.empty:
            continue
        counts = r.outcome.value_counts()
        out[base] = {"slo_ratio_mean": float(r.slo_ratio.mean()), "slo_ratio_ci95": list(bootstrap_ci95(r.slo_ratio)),
                     "slo_ratio_max": float(r.slo_ratio.max()),
                     "throughput_ratio_mean": float(r.thr_ratio.mean()),
                     "throughput_ratio_ci95": list(bootstrap_ci95(r.thr_ratio)),
                     "throughput_ratio_max": float(r.thr_ratio.max()),
                     "wins": int(counts.get("win", 0)), "ties": int(counts.get("tie", 0)),
                     "losses": int(counts.get("loss", 0)), "cases": int(len(r))}
        if "thr_replan_ratio" in r and r.thr_replan_ratio.notna().any():
            out[base].update({"throughput_replan_ratio_mean": float(r.thr_replan_ratio.mean()),
                              "throughput_replan_ratio_ci95": list(bootstrap_ci95(r.thr_replan_ratio.dropna()))})
    return out


def table(result: dict, reference_length: str) -> str:
    lines = ["| Cascadia against | SLO scale ratio, mean [95% CI] (max) | throughput ratio, mean [95% CI] (max) | "
             "wins / ties / losses (SLO) |", "|---|---|---|---|",
             f"| paper: single model and CascadeServe | {PAPER['slo_mean']:.1f}x ({PAPER['slo_max']:.0f}x) | "
             f"{PAPER['thr_mean']:.1f}x ({PAPER['thr_max']:.0f}x) | paper Figs. 5-6 |"]
    for base, r in result.items():
        lo, hi = r["slo_ratio_ci95"]
        tlo, thi = r["throughput_ratio_ci95"]
        lines.append(f"| ours: {base} | {r['slo_ratio_mean']:.2f}x [{lo:.2f}, {hi:.2f}] ({r['slo_ratio_max']:.2f}x) | "
                     f"{r['throughput_ratio_mean']:.2f}x [{tlo:.2f}, {thi:.2f}] ({r['throughput_ratio_max']:.2f}x) | "
                     f"{r['wins']} / {r['ties']} / {r['losses']} |")
    lines.append(f"\nTest split, mean over seeds; ref(r) answer length: {reference_length}. A case whose paired "
                 "95% CI contains 1 is a tie.")
    return "\n".join(lines)


def read_seeds(path: Path) -> pd.DataFrame:
    seeds_path = path.with_name(f"{path.stem}_seeds.csv")
    if not path.exists() or not seeds_path.exists():
        missing = path if not path.exists() else seeds_path
        raise DataError(f"{missing} does not exist; run the slo_throughput sweep and `python -m experiments.aggregate "
                        f"multirun/slo_throughput/<stamp> --out {path}` first")
    seeds = pd.read_csv(seeds_path)
    if "cascadia" not in set(seeds.planner):
        raise DataError(f"{seeds_path} has no cascadia rows")
    return seeds


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("table", nargs="?", type=Path, default=PROJECT_ROOT / "results" / "slo_throughput.csv")
    args = ap.parse_args(argv)
    seeds = read_seeds(args.table)
    tidy = pd.read_csv(args.table)
    ref_len = "/".join(sorted(set(tidy.get("reference_length", pd.Series(["largest_tier"])).astype(str))))
    result = summarize(seeds)
    print(table(result, ref_len))
    per_case = pd.concat({b: case_ratios(seeds, b).set_index(CASE)[["slo_ratio", "outcome"]] for b in result}, axis=1)
    print("\nbaseline SLO scale / Cascadia SLO scale per case (outcome for Cascadia):\n"
          + per_case.round(2).to_string(), file=sys.stderr)
    cases = int(seeds[seeds.planner == "cascadia"][CASE].drop_duplicates().shape[0])
    print(json.dumps({"baselines": result, "cases": cases, "seeds": int(seeds.seed.nunique()),
                      "split": "test", "reference_length": ref_len}))


if __name__ == "__main__":
    main()
