"""Reading finished runs: the summary.json files of complete Hydra jobs (interrupted ones skipped) into one tidy
row per run and planner (or per seed). Used by experiments.aggregate and the online tables (experiments.drift_tables)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from sim.common.errors import DataError
from sim.common.io import RUNNING_MARKER, is_incomplete

from experiments.protocol import ATTAINMENT_METRICS, SEED_METRICS

ONLINE_SUFFIX = "_online"
SCALAR_KEYS = ["slo_scale", "throughput_rps", "quality", "gpu_s_per_request", "p95_latency_s", "p50_latency_s",
               "completed_rps", "plan_s", "sim_s", "dropped", "context_skipped", "attainment", "reference"]


def tidy_rows(summary: dict, source: Path) -> list[dict]:
    """One row per planner of one run: scenario keys, scalar metrics, and per-tier shares and GPUs as columns."""
    sc = summary["scenario"]
    rows = []
    for planner, s in summary["planners"].items():
        row = {"experiment": sc["name"], "workload": sc["workload"], "cascade": "->".join(sc["cascade"]),
               "num_gpus": sc["num_gpus"], "q_min": sc["q_min"], "q_min_level": sc.get("q_min_level"), "rate_scale": sc["rate_scale"],
               "rate_rps": sc["rate_rps"], "load_fraction": sc.get("load_fraction"), "seed": sc["seed"],
               "planner": planner, "source": str(source)}
        row.update({k: s.get(k) for k in SCALAR_KEYS if k in s})
        row.update(ci_columns(s))
        row.update(cap_columns(s))
        row["reference_length"] = sc.get("reference_length", "largest_tier")
        row["split"] = bool((sc.get("split") or {}).get("enabled", False))
        for i, share in enumerate(s.get("tier_share", [])):
            row[f"share_t{i}"] = share
        for i, gpus in enumerate(s.get("tier_gpus", [])):
            row[f"gpus_t{i}"] = gpus
        row["thresholds"] = "/".join(f"{h:g}" for h in s.get("thresholds", []))
        for i, dep in enumerate(s.get("tier_deployment", [])):
            row[f"deployment_t{i}"] = dep  # per seed, "|"-joined (experiments.protocol.combine_seeds)
        row.update(online_columns(summary, s, planner))
        rows.append(row)
    return rows


def ci_columns(s: dict) -> dict:
    """Per metric over seeds (experiments.protocol): the mean is the metric's own column; its 95% bootstrap CI
    as <metric>_ci95_lo / _hi and the number of seeds as <metric>_n."""
    out = {}
    for k in SEED_METRICS + ATTAINMENT_METRICS:
        if f"{k}_ci95" in s:
            out[k] = s[k]
            out[f"{k}_ci95_lo"], out[f"{k}_ci95_hi"] = s[f"{k}_ci95"]
            out[f"{k}_n"] = sum(1 for v in s[f"{k}_per_seed"] if v is not None and v == v)
    return out


def seed_rows(summary: dict, source: Path) -> list[dict]:
    """One row per planner and seed: the per-seed values behind the means (paired comparisons use them)."""
    sc = summary["scenario"]
    rows = []
    for planner, s in summary["planners"].items():
        for i, seed in enumerate(s.get("seeds", [])):
            row = {"experiment": sc["name"], "workload": sc["workload"], "num_gpus": sc["num_gpus"],
                   "q_min_level": sc.get("q_min_level"), "rate_scale": sc["rate_scale"],
                   "load_fraction": sc.get("load_fraction"), "planner": planner,
                   "seed": seed, "source": str(source)}
            row.update({k: s[f"{k}_per_seed"][i] for k in SEED_METRICS + ATTAINMENT_METRICS if f"{k}_per_seed" in s})
            if "throughput_at_cap_per_seed" in s:
                row["throughput_at_cap"] = bool(s["throughput_at_cap_per_seed"][i])
                row["throughput_cap_rps"] = s.get("throughput_cap_rps")
            rows.append(row)
    return rows


def cap_columns(s: dict) -> dict:
    """The throughput bisection's cap and whether the mean throughput is a lower bound (some seed at the cap)."""
    if "throughput_at_cap_per_seed" not in s:
        return {}
    return {"throughput_cap_rps": s.get("throughput_cap_rps"),
            "throughput_lower_bound": bool(s.get("throughput_lower_bound", False))}


# Settings that never make two runs different cases: the seed (the replicate), where and how outputs are written,
# and the planners (the systems a case compares).
NOT_A_CASE = ("seed", "split.seed", "output_dir", "progress", "figure", "planner")


def _leaves(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(node, sort_keys=True) if isinstance(node, list) else node}


def case_settings(configs: list[dict]) -> list[dict]:
    """Per run, the settings that vary among the runs aggregated together (dotted config keys): a case is defined by
    every setting that varies, so runs at different loads, with re-planning on and off or of different experiments
    are never pooled into one mean with one CI. Keys under NOT_A_CASE are left out."""
    flat = [{k: v for k, v in _leaves(c or {}).items()
             if not any(k == n or k.startswith(n + ".") for n in NOT_A_CASE)} for c in configs]
    keys = sorted({k for f in flat for k in f})
    varying = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    # A config group chosen by name (workload=coding) changes many of its keys at once: they stay out of the label
    # when the group's name alone tells them apart (each name comes with one value of the key).
    implied = []
    for k in varying:
        group = k.split(".")[0] + ".name"
        if k != group and group in varying:
            pairs = {(repr(f.get(group)), repr(f.get(k))) for f in flat}
            if len(pairs) == len({p[0] for p in pairs}):
                implied.append(k)
    return [{k: f.get(k) for k in varying if k not in implied} for f in flat]


def case_label(settings: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in settings.items()) or "all"


def online_columns(summary: dict, s: dict, planner: str) -> dict:
    """Faults, re-planning and gears (experiments.online): the system and its mode (static, online, gears),
    whether re-planning was on, how often it re-planned or switched gears, and the latency before and after the
    first fault."""
    if "controller_events" not in s and not summary["scenario"].get("config", {}).get("replan"):
        return {}
    replan = summary["scenario"].get("config", {}).get("replan") or {}
    system, mode = system_and_mode(planner, s, replan)
    out = {"system": system, "mode": mode, "replan_enabled": bool(replan.get("enabled", False)),
           "replans": s.get("replans", 0), "gear_switches": s.get("gear_switches", 0),
           "faults": len(s.get("faults", []))}
    out.update({k: v for k, v in (s.get("fault_effect") or {}).items() if isinstance(v, (int, float))})
    return out


def complete_summaries(run_dirs: list[Path]) -> list[Path]:
    """summary.json files of finished runs; a run still marked RUNNING (interrupted, or in progress) is skipped
    with one warning line."""
    for d in run_dirs:
        if not Path(d).exists():
            raise DataError(f"run folder {d} does not exist; give a Hydra run or multirun folder")
    found = sorted({p for d in run_dirs for p in ([Path(d)] if Path(d).is_file() else Path(d).rglob("summary.json"))})
    runs = sorted({p.parent for d in run_dirs if Path(d).is_dir() for p in Path(d).rglob(RUNNING_MARKER)})
    for run in runs:
        print(f"warning: skipping incomplete run {run} (it holds a {RUNNING_MARKER} marker: interrupted or still "
              "running)", file=sys.stderr)
    return [p for p in found if not is_incomplete(p.parent)]


def aggregate(run_dirs: list[Path], per_seed: bool = False) -> pd.DataFrame:
    """The tidy table (one row per run and planner; per_seed: one row per run, planner and seed)."""
    summaries = complete_summaries(run_dirs)
    if not summaries:
        raise DataError(f"no complete summary.json under {', '.join(map(str, run_dirs))}; run an experiment first")
    rows, configs = [], []
    for path in summaries:
        try:
            summary = json.loads(path.read_text())
            if not isinstance(summary, dict) or not isinstance(summary.get("planners"), dict):
                raise KeyError("planners")
            made = seed_rows(summary, path.parent) if per_seed else tidy_rows(summary, path.parent)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a summary written by experiments.run ({type(exc).__name__}: {exc})") from None
        rows.extend(made)
        configs.extend([summary["scenario"].get("config") or {}] * len(made))
    for row, settings in zip(rows, case_settings(configs)):
        row["case"] = case_label(settings)
        row.update({f"case.{k}": v for k, v in settings.items()})
    return pd.DataFrame(rows)


def system_and_mode(entry: str, s: dict, replan: dict) -> tuple[str, str]:
    """(system, mode) of a run entry from the policy that controlled it: cascadia_online -> (cascadia, online);
    CascadeServe switching gears -> gears; no policy -> static."""
    policy = s.get("policy")
    system = entry[:-len(ONLINE_SUFFIX)] if entry.endswith(ONLINE_SUFFIX) and replan.get("keep_static") else entry
    if policy == "GearPolicy":
        return system, "gears"
    if policy == "DriftReplanPolicy":
        return system, "online"
    return system, "static"
