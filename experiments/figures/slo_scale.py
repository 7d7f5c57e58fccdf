"""Paper Figure 5: SLO scale at 95% attainment per system, workload and quality level (lower is better)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import grouped_bars, ordered_planners, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("slo_throughput", **({"results_dir": results_dir} if results_dir else {}))
    workloads = sorted(df["workload"].unique())
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.6), squeeze=False)
    planners = ordered_planners(df)
    for ax, w in zip(axes[0], workloads):
        grouped_bars(ax, df[df["workload"] == w], "q_min_level", "slo_scale", planners)
        ax.set_title(f"{w}: SLO scale (p95 of latency / ref)")
        ax.set_xlabel("quality level (0 = smallest model, 1 = largest)")
    axes[0][0].legend(fontsize=7)
    return save(fig, "slo_scale", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
