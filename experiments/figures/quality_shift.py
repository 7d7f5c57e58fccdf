"""The paper's resource-allocation case study: how the quality requirement moves GPUs and request shares between tiers (Cascadia)."""
from __future__ import annotations

from experiments.figures._common import caption, legend_below, new_figure, read_results, save, tier_names


def plot(results_dir=None, out_dir=None):
    df = read_results("quality_shift", results_dir)
    df = df[df["planner"] == "cascadia"].sort_values("q_min")
    tiers = sorted(int(c[len("gpus_t"):]) for c in df.columns if c.startswith("gpus_t"))
    names = tier_names(df["cascade"].iloc[0]) if len(df) else [f"tier {t}" for t in tiers]
    fig, axes = new_figure(2)
    lines = []
    for t in tiers:
        lines += axes[0].plot(df["q_min"], df[f"gpus_t{t}"], marker="o", label=f"tier {t}: {names[t]}")
        axes[1].plot(df["q_min"], 100 * df[f"share_t{t}"], marker="o")
    axes[0].set_title("GPUs per tier (Cascadia)", fontsize=9)
    axes[0].set_ylabel("GPUs (H100)", fontsize=8)
    axes[1].set_title("requests reaching each tier (Cascadia)", fontsize=9)
    axes[1].set_ylabel("% of requests", fontsize=8)
    for ax in axes:
        ax.set_xlabel("q_min: required mean judge score, 0-100", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    legend_below(fig, lines, [ln.get_label() for ln in lines], ncol=len(lines))
    caption(fig, "no error bars: one plan per q_min (the run's first seed), its GPUs and its share of requests per tier")
    return save(fig, "quality_shift", out_dir)


if __name__ == "__main__":
    print(plot())
