"""Tidy tables of the online experiments (drift, node failure) beyond the per-run rows of experiments.aggregate:
per-phase metrics, controller markers (re-plans, gear switches, faults) and means over seeds with 95% CIs.

Written by experiments.aggregate.write_results after its own tables (<out>_phases.csv, <out>_events.csv,
<out>_summary.csv beside <out>.csv): from the command line, and from the drift experiment's Hydra callback at the end
of its multirun, so that `python -m experiments.run experiment=drift` leaves results/drift*.csv behind. Figures read
only these tables.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from experiments.stats import mean_ci95, outcome, paired_ratio_ci95
from sim.common.io import is_incomplete, write_table

from experiments.runs import aggregate, system_and_mode  # noqa: F401 (system_and_mode: public name)

EVENT_COLUMNS = ["experiment", "system", "mode", "planner", "seed", "time_s", "kind", "reason", "decided_s",
                 "gpus_per_tier", "gain_request_s", "cost_request_s", "source"]
MARKER_EVENTS = ("replan", "gpu_down", "node_down", "repair", "restore", "straggler", "link_degraded", "forced_step")


def _entries(run_dirs):
    """(run folder, scenario, entry, entry summary, system, mode) for every planner entry of every finished run
    (a run still marked RUNNING is left out, as experiments.aggregate does)."""
    for path in sorted(p for d in run_dirs for p in Path(d).rglob("summary.json")):
        if is_incomplete(path.parent):
            continue
        summary = json.loads(path.read_text())
        sc = summary["scenario"]
        replan = sc.get("config", {}).get("replan") or {}
        for entry, s in summary["planners"].items():
            yield (path.parent, sc, entry, s, *system_and_mode(entry, s, replan))


def phase_rows(run_dirs) -> pd.DataFrame:
    rows = []
    for src, sc, entry, s, system, mode in _entries(run_dirs):
        for p in s.get("phases", []):
            rows.append({"experiment": sc["name"], "system": system, "mode": mode, "planner": entry,
                         "seed": sc["seed"], "q_min": sc["q_min"], **p, "source": str(src)})
    return pd.DataFrame(rows)


def event_rows(run_dirs) -> pd.DataFrame:
    """One row per controller marker: applied re-plans and gear switches, rejected re-plans, faults."""
    rows = []
    for src, sc, entry, s, system, mode in _entries(run_dirs):
        for e in s.get("controller_events", []):
            if e.get("event") not in MARKER_EVENTS:
                continue
            kind = e["event"]
            if kind == "replan":
                kind = ("gear_switch" if "gear" in e else "replan") + ("" if e.get("applied") else "_rejected")
            rows.append({"experiment": sc["name"], "system": system, "mode": mode, "planner": entry,
                         "seed": sc["seed"], "time_s": e["time_s"], "kind": kind,
                         "reason": e.get("reason", e.get("fault", "")), "decided_s": e.get("decided_s_at"),
                         "gpus_per_tier": "/".join(map(str, e.get("gpus_per_tier", []))),
                         "gain_request_s": e.get("gain_request_s"), "cost_request_s": e.get("cost_request_s"),
                         "source": str(src)})
    return pd.DataFrame(rows)


def summary_rows(runs: pd.DataFrame, phases: pd.DataFrame, reference: str = "cascadia/online") -> pd.DataFrame:
    """Mean over seeds with a bootstrap 95% CI per (case, system, mode, phase) of SLO scale and quality; and the
    paired ratio of each system's SLO scale to the reference's (same case, same seeds), with win/tie/loss for the
    reference. A case is every setting that varies among the runs (experiments.runs.case_settings): runs at other
    loads or of other experiments are never pooled into one mean."""
    runs = runs if "case" in runs else runs.assign(case="all")
    cols = ["case", "system", "mode", "seed", "phase", "slo_scale", "quality"]
    parts = [runs.assign(phase="all")[cols]]
    if len(phases):
        phases = phases.merge(runs[["source", "case"]].drop_duplicates(), on="source", how="left")
        parts.append(phases[cols])
    data = pd.concat(parts, ignore_index=True)
    rows = []
    ref_sys, ref_mode = reference.split("/")
    for (case, system, mode, phase), g in data.groupby(["case", "system", "mode", "phase"], sort=False):
        slo, q = mean_ci95(g.slo_scale.to_numpy()), mean_ci95(g.quality.to_numpy())
        row = {"case": case, "system": system, "mode": mode, "phase": phase, "seeds": int(slo["n"]),
               "slo_scale_mean": slo["mean"], "slo_scale_ci95_lo": slo["ci95"][0], "slo_scale_ci95_hi": slo["ci95"][1],
               "quality_mean": q["mean"], "quality_ci95_lo": q["ci95"][0], "quality_ci95_hi": q["ci95"][1]}
        ref = data[(data.case == case) & (data.system == ref_sys) & (data["mode"] == ref_mode) & (data.phase == phase)]
        pair = ref.merge(g, on="seed", suffixes=("_ref", ""))
        if len(pair) and not (system == ref_sys and mode == ref_mode):
            r = paired_ratio_ci95(pair.slo_scale_ref.to_numpy(), pair.slo_scale.to_numpy())
            row.update({"ratio_to": reference, "slo_ratio_mean": r["mean"], "slo_ratio_ci95_lo": r["ci95"][0],
                        "slo_ratio_ci95_hi": r["ci95"][1],
                        "reference_outcome": outcome(r["ci95"], null=1.0, higher_is_better=False)})
        rows.append(row)
    return pd.DataFrame(rows)


def timeseries_rows(run_dirs) -> pd.DataFrame:
    """Per-minute tables (timeseries_<entry>.csv) with system, mode and seed."""
    frames = []
    for src, sc, entry, s, system, mode in _entries(run_dirs):
        path = Path(src) / f"timeseries_{entry}.csv"
        if not path.exists():
            continue
        ts = pd.read_csv(path)
        replan = sc.get("config", {}).get("replan") or {}
        for k, v in (("seed", sc["seed"]), ("mode", mode), ("system", system), ("planner", entry),
                     ("replan_enabled", bool(replan.get("enabled"))), ("experiment", sc["name"])):
            ts.insert(0, k, v)
        frames.append(ts)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_tables(run_dirs, out: Path) -> list[Path]:
    """The extra tables beside out (results/<name>.csv): _phases, _events, _summary; returns the paths written."""
    out = Path(out)
    runs = aggregate(run_dirs)
    written = []
    phases, events = phase_rows(run_dirs), event_rows(run_dirs)
    if not len(events):  # a run with no marker still gets its (empty) table: figures read it
        events = pd.DataFrame(columns=EVENT_COLUMNS)
    for suffix, table in (("phases", phases), ("events", events)):
        if len(table.columns):
            written.append(write_table(table, out.with_name(f"{out.stem}_{suffix}.csv")))
    if "system" in runs and runs.seed.nunique() >= 1 and "mode" in runs:
        written.append(write_table(summary_rows(runs, phases), out.with_name(f"{out.stem}_summary.csv")))
    return written
