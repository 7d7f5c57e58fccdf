"""Disaggregated prefill/decode: SLO scale (top) and throughput (bottom) of Cascadia free to disaggregate, Cascadia
with every tier colocated, and the single model (best of both), per quality level, one column per load."""
from __future__ import annotations

from matplotlib.figure import Figure

from experiments.figures._common import (QUALITY_LEVEL_LABEL, SLO_SCALE_LABEL, THROUGHPUT_LABEL, caption,
                                         error_bar_note, grouped_bars, legend_below, ordered_planners,
                                         planner_handles, read_results, save, seeds_of)


def plot(results_dir=None, out_dir=None):
    df = read_results("disaggregation", results_dir)
    loads = sorted(df["rate_scale"].unique())
    planners = ordered_planners(df)
    fig = Figure(figsize=(4.6 * max(len(loads), 1), 6.4))
    axes = fig.subplots(2, max(len(loads), 1), squeeze=False)
    any_cap = False
    for j, load in enumerate(loads):
        sub = df[df["rate_scale"] == load]
        rate = sub["rate_rps"].mean()
        for i, (value, label) in enumerate((("slo_scale", SLO_SCALE_LABEL), ("throughput_rps", THROUGHPUT_LABEL))):
            ax = axes[i][j]
            any_cap |= grouped_bars(ax, sub, "q_min_level", value, planners, lower_bound_cap=value == "throughput_rps")
            ax.set_title(f"rate x{load:g} ({rate:.1f} req/s)", fontsize=9)
            ax.set_xlabel(QUALITY_LEVEL_LABEL, fontsize=7)
            ax.set_ylabel(label, fontsize=8 if j == 0 else 6)
    fig.suptitle(f"{df['workload'].iloc[0] if len(df) else ''}: disaggregated prefill/decode", fontsize=10)
    legend_below(fig, *planner_handles(planners, with_cap=any_cap))
    caption(fig, error_bar_note(seeds_of(df, "slo_scale")))
    return save(fig, "disaggregation", out_dir)


if __name__ == "__main__":
    print(plot())
