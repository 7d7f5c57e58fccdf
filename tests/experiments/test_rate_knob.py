"""The rate knob scales the rate only; the part of the trace is its own knob (trace_window).

Oracle: the trace itself read with sim.workload.read_trace (the requests of [start, start + duration) in trace time),
and arithmetic on its arrival times."""
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.protocol import seed_split
from experiments.scenario import build_scenario
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR
from sim.workload import read_trace, workload_config_from_dict, load_workload_dict

register_configs()
WINDOW = ["trace_window.start_s=100", "trace_window.duration_s=120", "horizon_s=null", "split.enabled=false"]


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _trace_part(start, end):
    trace = read_trace(workload_config_from_dict(load_workload_dict("conversation")).trace)
    keep = (trace.arrival_s >= start) & (trace.arrival_s < end)
    return trace.arrival_s[keep] - start, trace.input_tokens[keep]


@pytest.mark.parametrize("knob", [["rate_scale=1"], ["rate_scale=3"], ["rate_rps=2.0"], ["rate_rps=20.0"]])
def test_rate_knob_retimes_the_same_requests_of_the_chosen_trace_part(knob):
    arrivals, inputs = _trace_part(100.0, 220.0)
    w = build_scenario(_cfg([*WINDOW, *knob])).workload
    # the same requests (same prompts, same order) whatever the rate
    np.testing.assert_array_equal(w.input_tokens, inputs)
    if knob[0].startswith("rate_rps"):
        target = float(knob[0].split("=")[1])
        factor = target / (arrivals.size / 120.0)  # rate_rps replaces the config's rate_scale
        assert w.num_requests / (120.0 / factor) == pytest.approx(target)
    else:
        factor = float(knob[0].split("=")[1])
    np.testing.assert_allclose(w.arrival_s, arrivals / factor)


def test_legacy_rate_scale_also_changes_the_part_of_the_trace():
    # documented legacy: without trace_window, horizon_s cuts the rate-scaled trace, so x2 takes twice the trace
    one = build_scenario(_cfg(["horizon_s=60", "rate_scale=1", "split.enabled=false"])).workload
    two = build_scenario(_cfg(["horizon_s=60", "rate_scale=2", "split.enabled=false"])).workload
    assert two.num_requests > 1.5 * one.num_requests


def test_split_with_a_trace_window_splits_the_rescaled_window():
    cfg = _cfg(["trace_window.duration_s=200", "horizon_s=null", "rate_rps=4.0"])
    sp = seed_split(cfg, 0)
    span = 200.0 / sp.test.extras["rate_factor"]
    assert sp.boundary_s == pytest.approx(0.5 * span)
    assert sp.test.workload.arrival_s.max() < span - sp.boundary_s
    n = sp.plan.workload.num_requests + sp.test.workload.num_requests
    assert n / span == pytest.approx(4.0)


@pytest.mark.parametrize("overrides,match", [
    (["trace_window.duration_s=100"], "set horizon_s=null"),
    (["rate_rps=3"], "rate_rps and load_fraction need trace_window"),
    (["load_fraction=0.5"], "need trace_window"),
    (["trace_window.duration_s=-5", "horizon_s=null"], "trace_window.duration_s"),
])
def test_conflicting_or_bad_rate_knobs_are_one_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_scenario(_cfg(overrides))
