"""What a run prints while and after it runs: a bar and the table for a single run; one line per finished job in a sweep.

Sweep jobs run in parallel worker processes (joblib) that share the terminal: per-job bars and tables would
interleave, so a sweep job prints only one whole line when it is done (its overrides, how many jobs of the sweep
are done, where its outputs are); its table is in its folder (table.csv).
"""
from __future__ import annotations

import time
from pathlib import Path


def _hydra():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_sweep() -> bool:
    from hydra.types import RunMode

    hc = _hydra()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def _sweep_size(hc) -> int | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = hc.sweeper.get("params") or {}
    if not params:
        return None
    total = 1
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        total *= len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
    return total


def report_done(table_text: str, written: list[Path]) -> None:
    """Print the finished run's table (single run) or one line for the finished sweep job."""
    if not in_sweep():
        print(table_text)
        print("\nwrote " + ", ".join(map(str, written)))
        return
    hc = _hydra()
    # Jobs finished no later than this one: each job gets its own count even when two print at the same moment.
    own = Path(written[0]).parent / "summary.json"
    mine = own.stat().st_mtime if own.exists() else float("inf")
    root = own.parents[len(Path(hc.sweep.subdir).parts)]  # the sweep's folder, or output_dir when one is given
    done = sum(1 for p in root.rglob("summary.json") if p.stat().st_mtime <= mine)
    total = _sweep_size(hc)
    label = hc.job.override_dirname or f"job {hc.job.num}"
    of = f"/{total}" if total else ""
    job_dir = Path(written[0]).parent
    started = job_dir / ".hydra"  # Hydra writes it when the job starts
    took = f" in {time.time() - started.stat().st_mtime:.0f} s" if started.exists() else ""
    print(f"[{done}{of} done] {label}{took} -> {job_dir}", flush=True)
