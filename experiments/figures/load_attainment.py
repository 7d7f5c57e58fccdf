"""The paper's end-to-end figure from the load sweep: SLO attainment against SLO scale per system, at three loads.

Reads results/load_sweep.csv (attain_at_<s>: share of test requests within s x ref(r), mean over seeds with its 95%
CI). Rows: workloads; columns: three loads fixed in advance (0.25, 0.7 and 1.0 x the single model's capacity:
light, loaded, at capacity); quality level 0.85 (the sweep's higher level)."""
from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.figures._common import COLORS, caption, legend_below, ordered_planners, read_results, save
from experiments.protocol import ATTAINMENT_SCALES

LOADS = (0.25, 0.7, 1.0)
LEVEL = 0.85


def plot(results_dir=None, out_dir=None):
    df = read_results("load_sweep", results_dir)
    df = df[(df.q_min_level - LEVEL).abs() < 1e-9]
    if df.empty:
        from sim.common.errors import DataError

        raise DataError(f"the load_sweep table has no row at quality level {LEVEL:g}")
    workloads = sorted(df.workload.unique())
    planners = ordered_planners(df)
    fig = Figure(figsize=(3.4 * len(LOADS), 2.6 * len(workloads)))
    axes = fig.subplots(len(workloads), len(LOADS), squeeze=False)
    xs = list(ATTAINMENT_SCALES)
    for r, wl in enumerate(workloads):
        for c, load in enumerate(LOADS):
            ax = axes[r][c]
            sub = df[(df.workload == wl) & ((df.load_fraction - load).abs() < 1e-9)]
            for p in planners:
                row = sub[sub.planner == p]
                if row.empty:
                    continue
                row = row.iloc[0]
                y = [100 * row[f"attain_at_{s:g}"] for s in xs]
                lo = [100 * row.get(f"attain_at_{s:g}_ci95_lo", float("nan")) for s in xs]
                hi = [100 * row.get(f"attain_at_{s:g}_ci95_hi", float("nan")) for s in xs]
                ax.plot(xs, y, marker=".", color=COLORS.get(p), label=p, linewidth=1.2)
                ax.fill_between(xs, lo, hi, color=COLORS.get(p), alpha=0.15, linewidth=0)
            rate = sub.rate_rps.mean() if len(sub) else float("nan")
            ax.set_title(f"{wl}, load {load:g} x capacity ({rate:.1f} req/s)", fontsize=7.5)
            ax.set_xscale("log")
            ax.set_ylim(0, 102)
            ax.axhline(95, color="k", linewidth=0.6, linestyle=":")
            ax.set_xlabel("SLO scale s (deadline = s x ref(r))", fontsize=8)
            ax.set_ylabel("SLO attainment, % of requests\n(higher is better)", fontsize=8)
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=COLORS.get(p, "k"), marker=".", label=p) for p in planners]
    handles.append(Line2D([], [], color="k", linestyle=":", label="95%: the SLO scale a run attains"))
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=len(handles))
    fig.suptitle(f"SLO attainment against SLO scale (quality level {LEVEL:g})", fontsize=10)
    n = int(df["attain_at_10_n"].max()) if "attain_at_10_n" in df else None
    caption(fig, f"lines: mean over {n} seeds; bands (no error bars): 95% bootstrap CI of that mean over the seeds")
    return save(fig, "load_attainment", out_dir)


if __name__ == "__main__":
    print(plot())
