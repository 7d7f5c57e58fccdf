"""Paper Figure 8: Cascadia against its ablations (SLO scale and throughput per workload)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import grouped_bars, ordered_planners, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("ablation", **({"results_dir": results_dir} if results_dir else {}))
    planners = ordered_planners(df)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    grouped_bars(axes[0], df, "workload", "slo_scale", planners)
    axes[0].set_title("SLO scale (lower is better)")
    grouped_bars(axes[1], df, "workload", "throughput_rps", planners)
    axes[1].set_title("throughput at SLO target (req/s)")
    axes[0].legend(fontsize=7)
    return save(fig, "ablation", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
