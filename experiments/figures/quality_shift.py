"""The paper's resource-allocation case study: how the quality requirement moves GPUs and request shares between tiers (Cascadia)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("quality_shift", **({"results_dir": results_dir} if results_dir else {}))
    df = df[df["planner"] == "cascadia"].sort_values("q_min")
    tiers = sorted(int(c[len("gpus_t"):]) for c in df.columns if c.startswith("gpus_t"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for t in tiers:
        axes[0].plot(df["q_min"], df[f"gpus_t{t}"], marker="o", label=f"tier {t}")
        axes[1].plot(df["q_min"], 100 * df[f"share_t{t}"], marker="o", label=f"tier {t}")
    axes[0].set_title("GPUs per tier")
    axes[1].set_title("% of requests reaching each tier")
    for ax in axes:
        ax.set_xlabel("q_min (mean judge score)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, "quality_shift", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
