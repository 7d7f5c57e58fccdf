"""Cost: GPU-seconds per request against quality reached, per system and quality level (from the SLO/throughput sweep)."""
from __future__ import annotations

from matplotlib.lines import Line2D

from experiments.figures._common import COLORS, legend_below, new_figure, ordered_planners, read_results, save

LEVEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def plot(results_dir=None, out_dir=None):
    df = read_results("slo_throughput", results_dir)
    workloads = sorted(df["workload"].unique())
    levels = sorted(df["q_min_level"].unique())
    marker = {lv: LEVEL_MARKERS[i % len(LEVEL_MARKERS)] for i, lv in enumerate(levels)}
    fig, axes = new_figure(len(workloads))
    planners = ordered_planners(df)
    for ax, w in zip(axes, workloads):
        sub = df[df["workload"] == w]
        for p in planners:
            for lv in levels:
                s = sub[(sub["planner"] == p) & (sub["q_min_level"] == lv)]
                ax.scatter(s["quality"], s["gpu_s_per_request"], color=COLORS.get(p), marker=marker[lv], s=24,
                           edgecolor="k", linewidth=0.3)
        ax.set_title(f"{w}: cost against quality", fontsize=9)
        ax.set_xlabel("quality: mean judge score, 0-100 (higher is better)", fontsize=8)
        ax.set_ylabel("GPU-seconds per request (lower is better)", fontsize=8)
        ax.set_ylim(0, 1.12 * float(sub["gpu_s_per_request"].max()))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=COLORS.get(p, "k"), label=p) for p in planners]
    handles += [Line2D([], [], ls="", marker=marker[lv], color="w", markeredgecolor="k",
                       label=f"quality level {lv:g}") for lv in levels]
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=6)
    return save(fig, "cost", out_dir)


if __name__ == "__main__":
    print(plot())
