"""The paper's planner scalability: Cascadia's planning time against the number of GPUs (cold and warm cost-model cache)."""
from __future__ import annotations

import matplotlib.pyplot as plt

from experiments.figures._common import read_results, save


def plot(results_dir=None, out_dir=None):
    df = read_results("planner_time", **({"results_dir": results_dir} if results_dir else {}))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(df["num_gpus"], df["cold_s"], marker="o", label="first plan (cold caches)")
    ax.loglog(df["num_gpus"], df["warm_s"], marker="s", label="re-plan (warm caches)")
    ax.axhline(60, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("GPUs (H100)")
    ax.set_ylabel("Cascadia plan time (s), 2-core machine")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, "planner_time", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
