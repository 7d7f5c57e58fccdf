"""Bad input: numbers checked in one place, atomic and byte-stable outputs, incomplete runs skipped,
aggregate never overwriting an input, placement on absurd clusters, the last request of a long trace."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.common.config_checks import EXPERIMENT_RULES, check_experiment_numbers, check_numbers
from sim.common.errors import ConfigError, DataError, UserError


# ---- one-place numeric checks --------------------------------------------------------------------
def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from experiments.config import register_configs
    from sim.common.paths import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


BAD_NUMBERS = {
    "sim.judge.noise_std=nan": "not a finite number",
    "cluster.ib_bw_gbps=-100": "cluster.ib_bw_gbps",
    "cluster.ib_bw_gbps=0": "cluster.ib_bw_gbps",
    "cluster.ib_latency_us=-1e9": "cluster.ib_latency_us",
    "throughput.iters=0": "throughput.iters",
    "throughput.lo=inf": "not a finite number",
    "q_min=150": "q_min",
    "q_min_level=-0.1": "q_min_level",
    "rate_scale=-1": "rate_scale",
    "workload.arrivals.rate_scale=-2": "workload.arrivals.rate_scale",
    "cluster.num_nodes=100000": "cluster.num_nodes",
    "cluster.gpus_per_node=0": "cluster.gpus_per_node",
    "sim.judge.latency.mean_s=-0.1": "sim.judge.latency.mean_s",
    "faults=[{kind:node_down,at_s:-1,node:0}]": "faults.0.at_s",
}


@pytest.mark.parametrize("override", list(BAD_NUMBERS))
def test_every_bad_number_is_refused_naming_its_key(override):
    from experiments.inputs import parse_experiment

    with pytest.raises(ConfigError, match=BAD_NUMBERS[override].replace(".", r"\.")):
        parse_experiment(_compose([override]), planners=False)  # the one parse step


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (Path(__file__).parents[1] / "conf/experiment").glob("*.yaml")))
def test_every_shipped_config_passes_the_checks(experiment):
    check_experiment_numbers(_compose([f"experiment={experiment}"]))


def test_nan_is_refused_under_a_key_no_rule_names():
    with pytest.raises(ConfigError, match="x.y"):
        check_numbers({"x": {"y": float("nan")}}, EXPERIMENT_RULES)


def test_total_gpus_are_capped():
    with pytest.raises(ConfigError, match="GPUs"):
        check_experiment_numbers({"cluster": {"num_nodes": 256, "gpus_per_node": 8}})


def test_hardware_and_cluster_specs_are_checked_when_loaded():
    from sim.spec.hardware import cluster_from_dict, gpu_from_dict, load_gpu

    gpu = {"name": "x", "memory_gb": 80.0, "bf16_tflops": float("inf"), "fp8_tflops": 1.0, "hbm_bw_gbps": 1.0,
           "nvlink_bw_gbps": 1.0, "nvlink_latency_us": 1.0}
    with pytest.raises(ConfigError, match="bf16_tflops"):
        gpu_from_dict(gpu)
    with pytest.raises(ConfigError, match="ib_bw_gbps"):
        cluster_from_dict({"name": "c", "num_nodes": 1, "gpus_per_node": 8, "ib_bw_gbps": 0.0, "ib_latency_us": 5.0},
                          load_gpu("h100_sxm"))


# ---- placement on an absurd cluster --------------------------------------------------------------
def _naive_first_fit(configs, num_nodes, gpus_per_node):
    free = [list(range(gpus_per_node)) for _ in range(num_nodes)]
    order = sorted(((i, tp, pp) for i, c in enumerate(configs) for tp, pp, n in c for _ in range(n)),
                   key=lambda r: (-r[1] * r[2], -r[1], r[0]))
    out = [[] for _ in configs]
    for tier, tp, pp in order:
        groups = [tp * pp] if tp * pp <= gpus_per_node else [tp] * pp
        gpus = []
        for g in groups:
            node = next(n for n, f in enumerate(free) if len(f) >= g)
            gpus.extend((node, free[node].pop(0)) for _ in range(g))
        out[tier].append(tuple(gpus))
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2]), st.integers(0, 4)),
                         max_size=3), min_size=1, max_size=3))
def test_placement_is_exactly_first_fit(configs):
    from planners.placement import place
    from sim.spec.hardware import ClusterSpec, load_gpu

    # Room for the largest draw: 3 tiers x 3 configs x 4 replicas x TP8 x PP2 = 576 GPUs (72 nodes); with fewer
    # nodes Hypothesis could draw a demand the cluster cannot hold, and the oracle would fail, not the placement.
    cluster = ClusterSpec("c", load_gpu("h100_sxm"), 72, 8, 200.0, 5.0)
    tiers = place(tuple(f"m{i}" for i in range(len(configs))), configs, cluster)
    assert [[r.gpus for r in t.replicas] for t in tiers] == _naive_first_fit(configs, 72, 8)


def test_placement_on_a_billion_nodes_touches_only_the_nodes_it_uses():
    from planners.placement import place
    from sim.spec.hardware import ClusterSpec, load_gpu

    cluster = ClusterSpec("huge", load_gpu("h100_sxm"), 10**9, 8, 200.0, 5.0)  # a scan per replica would hang
    (tier,) = place(("m",), [[(8, 1, 3), (4, 1, 1)]], cluster)
    assert [r.gpus[0][0] for r in tier.replicas] == [0, 1, 2, 3]


# ---- atomic, byte-stable outputs; incomplete runs; aggregate --------------------------------------
def test_csv_gz_is_byte_identical_across_writes(tmp_path):
    import time

    from sim.common.io import write_table

    df = pd.DataFrame({"a": np.arange(50), "b": np.linspace(0, 1, 50)})
    write_table(df, tmp_path / "x.csv.gz")
    time.sleep(1.1)  # gzip's header stores the write time in whole seconds
    write_table(df, tmp_path / "y.csv.gz")
    assert (tmp_path / "x.csv.gz").read_bytes() == (tmp_path / "y.csv.gz").read_bytes()
    assert pd.read_csv(tmp_path / "x.csv.gz").equals(df)
    with gzip.open(tmp_path / "x.csv.gz") as f:
        f.read()
        assert f.mtime == 0


def test_write_atomic_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    import os

    from sim.common.io import write_atomic

    target = tmp_path / "summary.json"
    target.write_text("old")

    def boom(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def _summary(name="e"):
    return {"scenario": {"name": name, "workload": "w", "cascade": ["a", "b"], "num_gpus": 8, "q_min": 50.0,
                         "rate_scale": 1.0, "rate_rps": 1.0, "seed": 0, "config": {}},
            "planners": {"p": {"slo_scale": 1.0, "tier_share": [1.0, 0.5], "tier_gpus": [4, 4], "thresholds": [50.0]}}}


def test_aggregate_skips_incomplete_runs_with_one_warning(tmp_path, capsys):
    from experiments.aggregate import aggregate
    from sim.common.io import mark_running

    for run in ("done", "cut"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary.json").write_text(json.dumps(_summary(run)))
    mark_running(tmp_path / "cut")
    table = aggregate([tmp_path])
    assert table.experiment.tolist() == ["done"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: skipping incomplete run") and "cut" in err[0]


@pytest.mark.parametrize("content", ["[]", "{}", "3", "not json", '{"scenario": {}, "planners": []}'])
def test_aggregate_refuses_a_summary_it_did_not_write(tmp_path, content):
    from experiments.aggregate import aggregate

    (tmp_path / "summary.json").write_text(content)
    with pytest.raises(DataError, match="not a summary"):
        aggregate([tmp_path])


def test_aggregate_never_overwrites_its_input_and_needs_force_for_an_output(tmp_path):
    from experiments.aggregate import main

    run = tmp_path / "run"
    run.mkdir()
    raw = json.dumps(_summary())
    (run / "summary.json").write_text(raw)
    with pytest.raises(SystemExit) as exc:
        main([str(run), "--out", str(run / "summary.json")])
    assert exc.value.code == 2 and (run / "summary.json").read_text() == raw
    out = tmp_path / "t.csv"
    main([str(run), "--out", str(out)])
    first = out.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main([str(run), "--out", str(out)])
    assert exc.value.code == 2
    main([str(run), "--out", str(out), "--force"])
    assert out.read_bytes() == first


def test_output_dir_that_is_a_file_is_a_user_error(tmp_path):
    from sim.common.io import prepare_output_dir

    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(UserError, match="existing file"):
        prepare_output_dir(f)
    with pytest.raises(UserError, match="cannot be created"):
        prepare_output_dir(f / "sub")


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from sim.common.cli import exit_on_user_error

    @exit_on_user_error
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted")


# ---- the last request of a trace at any time scale ------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Down to 1e4 requests/s: a denser trace is refused as one read in the wrong time unit (sim.workload.traces).
@given(scale=st.floats(1.001e-4, 1e12), offset=st.sampled_from([0.0, 1.7e9]))
def test_a_201_row_trace_gives_201_requests_at_any_time_scale(tmp_path, scale, offset):
    from sim.workload import build_workload

    path = tmp_path / "t.csv"
    times = offset + scale * np.arange(201)
    rows = "\n".join(f"{float(t)!r},{100 + i},{10 + i}" for i, t in enumerate(times))
    path.write_text("t,inp,out\n" + rows + "\n")
    cfg = {"name": "t", "trace": {"path": str(path), "time_unit": "s",
                                  "columns": {"arrival": "t", "input_tokens": "inp", "output_tokens": "out"}},
           "quality": {"dataset": "gsm8k", "tier_models": ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"],
                       "output_lengths": "trace"}}
    assert build_workload(cfg).num_requests == 201
