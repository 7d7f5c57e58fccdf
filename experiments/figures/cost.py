"""Cost: GPU-seconds per request against quality reached, per system (from the SLO/throughput sweep)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import COLORS, ordered_planners, read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("slo_throughput", **({"results_dir": results_dir} if results_dir else {}))
    workloads = sorted(df["workload"].unique())
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.6), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        sub = df[df["workload"] == w]
        for p in ordered_planners(sub):
            s = sub[sub["planner"] == p]
            ax.scatter(s["quality"], s["gpu_s_per_request"], label=p, color=COLORS.get(p), s=18)
        ax.set_title(f"{w}: cost against quality")
        ax.set_xlabel("quality (mean judge score)")
        ax.set_ylabel("GPU-seconds per request")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save(fig, "cost", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
