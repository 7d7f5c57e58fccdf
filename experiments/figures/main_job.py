"""Figure of the main job: SLO scale, throughput, quality and cost per planner, side by side."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

PANELS = [("slo_scale", "SLO scale at 95%: p95 latency / ref\n(lower is better)"),
          ("throughput_rps", "throughput at SLO scale 10 (req/s)\n(higher is better)"),
          ("quality", "quality: mean judge score, 0-100\n(higher is better)"),
          ("gpu_s_per_request", "GPU-seconds per request\n(lower is better)")]


def plot_main_job(table: pd.DataFrame, path: Path, title: str = "", throughput_cap_rps: float | None = None) -> Path:
    """One panel per metric; throughput bars at the bisection's cap (a lower bound) are hatched and marked ≥."""
    fig = Figure(figsize=(4.2 * len(PANELS), 4.0))
    axes = fig.subplots(1, len(PANELS))
    colors = ["#d62728" if p == "cascadia" else "#7f7f7f" for p in table["planner"]]
    for ax, (col, label) in zip(axes, PANELS):
        values = pd.to_numeric(table[col], errors="coerce")
        top = float(values.max()) if values.notna().any() else 1.0
        ci = table.get(f"{col}_ci95")  # [lo, hi] per planner over seeds (experiments.protocol)
        yerr = None if ci is None else [[max(m - c[0], 0.0) for m, c in zip(values.fillna(0), ci)],
                                        [max(c[1] - m, 0.0) for m, c in zip(values.fillna(0), ci)]]
        bars = ax.bar(range(len(table)), values.fillna(0).where(values != 0, top * 0.01), color=colors,
                      yerr=yerr, capsize=3, error_kw={"elinewidth": 0.8})
        for i, v in enumerate(values):
            if col == "throughput_rps" and throughput_cap_rps and v >= throughput_cap_rps * (1 - 1e-9):
                bars[i].set_hatch("///")
                ax.text(i, v, "≥", ha="center", va="bottom", fontsize=8)
            if pd.isna(v) or v == 0:  # drawn and labelled, never a silently missing bar
                ax.text(i, top * 0.01, "n/a" if pd.isna(v) else "0", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(table)), table["planner"], rotation=45, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.0, "bars: mean over the run's seeds; error bars: 95% bootstrap CI of that mean over the seeds"
             + ("; hatched ≥: at the throughput bisection's cap, a lower bound" if throughput_cap_rps else ""),
             ha="center", va="top", fontsize=7, style="italic")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # tight: keeps the note under the axes
    return path
