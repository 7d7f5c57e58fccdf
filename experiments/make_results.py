"""`make results` as one timed driver: every sweep, its aggregation and figures, the planner timing and the remaining
figures, with the seconds of each step written to results/timings.json (with the machine's core count).

python -m experiments.make_results --sweeps slo_throughput ablation ... [--stamp STAMP] [--timings PATH]

--lanes N (default: the usable cores) starts N lane processes (experiments.lanes) and runs up to N sweeps side by
side, in the order given (longest first), so that no core idles while a sweep runs alone; a sweep that reuses
another's bisections (REUSES) starts after it. A lane runs its sweeps one after another in itself, each sweep's jobs
one after another too (the joblib launcher with one job runs them in the calling process, joblib's sequential
backend): no interpreter start and no imports of pandas, scipy, matplotlib and the simulator per sweep or per
worker, and every process-level cache sees all the sweeps of its lane. The aggregation and the figures drawn from a
sweep's table run in this process as soon as that table exists, while the other lanes' sweeps run. The planner
timing takes a lane's turn after the sweeps, in a fresh process of its own (its cold_s is a first plan in a new
process), on its own core beside the other lane's last sweep: see planner_time() for what that does to its
seconds. The figures of the remaining tables are drawn at the end. `python -m experiments.run experiment=X` alone
keeps its joblib workers.
"""
from __future__ import annotations

import argparse
import os
import threading
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path

from experiments.lanes import LanePool, cpu_s
from sim.common.cli import exit_on_user_error
from sim.common.errors import ConfigError
from sim.common.io import write_json
from sim.common.paths import PROJECT_ROOT


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# A sweep that finds most of its bisections in another's (the same plans on the same workloads: experiments.sim_cache)
# starts once that one has finished, when both are asked for.
REUSES = {"ablation": ("slo_throughput",), "disaggregation": ("slo_throughput",)}


class StepTimer:
    """Wall and CPU seconds per named step, in the order finished. On a shared machine the wall time carries the
    neighbours' load; the CPU time much less of it (it still counts the sweep's two workers together). A step's CPU
    time is its thread's plus what its function returns (a sweep: the CPU seconds of its process tree), so steps
    running side by side in threads do not count each other's."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.t0, self.c0 = time.perf_counter(), cpu_s()
        self.lock = threading.Lock()

    def run(self, name: str, fn, *args) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        print(f"[make results] {name} ...", file=sys.stderr, flush=True)
        child_cpu_s = fn(*args)
        with self.lock:
            self.steps[name] = round(time.perf_counter() - t0, 3)
            self.cpu[name] = round(time.thread_time() - c0 + float(child_cpu_s or 0.0), 3)
            print(f"[make results] {name}: {self.steps[name]:.1f} s ({self.cpu[name]:.1f} CPU s)", file=sys.stderr,
                  flush=True)

    def report(self, **extra) -> dict:
        return {"total_s": round(time.perf_counter() - self.t0, 3), "total_cpu_s": round(cpu_s() - self.c0, 3),
                "steps_s": self.steps, "steps_cpu_s": self.cpu,
                "cpu_count": os.cpu_count(), "usable_cores": usable_cores(), "python": platform.python_version(),
                **extra}


def one_process_overrides(name: str) -> list[str]:
    """The override that runs the sweep's jobs one after another in its Hydra process: n_jobs=1 for a sweep on the
    joblib launcher (its experiment file sets n_jobs, which Hydra's basic launcher would refuse as an unknown key;
    joblib runs n_jobs=1 in the calling process), nothing for one on another launcher (or an unknown name)."""
    return ["hydra.launcher.n_jobs=1"] if _launcher_of(name) == "joblib" else []


def _launcher_of(name: str, depth: int = 0) -> str | None:
    """The hydra/launcher an experiment file overrides to, following the experiment files it extends."""
    from sim.common.io import read_yaml

    path = PROJECT_ROOT / "conf" / "experiment" / f"{name}.yaml"
    if depth > 8 or not path.is_file():
        return None
    found = None
    for entry in read_yaml(path, "experiment file").get("defaults") or []:
        if isinstance(entry, dict) and "override /hydra/launcher" in entry:
            found = entry["override /hydra/launcher"]
        elif isinstance(entry, str) and entry != "_self_":  # another experiment this one extends
            found = _launcher_of(entry, depth + 1) or found
    return found


def sweep_argv(name: str, sweep_dir: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    """`python -m experiments.run` arguments of one sweep of `make results` (its jobs in one process:
    one_process_overrides)."""
    return [f"experiment={name}", "progress=false", f"hydra.sweep.dir={sweep_dir}", *one_process_overrides(name),
            *overrides]


def run_sweep(name: str, sweep_dir: Path, overrides: tuple[str, ...], lanes: LanePool) -> float:
    """One sweep in a lane process of the pool (whose processes have this run's throughput cache folder in their
    environment); the CPU seconds it took in that process."""
    with lanes.lane() as lane:
        return lane.run(sweep_argv(name, sweep_dir, overrides))


def run_child(cmd: list[str], env: dict | None = None) -> float:
    """cmd in a child process from the project root; its CPU seconds (os.wait4), or SystemExit with its exit code."""
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if proc.returncode:
        raise SystemExit(proc.returncode)
    return usage.ru_utime + usage.ru_stime


def run_sweeps(names: list[str], lanes: int, step) -> None:
    """step(name) for every sweep, up to `lanes` at a time, in the given order as far as REUSES allows (a sweep
    whose source is still running waits, and the next ready one starts instead). The first failure stops new
    starts; it is raised once the running ones end."""
    pending, done, running = list(names), set(), {}
    with ThreadPoolExecutor(max_workers=max(int(lanes), 1)) as pool:
        failure = None
        while (pending and failure is None) or running:
            while failure is None and len(running) < max(int(lanes), 1):
                ready = [n for n in pending if all(d in done or d not in names for d in REUSES.get(n, ()))]
                if not ready:
                    break
                pending.remove(ready[0])
                running[pool.submit(step, ready[0])] = ready[0]
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                name = running.pop(f)
                try:
                    f.result()
                except BaseException as exc:  # SystemExit from a failed sweep included
                    failure = failure or exc
                done.add(name)
    if failure is not None:
        raise failure


def aggregate_sweep(sweep_dir: Path, out: Path) -> None:
    from experiments.aggregate import main as aggregate_main

    aggregate_main([str(sweep_dir), "--out", str(out), "--force"])


PLANNER_TIME = "planner_time"  # the planner timing's turn among the sweeps of run_sweeps


def planner_time() -> float:
    """`python -m experiments.planner_time` in a fresh process (its cold_s is a new process's first plan, which a lane
    process that has planned sweeps is not); its CPU seconds. It runs on one core while the other lane's last sweep
    runs on the other: its wall seconds are its own core's, with the cache and memory bandwidth the two share
    (docs/performance.md measures what that costs against a run alone)."""
    return run_child([sys.executable, "-m", "experiments.planner_time"])


def figures(names: list[str] | None = None) -> None:
    """The named figures (experiments.figures), all of them when names is None."""
    from experiments.figures.__main__ import main as figures_main

    figures_main(list(names or []))


def figures_of(sweep: str) -> list[str]:
    """The figures drawn from the sweep's tidy table (results/<sweep>.csv)."""
    from experiments.figures.__main__ import FIGURES

    return [fig for fig, table in FIGURES.items() if table == sweep]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m experiments.make_results", description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", nargs="+", required=True, help="experiment names (conf/experiment/NAME.yaml)")
    ap.add_argument("--stamp", default=datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
                    help="raw runs go to multirun/NAME/STAMP")
    ap.add_argument("--timings", type=Path, default=PROJECT_ROOT / "results" / "timings.json")
    ap.add_argument("--no-planner-time", action="store_true", help="skip python -m experiments.planner_time")
    ap.add_argument("--no-figures", action="store_true", help="skip python -m experiments.figures")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a Hydra override given to every sweep (repeatable), for a reduced run that profiles the "
                         "same steps: e.g. --override seeds=1 --override hydra.sweeper.params.workload=conversation")
    ap.add_argument("--lanes", type=int, default=usable_cores(),
                    help="sweeps run side by side, one core each (default: the usable cores; 1: one after another, "
                         "in the order given)")
    args = ap.parse_args(argv)
    conf = PROJECT_ROOT / "conf" / "experiment"
    unknown = [s for s in args.sweeps if not (conf / f"{s}.yaml").is_file()]
    if unknown:
        raise ConfigError(f"--sweeps: unknown experiment(s) {unknown}; valid: {sorted(p.stem for p in conf.glob('*.yaml'))}")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    timer = StepTimer()
    # Bisections on equal inputs are shared by every sweep of this run (experiments.sim_cache says which repeat).
    cache_dir = PROJECT_ROOT / "multirun" / ".cache" / args.stamp / "throughput"
    if args.lanes < 1:
        raise ConfigError(f"--lanes must be at least 1, got {args.lanes}")
    # one aggregation or figure at a time: they are short, and matplotlib's pyplot is not thread-safe
    aggregating = threading.Lock()
    drawn: list[str] = []
    figure_failures: list[str] = []  # a figure that cannot be drawn fails the run at its end, not the other sweeps

    def aggregate_and_draw(name: str) -> None:
        """The sweep's tidy table and its figures (one at a time: `aggregating`)."""
        with aggregating:
            if name != PLANNER_TIME:  # experiments.planner_time writes its tidy table itself
                sweep_dir = PROJECT_ROOT / "multirun" / name / args.stamp
                timer.run(f"aggregate {name}", aggregate_sweep, sweep_dir, PROJECT_ROOT / "results" / f"{name}.csv")
            names = figures_of(name)
            if names and not args.no_figures:  # its figures now, while the other lanes' sweeps run
                try:
                    timer.run(f"figures {name}", figures, names)
                except SystemExit:  # experiments.figures said which and why
                    figure_failures.append(name)
                drawn.extend(names)

    def step(name: str) -> None:
        if name == PLANNER_TIME:
            timer.run("planner_time", planner_time)
        else:
            sweep_dir = PROJECT_ROOT / "multirun" / name / args.stamp
            timer.run(f"sweep {name}", run_sweep, name, sweep_dir, tuple(args.override), lanes)
        aggregate_and_draw(name)

    from experiments.sim_cache import CACHE_ENV

    lanes = LanePool(PROJECT_ROOT, {**os.environ, CACHE_ENV: str(cache_dir)})
    try:
        run_sweeps(list(args.sweeps) + ([] if args.no_planner_time else [PLANNER_TIME]), args.lanes, step)
    finally:  # whole runs are pickled request tables (about 1 MB each): this run's alone, not kept after it
        lanes.close()
        shutil.rmtree(cache_dir.parent / "simulations", ignore_errors=True)
    if not args.no_figures:
        from experiments.figures.__main__ import FIGURES

        rest = [fig for fig in FIGURES if fig not in drawn]  # the figures of tables not made by this run
        if rest:
            timer.run("figures", figures, rest)
    report = timer.report(started_utc=started, stamp=args.stamp, sweeps=list(args.sweeps), overrides=args.override,
                          lanes=args.lanes)
    write_json(report, args.timings, indent=2)
    print(f"[make results] total {report['total_s']:.1f} s on {report['usable_cores']} cores; timings in {args.timings}",
          file=sys.stderr)
    if figure_failures:
        raise SystemExit(f"error: the figures of {', '.join(figure_failures)} were not drawn (see above)")


if __name__ == "__main__":
    main()
