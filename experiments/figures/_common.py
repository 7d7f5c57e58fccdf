"""Helpers shared by the figure scripts: read a tidy results table, save a figure, planner colours."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sim.errors import DataError  # noqa: E402
from sim.paths import PROJECT_ROOT  # noqa: E402

RESULTS_DIR = PROJECT_ROOT / "results"
FIGURES_DIR = PROJECT_ROOT / "results" / "figures"
PLANNER_ORDER = ["single_model", "sarathi", "routellm", "cascadeserve", "cascadia_no_parallelism",
                 "cascadia_no_allocation", "cascadia"]
COLORS = {"single_model": "#7f7f7f", "sarathi": "#bcbd22", "routellm": "#17becf", "cascadeserve": "#1f77b4",
          "cascadia_no_parallelism": "#ff9896", "cascadia_no_allocation": "#ffbb78", "cascadia": "#d62728"}


def read_results(name: str, results_dir: Path = RESULTS_DIR) -> pd.DataFrame:
    path = Path(results_dir) / f"{name}.csv"
    if not path.exists():
        raise DataError(f"{path} does not exist; run the experiment and `python -m experiments.aggregate` first "
                        f"(see README, 'Figures')")
    return pd.read_csv(path)


def ordered_planners(df: pd.DataFrame) -> list[str]:
    present = set(df["planner"])
    return [p for p in PLANNER_ORDER if p in present] + sorted(present - set(PLANNER_ORDER))


def save(fig, name: str, out_dir: Path = FIGURES_DIR) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ci_yerr(sub: pd.DataFrame, value: str, xs: list):
    """Error bars from the tidy table's 95% CI columns (<value>_ci95_lo/_hi, experiments.aggregate), as
    matplotlib's 2 x n yerr; None when the table has no CI for this value."""
    lo_col, hi_col = f"{value}_ci95_lo", f"{value}_ci95_hi"
    if lo_col not in sub.columns or hi_col not in sub.columns:
        return None
    mean = [sub[value].get(v, float("nan")) for v in xs]
    lo = [max(m - sub[lo_col].get(v, m), 0.0) for m, v in zip(mean, xs)]
    hi = [max(sub[hi_col].get(v, m) - m, 0.0) for m, v in zip(mean, xs)]
    return [lo, hi]


def grouped_bars(ax, df: pd.DataFrame, x: str, value: str, planners: list[str]) -> None:
    xs = sorted(df[x].unique())
    width = 0.8 / max(len(planners), 1)
    for j, p in enumerate(planners):
        sub = df[df["planner"] == p].set_index(x)
        vals = [sub[value].get(v, float("nan")) for v in xs]
        ax.bar([i + j * width for i in range(len(xs))], vals, width, label=p, color=COLORS.get(p),
               yerr=ci_yerr(sub, value, xs), capsize=2, error_kw={"elinewidth": 0.8})
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(xs))], [f"{v:g}" if isinstance(v, float) else v for v in xs])
    ax.grid(axis="y", alpha=0.3)


def bars_per_panel(table: str, panels: list[tuple[str, str, str]], x: str, xlabel: str, fig_name: str,
                   results_dir=None, out_dir=None, panel_col: str | None = None) -> Path:
    """Grouped bars (one bar per planner) of value columns. panels: (filter value or "", value column, title);
    with panel_col set, panel i shows the rows whose panel_col equals its filter value."""
    df = read_results(table, **({"results_dir": results_dir} if results_dir else {}))
    if panel_col:
        panels = [(v, value, title.format(v)) for v in sorted(df[panel_col].unique()) for _, value, title in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    planners = ordered_planners(df)
    for ax, (key, value, title) in zip(axes[0], panels):
        grouped_bars(ax, df[df[panel_col] == key] if panel_col else df, x, value, planners)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0][0].legend(fontsize=7)
    return save(fig, fig_name, **({"out_dir": out_dir} if out_dir else {}))
