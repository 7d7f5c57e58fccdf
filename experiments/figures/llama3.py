"""Paper Figure 7: the Llama-3 8B -> 70B cascade: SLO scale and throughput per system and quality level."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import grouped_bars, ordered_planners, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("llama3", **({"results_dir": results_dir} if results_dir else {}))
    planners = ordered_planners(df)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    grouped_bars(axes[0], df, "q_min_level", "slo_scale", planners)
    axes[0].set_title("Llama-3 8B->70B: SLO scale")
    grouped_bars(axes[1], df, "q_min_level", "throughput_rps", planners)
    axes[1].set_title("Llama-3 8B->70B: throughput (req/s)")
    for ax in axes:
        ax.set_xlabel("quality level")
    axes[0].legend(fontsize=7)
    return save(fig, "llama3", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
