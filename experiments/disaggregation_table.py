"""The disaggregation comparison of docs/results.md, from results/disaggregation.csv and its _seeds sibling: per load
and quality level, Cascadia's and cascadia_colocated's SLO scale (mean over seeds, 95% CI), their paired ratio
(colocated / cascadia, > 1: disaggregation helps; a CI that holds 1 is a tie), the throughput of both, the single
model's SLO scale, and the per-tier deployment Cascadia chose on each seed.

    python -m experiments.disaggregation_table [--results-dir results]
"""
from __future__ import annotations

import argparse

import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT

from experiments.stats import paired_ratio_ci95

KEYS = ["rate_scale", "q_min_level"]


def _ci(row, key: str, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(row[key])} [{fmt.format(row[key + '_ci95_lo'])}, {fmt.format(row[key + '_ci95_hi'])}]"


def table(results_dir) -> pd.DataFrame:
    path = results_dir / "disaggregation.csv"
    if not path.exists():
        raise DataError(f"{path} does not exist; run `python -m experiments.run experiment=disaggregation` and "
                        "aggregate it (docs/results.md)")
    df = pd.read_csv(path)
    seeds = pd.read_csv(results_dir / "disaggregation_seeds.csv")
    rows = []
    for (load, level), g in df.groupby(KEYS):
        by = g.set_index("planner")
        s = seeds[(seeds.rate_scale == load) & (seeds.q_min_level == level)]
        per = {p: s[s.planner == p].sort_values("seed") for p in ("cascadia", "cascadia_colocated")}
        ratio = paired_ratio_ci95(per["cascadia_colocated"].slo_scale.to_numpy(), per["cascadia"].slo_scale.to_numpy())
        thr = paired_ratio_ci95(per["cascadia"].throughput_rps.to_numpy(),
                                per["cascadia_colocated"].throughput_rps.to_numpy())
        c, k = by.loc["cascadia"], by.loc["cascadia_colocated"]
        deps = [c[col] for col in sorted(c.index) if str(col).startswith("deployment_t")]
        rows.append({
            "rate x": f"{load:g} ({c['rate_rps']:.1f} req/s)", "level": f"{level:g}",
            "cascadia SLO": _ci(c, "slo_scale"), "colocated SLO": _ci(k, "slo_scale"),
            "colocated / cascadia": f"{ratio['mean']:.2f} [{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}]",
            "throughput cascadia / colocated": f"{thr['mean']:.2f} [{thr['ci95'][0]:.2f}, {thr['ci95'][1]:.2f}]",
            "single model SLO": _ci(by.loc["single_model"], "slo_scale"),
            "cascadia per tier (seeds)": "; ".join(str(d) for d in deps),
            "single model (seeds)": str(by.loc["single_model"].get("deployment_t2", "")),
        })
    return pd.DataFrame(rows)


@exit_on_user_error
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-dir", default=str(PROJECT_ROOT / "results"))
    args = ap.parse_args(argv)
    from pathlib import Path

    t = table(Path(args.results_dir))
    print("| " + " | ".join(t.columns) + " |")
    print("|" + "---|" * len(t.columns))
    for row in t.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
