"""The independent checker catches each kind of violation."""
import dataclasses

import pytest

from planners.checker import check_plan
from planners.plan import CascadePlan, ReplicaPlan, TierPlan

from conftest import make_cascade, make_cluster


def good_plan():
    return CascadePlan("test", (
        TierPlan("llama3_8b", (ReplicaPlan(1, 1, ((0, 0),)), ReplicaPlan(2, 1, ((0, 1), (0, 2))))),
        TierPlan("llama3_70b", (ReplicaPlan(4, 2, tuple((0, 4 + i) for i in range(4)) + tuple((1, i) for i in range(4))),)),
    ), (50.0,))


@pytest.fixture
def env():
    return make_cascade(2), make_cluster(2)


def test_good_plan_passes(env):
    assert check_plan(good_plan(), *env) == []


def with_tier(plan, i, replicas):
    tiers = list(plan.tiers)
    tiers[i] = TierPlan(tiers[i].model, replicas)
    return dataclasses.replace(plan, tiers=tuple(tiers))


@pytest.mark.parametrize("mutate, message", [
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((0, 0),)), ReplicaPlan(1, 1, ((0, 0),)))), "already used"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((5, 0),)),)), "does not exist"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(2, 1, ((0, 0),)),)), "needs tp*pp"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(2, 1, ((0, 7), (1, 7))),)), "spans nodes"),
    (lambda p: with_tier(p, 1, (ReplicaPlan(1, 1, ((1, 7),)),)), "weights need"),
    (lambda p: dataclasses.replace(p, thresholds=(50.0, 20.0)), "thresholds, needs 1"),
    (lambda p: dataclasses.replace(p, thresholds=(120.0,)), "outside the 0-100"),
    (lambda p: dataclasses.replace(p, routing="random"), "routing"),
    (lambda p: dataclasses.replace(p, tiers=p.tiers[::-1]), "but the cascade's tier"),
    (lambda p: with_tier(p, 1, ()), "forwards answers to tiers with none"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((0, 0),), "prefill"),)), "has no decode instance"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((0, 0),), "decode"),)), "has no prefill instance"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((0, 0),), "prefill"), ReplicaPlan(1, 1, ((0, 1),), "decode"),
                                ReplicaPlan(1, 1, ((0, 2),)))), "mixes colocated"),
    (lambda p: with_tier(p, 0, (ReplicaPlan(1, 1, ((0, 0),), "both"),)), "role 'both'"),
])
def test_each_violation_is_caught(env, mutate, message):
    problems = check_plan(mutate(good_plan()), *env)
    assert any(message in p for p in problems), problems


def test_too_many_gpus(env):
    cascade, _ = env
    assert any("cluster has 8" in p for p in check_plan(good_plan(), cascade, make_cluster(1)))


def test_a_disaggregated_tier_passes_and_survives_a_plan_file(env, tmp_path):
    from sim.spec.plan_io import load_plan, plan_to_dict
    from omegaconf import OmegaConf

    plan = with_tier(good_plan(), 0, (ReplicaPlan(1, 1, ((0, 0),), "prefill"), ReplicaPlan(2, 1, ((0, 1), (0, 2)), "decode")))
    assert check_plan(plan, *env) == []
    assert plan.tiers[0].deployment() == "P1:D1" and plan.tiers[1].deployment() == "colocated"
    assert "P:TP1xPP1, D:TP2xPP1" in plan.describe()
    path = tmp_path / "p.yaml"
    OmegaConf.save(OmegaConf.create(plan_to_dict(plan)), path)
    back = load_plan(str(path))
    assert back.tiers == plan.tiers
    assert "role" not in plan_to_dict(good_plan())["tiers"][0]["replicas"][0]  # colocated files stay as they were
