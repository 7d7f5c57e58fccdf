"""Sweeps go through Hydra's own launchers: joblib locally, submitit for SLURM (composed, and run locally)."""
import json
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()


def _hydra_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True).hydra


def test_sweep_experiments_use_joblib():
    assert "JoblibLauncher" in _hydra_cfg(["experiment=slo_throughput"]).launcher._target_


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _hydra_cfg(["hydra/launcher=slurm_cpu", "hydra.launcher.partition=cpu"]).launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.cpus_per_task == 2 and launcher.partition == "cpu"


def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cmd = [sys.executable, "-m", "experiments.run", "--multirun", "hydra/launcher=local_submitit",
           f"hydra.sweep.dir={tmp_path}", "planner=[single_model]", "horizon_s=20", "throughput.enabled=false",
           "plan_sample_size=100", "progress=false", "figure=false", "seed=0,1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    wall_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert len(summaries) == 2
    runs = [json.loads(p.read_text()) for p in summaries]
    assert {r["scenario"]["seed"] for r in runs} == {0, 1}
    # The sweep's timings, as docs/performance.md reports them: the whole sweep and each job's plan and simulation.
    jobs = [{"seed": r["scenario"]["seed"], "plan_s": r["planners"]["single_model"]["plan_s"],
             "sim_s": r["planners"]["single_model"]["sim_s"]} for r in runs]
    assert all(j["plan_s"] >= 0 and j["sim_s"] > 0 for j in jobs)
    assert all(j["plan_s"] + j["sim_s"] < wall_s for j in jobs)
    print(json.dumps({"launcher": "submitit_local", "jobs": 2, "sweep_wall_s": round(wall_s, 2), "per_job": jobs}))
