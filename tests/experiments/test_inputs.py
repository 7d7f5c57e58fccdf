"""The one parse-and-validate step (experiments.inputs): every input family of a composed config is refused there,
before any run starts, with the key path (or file and line) and what is valid; valid configs parse to typed objects."""
from __future__ import annotations

import copy
import dataclasses
import gzip

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from experiments.config import register_configs
from experiments.inputs import OnlineRuns, SplitSpec, parse_experiment, parse_replan
from online.replan import ReplanConfig
from sim.common.config_checks import EXPERIMENT_RULES
from sim.common.errors import ConfigError, DataError
from sim.common.paths import CONF_DIR
from sim.simulator import SimConfig
from sim.spec.faults import Fault


def _compose(overrides=()):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


_DEFAULT = []


def _with(*overrides):
    """The default config with Hydra-syntax key=value overrides set on a copy (composing once keeps the tier cheap;
    a group choice such as experiment=drift still needs _compose)."""
    if not _DEFAULT:
        _DEFAULT.append(_compose())
    cfg = copy.deepcopy(_DEFAULT[0])
    with open_dict(cfg):
        for o in OverridesParser.create().parse_overrides(list(overrides)):
            OmegaConf.update(cfg, o.key_or_group, o.value(), force_add=True)
    return cfg


def _parse(*overrides):
    return parse_experiment(_with(*overrides), planners=False)


# One bad value per input family, each refused by the parse step with its key path and the valid range or names.
# Before the parse step covered them, the replan, faults, trace and quality families passed it and failed only once
# the run had started (or, for a fault on a node the cluster lacks, inside the simulation).
BAD = {
    "top level": (["q_min=150"], r"q_min = 150 is out of range; it must be a number in \[0, 100\]"),
    "split": (["split.plan_fraction=1.0"], r"split\.plan_fraction = 1 is out of range; it must be a number in \(0, 1\)"),
    "sim": (["sim.kv_watermark=1.5"], r"sim\.kv_watermark = 1\.5 is out of range; it must be a number in \[0, 1\)"),
    "sim choice": (["sim.batching=fifo"], r"sim\.batching is 'fifo'; valid: vllm"),
    "judge": (["sim.judge.latency.mean_s=-0.1"], r"sim\.judge\.latency\.mean_s = -0\.1 is out of range"),
    "judge choice": (["sim.judge.kind=gpt"], r"sim\.judge\.kind is 'gpt'; valid: oracle, noisy"),
    "workload": (["workload.arrivals.cv=0"], r"workload\.arrivals\.cv = 0 is out of range; it must be a number > 0"),
    "workload choice": (["workload.trace.time_unit=hours"], r"workload\.trace\.time_unit is 'hours'; valid: timestamp"),
    "workload type": (["workload.num_requests=many"], r"workload\.num_requests = 'many' is not valid; it must be an integer"),
    "replan": (["+replan.hysteresis=2"], r"replan\.hysteresis = 2 is out of range; it must be a number in \(0, 1\]"),
    "replan transition": (["+replan.startup_s=-1"], r"replan\.startup_s = -1 is out of range; it must be a number >= 0"),
    "replan run keys": (["+replan.planners=cascadia"], r"replan\.planners = 'cascadia' is not valid; it must be a list of strings"),
    "replan unknown": (["+replan.intervall_s=60"], r"replan: unknown key\(s\) \['intervall_s'\]"),
    "faults": (["faults=[{kind:node_down,at_s:10,node:7}]"], r"faults\[0\]\.node 7 is outside cluster"),
    "fault kind": (["faults=[{kind:meteor,at_s:10,node:0}]"], r"faults\[0\]\.kind 'meteor' is not valid"),
    "cluster": (["cluster.gpus_per_node=0"], r"cluster\.gpus_per_node"),
    "hardware": (["cluster.hardware=tpu_v9"], r"tpu_v9"),
    "model": (["cascade.tiers.0.model=gpt9"], r"gpt9"),
    "cascade precision": (["cascade.tiers.0.weights=int3"], r"int3"),
}


@pytest.mark.parametrize("family", list(BAD))
def test_each_input_family_is_refused_by_the_parse_step_naming_key_and_range(family):
    overrides, match = BAD[family]
    with pytest.raises(ConfigError, match=match) as err:
        _parse(*overrides)
    assert "\n" not in str(err.value)


def test_a_bad_trace_is_refused_by_the_parse_step_with_file_and_line(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("t,in,out\n0.0,10,5\n1.0,ten,5\n")
    with pytest.raises(DataError, match=r"t\.csv line 3: .*in"):
        _parse(f"workload.trace.path={trace}", "workload.trace.time_unit=s", "workload.trace.columns.arrival=t",
               "workload.trace.columns.input_tokens=in", "workload.trace.columns.output_tokens=out")


def test_a_bad_quality_table_is_refused_by_the_parse_step(tmp_path):
    table = tmp_path / "q.csv.gz"
    with gzip.open(table, "wt") as f:
        f.write("question_id,model,score\nq1,a,0.5\nq1,b,0.7\nq1,c,7\n")  # 7 is outside score_scale [0, 1]
    with pytest.raises(DataError, match=r"q\.csv\.gz"):
        _parse(f"workload.quality.dataset={table}", "+workload.quality.score_scale=[0,1]",
               "workload.quality.tier_models=[a,b,c]")


def test_every_phase_of_a_drifting_workload_is_checked(monkeypatch):
    import sim.workload.build as build

    read = []
    real = build.read_trace
    monkeypatch.setattr(build, "read_trace", lambda cfg: read.append(cfg.path) or real(cfg))
    parse_experiment(_compose(["experiment=drift"]), planners=False)
    phases = _compose(["experiment=drift"]).workload.phases
    assert len(read) == len(phases) >= 2  # one trace read per phase, in the parse step


def test_the_default_config_parses_to_typed_objects_with_the_classes_defaults():
    inputs = _parse()
    assert isinstance(inputs.sim, SimConfig) and inputs.faults == () and inputs.replan == ReplanConfig()
    assert inputs.online == OnlineRuns()
    faults = _parse("faults=[{kind:node_down,at_s:20,node:1,repair_s:5},{kind:gpu_down,at_s:10,node:0,gpu:3}]").faults
    assert [f.at_s for f in faults] == [10.0, 20.0] and all(isinstance(f, Fault) for f in faults)
    replan, runs = parse_replan(_with("+replan.enabled=true", "+replan.keep_static=true", "+replan.planners=[cascadia]",
                                      "+replan.interval_s=30"))
    assert replan.enabled and replan.interval_s == 30.0 and runs == OnlineRuns(("cascadia",), True)
    assert parse_replan(_with("+replan.planner_settings=null"))[0] == ReplanConfig()  # null: the planner's defaults


def test_each_bound_is_stated_once():
    """The groups with a typed schema state their bounds on their fields; the table of sim.common.config_checks must
    not repeat them (two statements of one bound drift apart)."""
    typed = ("sim.", "workload.", "split.", "replan.")
    assert [k for k in EXPERIMENT_RULES if k.startswith(typed)] == []
    for cls in (SimConfig, SplitSpec, ReplanConfig):
        assert any("valid" in f.metadata for f in dataclasses.fields(cls)), cls
