"""Issue 18: the planners' estimator builds a tier's replicas with the tier's MoE options (EP, DP attention, MTP),
exactly as the simulator does."""
from __future__ import annotations

from dataclasses import replace

from sim.perf.cost_model import build_replica_cost
from sim.spec.cascade import CascadeSpec

from tests.planners.conftest import make_problem


def test_estimator_uses_the_tier_deployment_options():
    problem = make_problem(num_tiers=3)
    tiers = list(problem.cascade.tiers)
    assert tiers[-1].model.name == "deepseek_v3"
    tiers[-1] = replace(tiers[-1], ep="tp", dp_attention=True, mtp_draft_tokens=1)
    moe = replace(problem, cascade=CascadeSpec(problem.cascade.name, tuple(tiers)), cost_fn=None)
    got = moe.replica_cost(2, 8, 1)
    want = build_replica_cost(tiers[-1].model, problem.cluster.gpu, 8, 1, tiers[-1].weights, tiers[-1].kv,
                              engine=problem.engine, ep=8, dp_attention=True, mtp_draft_tokens=1)
    assert (got.ep, got.dp_attention, got.mtp_draft_tokens) == (8, True, 1)
    assert got.decode_time_s(64, 2000) == want.decode_time_s(64, 2000)
    plain = replace(problem, cost_fn=None).replica_cost(2, 8, 1)
    assert plain.ep == 1 and not plain.dp_attention and got.kv_capacity_tokens > plain.kv_capacity_tokens
