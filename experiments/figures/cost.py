"""Cost: GPU-seconds per request against quality reached, per system and quality level (from the SLO/throughput sweep)."""
from __future__ import annotations

from matplotlib.lines import Line2D

from experiments.figures._common import (COLORS, caption, ci_yerr, error_bar_note, legend_below, new_figure,
                                        ordered_planners, read_results, save, seeds_of)

LEVEL_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def plot(results_dir=None, out_dir=None):
    """Hollow markers, larger for planners drawn first, so a planner whose point falls on another's stays visible;
    the y axis spans the data (cost differences of a few percent vanish on an axis from 0); error bars: 95% CIs over
    seeds on both axes."""
    df = read_results("slo_throughput", results_dir)
    workloads = sorted(df["workload"].unique())
    levels = sorted(df["q_min_level"].unique())
    marker = {lv: LEVEL_MARKERS[i % len(LEVEL_MARKERS)] for i, lv in enumerate(levels)}
    fig, axes = new_figure(len(workloads))
    planners = ordered_planners(df)
    size = {p: 90 - 60 * k / max(len(planners) - 1, 1) for k, p in enumerate(planners)}
    for ax, w in zip(axes, workloads):
        sub = df[df["workload"] == w]
        for p in planners:
            for lv in levels:
                s = sub[(sub["planner"] == p) & (sub["q_min_level"] == lv)]
                if s.empty:
                    continue
                xerr = ci_yerr(s.reset_index(drop=True), "quality", list(range(len(s))))
                yerr = ci_yerr(s.reset_index(drop=True), "gpu_s_per_request", list(range(len(s))))
                ax.errorbar(s["quality"], s["gpu_s_per_request"], xerr=xerr, yerr=yerr, ls="none",
                            ecolor=COLORS.get(p, "k"), elinewidth=0.6, alpha=0.6, zorder=1)
                ax.scatter(s["quality"], s["gpu_s_per_request"], facecolors="none", edgecolors=COLORS.get(p, "k"),
                           marker=marker[lv], s=size[p], linewidth=1.3, zorder=2)
        ax.set_title(f"{w}: cost against quality", fontsize=9)
        ax.set_xlabel("quality: mean judge score, 0-100 (higher is better)", fontsize=8)
        ax.set_ylabel("GPU-seconds per request (lower is better; axis not from 0)", fontsize=8)
        span = [sub[c] for c in ("gpu_s_per_request", "gpu_s_per_request_ci95_lo", "gpu_s_per_request_ci95_hi")
                if c in sub]
        lo, hi = float(min(v.min() for v in span)), float(max(v.max() for v in span))
        pad = 0.08 * max(hi - lo, 0.05 * hi)
        ax.set_ylim(lo - pad, hi + pad)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", markerfacecolor="none", markeredgecolor=COLORS.get(p, "k"),
                      label=p) for p in planners]
    handles += [Line2D([], [], ls="", marker=marker[lv], color="w", markeredgecolor="k",
                       label=f"quality level {lv:g}") for lv in levels]
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=6)
    caption(fig, error_bar_note(seeds_of(df, "gpu_s_per_request")).replace("bars: mean", "points: mean")
            + " (both axes)")
    return save(fig, "cost", out_dir)


if __name__ == "__main__":
    print(plot())
