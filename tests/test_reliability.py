"""Reliability: every CLI entry point turns each kind of user mistake into one 'error:' line and exit 2;
the same seed and config give byte-identical request tables for every planner; Hypothesis fuzzing of config
overrides and of the trace reader never meets an unhandled exception."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration  # every entry point on bad input


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.csv").write_text("")
    (d / "header_only.csv").write_text("timestamp,input_tokens,output_tokens\n")
    (d / "garbage.csv").write_text("timestamp,input_tokens,output_tokens\nyesterday,lots,-3\n")
    (d / "binary.csv").write_bytes(b"\x00\xff\xfe" * 50)
    (d / "list_run").mkdir()
    (d / "list_run" / "summary.json").write_text("[]")
    (d / "good_run").mkdir()
    (d / "good_run" / "summary.json").write_text(json.dumps({
        "scenario": {"name": "e", "workload": "w", "cascade": ["a"], "num_gpus": 8, "q_min": 50.0, "rate_scale": 1.0,
                     "rate_rps": 1.0, "seed": 0, "config": {}}, "planners": {"p": {"slo_scale": 1.0}}}))
    return d


RUN = [sys.executable, "-m", "experiments.run", "progress=false", "figure=false", "throughput.enabled=false"]
CASES = {
    # experiments.run: the main job
    "run_unknown_key": RUN + ["bogus_key=1"],
    "run_unknown_group_option": RUN + ["cluster=no_such_cluster"],
    "run_wrong_type": RUN + ["seed=abc"],
    "run_negative_rate": RUN + ["rate_scale=-1"],
    "run_zero_gpus": RUN + ["cluster.num_nodes=0"],
    "run_q_min_out_of_range": RUN + ["q_min=150"],
    "run_one_model_cascade": RUN + ["cascade.tiers=[{model:llama3_8b}]"],
    "run_cascade_out_of_order": RUN + ["cascade.tiers=[{model:llama3_70b},{model:llama3_8b}]"],
    "run_unknown_model": RUN + ["cascade.tiers=[{model:llama3_8b},{model:gpt5}]"],
    "run_model_does_not_fit": RUN + ["planner=[single_model]", "cluster.num_nodes=1", "cluster.gpus_per_node=1",
                                     "horizon_s=30"],
    "run_bad_fault": RUN + ["faults=[{kind:meteor,at_s:1,node:0}]"],
    "run_fault_node_out_of_range": RUN + ["faults=[{kind:node_down,at_s:1,node:7}]"],
    "run_bad_replan_key": RUN + ["+replan.colour=blue"],
    "run_bad_planner_setting": RUN + ["planner=[cascadia]", "+planner.cascadia.bogus=1"],
    "run_missing_trace": RUN + ["workload.trace.path=/nonexistent/trace.csv"],
    # bad input: numbers checked in one place, absurd clusters, output folders
    "run_noise_std_nan": RUN + ["sim.judge.noise_std=nan"],
    "run_ib_bw_negative": RUN + ["cluster.ib_bw_gbps=-100"],
    "run_ib_bw_zero": RUN + ["cluster.ib_bw_gbps=0"],
    "run_ib_latency_negative": RUN + ["cluster.ib_latency_us=-1e9"],
    "run_throughput_iters_zero": RUN + ["throughput.iters=0"],
    "run_negative_workload_rate": RUN + ["workload.arrivals.rate_scale=-3"],
    "run_q_min_level_out_of_range": RUN + ["q_min_level=1.5"],
    "run_absurd_cluster": RUN + ["cluster.num_nodes=100000"],
    "run_bad_context_policy": RUN + ["sim.context_policy=truncate"],
    "run_output_dir_is_a_file": RUN + ["horizon_s=20", "output_dir={d}/empty.csv"],
    "run_output_dir_unwritable": RUN + ["horizon_s=20", "output_dir=/proc/no_such_dir/out"],
    # experiments.aggregate, experiments.figures
    "aggregate_list_summary": [sys.executable, "-m", "experiments.aggregate", "{d}/list_run", "--out", "{d}/o.csv"],
    "aggregate_out_is_its_input": [sys.executable, "-m", "experiments.aggregate", "{d}/good_run", "--out",
                                   "{d}/good_run/summary.json"],
    "aggregate_existing_out_without_force": [sys.executable, "-m", "experiments.aggregate", "{d}/good_run", "--out",
                                             "{d}/empty.csv"],
    "aggregate_missing_run_dir": [sys.executable, "-m", "experiments.aggregate", "/nonexistent/run", "--out",
                                  "{d}/o.csv"],
    "figures_out_dir_is_a_file": [sys.executable, "-m", "experiments.figures", "--out-dir", "{d}/empty.csv"],
    "figures_results_dir_missing": [sys.executable, "-m", "experiments.figures", "--results-dir", "/nonexistent/res"],
    # sim.workload describe
    "workload_unknown_name": [sys.executable, "-m", "sim.workload", "describe", "no_such_workload"],
    "workload_negative_rate": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--rate-scale", "-2"],
    "workload_zero_requests": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--num-requests", "0"],
    "workload_missing_trace": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace",
                               "/nonexistent/t.csv"],
    "workload_empty_trace": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace", "{d}/empty.csv"],
    "workload_header_only_trace": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace",
                                   "{d}/header_only.csv"],
    "workload_garbage_trace": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace",
                               "{d}/garbage.csv"],
    "workload_binary_trace": [sys.executable, "-m", "sim.workload", "describe", "conversation", "--trace",
                              "{d}/binary.csv"],
    # sim.bench, planners.bench
    "sim_bench_negative_window": [sys.executable, "-m", "sim.bench", "--window-s", "-5"],
    "planners_bench_bad_level": [sys.executable, "-m", "planners.bench", "--level", "2", "--skip-sim"],
    # sim.perf
    "calibrate_missing_dir": [sys.executable, "-m", "sim.fidelity.calibrate", "--data-dir", "/nonexistent/vidur"],
    "calibrate_unknown_gpu": [sys.executable, "-m", "sim.fidelity.calibrate", "--gpu", "tpu_v9"],
    "validate_missing_file": [sys.executable, "-m", "sim.fidelity.validate", "/nonexistent/measured.csv"],
    "validate_empty_file": [sys.executable, "-m", "sim.fidelity.validate", "{d}/empty.csv"],
    "validate_garbage_file": [sys.executable, "-m", "sim.fidelity.validate", "{d}/garbage.csv"],
    "validate_unknown_engine": [sys.executable, "-m", "sim.fidelity.validate", "{d}/garbage.csv", "--engine", "warp"],
}
FAST = ("run_unknown_key", "workload_empty_trace", "validate_missing_file", "run_noise_std_nan",
        "aggregate_list_summary")


def _run_case(argv, bad_files):
    argv = [a.replace("{d}", str(bad_files)) for a in argv]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc, name):
    err = proc.stderr.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert proc.returncode == 2, f"{name}: exit {proc.returncode}, stderr: {proc.stderr[-800:]}"
    assert "Traceback" not in proc.stderr, f"{name}: {proc.stderr[-800:]}"
    assert len(errors) == 1, f"{name}: {proc.stderr[-800:]}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in CASES])
def test_cli_user_mistake_is_one_error_line_and_exit_2(name, bad_files):
    _assert_one_line_error(_run_case(CASES[name], bad_files), name)


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_leaves_the_run_marked_incomplete(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(RUN + ["horizon_s=600", f"output_dir={out}"], cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while not (out / "RUNNING").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "RUNNING").exists(), "the run never started"
    time.sleep(1.0)  # inside planning or simulation
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-800:]
    assert "Traceback" not in err and [line for line in err.splitlines() if line.startswith("error:")] == \
        ["error: interrupted (Ctrl-C); outputs of an unfinished run are marked incomplete"], err[-800:]
    assert (out / "RUNNING").exists() and not (out / "summary.json").exists()


@pytest.mark.slow
def test_two_runs_of_one_seed_write_byte_identical_gzip_tables(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    for i, out in enumerate(outs):
        if i:
            time.sleep(1.1)  # a gzip header with the write time would now differ
        subprocess.run(RUN + ["planner=[single_model]", "horizon_s=30", f"output_dir={out}"], cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
    a, b = (o / "requests_single_model.csv.gz" for o in outs)
    assert a.read_bytes() == b.read_bytes()
    assert not (outs[0] / "RUNNING").exists() and (outs[0] / "summary.json").exists()


def test_plan_using_more_gpus_than_exist_is_a_user_error():
    from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
    from sim.spec.cascade import cascade_from_dict
    from sim.runtime.cluster import validate_plan
    from sim.common.errors import UserError
    from sim.spec.hardware import load_cluster

    cas = cascade_from_dict({"name": "l", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b"}]})
    big = CascadePlan("x", (TierPlan("llama3_8b", (ReplicaPlan(1, 1, ((0, 0),)),)),
                            TierPlan("llama3_70b", (ReplicaPlan(8, 1, tuple((5, g) for g in range(8))),))), (50.0,))
    with pytest.raises(UserError, match="outside cluster"):
        validate_plan(big, cas, load_cluster("paper_4x8_h100"))


# ---- determinism ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_byte_identical_requests_for_every_planner(tmp_path):
    from hydra import compose, initialize_config_dir

    from experiments.config import register_configs
    from experiments.online import build_controller
    from experiments.main_job import simulate_plan
    from experiments.scenario import build_scenario, make_plan
    from planners.base import PLANNERS
    from sim.common.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "horizon_s=60", "faults=[{kind:gpu_down,at_s:20,node:3,gpu:0,repair_s:15}]", "+replan.enabled=true",
            "+replan.interval_s=20"])
    sc = build_scenario(cfg)
    for name in PLANNERS:
        settings = dict(cfg.planner[name]) if name in cfg.planner else {}
        outs = []
        for _ in range(2):
            plan, _s = make_plan(name, settings, sc, int(cfg.plan_sample_size))
            r = simulate_plan(plan, sc, controller=build_controller(cfg, sc, name, settings))
            outs.append(r.requests.to_csv(index=False).encode())
        assert outs[0] == outs[1], name


# ---- fuzzing --------------------------------------------------------------------------------------
KEYS = ["seed", "rate_scale", "q_min", "q_min_level", "horizon_s", "plan_sample_size", "cluster.num_nodes",
        "cluster.gpus_per_node", "cluster.ib_bw_gbps", "sim.max_num_seqs", "sim.batching", "sim.mode",
        "workload.arrivals.process", "bogus", "cluster", "workload", "faults", "replan.interval_s", "replan.enabled",
        "cascade.tiers", "throughput.lo"]
VALUES = st.one_of(st.integers(-5, 50), st.floats(-10, 200, allow_nan=False), st.sampled_from(
    ["abc", "null", "true", "[]", "[1,2]", "{a:1}", "conversation", "vllm", "0", "-1", "1e9", "''",
     "[{kind:node_down,at_s:1,node:0}]", "[{model:llama3_8b}]", "[{kind:x}]"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_fuzzed_overrides_raise_only_user_or_config_errors(pairs):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from experiments.config import register_configs
    from experiments.online import check_online_config
    from experiments.scenario import check_top_level
    from sim.common.errors import UserError
    from sim.common.paths import CONF_DIR

    register_configs()
    overrides = [f"{k}={v}" for k, v in dict(pairs).items()] + ["horizon_s=20"] * ("horizon_s" not in dict(pairs))
    from experiments.run import validate_overrides

    try:
        validate_overrides(overrides)  # the CLI's own check: a mistake exits 2 with one line
    except SystemExit as exc:
        assert exc.code == 2
        return
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        check_top_level(cfg)
        from experiments.scenario import build_scenario

        sc = build_scenario(cfg)
        check_online_config(cfg, sc)
    except (UserError, HydraException, OmegaConfBaseException):
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.lists(st.tuples(st.one_of(st.floats(allow_nan=True), st.text(max_size=5)),
                                         st.integers(-10, 10**6), st.integers(-10, 10**6)), max_size=8)
                      .map(lambda rows: ("timestamp,input_tokens,output_tokens\n" + "\n".join(
                          f"{a},{b},{c}" for a, b, c in rows)).encode())),
       suffix=st.sampled_from([".csv", ".jsonl"]))
def test_fuzzed_trace_files_raise_only_data_errors(tmp_path, body, suffix):
    from sim.common.errors import UserError
    from sim.workload import read_trace
    from sim.workload.config import TraceConfig

    path = tmp_path / f"trace{suffix}"
    path.write_bytes(body)
    try:
        read_trace(TraceConfig(path=str(path)))
    except UserError:
        pass
