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


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dirs", nargs="+", type=Path, help="Hydra run or multirun folders to read")
    ap.add_argument("--out", type=Path, required=True, help="tidy CSV to write (e.g. results/slo_throughput.csv)")
    ap.add_argument("--force", action="store_true", help="overwrite --out (and its _timeseries.csv) if they exist")
    args = ap.parse_args(argv)
    ts_out = args.out.with_name(f"{args.out.stem}_timeseries.csv")
    check_output(args.out, args.run_dirs, args.force)
    seeds_out = args.out.with_name(f"{args.out.stem}_seeds.csv")
    table = aggregate(args.run_dirs)
    seeds = aggregate(args.run_dirs, per_seed=True)
    if len(seeds):
        check_output(seeds_out, args.run_dirs, args.force)
    ts = timeseries(args.run_dirs)
    if len(ts):
        check_output(ts_out, args.run_dirs, args.force)
    prepare_output_dir(args.out.parent, "--out folder")
    write_table(table, args.out)
    print(f"{len(table)} rows from {table['source'].nunique()} runs -> {args.out}")
    if len(seeds):
        write_table(seeds, seeds_out)
        print(f"{len(seeds)} per-seed rows -> {seeds_out}")
    if len(ts):
        write_table(ts, ts_out)
        print(f"{len(ts)} time-series windows -> {ts_out}")
        for path in write_tables(args.run_dirs, args.out):  # phases, controller markers, means with CIs
            print(f"-> {path}")


if __name__ == "__main__":
    main()
