"""Every experiment runs end to end on a tiny horizon; its summary is aggregated and every figure regenerates."""
import json
import math
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from experiments.aggregate import aggregate
from experiments.config import register_configs
from experiments.main_job import run_experiment
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()
TINY = ["horizon_s=40", "seeds=1", "plan_sample_size=200", "throughput.horizon_s=40", "throughput.iters=1", "progress=false"]
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))

pytestmark = pytest.mark.integration  # the main job, experiments and sweeps end to end


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    summary = run_experiment(_cfg(TINY), out)
    return out, summary


def test_main_job_writes_summary_with_every_planner(default_run):
    out, summary = default_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert set(on_disk["planners"]) == set(summary["planners"]) >= {"cascadia", "single_model", "cascadeserve"}
    for name, s in on_disk["planners"].items():
        for key in ("slo_scale", "throughput_rps", "quality", "gpu_s_per_request"):
            assert isinstance(s[key], (int, float)), (name, key)
        _assert_sane_planner_summary(name, s, num_gpus=32)
        assert s["dropped"] == 0
    assert (out / "main_job.png").stat().st_size > 10_000
    assert on_disk["scenario"]["requests"] > 0


def _assert_sane_planner_summary(name, s, num_gpus):
    """What any finished run must hold, whatever the experiment: whole GPUs within the cluster (not 1 to 64 on a
    32-GPU one, not NaN), a finite positive cost, a quality on the 0-100 scale, an SLO scale that is a number,
    every request completed or dropped (means over seeds)."""
    gpus = s["tier_gpus"]
    assert all(isinstance(g, int) and g >= 0 for g in gpus), (name, gpus)
    assert 0 < sum(gpus) <= num_gpus, (name, gpus)
    assert math.isfinite(s["gpu_s_per_request"]) and s["gpu_s_per_request"] > 0, name
    assert 0.0 <= s["quality"] <= 100.0, name
    assert s["slo_scale"] > 0, name  # NaN fails too
    assert s["requests"] > 0 and s["completed"] + s["dropped"] == pytest.approx(s["requests"]), name


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e not in ("slo_throughput",)])
def test_experiment_runs_on_tiny_horizon(name, tmp_path):
    tiny = TINY
    if _cfg([f"experiment={name}"]).trace_window.duration_s is not None:  # a fixed trace part instead of a horizon
        tiny = ["trace_window.duration_s=40", "horizon_s=null", *TINY[1:]]
    cfg = _cfg([f"experiment={name}", *tiny, "figure=false"])
    summary = run_experiment(cfg, tmp_path)
    assert summary["planners"] and summary["scenario"]["name"] == name
    for planner, s in summary["planners"].items():
        _assert_sane_planner_summary(f"{name}/{planner}", s, num_gpus=cfg.cluster.num_nodes * cfg.cluster.gpus_per_node)


def test_aggregate_and_every_main_figure_regenerate(default_run, tmp_path):
    out, _ = default_run
    table = aggregate([out])
    assert len(table) == 7 and {"slo_scale", "share_t0", "gpus_t2"} <= set(table.columns)
    # The figure scripts read tidy tables by name; the default run stands in for each sweep's table.
    results = tmp_path / "results"
    results.mkdir()
    table = table.assign(q_min_level=0.7)
    for name in ("slo_throughput", "ablation", "quality_shift", "llama3"):
        table.to_csv(results / f"{name}.csv", index=False)
    from experiments.figures import ablation, cost, llama3, quality_shift, slo_scale, throughput

    for module in (slo_scale, throughput, cost, ablation, quality_shift, llama3):
        path = module.plot(results_dir=results, out_dir=tmp_path / "figs")
        assert path.stat().st_size > 5_000


@pytest.mark.parametrize("override,word", [("q_min=150", "q_min"), ("seed=-1", "seed"),
                                           ("+replan.hysteresis=2", "replan.hysteresis"),
                                           ("faults=[{kind:node_down,at_s:10,node:7}]", "faults[0].node")])
def test_bad_override_is_one_line_exit_2(override, word, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "experiments.run", override, f"output_dir={out}"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and word in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Refused in the parse step, before any folder: a bad replan or fault value used to leave .hydra/ and run.log.
    assert not out.exists()


@pytest.mark.parametrize("name", ["node_failure", "drift"])
def test_online_experiments_aggregate_and_draw(name, tmp_path):
    from experiments.aggregate import main as aggregate_main
    from experiments.figures import drift, node_failure

    runs = tmp_path / "runs"
    for on in ("false", "true"):
        out = runs / on
        out.mkdir(parents=True)
        fault = ["faults=[{kind:node_down,at_s:60,node:3,repair_s:60}]"] if name == "node_failure" else []
        run_experiment(_cfg([f"experiment={name}", *TINY, "horizon_s=200", "figure=false", "planner=[cascadia]",
                             f"replan.enabled={on}", *fault]), out)
    results = tmp_path / "results"
    aggregate_main([str(runs), "--out", str(results / f"{name}.csv")])
    assert (results / f"{name}_timeseries.csv").exists()
    module = {"node_failure": node_failure, "drift": drift}[name]
    assert module.plot(results_dir=results, out_dir=tmp_path / "figs").stat().st_size > 5_000


def test_planner_time_sweep_and_figure(tmp_path):
    from experiments.figures import planner_time as figure
    from experiments.planner_time import main as planner_time_main

    planner_time_main(["--gpus", "8", "16", "--out", str(tmp_path / "planner_time.csv"), "--raw-dir", str(tmp_path)])
    assert (tmp_path / "planner_time.json").exists()  # not in the repository's outputs/ (make test leaves none)
    import pandas as pd

    table = pd.read_csv(tmp_path / "planner_time.csv")
    assert list(table.num_gpus) == [8, 16] and (table.cold_s > 0).all()
    assert figure.plot(results_dir=tmp_path, out_dir=tmp_path / "figs").stat().st_size > 5_000
