"""The paper's planner scalability: Cascadia's planning time against the number of GPUs (cold and warm cost-model cache)."""
from __future__ import annotations

from experiments.figures._common import caption, legend_below, new_figure, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("planner_time", results_dir)
    fig, (ax,) = new_figure(1, width=5.5)
    lines = ax.loglog(df["num_gpus"], df["cold_s"], marker="o", label="first plan (cold caches)")
    lines += ax.loglog(df["num_gpus"], df["warm_s"], marker="s", label="re-plan (warm caches)")
    lines.append(ax.axhline(60, color="grey", ls="--", lw=0.8, label="target: 60 s at 1024 GPUs"))
    ax.set_xlabel("GPUs (H100)", fontsize=8)
    ax.set_ylabel("Cascadia plan time (s, 2-core machine)\n(lower is better)", fontsize=8)
    ax.set_title("planner time against cluster size", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    legend_below(fig, lines, [ln.get_label() for ln in lines], ncol=1)
    caption(fig, "no error bars: one timing per size and cache state")
    return save(fig, "planner_time", out_dir)


if __name__ == "__main__":
    print(plot())
