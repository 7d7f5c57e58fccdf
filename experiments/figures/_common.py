"""Helpers shared by the figure scripts: read a tidy results table, planner colours, model names, bars that mark
lower bounds and zeros, legends outside the axes, save a figure.

Figures are matplotlib `Figure` objects, not pyplot state: drawing one never picks or switches a backend, so a
notebook that imports these scripts keeps its inline backend (a module-level `matplotlib.use("Agg")` used to
turn every notebook plot off).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sim.common.errors import DataError
from sim.common.paths import CONF_DIR, PROJECT_ROOT

RESULTS_DIR = PROJECT_ROOT / "results"
FIGURES_DIR = PROJECT_ROOT / "results" / "figures"
PLANNER_ORDER = ["single_model", "sarathi", "routellm", "routellm_oracle_noisy", "cascadeserve", "cascadia_no_parallelism",
                 "cascadia_no_allocation", "cascadia_colocated", "cascadia"]
COLORS = {"single_model": "#7f7f7f", "sarathi": "#bcbd22", "routellm": "#17becf", "routellm_oracle_noisy": "#9467bd",
          "cascadeserve": "#1f77b4", "cascadia_no_parallelism": "#ff9896", "cascadia_no_allocation": "#ffbb78",
          "cascadia_colocated": "#8c564b", "cascadia": "#d62728"}
QUALITY_LEVEL_LABEL = "quality level q_min_level (0 = smallest model's quality, 1 = largest's)"
SLO_SCALE_LABEL = "SLO scale: p95 of latency / ref latency\n(lower is better)"
THROUGHPUT_LABEL = "throughput at SLO scale 10 (req/s)\n(higher is better)"
SAVE_DPI = 110  # notebooks/figures.ipynb lowers it to stay small
CAP_NOTE = "hatched ≥: at the bisection cap (10x the rate), a lower bound"


# What the figures read from each tidy table: (columns they need, columns that name one row, may it be empty).
# A row named twice (two runs of one case aggregated into one table) would be drawn as one bar of either value.
_SWEEP = ["planner", "slo_scale", "throughput_rps", "quality", "gpu_s_per_request", "workload", "rate_scale"]
TABLES = {
    "slo_throughput": (_SWEEP + ["q_min_level"], ["workload", "q_min_level", "planner"], False),
    "ablation": (_SWEEP, ["workload", "planner"], False),
    "llama3": (_SWEEP + ["q_min_level", "cascade"], ["q_min_level", "planner"], False),
    "llama31": (["planner", "slo_scale", "workload", "q_min_level"], ["workload", "q_min_level", "planner"], False),
    "quality_shift": (["planner", "q_min", "cascade", "gpus_t0", "share_t0"], ["planner", "q_min"], False),
    "node_failure": (["planner", "replan_enabled", "slo_scale"], ["planner", "replan_enabled", "seed"], False),
    "node_failure_timeseries": (["planner", "replan_enabled", "window_start_s", "p95_latency_s"],
                                ["planner", "replan_enabled", "seed", "window_start_s"], False),
    "planner_time": (["num_gpus", "cold_s", "warm_s"], ["num_gpus"], False),
    "disaggregation": (_SWEEP + ["q_min_level", "rate_rps"], ["rate_scale", "q_min_level", "planner"], False),
    "drift_timeseries": (["system", "mode", "window_start_s", "p95_latency_s"],
                         ["system", "mode", "planner", "replan_enabled", "seed", "window_start_s"], False),
    "drift_phases": (["phase", "start_s", "end_s"], [], False),
    "drift_events": (["kind", "time_s", "seed"], [], True),  # a run may have no re-plan or gear switch
    "drift_summary": (["system", "mode", "phase", "seeds", "slo_scale_mean", "slo_scale_ci95_lo", "slo_scale_ci95_hi"],
                      ["case", "system", "mode", "phase"], False),
}


def read_results(name: str, results_dir: Path | None = None) -> pd.DataFrame:
    """A tidy table the figures read, checked: every problem (missing, truncated, no rows, a column the figure needs
    missing, one row named twice) is one DataError naming the file, never a traceback from the plotting code."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.csv"
    if not path.exists():
        raise DataError(f"{path} does not exist; run the experiment and `python -m experiments.aggregate` first "
                        f"(see docs/results.md)")
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raise DataError(f"{path} ends in the middle of a line: the table is truncated; regenerate it with "
                        "`python -m experiments.aggregate`")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable CSV table ({msg})") from None
    needed, key, may_be_empty = TABLES.get(name, ([], [], True))
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing} that this figure needs; it has {list(df.columns)[:12]}")
    if df.empty and not may_be_empty:
        raise DataError(f"{path} has a header but no rows; nothing to draw")
    key = [c for c in key if c in df.columns]
    if key and df.duplicated(key).any():
        dup = df[df.duplicated(key, keep=False)][key].iloc[0].to_dict()
        raise DataError(f"{path} has {int(df.duplicated(key, keep=False).sum())} rows for one case ({dup}): each "
                        "case must appear once; aggregate one sweep per table")
    return df


def ordered_planners(df: pd.DataFrame) -> list[str]:
    present = set(df["planner"])
    return [p for p in PLANNER_ORDER if p in present] + sorted(present - set(PLANNER_ORDER))


@functools.lru_cache(maxsize=None)
def model_name(model: str) -> str:
    """A model's published name (conf/model/<model>.yaml hf_id without the organisation), else the config name."""
    path = CONF_DIR / "model" / f"{model}.yaml"
    hf_id = (yaml.safe_load(path.read_text()) or {}).get("hf_id") if path.exists() else None
    return str(hf_id).split("/")[-1].removesuffix("-Instruct") if hf_id else model


def tier_names(cascade: str) -> list[str]:
    """Tier labels of a tidy table's `cascade` column ("a->b->c")."""
    return [model_name(m) for m in str(cascade).split("->")]


def new_figure(ncols: int, width: float = 5.0, height: float = 3.6, **kw):
    fig = Figure(figsize=(width * ncols, height))
    axes = fig.subplots(1, ncols, squeeze=False, **kw)[0]
    return fig, list(axes)


def legend_below(fig, handles, labels, ncol: int | None = None) -> None:
    """One legend for the whole figure, below the axes, where it cannot cover data."""
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7,
               ncol=ncol or min(len(labels), 4), frameon=False)


def seeds_of(df: pd.DataFrame, value: str) -> int | None:
    """How many seeds each mean of `value` is over (the table's <value>_n column, experiments.aggregate)."""
    col = f"{value}_n"
    return int(pd.to_numeric(df[col], errors="coerce").max()) if col in df and df[col].notna().any() else None


def error_bar_note(n_seeds: int | None) -> str:
    """What a figure's error bars are, in one line under it."""
    if not n_seeds:
        return "no error bars: one value per bar (the table has no per-seed CI)"
    return f"bars: mean over {n_seeds} seeds; error bars: 95% bootstrap CI of that mean over the seeds"


def caption(fig, text: str) -> None:
    """One line of small text under the figure (below the legend), e.g. what its error bars are."""
    fig.text(0.5, -0.2, text, ha="center", va="top", fontsize=7, style="italic")  # below a two-row legend


def save(fig, name: str, out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or FIGURES_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=SAVE_DPI, bbox_inches="tight")  # tight: keeps a legend placed below the axes
    if getattr(fig.canvas, "manager", None) is not None:  # a pyplot figure (drift.py): free it
        import matplotlib.pyplot as plt

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


def throughput_cap_rps(row) -> float:
    """The highest throughput the bisection can report for this row: hi x the rate of the first horizon_s seconds of
    the run's test split (experiments.protocol.throughput_cap_rps). A table may carry it; otherwise it is recomputed
    from the row's experiment, workload and rate_scale (experiments.protocol.scenario_cap_rps)."""
    if "throughput_cap_rps" in row and pd.notna(row["throughput_cap_rps"]):
        return float(row["throughput_cap_rps"])
    from experiments.protocol import scenario_cap_rps

    try:
        return scenario_cap_rps(str(row.get("experiment", "default")), str(row["workload"]), float(row["rate_scale"]))
    except Exception:  # a workload this checkout cannot rebuild: no bar is marked rather than a wrong mark
        return float("inf")


def is_lower_bound(row, value: float) -> bool:
    """A throughput bar is a lower bound when any seed behind its mean sat at the bisection's cap (the table's
    throughput_lower_bound, experiments.aggregate), or, in a table without that column, when it is the cap."""
    flag = row.get("throughput_lower_bound") if hasattr(row, "get") else None
    if flag is not None and pd.notna(flag):
        return str(flag).lower() in ("true", "1")
    return value >= throughput_cap_rps(row) * (1 - 1e-9)


def grouped_bars(ax, df: pd.DataFrame, x: str, value: str, planners: list[str], lower_bound_cap: bool = False) -> bool:
    """One bar per planner at each x. A zero is drawn as a thin stub labelled 0 (not a missing bar), a missing
    value is labelled n/a; with lower_bound_cap, bars at the throughput bisection cap are hatched and labelled ≥.
    Returns whether any bar was at the cap."""
    xs = sorted(df[x].unique())
    any_capped = False
    width = 0.8 / max(len(planners), 1)
    top = float(pd.to_numeric(df[value], errors="coerce").max() or 1.0)
    for j, p in enumerate(planners):
        sub = df[df["planner"] == p].set_index(x)
        for i, v in enumerate(xs):
            pos = i + j * width
            if v not in sub.index or pd.isna(sub.loc[v, value]):
                ax.text(pos, 0, "n/a", ha="center", va="bottom", fontsize=5, rotation=90)
                continue
            row = sub.loc[v]
            val = float(row[value])
            capped = lower_bound_cap and is_lower_bound(row, val)
            any_capped |= capped
            err = ci_yerr(sub, value, [v])
            ax.bar(pos, val if val > 0 else top * 0.01, width, color=COLORS.get(p), hatch="///" if capped else None,
                   edgecolor="k" if capped or val == 0 else None, linewidth=0.4,
                   yerr=err, capsize=2, error_kw={"elinewidth": 0.8})
            if val == 0:
                ax.text(pos, top * 0.01, "0", ha="center", va="bottom", fontsize=6)
            elif capped:
                ax.text(pos, val, "≥", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(xs))],
                  [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    return any_capped


def planner_handles(planners: list[str], with_cap: bool = False):
    handles = [Patch(color=COLORS.get(p, "k"), label=p) for p in planners]
    if with_cap:
        handles.append(Patch(facecolor="white", edgecolor="k", hatch="///", label=CAP_NOTE))
    return handles, [h.get_label() for h in handles]


def bars_per_panel(table: str, panels: list[tuple[str, str, str, str]], x: str, xlabel: str, fig_name: str,
                   results_dir=None, out_dir=None, panel_col: str | None = None, suptitle: str = "") -> Path:
    """Grouped bars (one bar per planner) of value columns. panels: (filter value or "", value column, title,
    y label); with panel_col set, panel i shows the rows whose panel_col equals its filter value. Throughput
    panels mark bars at the bisection cap."""
    df = read_results(table, results_dir)
    if panel_col:
        panels = [(v, value, title.format(v), ylabel) for v in sorted(df[panel_col].unique())
                  for _, value, title, ylabel in panels]
    fig, axes = new_figure(len(panels))
    planners = ordered_planners(df)
    any_cap = False
    for ax, (key, value, title, ylabel) in zip(axes, panels):
        any_cap |= grouped_bars(ax, df[df[panel_col] == key] if panel_col else df, x, value, planners,
                                lower_bound_cap=value == "throughput_rps")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    legend_below(fig, *planner_handles(planners, with_cap=any_cap))
    caption(fig, error_bar_note(seeds_of(df, panels[0][1])))
    return save(fig, fig_name, out_dir)
