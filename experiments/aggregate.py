"""One aggregation step: raw run outputs (summary.json per Hydra job, never edited) -> tidy tables in results/."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from sim.cli import exit_on_user_error
from sim.errors import DataError

SCALAR_KEYS = ["slo_scale", "throughput_rps", "quality", "gpu_s_per_request", "p95_latency_s", "p50_latency_s",
               "completed_rps", "plan_s", "sim_s", "dropped", "attainment", "reference"]


def tidy_rows(summary: dict, source: Path) -> list[dict]:
    """One row per planner of one run: scenario keys, scalar metrics, and per-tier shares and GPUs as columns."""
    sc = summary["scenario"]
    rows = []
    for planner, s in summary["planners"].items():
        row = {"experiment": sc["name"], "workload": sc["workload"], "cascade": "->".join(sc["cascade"]),
               "num_gpus": sc["num_gpus"], "q_min": sc["q_min"], "q_min_level": sc.get("q_min_level"), "rate_scale": sc["rate_scale"],
               "rate_rps": sc["rate_rps"], "seed": sc["seed"], "planner": planner, "source": str(source)}
        row.update({k: s.get(k) for k in SCALAR_KEYS if k in s})
        for i, share in enumerate(s.get("tier_share", [])):
            row[f"share_t{i}"] = share
        for i, gpus in enumerate(s.get("tier_gpus", [])):
            row[f"gpus_t{i}"] = gpus
        row["thresholds"] = "/".join(f"{h:g}" for h in s.get("thresholds", []))
        row.update(online_columns(summary, s, planner))
        rows.append(row)
    return rows


def online_columns(summary: dict, s: dict, planner: str) -> dict:
    """Faults, re-planning and gears (experiments.online): the system and its mode (static, online, gears),
    whether re-planning was on, how often it re-planned or switched gears, and the latency before and after the
    first fault."""
    from experiments.drift_tables import system_and_mode

    if "controller_events" not in s and not summary["scenario"].get("config", {}).get("replan"):
        return {}
    replan = summary["scenario"].get("config", {}).get("replan") or {}
    system, mode = system_and_mode(planner, s, replan)
    out = {"system": system, "mode": mode, "replan_enabled": bool(replan.get("enabled", False)),
           "replans": s.get("replans", 0), "gear_switches": s.get("gear_switches", 0),
           "faults": len(s.get("faults", []))}
    out.update({k: v for k, v in (s.get("fault_effect") or {}).items() if isinstance(v, (int, float))})
    return out


def timeseries(run_dirs: list[Path]) -> pd.DataFrame:
    """The per-window tables (timeseries_<planner>.csv) of every run, with the run's replan setting, system, mode
    and seed (experiments.drift_tables.timeseries_rows)."""
    from experiments.drift_tables import timeseries_rows

    return timeseries_rows(run_dirs)


def aggregate(run_dirs: list[Path]) -> pd.DataFrame:
    summaries = sorted(p for d in run_dirs for p in Path(d).rglob("summary.json"))
    if not summaries:
        raise DataError(f"no summary.json under {', '.join(map(str, run_dirs))}; run an experiment first")
    rows = []
    for path in summaries:
        try:
            rows.extend(tidy_rows(json.loads(path.read_text()), path.parent))
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(f"{path}: not a summary written by experiments.run ({exc})") from None
    return pd.DataFrame(rows)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="Hydra run or multirun folders to read")
    ap.add_argument("--out", type=Path, required=True, help="tidy CSV to write (e.g. results/slo_throughput.csv)")
    args = ap.parse_args(argv)
    table = aggregate(args.run_dirs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"{len(table)} rows from {table['source'].nunique()} runs -> {args.out}")
    ts = timeseries(args.run_dirs)
    if len(ts):
        ts_out = args.out.with_name(f"{args.out.stem}_timeseries.csv")
        ts.to_csv(ts_out, index=False)
        print(f"{len(ts)} time-series windows -> {ts_out}")
        from experiments.drift_tables import write_tables

        for path in write_tables(args.run_dirs, args.out):  # phases, controller markers, means with CIs
            print(f"-> {path}")


if __name__ == "__main__":
    main()
