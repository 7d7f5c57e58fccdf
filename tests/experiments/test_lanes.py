"""`make results`' lane processes (experiments.lanes): sweeps one after another in one process give the tables a
sweep gives in a process of its own, a failed sweep's exit code comes back and the lane goes on, and its CPU seconds
are counted."""
import subprocess
import sys

import pandas as pd
import pytest

from experiments.lanes import Lane, LanePool
from sim.common.paths import PROJECT_ROOT

TIMING = ["plan_s", "sim_s"]  # run-to-run seconds, the only columns that may differ


def tiny_sweep(sweep_dir) -> list[str]:
    """Two jobs (seeds) of two planners on a 20 s horizon, no bisection: seconds, with planning and simulation."""
    return ["--multirun", f"hydra.sweep.dir={sweep_dir}", "planner=[single_model,cascadia]", "horizon_s=20",
            "throughput.enabled=false", "plan_sample_size=100", "progress=false", "figure=false", "seed=0,1"]


def tables(sweep_dir) -> pd.DataFrame:
    found = sorted(sweep_dir.rglob("table.csv"))
    assert len(found) == 2, found
    return pd.concat([pd.read_csv(p).drop(columns=TIMING, errors="ignore") for p in found], ignore_index=True)


def test_a_lane_runs_sweeps_in_turn_as_fresh_processes_would(tmp_path):
    # the oracle: the same sweep in a process of its own, as `make results` ran every sweep before lanes
    fresh = tmp_path / "fresh"
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *tiny_sweep(fresh)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lane = Lane(PROJECT_ROOT)
    try:
        cpu_first = lane.run(tiny_sweep(tmp_path / "first"))
        with pytest.raises(SystemExit) as exc:  # a bad override: the user's one-line error, exit 2
            lane.run(["planner=[no_such_planner]"])
        assert exc.value.code == 2
        lane.run(tiny_sweep(tmp_path / "second"))  # Hydra initialised twice in one process, a failure between
    finally:
        lane.close()
    assert lane.proc.returncode == 0
    assert cpu_first > 0.1  # the sweep's own CPU seconds, counted in the lane
    expected = tables(fresh)
    assert len(expected) == 4 and {"single_model", "cascadia"} <= set(expected["planner"])
    pd.testing.assert_frame_equal(tables(tmp_path / "first"), expected, check_exact=True)
    pd.testing.assert_frame_equal(tables(tmp_path / "second"), expected, check_exact=True)


def test_a_dead_lane_is_an_exit_and_is_not_lent_again(tmp_path):
    pool = LanePool(PROJECT_ROOT)
    with pytest.raises(SystemExit) as exc:
        with pool.lane() as lane:
            lane.proc.kill()
            lane.proc.wait()
            lane.run(["--help"])
    assert exc.value.code != 0
    with pool.lane() as other:
        assert other is not lane and other.proc.poll() is None
    pool.close()
    assert len(pool.started) == 2 and all(lane.proc.returncode is not None for lane in pool.started)


@pytest.mark.parametrize("args", [[], ["77"], ["x", "y"]])
def test_a_lane_started_by_hand_is_one_error_line(args):
    """`python -m experiments.lanes` without the answer pipe's open descriptor: one 'error:' line, exit 2."""
    proc = subprocess.run([sys.executable, "-m", "experiments.lanes", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: experiments.lanes"), proc.stderr
