"""The paper's throughput figure from the load sweep: SLO attainment at a fixed SLO scale (10, the throughput
target) against the arrival rate, per system; one panel per workload and quality level (results/load_sweep.csv)."""
from __future__ import annotations

from matplotlib.lines import Line2D

from experiments.figures._common import COLORS, caption, error_bar_note, legend_below, new_figure, ordered_planners, read_results, save, seeds_of

SLO_SCALE = 10


def plot(results_dir=None, out_dir=None):
    df = read_results("load_sweep", results_dir)
    key = f"attain_at_{SLO_SCALE:g}"
    panels = sorted(df[["workload", "q_min_level"]].drop_duplicates().itertuples(index=False, name=None))
    fig, axes = new_figure(len(panels), width=3.6, height=3.0)
    planners = ordered_planners(df)
    for ax, (wl, level) in zip(axes, panels):
        sub = df[(df.workload == wl) & (df.q_min_level == level)]
        for p in planners:
            s = sub[sub.planner == p].sort_values("rate_rps")
            if s.empty:
                continue
            err = [100 * (s[key] - s[f"{key}_ci95_lo"]).clip(lower=0), 100 * (s[f"{key}_ci95_hi"] - s[key]).clip(lower=0)]
            ax.errorbar(s.rate_rps, 100 * s[key], yerr=err, marker="o", markersize=3, capsize=2, linewidth=1.2,
                        color=COLORS.get(p), label=p)
        ax.axhline(95, color="k", linewidth=0.6, linestyle=":")
        ax.set_title(f"{wl}, quality level {level:g}", fontsize=9)
        ax.set_xlabel("arrival rate (req/s)", fontsize=8)
        ax.set_ylabel(f"% of requests within {SLO_SCALE} x ref(r)\n(higher is better)", fontsize=8)
        ax.set_ylim(0, 102)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=COLORS.get(p, "k"), marker="o", label=p) for p in planners]
    handles.append(Line2D([], [], color="k", linestyle=":", label="95% attainment: the throughput criterion"))
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=len(handles))
    caption(fig, error_bar_note(seeds_of(df, key)).replace("bars: mean", "points: mean"))
    return save(fig, "load_rate", out_dir)


if __name__ == "__main__":
    print(plot())
