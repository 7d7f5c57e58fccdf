"""Fault injection: validation of fault configs, no request lost under any fault schedule (Hypothesis), repairs,
stragglers and degraded links that slow service, and fast mode identical to reference mode under faults."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.control.controller import OnlineController
from sim.common.errors import ConfigError
from sim.spec.faults import faults_from_config
from sim.simulator import SimConfig, simulate
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

CL = cluster()


def run(faults, p=None, w=None, mode="fast", factory=None, batching="vllm"):
    ctl = OnlineController(faults_from_config(faults, CL))
    r = simulate(p or plan((2, 1)), llama_cascade(), CL, w if w is not None else poisson_workload(800, 40.0, 1),
                 SimConfig(mode=mode, batching=batching), cost_factory=factory or fake_factory(),
                 judge=OracleJudge(0.27), controller=ctl)
    return r


def assert_accounted(r, n):
    df = r.requests
    assert len(df) == n
    assert set(df.status) <= {"completed", "dropped"}
    assert (df.loc[df.status == "dropped", "drop_reason"] != "").all()
    assert df.loc[df.status == "completed", "latency_s"].notna().all()


@pytest.mark.parametrize("bad, word", [
    ({"kind": "meteor", "at_s": 1, "node": 0}, "kind"),
    ({"kind": "node_down", "at_s": 1, "node": 9}, "node 9"),
    ({"kind": "gpu_down", "at_s": 1, "node": 0, "gpu": 8}, "gpu 8"),
    ({"kind": "gpu_down", "at_s": 1, "node": 0}, "needs"),
    ({"kind": "node_down", "at_s": -1, "node": 0}, "at_s"),
    ({"kind": "node_down", "at_s": 1, "node": 0, "colour": 1}, "unknown key"),
    ({"kind": "straggler", "at_s": 1, "node": 0, "gpu": 0, "factor": 0.5}, "factor"),
    ({"kind": "link_degraded", "at_s": 1, "node": 0, "factor": 2}, "factor"),
    ({"kind": "node_down", "at_s": "soon", "node": 0}, "at_s"),
    ({"kind": "node_down", "at_s": 1, "node": 0, "repair_s": 0}, "repair_s"),
    ("node 3", "mapping"),
])
def test_bad_fault_configs_fail_with_one_clear_sentence(bad, word):
    with pytest.raises(ConfigError, match=word) as exc:
        faults_from_config([bad], CL)
    assert "faults[0]" in str(exc.value) and "\n" not in str(exc.value)


def test_failed_replica_requeues_to_the_tier_and_nothing_is_lost():
    r = run([{"kind": "gpu_down", "at_s": 5.0, "node": 0, "gpu": 0}])
    assert_accounted(r, 800)
    assert (r.requests.status == "completed").all()  # the tier's other replica takes over
    ev = r.meta["controller_events"][0]
    assert ev["event"] == "gpu_down" and ev["replicas_down"] == [0]
    after = r.requests[r.requests.arrival_s > 5.0]
    assert (after.replica_t0 != 0).all()  # nothing is served by the dead replica afterwards


def test_tier_without_replica_waits_for_repair_or_is_dropped_with_a_reason():
    lost = run([{"kind": "gpu_down", "at_s": 5.0, "node": 0, "gpu": 2}])  # the only tier-1 replica, never back
    assert_accounted(lost, 800)
    dropped = lost.requests[lost.requests.status == "dropped"]
    assert len(dropped) > 0 and set(dropped.drop_reason) == {"tier_1_unavailable"}
    repaired = run([{"kind": "gpu_down", "at_s": 5.0, "node": 0, "gpu": 2, "repair_s": 4.0}])
    assert (repaired.requests.status == "completed").all()
    events = [e["event"] for e in repaired.meta["controller_events"]]
    assert events == ["gpu_down", "repair", "restore"]
    # Visits that waited for the repair and the weight reload (Llama-3-70B: 141 GB / 5 GB/s + 20 s) are slow.
    assert repaired.requests.latency_s.max() > 4.0 + 20.0


def test_straggler_and_degraded_link_slow_service_then_recover():
    w = poisson_workload(800, 40.0, 1)
    base = run([], w=w).requests.latency_s.mean()
    slow = run([{"kind": "straggler", "at_s": 0.0, "node": 0, "gpu": 0, "factor": 4.0}], w=w).requests.latency_s.mean()
    brief = run([{"kind": "straggler", "at_s": 0.0, "node": 0, "gpu": 0, "factor": 4.0, "duration_s": 2.0}],
                w=w).requests.latency_s.mean()
    assert base < brief < slow


def test_degraded_link_rebuilds_the_cost_on_a_slower_cluster():
    seen = []

    def factory(tier, replica, cluster_spec, engine="vllm"):
        seen.append(cluster_spec.ib_bw_gbps)
        return fake_factory(base_s=0.004 * 200.0 / cluster_spec.ib_bw_gbps)(tier, replica, cluster_spec, engine)

    w = poisson_workload(400, 30.0, 2)
    healthy = run([], w=w, factory=factory).requests.latency_s.mean()
    degraded = run([{"kind": "link_degraded", "at_s": 0.0, "node": 0, "factor": 0.5}], w=w, factory=factory)
    assert 100.0 in seen  # half of the 200 GB/s InfiniBand
    assert degraded.requests.latency_s.mean() > healthy


@pytest.mark.parametrize("fault", [
    {"kind": "node_down", "at_s": 6.0, "node": 0, "repair_s": 3.0},
    {"kind": "gpu_down", "at_s": 4.0, "node": 0, "gpu": 1, "repair_s": 2.0},
    {"kind": "straggler", "at_s": 3.0, "node": 0, "gpu": 1, "factor": 2.5, "duration_s": 4.0},
    {"kind": "link_degraded", "at_s": 3.0, "node": 0, "factor": 0.3},
])
@pytest.mark.parametrize("batching", ["vllm", "sarathi", "static"])
def test_fast_mode_equals_reference_mode_under_faults(fault, batching):
    w = poisson_workload(500, 40.0, 3)
    fast = run([fault], w=w, batching=batching).requests
    ref = run([fault], w=w, mode="reference", batching=batching).requests
    pd.testing.assert_frame_equal(fast, ref, check_exact=True)


fault_st = st.one_of(
    st.fixed_dictionaries({"kind": st.just("gpu_down"), "at_s": st.floats(0, 20), "node": st.just(0),
                           "gpu": st.integers(0, 3), "repair_s": st.one_of(st.none(), st.floats(0.5, 10))}),
    st.fixed_dictionaries({"kind": st.just("node_down"), "at_s": st.floats(0, 20), "node": st.just(0),
                           "repair_s": st.one_of(st.none(), st.floats(0.5, 10))}),
    st.fixed_dictionaries({"kind": st.just("straggler"), "at_s": st.floats(0, 20), "node": st.just(0),
                           "gpu": st.integers(0, 3), "factor": st.floats(1, 5),
                           "duration_s": st.one_of(st.none(), st.floats(0.5, 10))}),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(faults=st.lists(fault_st, max_size=4), seed=st.integers(0, 50))
def test_every_request_ends_completed_or_dropped_with_a_reason(faults, seed):
    w = poisson_workload(200, 30.0, seed)
    r = run(faults, p=plan((2, 2)), w=w)
    assert_accounted(r, 200)
    dead_forever = any(f["kind"] in ("gpu_down", "node_down") and f["repair_s"] is None for f in faults)
    if not dead_forever:
        assert (r.requests.status == "completed").all()
    assert r.meta["end_s"] >= float(np.nanmax(r.requests.completion_s.to_numpy(), initial=0.0))


def test_overlapping_faults_bring_a_gpu_back_only_at_the_last_repair():
    """GPU (0, 2) fails at 5 s (back at 9 s) inside a failure of its node from 6 s to 106 s: the first repair must not
    bring the tier-1 replica on it back while the node is still down (it once came back at 9 s)."""
    r = run([{"kind": "gpu_down", "at_s": 5.0, "node": 0, "gpu": 2, "repair_s": 4.0},
             {"kind": "node_down", "at_s": 6.0, "node": 0, "repair_s": 100.0}])
    assert_accounted(r, 800)
    events = r.meta["controller_events"]
    assert [e["time_s"] for e in events if e["event"] == "restore"] == [106.0] * 3
    first_repair = next(e for e in events if e["event"] == "repair")
    assert first_repair["time_s"] == 9.0 and first_repair["gpus_still_down"] == 1
