"""Issue 13 / the paper's online rescheduling run: conversation -> coding -> math. Left: p95 latency per minute
(by arrival time, mean over seeds) of every system, with the phase boundaries and the re-plan and gear-switch
markers; right: SLO scale over the whole run and per phase, mean over seeds with 95% CIs. Drawn from the
committed tables alone (results/<name>.csv, _timeseries, _phases, _events, _summary)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from experiments.figures._common import COLORS, read_results, save

STYLES = {("cascadia", "online"): ("#d62728", "-", "Cascadia online"),
          ("cascadia", "static"): ("#d62728", "--", "Cascadia static"),
          ("cascadeserve", "gears"): (COLORS["cascadeserve"], "-", "CascadeServe (gears)"),
          ("single_model", "static"): (COLORS["single_model"], "-", "single model")}
MARKERS = {"replan": ("#d62728", "re-plan (Cascadia online)"), "gear_switch": (COLORS["cascadeserve"], "gear switch")}


def _style(system: str, mode: str):
    return STYLES.get((system, mode), (COLORS.get(system, "k"), ":", f"{system} ({mode})"))


def plot(results_dir=None, out_dir=None, name: str = "drift"):
    kw = {"results_dir": results_dir} if results_dir else {}
    ts = read_results(f"{name}_timeseries", **kw)
    phases = read_results(f"{name}_phases", **kw)
    events = read_results(f"{name}_events", **kw)
    summary = read_results(f"{name}_summary", **kw)
    summary, case_note = one_case(summary)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [2.0, 1.3]})
    ax = axes[0]
    for (system, mode), part in ts.groupby(["system", "mode"]):
        m = part.groupby("window_start_s").p95_latency_s.mean()
        color, ls, label = _style(system, mode)
        ax.plot(m.index / 60, m.values, color=color, ls=ls, lw=1.3, label=label)
    ax.set_yscale("log")
    bounds = phases.groupby("phase").agg(start_s=("start_s", "min"), end_s=("end_s", "max")).sort_values("start_s")
    top = ax.get_ylim()[1]
    for phase, b in bounds.iterrows():
        ax.axvline(b.start_s / 60, color="k", lw=0.9, ls=":")
        ax.text((b.start_s + b.end_s) / 120, top, phase, ha="center", va="top", fontsize=8)
    # Markers: one tick per event and seed along the bottom, so that seeds' events stay visible.
    lo = ax.get_ylim()[0]
    for kind, (color, label) in MARKERS.items():
        hit = events[events.kind == kind] if len(events) else events
        if len(hit):
            ax.plot(hit.time_s / 60, np.full(len(hit), lo * 1.15), ls="none", marker="|", ms=14, mew=1.5,
                    color=color, label=f"{label} ({len(hit)} over {hit.seed.nunique()} seeds)")
    ax.set_xlabel("arrival time (min); dotted: phase change")
    ax.set_ylabel("p95 latency per minute (s, log; lower is better)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)  # never over the data
    ax.grid(alpha=0.3)

    ax = axes[1]
    order = ["all"] + list(bounds.index)
    systems = [k for k in STYLES if ((summary.system == k[0]) & (summary["mode"] == k[1])).any()]
    width = 0.8 / max(len(systems), 1)
    for j, (system, mode) in enumerate(systems):
        part = summary[(summary.system == system) & (summary["mode"] == mode)].set_index("phase").reindex(order)
        x = np.arange(len(order)) + (j - (len(systems) - 1) / 2) * width
        err = np.vstack([part.slo_scale_mean - part.slo_scale_ci95_lo, part.slo_scale_ci95_hi - part.slo_scale_mean])
        color, ls, label = _style(system, mode)
        ax.bar(x, part.slo_scale_mean, width, color=color, alpha=0.55 if mode == "static" and system == "cascadia"
               else 0.9, hatch="//" if ls == "--" else "", yerr=err, capsize=2, label=label)
    ax.set_xticks(range(len(order)), ["whole run"] + order[1:], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("SLO scale (log; lower is better)")
    seeds = int(summary.seeds.max()) if len(summary) else 0
    ax.set_title(f"mean over {seeds} seeds; error bars: 95% bootstrap CI of that mean over the seeds{case_note}",
                 fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    ax.grid(alpha=0.3, axis="y")
    for a in axes:
        readable_log_ticks(a)
    return save(fig, name, **({"out_dir": out_dir} if out_dir else {}))


def one_case(summary):
    """The summary rows of one case (experiments.runs.case_settings): a table of several (re-planning on and off,
    two loads) has one mean per case, never pooled; the bars show the case with the most systems, and say so."""
    if "case" not in summary or summary["case"].nunique() <= 1:
        return summary, ""
    sizes = summary.groupby("case").apply(lambda g: len(g[["system", "mode"]].drop_duplicates()))
    case = sorted(sizes.index, key=lambda c: (-sizes[c], str(c)))[0]
    return summary[summary["case"] == case], f"\ncase {case} (1 of {len(sizes)} in the table)"


def readable_log_ticks(ax) -> None:
    """Log axes labelled at 1, 2, 5 x each power of ten in plain numbers (not 10^0 with unlabelled minor ticks)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if ax.get_yscale() != "log":
        return
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


if __name__ == "__main__":
    print(plot())
