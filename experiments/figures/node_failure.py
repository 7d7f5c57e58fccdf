"""Issue 7: one node lost a third into the run (back after 5 min), with and without re-planning: p95 latency per
minute by arrival time, and the run's SLO scale, for each planner."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import COLORS, read_results, save


def plot(results_dir=None, out_dir=None):
    kw = {"results_dir": results_dir} if results_dir else {}
    runs = read_results("node_failure", **kw)
    ts = read_results("node_failure_timeseries", **kw)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    for (planner, on), part in ts.groupby(["planner", "replan_enabled"]):
        part = part.sort_values("window_start_s")
        axes[0].plot(part.window_start_s / 60, part.p95_latency_s, color=COLORS.get(planner, "k"),
                     ls="-" if on else "--", marker="o", ms=3, label=f"{planner}, re-plan {'on' if on else 'off'}")
    for col, style in (("first_fault_s", "-"),):
        for t in (runs[col].dropna().unique() if col in runs else []):  # absent when no fault fell in the horizon
            axes[0].axvline(t / 60, color="k", lw=0.8, ls=style)
            axes[0].axvspan(t / 60, (t + 300) / 60, color="0.9", zorder=0)
    axes[0].set_xlabel("arrival time (min); shaded: node 3 down")
    axes[0].set_ylabel("p95 latency (s)")
    axes[0].legend(fontsize=7)
    labels, values, colors = [], [], []
    for _, r in runs.sort_values(["planner", "replan_enabled"]).iterrows():
        labels.append(f"{r.planner}\n{'re-plan' if r.replan_enabled else 'static'}")
        values.append(r.slo_scale)
        colors.append(COLORS.get(r.planner, "k"))
    bars = axes[1].bar(range(len(values)), values, color=colors)
    for b, (_, r) in zip(bars, runs.sort_values(["planner", "replan_enabled"]).iterrows()):
        b.set_hatch("" if r.replan_enabled else "//")
        axes[1].text(b.get_x() + b.get_width() / 2, b.get_height(), f"{int(r.completed)}/{int(r.requests)}",
                     ha="center", va="bottom", fontsize=6)
    axes[1].set_xticks(range(len(values)), labels, fontsize=7)
    axes[1].set_ylabel("SLO scale (lower is better)")
    axes[1].set_title("completed/arrived above bars", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save(fig, "node_failure", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
