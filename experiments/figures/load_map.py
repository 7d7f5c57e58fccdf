"""Where cascades pay: Cascadia's SLO-scale ratio to the single model (single / Cascadia: the ratio of the means over paired seeds, > 1 = Cascadia better)
over load x quality level, one map per workload, from results/load_sweep_seeds.csv (paired over seeds, 95% bootstrap
CI; a CI containing 1 is a tie, written as such in the cell)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Patch

from experiments.figures._common import RESULTS_DIR, caption, legend_below, new_figure, save
from experiments.protocol import decide
from experiments.stats import paired_ratio_ci95
from sim.common.errors import DataError

BASELINE = "single_model"


def ratios(seeds: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per (workload, q_min_level, load_fraction): the paired ratio baseline / cascadia with CI, outcome."""
    keys = ["workload", "q_min_level", "load_fraction"]
    c = seeds[seeds.planner == "cascadia"].set_index([*keys, "seed"]).slo_scale
    b = seeds[seeds.planner == baseline].set_index([*keys, "seed"]).slo_scale
    both = pd.concat({"c": c, "b": b}, axis=1, join="inner")
    rows = []
    for case, g in both.groupby(level=keys):
        r = paired_ratio_ci95(g.b, g.c)
        rows.append({**dict(zip(keys, case)), "ratio": r["mean"], "lo": r["ci95"][0], "hi": r["ci95"][1],
                     "outcome": decide(r), "seeds": r["n"]})
    return pd.DataFrame(rows)


def plot(results_dir=None, out_dir=None):
    from pathlib import Path

    path = Path(results_dir or RESULTS_DIR) / "load_sweep_seeds.csv"
    if not path.exists():
        raise DataError(f"{path} does not exist; run experiment=load_sweep and `python -m experiments.aggregate` first")
    table = ratios(pd.read_csv(path))
    workloads = sorted(table.workload.unique())
    fig, axes = new_figure(len(workloads), width=6.0, height=2.2 + 0.5 * table.q_min_level.nunique())
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-1.0, vmax=1.0)
    for ax, wl in zip(axes, workloads):
        t = table[table.workload == wl]
        loads = sorted(t.load_fraction.unique())
        levels = sorted(t.q_min_level.unique())
        grid = np.full((len(levels), len(loads)), np.nan)
        for _, r in t.iterrows():
            grid[levels.index(r.q_min_level), loads.index(r.load_fraction)] = np.log2(r.ratio)
        ax.pcolormesh(np.arange(len(loads) + 1), np.arange(len(levels) + 1), grid, cmap="RdBu", norm=norm)
        for _, r in t.iterrows():
            x, y = loads.index(r.load_fraction) + 0.5, levels.index(r.q_min_level) + 0.5
            ax.text(x, y, f"{r.ratio:.2f}\n[{r.lo:.2f}, {r.hi:.2f}]\n{r.outcome}", ha="center", va="center",
                    fontsize=5.5, fontweight="bold" if r.outcome != "tie" else "normal")
        ax.set_xticks(np.arange(len(loads)) + 0.5, [f"{v:g}" for v in loads], fontsize=7)
        ax.set_yticks(np.arange(len(levels)) + 0.5, [f"{v:g}" for v in levels], fontsize=7)
        ax.set_xlabel("load: arrival rate / the single model's capacity", fontsize=8)
        ax.set_ylabel("quality level", fontsize=8)
        ax.set_ylim(0, len(levels))
        ax.set_title(f"{wl}: single-model SLO scale / Cascadia's", fontsize=9)
    handles = [Patch(color="#2166ac", label="> 1: Cascadia's SLO scale is lower (it wins)"),
               Patch(color="#b2182b", label="< 1: the single model wins"),
               Patch(color="white", label="cells: mean [95% CI] and outcome; a CI containing 1 is a tie")]
    legend_below(fig, handles, [h.get_label() for h in handles], ncol=3)
    caption(fig, f"no error bars: each cell writes its paired 95% bootstrap CI over {int(table.seeds.min())} seeds")
    return save(fig, "load_map", out_dir)


if __name__ == "__main__":
    print(plot())
