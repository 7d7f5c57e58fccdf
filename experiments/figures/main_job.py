"""Figure of the main job: SLO scale, throughput, quality and cost per planner, side by side."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PANELS = [("slo_scale", "SLO scale at 95% (lower is better)"),
          ("throughput_rps", "throughput at SLO (req/s)"),
          ("quality", "quality (mean judge score)"),
          ("gpu_s_per_request", "GPU-seconds per request")]


def plot_main_job(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.8))
    colors = ["#d62728" if p == "cascadia" else "#7f7f7f" for p in table["planner"]]
    for ax, (col, label) in zip(axes, PANELS):
        ci = table.get(f"{col}_ci95")  # [lo, hi] per planner over seeds (experiments.protocol)
        yerr = None if ci is None else [[max(m - c[0], 0.0) for m, c in zip(table[col], ci)],
                                        [max(c[1] - m, 0.0) for m, c in zip(table[col], ci)]]
        ax.bar(range(len(table)), table[col], color=colors, yerr=yerr, capsize=3)
        ax.set_xticks(range(len(table)), table["planner"], rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
