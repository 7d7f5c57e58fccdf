"""Disaggregated prefill/decode (sim.runtime.disagg): the KV transfer time worked by hand, one request followed
through prefill, transfer, decode and escalation against a hand computation, invariants and fast == reference on
random disaggregated instances, and faults on either pool."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, poisson_workload

from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
from sim.common.errors import ConfigError
from sim.runtime.disagg import kv_transfer_s
from sim.simulator import SimConfig, simulate
from sim.spec.models import load_model
from sim.workload.types import Workload

# llama3_70b: 80 layers x (K + V) x 8 KV heads x 128 dims x 2 bytes (BF16) = 327,680 bytes per token.
KV_70B = 80 * 2 * 8 * 128 * 2


def rp(tp, node, first, role):
    return ReplicaPlan(tp, 1, tuple((node, first + g) for g in range(tp)), role)


def disagg_plan(decode_node=0, thresholds=(50.0,)):
    """Tier 0 (8B): one prefill TP1 and two decode TP1 on node 0; tier 1 (70B): prefill TP2 on node 1, decode TP4
    on decode_node (0: across nodes from its prefill; 1: the same node)."""
    t0 = TierPlan("llama3_8b", (rp(1, 0, 0, "prefill"), rp(1, 0, 1, "decode"), rp(1, 0, 2, "decode")))
    dec_first = 4 if decode_node == 0 else 2
    t1 = TierPlan("llama3_70b", (rp(2, 1, 0, "prefill"), rp(4, decode_node, dec_first, "decode")))
    return CascadePlan("test", (t0, t1), thresholds)


def test_kv_bytes_per_token_of_llama3_70b_by_hand():
    assert load_model("llama3_70b").kv_bytes_per_token("bf16") == KV_70B


def test_kv_transfer_time_intra_and_inter_node_by_hand():
    cl = cluster()  # NVLink 400 GB/s per GPU, 2 us; IB 200 GB/s per node pair over 8 GPUs, 5 us
    src = rp(2, 0, 0, "prefill")
    same = rp(4, 0, 4, "decode")
    other = rp(4, 1, 0, "decode")
    # 1,000 tokens = 327.68 MB; two streams (the TP2 side) of NVLink: 327.68e6 / 800e9 = 0.4096 ms, + 2 us.
    assert kv_transfer_s(1000, KV_70B, src, same, cl) == pytest.approx(0.4096e-3 + 2e-6, rel=1e-12)
    # Across nodes: two NICs of 200/8 = 25 GB/s: 327.68e6 / 50e9 = 6.5536 ms, + 5 us.
    assert kv_transfer_s(1000, KV_70B, src, other, cl) == pytest.approx(6.5536e-3 + 5e-6, rel=1e-12)
    # Layer-wise streaming behind a 5 ms prefill exposes only what exceeds the prefill: 1.5536 ms (> 1/80 of it).
    assert kv_transfer_s(1000, KV_70B, src, other, cl, "layerwise", 5e-3, 80) == pytest.approx(1.5536e-3 + 5e-6)
    # ... and at least the last layer's share behind a long prefill: 6.5536 ms / 80.
    assert kv_transfer_s(1000, KV_70B, src, other, cl, "layerwise", 1.0, 80) == pytest.approx(6.5536e-3 / 80 + 5e-6)
    assert kv_transfer_s(0, KV_70B, src, other, cl) == 0.0


@pytest.mark.parametrize("decode_node", [0, 1])
@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_one_request_through_prefill_transfer_decode_and_escalation(decode_node, mode):
    """One request, alone: every time is the hand computation from the fake cost (base 4 ms, 20 us per prefill
    token, 0.1 ms per decode sequence, 30 ns per context token) and the hand-worked transfer."""
    L, out0, out1, judge_s = 1000, 5, 7, 0.27
    w = Workload("one", np.array([1.0]), np.array([L]), np.array([[out0, out1]]), np.array([[10.0, 90.0]]),
                 np.array(["q0"]), ("a", "b"))
    r = simulate(disagg_plan(decode_node), llama_cascade(), cluster(), w, SimConfig(mode=mode), seed=0,
                 cost_factory=fake_factory(), judge=OracleJudge(judge_s))
    row = r.requests.iloc[0]
    prefill = 0.004 + 2e-5 * L

    def decode(out):  # steps with 1..out-1 tokens generated: context prompt + g
        return sum(0.004 + 1e-4 + 3e-8 * (L + g) for g in range(1, out))

    kv_8b = load_model("llama3_8b").kv_bytes_per_token("bf16")
    x0 = 2e-6 + (L + 0) * kv_8b / 400e9  # the first token's KV is written by the decode instance
    bw1 = 2 * (400e9 if decode_node == 1 else 25e9)
    x1 = (2e-6 if decode_node == 1 else 5e-6) + L * KV_70B / bw1
    assert row.status == "completed" and row.final_tier == 1 and row.tiers_visited == 2
    assert row.kv_transfer_s_t0 == pytest.approx(x0, rel=1e-9)
    assert row.kv_transfer_s_t1 == pytest.approx(x1, rel=1e-9)
    assert row.prefill_s_t0 == pytest.approx(prefill) and row.prefill_s_t1 == pytest.approx(prefill)
    assert row.decode_s_t0 == pytest.approx(x0 + decode(out0), rel=1e-9)
    assert row.decode_s_t1 == pytest.approx(x1 + decode(out1), rel=1e-9)
    # Escalation: tier 1 starts after tier 0's last token and the judge, and prefills the prompt again there.
    t0_end = 1.0 + prefill + x0 + decode(out0)
    assert row.enter_s_t1 == pytest.approx(t0_end + judge_s, rel=1e-12)
    assert row.latency_s == pytest.approx(t0_end + judge_s + prefill + x1 + decode(out1) - 1.0, rel=1e-9)
    assert row.ttft_s == pytest.approx(t0_end + judge_s + prefill - 1.0, rel=1e-9)
    # Each decode instance admits the visit the moment its KV arrives (it is idle).
    assert row.decode_admit_s_t0 == pytest.approx(1.0 + prefill + x0, rel=1e-12)
    assert row.decode_admit_s_t1 == pytest.approx(t0_end + judge_s + prefill + x1, rel=1e-12)
    assert row.prefill_replica_t0 == 0 and row.replica_t0 in (1, 2)
    assert row.prefill_replica_t1 == 3 and row.replica_t1 == 4
    roles = [m["role"] for m in r.meta["replicas"]]
    assert roles == ["prefill", "decode", "decode", "prefill", "decode"]


def test_a_one_token_answer_never_reaches_the_decode_pool():
    w = Workload("one", np.array([0.0]), np.array([100]), np.array([[1, 1]]), np.array([[90.0, 90.0]]),
                 np.array(["q0"]), ("a", "b"))
    r = simulate(disagg_plan(), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.0))
    row = r.requests.iloc[0]
    assert row.final_tier == 0 and row.kv_transfer_s_t0 == 0.0 and row.replica_t0 == 0 and row.decode_s_t0 == 0.0


@st.composite
def instances(draw):
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    rate = draw(st.floats(1.0, 200.0))
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    inp = rng.integers(1, draw(st.integers(2, 600)), n).astype(np.int64)
    out = rng.integers(1, draw(st.integers(2, 300)), (n, 2)).astype(np.int64)
    w = Workload("h", arrival, inp, out, rng.uniform(0, 100, (n, 2)), np.array([str(i) for i in range(n)]), ("a", "b"))
    cfg = SimConfig(batching=draw(st.sampled_from(["vllm", "sarathi"])), max_num_seqs=draw(st.integers(1, 16)),
                    chunk_tokens=draw(st.sampled_from([16, 64, 512])),
                    max_batched_tokens=draw(st.sampled_from([64, 8192])),
                    load_balancer=draw(st.sampled_from(["least_work", "round_robin", "jsq"])),
                    forward_with_draft=draw(st.booleans()), record_iterations=True,
                    kv_transfer=draw(st.sampled_from(["after_prefill", "layerwise"])))
    p = disagg_plan(draw(st.integers(0, 1)), (draw(st.floats(0, 100)),))
    if draw(st.booleans()):  # tier 1 colocated: a cascade that mixes both deployments
        p = replace(p, tiers=(p.tiers[0], TierPlan("llama3_70b", (rp(4, 2, 0, "colocated"),))))
    kv = draw(st.integers(8, 200))
    return w, cfg, p, kv, seed


def _run(inst, mode):
    w, cfg, p, kv, seed = inst
    return simulate(p, llama_cascade(), cluster(), w, replace(cfg, mode=mode), seed=seed,
                    cost_factory=fake_factory(kv_capacity_blocks=kv), judge=OracleJudge(0.27))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_disaggregated_invariants_and_fast_equals_reference(inst):
    fast, ref = _run(inst, "fast"), _run(inst, "reference")
    pd.testing.assert_frame_equal(fast.requests, ref.requests, check_exact=True)
    df = fast.requests
    assert set(df.status) <= {"completed", "dropped"}
    dropped = df.status == "dropped"
    assert (df.drop_reason[dropped] != "").all() and (df.drop_reason[~dropped] == "").all()
    plan = inst[2]
    for t, tier in enumerate(plan.tiers):
        first = sum(len(tp.replicas) for tp in plan.tiers[:t])
        roles = {first + j: rep.role for j, rep in enumerate(tier.replicas)}
        served = df[df[f"replica_t{t}"] >= 0]
        # The decode instance (or a colocated replica) answers; a prefill instance only a one-token answer.
        role = served[f"replica_t{t}"].map(roles)
        assert (role.isin(["decode", "colocated"]) | (role.eq("prefill") & served[f"output_tokens_t{t}"].eq(1))).all()
        if tier.disaggregated:
            done = served.status == "completed"
            assert served[f"prefill_replica_t{t}"].map(roles).eq("prefill").all()
            assert (served.loc[done, f"kv_transfer_s_t{t}"] >= 0).all()
            # Each visit's order of events: enter <= first scheduled <= first token <= KV arrival <= last token.
            first_token = served[f"enter_s_t{t}"] + served[f"queue_s_t{t}"] + served[f"prefill_s_t{t}"]
            assert (served[f"queue_s_t{t}"] >= 0).all() and (served[f"prefill_s_t{t}"] > 0).all()
            assert (served[f"decode_s_t{t}"] >= served[f"kv_transfer_s_t{t}"] - 1e-12).all()
            assert (first_token <= df.loc[served.index, "completion_s"].fillna(np.inf) + 1e-9).all()
            # A decode instance admits a visit only once its KV has arrived, and before its last token.
            adm = served[f"decode_admit_s_t{t}"]
            seen = adm.notna()
            # Every visit that decoded was admitted with its arrived KV (never prefilled again behind a sequence
            # preempted on its decode instance).
            decoded = done & served[f"output_tokens_t{t}"].gt(1) & served[f"replica_t{t}"].map(roles).eq("decode")
            assert seen[decoded].all()
            arrived = first_token + served[f"kv_transfer_s_t{t}"]
            assert (adm[seen] >= arrived[seen] - 1e-9).all()
            assert (adm[seen] <= df.loc[served.index, "completion_s"][seen].fillna(np.inf) + 1e-9).all()
    # KV never over capacity on any instance, in either pool.
    for m in fast.meta["replicas"]:
        assert m["kv_peak_used_blocks"] <= m["kv_capacity_blocks"]


def test_taking_down_a_prefill_and_a_decode_instance_loses_no_request():
    from sim.control.controller import Controller

    class TakeDown(Controller):
        def run(self, env, cl, flow):
            yield env.timeout(3.0)
            router = cl.routers[0]
            self.requeued = cl.take_down(router.decode.replicas[0])
            yield env.timeout(1.0)
            self.requeued += cl.take_down(router.prefill.replicas[0])  # the tier's only prefill instance
            yield env.timeout(2.0)
            cl.add_replica(0, rp(1, 3, 0, "prefill"), load_s=1.0)

    w = poisson_workload(500, 40.0, 3)
    ctl = TakeDown()
    r = simulate(disagg_plan(), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.27), controller=ctl)
    assert ctl.requeued > 0
    assert (r.requests.status == "completed").all()


def test_a_half_disaggregated_tier_is_refused():
    p = disagg_plan()
    bad = replace(p, tiers=(TierPlan("llama3_8b", (rp(1, 0, 0, "prefill"),)), p.tiers[1]))
    with pytest.raises(ConfigError, match="at least one prefill and one decode"):
        simulate(bad, llama_cascade(), cluster(), poisson_workload(5, 1.0, 0), SimConfig(),
                 cost_factory=fake_factory())
    with pytest.raises(ConfigError, match="needs sim.batching vllm or sarathi"):
        simulate(p, llama_cascade(), cluster(), poisson_workload(5, 1.0, 0), SimConfig(batching="static"),
                 cost_factory=fake_factory())
    with pytest.raises(ConfigError, match="kv_transfer"):
        SimConfig(kv_transfer="teleport")


def test_a_run_cannot_switch_a_tier_between_colocated_and_disaggregated():
    from sim.control.controller import Controller

    class AddPrefill(Controller):
        def run(self, env, cl, flow):
            yield env.timeout(0.5)
            cl.add_replica(1, rp(1, 3, 0, "prefill"))  # tier 1 is colocated here

    p = disagg_plan()
    p = replace(p, tiers=(p.tiers[0], TierPlan("llama3_70b", (rp(4, 2, 0, "colocated"),))))
    with pytest.raises(ConfigError, match="cannot switch a tier"):
        simulate(p, llama_cascade(), cluster(), poisson_workload(50, 20.0, 0), SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.0), controller=AddPrefill())
