"""Issue 6, online part: Trace 1 -> 2 -> 3 drift with and without online re-planning (Cascadia): p95 latency per
minute by arrival time with the phase boundaries and re-plan times, and the runs' SLO scale and quality."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from experiments.figures._common import read_results, save


def _replan_times(runs) -> list[float]:
    times = []
    for src in runs.loc[runs.replan_enabled.astype(bool), "source"]:
        path = Path(src) / "summary.json"
        if path.exists():
            for s in json.loads(path.read_text())["planners"].values():
                times += [e["time_s"] for e in s.get("controller_events", []) if e["event"] == "replan" and e["applied"]]
    return times


def plot(results_dir=None, out_dir=None):
    kw = {"results_dir": results_dir} if results_dir else {}
    runs = read_results("drift", **kw)
    ts = read_results("drift_timeseries", **kw)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    for on, part in ts.groupby("replan_enabled"):
        part = part.sort_values("window_start_s")
        axes[0].plot(part.window_start_s / 60, part.p95_latency_s, marker="o", ms=3, ls="-" if on else "--",
                     color="#d62728" if on else "#7f7f7f", label=f"cascadia, re-plan {'on' if on else 'off'}")
    for t in _replan_times(runs):
        axes[0].axvline(t / 60, color="#d62728", lw=0.6, alpha=0.6)
    rate = float(runs.rate_scale.iloc[0])
    for b in (480.0 / rate, 1440.0 / rate):  # conf/workload/drift.yaml phase ends (trace time / rate_scale)
        axes[0].axvline(b / 60, color="k", lw=1.0, ls=":")
    axes[0].set_xlabel("arrival time (min); dotted: phase change, red: re-plan")
    axes[0].set_ylabel("p95 latency (s)")
    axes[0].legend(fontsize=7)
    runs = runs.sort_values("replan_enabled")
    x = range(len(runs))
    axes[1].bar(x, runs.slo_scale, color=["#7f7f7f" if not r else "#d62728" for r in runs.replan_enabled])
    for i, (_, r) in enumerate(runs.iterrows()):
        axes[1].text(i, r.slo_scale, f"quality {r.quality:.1f}", ha="center", va="bottom", fontsize=7)
    axes[1].set_xticks(list(x), ["static plan", "online re-plan"])
    axes[1].set_ylabel("SLO scale (lower is better)")
    for ax in axes:
        ax.grid(alpha=0.3)
    return save(fig, "drift", **({"out_dir": out_dir} if out_dir else {}))


if __name__ == "__main__":
    print(plot())
