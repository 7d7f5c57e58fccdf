"""Sweeps go through Hydra's own launchers: joblib locally, submitit for SLURM (composed, and run locally)."""
import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()

pytestmark = pytest.mark.integration  # sweeps through Hydra launchers


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
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = sorted(tmp_path.rglob("summary.json"))
    assert len(summaries) == 2
    assert {json.loads(p.read_text())["scenario"]["seed"] for p in summaries} == {0, 1}
