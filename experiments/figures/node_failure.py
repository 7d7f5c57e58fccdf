"""Issue 7: one node lost a third into the run (back after 5 min), with and without re-planning: p95 latency per
minute by arrival time, and the run's SLO scale, for each planner."""
from __future__ import annotations

import pandas as pd
from matplotlib.patches import Patch

from experiments.figures._common import (COLORS, SLO_SCALE_LABEL, caption, ci_yerr, error_bar_note, legend_below,
                                        new_figure, read_results, save, seeds_of)


def plot(results_dir=None, out_dir=None):
    runs = read_results("node_failure", results_dir)
    ts = read_results("node_failure_timeseries", results_dir)
    fig, axes = new_figure(2, width=5.5, height=3.8, gridspec_kw={"width_ratios": [2.2, 1]})
    handles = []
    for (planner, on), part in ts.groupby(["planner", "replan_enabled"]):
        part = part.sort_values("window_start_s")
        handles += axes[0].plot(part.window_start_s / 60, part.p95_latency_s, color=COLORS.get(planner, "k"),
                                ls="-" if on else "--", marker="o", ms=3,
                                label=f"{planner}, {'re-plan' if on else 'static plan'}")
    for t in (runs["first_fault_s"].dropna().unique() if "first_fault_s" in runs else []):  # absent: no fault fell in the horizon
        axes[0].axvline(t / 60, color="k", lw=0.8)
        axes[0].axvspan(t / 60, (t + 300) / 60, color="0.9", zorder=0)
    handles.append(Patch(color="0.9", label="node 3 down (5 min)"))
    axes[0].set_xlabel("arrival time (min)", fontsize=8)
    axes[0].set_ylabel("p95 latency per minute (s)\n(lower is better)", fontsize=8)
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("latency through a node failure", fontsize=9)
    ordered = runs.sort_values(["planner", "replan_enabled"])
    yerr = ci_yerr(ordered.reset_index(drop=True), "slo_scale", list(range(len(ordered))))
    bars = axes[1].bar(range(len(ordered)), ordered.slo_scale, color=[COLORS.get(p, "k") for p in ordered.planner],
                       yerr=yerr, capsize=2, error_kw={"elinewidth": 0.8})
    counted = {"completed", "requests"} <= set(ordered.columns)  # absent when no fault fell in the horizon
    for b, (_, r) in zip(bars, ordered.iterrows()):
        b.set_hatch("" if r.replan_enabled else "//")
        if counted and pd.notna(r.completed) and pd.notna(r.requests):
            axes[1].text(b.get_x() + b.get_width() / 2, b.get_height(), f"{int(r.completed)}/{int(r.requests)}",
                         ha="center", va="bottom", fontsize=6)
    axes[1].set_xticks(range(len(ordered)),
                       [f"{p}\n{'re-plan' if on else 'static'}" for p, on in zip(ordered.planner, ordered.replan_enabled)],
                       fontsize=7)
    axes[1].set_ylabel(SLO_SCALE_LABEL, fontsize=8)
    axes[1].set_ylim(bottom=0, top=1.12 * float(ordered.slo_scale.max()))
    axes[1].set_title("whole run (labels: completed/arrived)" if counted else "whole run (no fault in the horizon)",
                      fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=3)
    caption(fig, "right: " + error_bar_note(seeds_of(runs, "slo_scale")) + "; left: one line per run and seed")
    return save(fig, "node_failure", out_dir)


if __name__ == "__main__":
    print(plot())
