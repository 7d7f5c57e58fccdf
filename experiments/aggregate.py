"""One aggregation step: raw run outputs (summary.json per Hydra job, never edited) -> tidy tables in results/."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sim.common.cli import exit_on_user_error
from sim.common.errors import DataError
from sim.common.io import prepare_output_dir, write_table

from experiments.drift_tables import timeseries_rows, write_tables
from experiments.runs import aggregate


def timeseries(run_dirs: list[Path]) -> pd.DataFrame:
    """The per-window tables (timeseries_<planner>.csv) of every run, with the run's replan setting, system, mode
    and seed (experiments.drift_tables.timeseries_rows)."""
    return timeseries_rows(run_dirs)


def check_output(out: Path, inputs: list[Path], force: bool) -> None:
    """Never write over an input, and over an existing output only with --force."""
    target = out.resolve()
    for d in inputs:
        src = Path(d).resolve()
        if target == src or src in target.parents:
            raise DataError(f"--out {out} is inside the input {d}; raw runs are never edited: write elsewhere "
                            "(e.g. results/NAME.csv)")
    if out.is_dir():
        raise DataError(f"--out {out} is a folder; give a CSV file path")
    if out.exists() and not force:
        raise DataError(f"--out {out} exists; pass --force to overwrite it")


def write_results(run_dirs: list[Path], out: Path, force: bool = False) -> list[str]:
    """Every table of the runs beside out, each written atomically: out (one row per run and planner), out_seeds
    (per seed), and for online runs out_timeseries, _phases, _events, _summary. Returns one line per table."""
    out = Path(out)
    check_output(out, run_dirs, force)
    seeds_out = out.with_name(f"{out.stem}_seeds.csv")
    ts_out = out.with_name(f"{out.stem}_timeseries.csv")
    table = aggregate(run_dirs)
    seeds = aggregate(run_dirs, per_seed=True)
    if len(seeds):
        check_output(seeds_out, run_dirs, force)
    ts = timeseries(run_dirs)
    if len(ts):
        check_output(ts_out, run_dirs, force)
    prepare_output_dir(out.parent, "--out folder")
    write_table(table, out)
    lines = [f"{len(table)} rows from {table['source'].nunique()} runs -> {out}"]
    if len(seeds):
        write_table(seeds, seeds_out)
        lines.append(f"{len(seeds)} per-seed rows -> {seeds_out}")
    if len(ts):
        write_table(ts, ts_out)
        lines.append(f"{len(ts)} time-series windows -> {ts_out}")
        lines += [f"-> {path}" for path in write_tables(run_dirs, out)]  # phases, controller markers, means with CIs
    return lines


try:  # the Hydra callback of the online experiments: aggregate the multirun when it ends
    from hydra.experimental.callback import Callback

    class OnlineTablesCallback(Callback):
        """hydra.callbacks: at the end of a multirun, write out (e.g. results/drift.csv) and its companions, the
        same tables (and the same atomic writer) as `python -m experiments.aggregate SWEEP --out OUT --force`."""

        def __init__(self, out: str) -> None:
            self.out = out

        def on_multirun_end(self, config, **kwargs) -> None:
            print("\n".join(write_results([Path(config.hydra.sweep.dir)], Path(self.out), force=True)))
except ImportError:  # pragma: no cover - hydra is a dependency
    pass


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="Hydra run or multirun folders to read")
    ap.add_argument("--out", type=Path, required=True, help="tidy CSV to write (e.g. results/slo_throughput.csv)")
    ap.add_argument("--force", action="store_true", help="overwrite --out (and its _timeseries.csv) if they exist")
    args = ap.parse_args(argv)
    print("\n".join(write_results(args.run_dirs, args.out, args.force)))


if __name__ == "__main__":
    main()
