"""The paper's headline ratios from our tidy results (test split, over seeds): Cascadia against each baseline.

python -m experiments.headline [results/slo_throughput.csv] reads that table's per-seed sibling
(results/slo_throughput_seeds.csv, written by experiments.aggregate) and prints a markdown table (the README quotes
it), the per-case ratios (stderr), and last ONE JSON line:
{"baselines": {NAME: {"slo_ratio_mean", "slo_ratio_ci95", "throughput_ratio_mean", "throughput_ratio_ci95",
"wins", "ties", "losses"}}, "cases": N, ...}.
A case is every setting that varies among the runs (the table's `case` column, experiments.runs.case_settings; in
an older table without it, those of experiment, workload, num_gpus, q_min_level, rate_scale that vary). Per case:
baseline SLO scale / Cascadia SLO scale and Cascadia throughput / baseline throughput (> 1: Cascadia is better),
each a paired ratio over seeds with a paired bootstrap CI (experiments.stats.paired_ratio_ci95); a case is a win,
tie or loss for Cascadia by its SLO ratio's CI (a CI that contains 1 is a tie; a single seed is always a tie). A
throughput at the rate bisection's cap is a lower bound, so a case where a seed of either side sits at the cap has
only a one-sided throughput ratio: it is listed apart and left out of the throughput mean. Over cases: the mean of
the per-case ratios with a bootstrap CI over cases. The baselines are single_model, sarathi, routellm and
cascadeserve, or, in a table with none of them (the ablation sweep), every other planner in it."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.protocol import decide, scenario_cap_rps
from experiments.stats import at_cap, bootstrap_ci95, paired_ratio_ci95, ratio_bound
from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT

# Cascadia (Jiang et al., ICLR 2026), abstract: "up to 4x (2.3x on average) tighter latency SLOs and up to 5x
# (2.4x on average) higher throughput" against single-model deployments and CascadeServe together.
PAPER = {"slo_mean": 2.3, "slo_max": 4.0, "thr_mean": 2.4, "thr_max": 5.0}
# routellm_oracle_noisy stands in for the learned router on data without prompt text (the real DeepSeek tiers)
BASELINES = ("single_model", "sarathi", "routellm", "routellm_oracle_noisy", "cascadeserve")
SETTINGS = ("experiment", "workload", "num_gpus", "q_min_level", "rate_scale")
NEEDED = ("planner", "seed", "slo_scale", "throughput_rps")


def case_columns(seeds: pd.DataFrame) -> list[str]:
    """The columns that name a case: `case` (written by experiments.aggregate), else the settings that vary."""
    if "case" in seeds:
        return ["case"]
    return [c for c in SETTINGS if c in seeds and seeds[c].nunique(dropna=False) > 1] or ["planner_set"]


def case_ratios(seeds: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per case: paired SLO and throughput ratios over seeds with their CIs, the SLO outcome and what the
    throughput ratio is (exact, or one-sided when a seed's throughput sits at the bisection's cap)."""
    case = case_columns(seeds)
    seeds = seeds.assign(planner_set="all") if case == ["planner_set"] else seeds
    c = seeds[seeds.planner == "cascadia"].set_index([*case, "seed"]).add_suffix("_c")
    b = seeds[seeds.planner == baseline].set_index([*case, "seed"]).add_suffix("_b")
    both = c.join(b, how="inner")
    rows = []
    for key, g in both.groupby(level=case):
        slo = paired_ratio_ci95(g.slo_scale_b, g.slo_scale_c)
        thr = paired_ratio_ci95(g.throughput_rps_c, g.throughput_rps_b.replace(0, np.nan))
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(case, key)), "slo_ratio": slo["mean"], "slo_ci95": slo["ci95"],
               "thr_ratio": thr["mean"], "thr_ci95": thr["ci95"],
               "thr_bound": ratio_bound(g.throughput_at_cap_c, g.throughput_at_cap_b),
               "outcome": decide(slo), "seeds": slo["n"]}
        if "throughput_replan_rps_c" in g and g.throughput_replan_rps_c.notna().any():
            # every system re-planning at each bisected rate (throughput.replan_per_rate)
            re = paired_ratio_ci95(g.throughput_replan_rps_c, g.throughput_replan_rps_b.replace(0, np.nan))
            row.update({"thr_replan_ratio": re["mean"], "thr_replan_ci95": re["ci95"]})
        rows.append(row)
    return pd.DataFrame(rows)


def baselines_in(seeds: pd.DataFrame) -> list[str]:
    present = [p for p in BASELINES if p in set(seeds.planner)]
    return present or sorted(set(seeds.planner) - {"cascadia"})


def summarize(seeds: pd.DataFrame) -> dict:
    out = {}
    for base in baselines_in(seeds):
        r = case_ratios(seeds, base)
        if r.empty:
            continue
        counts = r.outcome.value_counts()
        exact = r[r.thr_bound == "exact"]
        bounds = r.thr_bound.value_counts()
        out[base] = {"slo_ratio_mean": float(r.slo_ratio.mean()), "slo_ratio_ci95": list(bootstrap_ci95(r.slo_ratio)),
                     "slo_ratio_max": float(r.slo_ratio.max()),
                     # null (not NaN, which is no JSON) when every case has a seed at the cap
                     "throughput_ratio_mean": float(exact.thr_ratio.mean()) if len(exact) else None,
                     "throughput_ratio_ci95": list(bootstrap_ci95(exact.thr_ratio)) if len(exact) else None,
                     "throughput_ratio_max": float(exact.thr_ratio.max()) if len(exact) else None,
                     "throughput_cases": int(len(exact)),
                     # cases left out of the throughput mean: Cascadia's throughput at the cap (ratio at least the
                     # one measured), the baseline's (at most), or both (unknown)
                     "throughput_cases_at_least": int(bounds.get("at_least", 0)),
                     "throughput_cases_at_most": int(bounds.get("at_most", 0)),
                     "throughput_cases_unknown": int(bounds.get("unknown", 0)),
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
    any_bounded = False
    for base, r in result.items():
        lo, hi = r["slo_ratio_ci95"]
        tlo, thi = r["throughput_ratio_ci95"] or (None, None)
        bounded = [f"{r[f'throughput_cases_{k}']} {k.replace('_', ' ')}" for k in ("at_least", "at_most", "unknown")
                   if r[f"throughput_cases_{k}"]]
        any_bounded |= bool(bounded)
        left_out = f"; {r['throughput_cases']} of {r['cases']} cases, left out: {', '.join(bounded)}" if bounded else ""
        thr = (f"{r['throughput_ratio_mean']:.2f}x [{tlo:.2f}, {thi:.2f}] ({r['throughput_ratio_max']:.2f}x{left_out})"
               if r["throughput_cases"] else f"n/a: no case without a seed at the cap ({', '.join(bounded)})")
        lines.append(f"| ours: {base} | {r['slo_ratio_mean']:.2f}x [{lo:.2f}, {hi:.2f}] ({r['slo_ratio_max']:.2f}x) | "
                     f"{thr} | {r['wins']} / {r['ties']} / {r['losses']} |")
    lines.append(f"\nTest split, mean over seeds; ref(r) answer length: {reference_length}. A case whose paired "
                 "95% CI contains 1 is a tie.")
    if any_bounded:
        lines.append("A throughput at the rate bisection's cap is a lower bound: a case where some seed of Cascadia "
                     "(at least), of the baseline (at most) or of both (unknown) sits there has a one-sided "
                     "throughput ratio and is left out of the throughput mean.")
    return "\n".join(lines)


def read_seeds(path: Path) -> pd.DataFrame:
    seeds_path = path.with_name(f"{path.stem}_seeds.csv")
    if not path.exists() or not seeds_path.exists():
        missing = path if not path.exists() else seeds_path
        raise DataError(f"{missing} does not exist; run the slo_throughput sweep and `python -m experiments.aggregate "
                        f"multirun/slo_throughput/<stamp> --out {path}` first")
    try:
        seeds = pd.read_csv(seeds_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{seeds_path} is not a readable CSV table ({' '.join(str(exc).split())})") from None
    missing = [c for c in NEEDED if c not in seeds]
    if missing:
        raise DataError(f"{seeds_path} lacks column(s) {missing}; it is not a per-seed table of experiments.aggregate")
    if "cascadia" not in set(seeds.planner):
        raise DataError(f"{seeds_path} has no cascadia rows")
    if set(seeds.planner) == {"cascadia"}:
        raise DataError(f"{seeds_path} has only cascadia rows: no baseline to compare it with (the headline compares "
                        "Cascadia with other planners run on the same cases, e.g. results/slo_throughput.csv)")
    if "throughput_at_cap" not in seeds and not {"workload", "rate_scale"} <= set(seeds.columns):
        print(f"warning: {seeds_path} says neither which throughputs sit at the bisection's cap (throughput_at_cap) "
              "nor the workload and rate_scale to recompute it from: every throughput is read as a value",
              file=sys.stderr)
        seeds["throughput_at_cap"] = False
    if "throughput_at_cap" not in seeds:  # a table written before aggregate recorded it: the cap recomputed
        seeds["throughput_at_cap"] = [
            at_cap(float(r.throughput_rps), scenario_cap_rps(str(r.get("experiment", "default")), str(r.workload),
                                                             float(r.rate_scale))) for _, r in seeds.iterrows()]
    seeds["throughput_at_cap"] = seeds["throughput_at_cap"].fillna(False).astype(bool)
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
    case = case_columns(seeds)
    seeds = seeds.assign(planner_set="all") if case == ["planner_set"] else seeds
    per_case = pd.concat({b: case_ratios(seeds, b).set_index(case)[["slo_ratio", "outcome"]] for b in result}, axis=1)
    print("\nbaseline SLO scale / Cascadia SLO scale per case (outcome for Cascadia):\n"
          + per_case.round(2).to_string(), file=sys.stderr)
    cases = int(seeds[seeds.planner == "cascadia"][case].drop_duplicates().shape[0])
    print(json.dumps({"baselines": result, "cases": cases, "seeds": int(seeds.seed.nunique()),
                      "split": "test", "reference_length": ref_len}))


if __name__ == "__main__":
    main()
