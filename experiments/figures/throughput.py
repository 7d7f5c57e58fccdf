"""Paper Figure 6: throughput (req/s) at the SLO scale target per system, workload and quality level."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import grouped_bars, ordered_planners, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("slo_throughput", **({"results_dir": results_dir} if results_dir else {}))
    workloads = sorted(df["workload"].unique())
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.6), squeeze=False)
    planners = ordered_planners(df)
    for ax, w in zip(axes[0], workloads):
        grouped_bars(ax, df[df["workload"] == w], "q_min_level", "throughput_rps", planners)
        ax.set_title(f"{w}: throughput at SLO target (req/s)")
        ax.set_xlabel("quality level")
    axes[0][0].legend(fontsize=7)
    return save(fig, "throughput", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
