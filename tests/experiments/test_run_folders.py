"""One run, one folder: a reused output folder is refused, each job of a sweep gets its own folder under
output_dir, a run refused for bad input leaves no RUNNING marker, and outputs are readable as the umask allows."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.run import run_experiment
from experiments.runs import complete_summaries
from sim.common.errors import ConfigError, DataError
from sim.common.io import RUNNING_MARKER, write_atomic, write_json
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()
SMALL = ["horizon_s=40", "seeds=1", "plan_sample_size=200", "throughput.enabled=false", "progress=false",
         "figure=false", "planner=[single_model]"]


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_a_second_run_into_a_used_folder_is_refused_and_the_first_is_left_whole(tmp_path):
    run_experiment(_cfg(SMALL), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DataError, match="already holds another run's files .*summary.json"):
        run_experiment(_cfg([*SMALL, "q_min_level=0.5"]), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no RUNNING, nothing overwritten
    assert complete_summaries([tmp_path]) == [tmp_path / "summary.json"]


def test_a_run_refused_for_bad_input_is_not_left_marked_running(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no planner selected"):
        run_experiment(_cfg([*SMALL, "planner=[]"]), tmp_path)
    assert not (tmp_path / RUNNING_MARKER).exists()
    complete_summaries([tmp_path])
    assert "incomplete" not in capsys.readouterr().err  # aggregate does not call it interrupted


def test_output_dir_holds_hydra_own_files_and_nothing_lands_in_outputs(tmp_path):
    """output_dir= once left an empty job folder under the repository's outputs/ (every make test did)."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.run", *SMALL, f"output_dir={out}"]
    before = set((PROJECT_ROOT / "outputs").rglob("*")) if (PROJECT_ROOT / "outputs").exists() else set()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / ".hydra" / "config.yaml").exists() and (out / "summary.json").exists()
    after = set((PROJECT_ROOT / "outputs").rglob("*")) if (PROJECT_ROOT / "outputs").exists() else set()
    assert after == before
    again = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds another run's files" in again.stderr
    assert (out / ".hydra" / "config.yaml").stat().st_mtime == pytest.approx(
        (out / "summary.json").stat().st_mtime, abs=120)  # the refused run wrote nothing, not even Hydra's config


def test_each_sweep_job_writes_its_own_folder_under_output_dir(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.run", "-m", *SMALL, "q_min_level=0.6,0.7", f"output_dir={out}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = sorted(out.rglob("summary.json"))
    assert len(summaries) == 2 and not (out / "summary.json").exists()
    levels = sorted(json.loads(p.read_text())["scenario"]["q_min_level"] for p in summaries)
    assert levels == [0.6, 0.7]
    assert "[2 done]" in proc.stdout  # the progress count finds the jobs under output_dir too


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_output_files_get_the_umask_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = write_atomic(tmp_path / "a.txt", "x")
        b = write_json({"k": 1}, tmp_path / "b.json")
    finally:
        os.umask(old)
    assert (a.stat().st_mode & 0o777, b.stat().st_mode & 0o777) == (mode, mode)


def _requests(arrival_s, completion_s):
    import pandas as pd

    return pd.DataFrame({"arrival_s": arrival_s, "completion_s": completion_s})


def test_saturation_is_queue_growth_by_littles_law():
    """Oracle: one server at a fixed service time. Below capacity every request waits its own service time (W level);
    above it the backlog and W grow linearly with the run. A bursty but stable trace is not saturated."""
    import numpy as np
    from types import SimpleNamespace

    from experiments.run import saturation

    plan = SimpleNamespace(estimates={})
    arrival = np.arange(400) * 0.1  # 10 req/s
    stable = arrival + 0.05  # service 50 ms < 100 ms between arrivals
    assert saturation(_requests(arrival, stable), plan) == ""
    served_at = np.cumsum(np.full(400, 0.2))  # one every 200 ms: half the arrival rate
    assert "queue grows" in saturation(_requests(arrival, np.maximum(served_at, arrival)), plan)
    bursty = np.concatenate([np.arange(200) * 0.2, 40 + np.arange(200) * 0.05])  # the rate quadruples, W stays
    assert saturation(_requests(bursty, bursty + 0.01), plan) == ""
    assert "estimate" in saturation(_requests(arrival, stable), SimpleNamespace(estimates={"saturated": True}))
    # a short run still filling its queue from empty (W = 2 s, yet 2 s of arrivals before the half way mark)
    short = np.arange(40) * 0.1
    filling = short + 2.0 + 0.1 * np.arange(40)
    assert saturation(_requests(short, filling), plan) == ""


def test_a_saturated_plan_is_warned_about_in_the_output_and_the_summary(tmp_path, capsys):
    summary = run_experiment(_cfg([*SMALL, "horizon_s=120", "rate_scale=25"]), tmp_path)
    sm = summary["planners"]["single_model"]
    assert sm["saturated_seeds"] and "cannot carry" in next(iter(sm["saturated_seeds"].values()))
    assert summary["warnings"] and json.loads((tmp_path / "summary.json").read_text())["warnings"]
    assert "warning: single_model looks saturated" in capsys.readouterr().err
