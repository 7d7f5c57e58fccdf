"""sim.control.transition's placement arithmetic on small made-up plans, checked by independent rules: reconcile keeps
every current replica whose TP x PP the new plan still asks for, places the rest on usable GPUs only, each GPU once,
a TP group inside one node, and prefers GPUs no current replica holds; load time is shard bytes over bandwidth plus
start-up; healthy_nodes drops every node with a dead GPU; the config's bounds are refused naming the replan key."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.control.transition import TransitionConfig, healthy_nodes, load_time_s, reconcile, remap_nodes
from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan

GPN = 4  # GPUs per node


def _plan(*tiers):
    return CascadePlan(planner="test", tiers=tuple(TierPlan(f"m{t}", tuple(ReplicaPlan(tp, pp, gpus) for tp, pp, gpus in reps))
                                   for t, reps in enumerate(tiers)), thresholds=(50.0,) * (len(tiers) - 1))


def _check(plan, usable):
    used = [g for t in plan.tiers for r in t.replicas for g in r.gpus]
    assert len(used) == len(set(used)) and set(used) <= usable  # each usable GPU at most once
    for t in plan.tiers:
        for r in t.replicas:
            assert len(r.gpus) == r.tp * r.pp
            for s in range(r.pp):  # each PP stage's TP group inside one node
                assert len({n for n, _ in r.gpus[s * r.tp:(s + 1) * r.tp]}) == 1


def test_reconcile_keeps_matching_replicas_and_places_the_rest_on_free_usable_gpus():
    usable = {(n, g) for n in range(3) for g in range(GPN)}
    cur_a = ReplicaPlan(2, 1, ((0, 0), (0, 1)))
    cur_b = ReplicaPlan(1, 1, ((0, 2),))  # TP1: the new plan wants none, so it goes
    new = _plan([(2, 1, ((2, 0), (2, 1))), (4, 1, ((2, 0), (2, 1), (2, 2), (2, 3)))], [(1, 1, ((1, 0),))])
    got = reconcile(new, [[cur_a, cur_b], []], usable, GPN, busy={(0, 0), (0, 1), (0, 2)})
    _check(got, usable)
    assert cur_a in got.tiers[0].replicas and cur_b not in got.tiers[0].replicas
    assert sorted((r.tp, r.pp) for r in got.tiers[0].replicas) == [(2, 1), (4, 1)]
    new_gpus = {g for t in got.tiers for r in t.replicas if r != cur_a for g in r.gpus}
    assert not new_gpus & {(0, 2)}  # make-before-break: a GPU a current replica holds is left alone while others fit


@pytest.mark.parametrize("seed", range(15))
def test_reconcile_never_places_on_a_dead_gpu_or_twice(seed):
    rng = np.random.default_rng(seed)
    usable = {(n, g) for n in range(4) for g in range(GPN) if rng.random() > 0.2}
    reps = [(int(tp), 1, ()) for tp in rng.choice([1, 2, 4], int(rng.integers(1, 4)))]
    got = reconcile(_plan(reps), [[]], usable, GPN)
    if got.tiers[0].replicas[0].gpus:  # placed (else: the planner's own placement came back, nothing fitted)
        _check(got, usable)


def test_load_time_is_the_shard_over_bandwidth_plus_start_up():
    tier = SimpleNamespace(weights="bf16", model=SimpleNamespace(weight_bytes=lambda w: 80e9))
    cfg = TransitionConfig(reload_bandwidth_gbps=5.0, startup_s=20.0)
    assert load_time_s(tier, ReplicaPlan(4, 2, ()), cfg) == pytest.approx(80e9 / 8 / 5e9 + 20.0)


def test_healthy_nodes_and_remap():
    assert healthy_nodes(SimpleNamespace(num_nodes=4), {(1, 3), (3, 0), (1, 0)}) == [0, 2]
    moved = remap_nodes(_plan([(2, 1, ((0, 0), (0, 1))), (1, 1, ((1, 2),))]), [0, 2])
    assert [r.gpus for r in moved.tiers[0].replicas] == [((0, 0), (0, 1)), ((2, 2),)]


@pytest.mark.parametrize("key,value", [("reload_bandwidth_gbps", 0.0), ("startup_s", -1.0),
                                       ("inflight_policy", "drop")])
def test_bad_transition_settings_name_the_replan_key(key, value):
    with pytest.raises(ConfigError, match=rf"replan\.{key}"):
        TransitionConfig(**{key: value})
