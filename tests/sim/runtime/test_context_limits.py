"""Context limits: a tier never serves a prompt + answer over its model's max_context;
sim.context_policy skip passes to the next tier that can take it, drop drops with reason context_exceeded."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sim_fakes import OracleJudge, cluster, context_cascade, fake_factory, plan
from sim.spec.cascade import cascade_from_dict
from sim.common.errors import ConfigError
from sim.metrics import summarize
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload

# llama2_7b takes 4096 tokens, llama3_70b 8192: prompts of 100, 5000 (tier 1 only) and 10**9 (neither).
PROMPTS = [100, 5000, 10**9, 200]


def _workload(prompts, scores=0.0, out=10):
    n = len(prompts)
    return Workload("ctx", np.arange(n, dtype=np.float64), np.array(prompts, dtype=np.int64),
                    np.full((n, 2), out, dtype=np.int64), np.full((n, 2), scores), np.array([str(i) for i in range(n)]),
                    ("a", "b"))


def _run(policy, mode="fast", prompts=PROMPTS, cascade=None, models=None, scores=0.0):
    p = plan((1, 1), thresholds=(50.0,), models=models or ("llama2_7b", "llama3_70b"))
    return simulate(p, cascade or context_cascade(), cluster(), _workload(prompts, scores),
                    SimConfig(mode=mode, context_policy=policy), cost_factory=fake_factory(), judge=OracleJudge(0.1))


@pytest.mark.parametrize("policy", ["skip", "drop"])
def test_no_tier_serves_past_its_context_and_fast_equals_reference(policy):
    fast, ref = _run(policy, "fast"), _run(policy, "reference")
    pd.testing.assert_frame_equal(fast.requests, ref.requests, check_exact=True)
    df = fast.requests
    assert df.status.tolist()[2] == "dropped" and df.drop_reason[2] == "context_exceeded"  # no tier takes 1e9
    assert np.isnan(df.enter_s_t0[2]) and np.isnan(df.enter_s_t1[2])
    if policy == "skip":  # the 5000-token prompt goes straight to the 8192-token tier
        assert df.status[1] == "completed" and df.final_tier[1] == 1 and df.tiers_visited[1] == 1
        assert np.isnan(df.enter_s_t0[1])
        assert fast.meta["context_skipped"] == 1
    else:
        assert df.drop_reason[1] == "context_exceeded" and fast.meta["context_skipped"] == 0
    s = summarize(fast, context_cascade())
    assert s["dropped_by_reason"] == {"context_exceeded": 1 if policy == "skip" else 2}
    assert s["context_skipped"] == (1 if policy == "skip" else 0)
    assert (df.status[[0, 3]] == "completed").all()


def test_answer_stands_when_no_later_tier_can_take_the_request():
    # deepseek_r1_distill_qwen_7b takes 32768 tokens, llama3_70b 8192: a 10000-token prompt fails the gate
    # (score 0 < 50) at tier 0. skip: tier 0's answer is final, unjudged; drop: forwarded, then dropped.
    cas = cascade_from_dict({"name": "c", "tiers": [{"model": "deepseek_r1_distill_qwen_7b"},
                                                    {"model": "llama3_70b"}]})
    models = ("deepseek_r1_distill_qwen_7b", "llama3_70b")
    skip = _run("skip", prompts=[10000, 100], cascade=cas, models=models).requests
    assert skip.final_tier[0] == 0 and skip.status[0] == "completed" and np.isnan(skip.judge_s_t0[0])
    assert skip.final_tier[1] == 1  # an ordinary request is still forwarded
    drop = _run("drop", prompts=[10000, 100], cascade=cas, models=models).requests
    assert drop.drop_reason[0] == "context_exceeded" and drop.judge_s_t0[0] == pytest.approx(0.1)


def test_unknown_context_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="context_policy"):
        SimConfig(context_policy="truncate")


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_visit_goes_to_a_replica_whose_kv_can_hold_it_and_is_dropped_only_if_none_can(mode):
    from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
    from sim_fakes import FakeCost, llama_cascade

    def factory(tier, replica, cluster, engine="vllm"):  # TP1 holds 10 KV blocks (160 tokens), TP2 100 (1600)
        return FakeCost(tp=replica.tp, pp=replica.pp, kv_capacity_blocks=10 if replica.tp == 1 else 100)

    p = CascadePlan("kv", (TierPlan("llama3_8b", (ReplicaPlan(1, 1, ((0, 0),)), ReplicaPlan(2, 1, ((0, 1), (0, 2))))),
                           TierPlan("llama3_70b", ())), (50.0,))
    r = simulate(p, llama_cascade(), cluster(), _workload([1000, 3000, 50]), SimConfig(mode=mode),
                 cost_factory=factory, judge=OracleJudge(0.1))
    df = r.requests
    assert df.status[0] == "completed" and df.replica_t0[0] == 1  # least-work would pick replica 0, which cannot
    assert df.drop_reason[1] == "prompt_exceeds_kv_capacity_t0"  # no replica of the tier can hold 3000 tokens
    assert df.status[2] == "completed"
    assert summarize(r, llama_cascade())["dropped_by_reason"] == {"prompt_exceeds_kv_capacity_t0": 1}
