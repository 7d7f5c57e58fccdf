"""Invariant: the prefill-batch time memo outlives a run only for a frozen cost object (sim.runtime.cluster)."""
from dataclasses import dataclass

from sim.bench import llama2_70b_tp8_azure2k
from sim.runtime import cluster
from sim.simulator import simulate


@dataclass(frozen=True)
class FrozenCost:
    a: float


@dataclass
class MutableCost:
    a: float


def test_a_frozen_cost_shares_its_memo_and_a_mutable_one_does_not():
    frozen, mutable = FrozenCost(1.0), MutableCost(1.0)
    assert cluster.step_times_for(frozen) is cluster.step_times_for(frozen)
    # a mutable cost may change between runs (e.g. a test's fake whose time is edited): each run memoizes afresh
    assert cluster.step_times_for(mutable) is not cluster.step_times_for(mutable)
    assert cluster.step_times_for(FrozenCost(1.0)) is not cluster.step_times_for(frozen)  # by object, not value


def test_the_memo_is_bounded_in_count():
    costs = [FrozenCost(float(i)) for i in range(cluster.SHARED_STEP_TIMES_MAX + 3)]
    for c in costs:
        cluster.step_times_for(c)
    assert len(cluster._shared_step_times) <= cluster.SHARED_STEP_TIMES_MAX


def test_a_second_run_with_a_warm_memo_gives_the_same_records():
    plan, cascade, cl, workload, cfg = llama2_70b_tp8_azure2k(0)
    w = workload.window(0.0, 60.0)
    cluster._shared_step_times.clear()
    cold = simulate(plan, cascade, cl, w, cfg, seed=0)
    assert any(memo for _, memo in cluster._shared_step_times.values())  # the calibrated model is frozen: kept
    warm = simulate(plan, cascade, cl, w, cfg, seed=0)
    assert cold.requests.equals(warm.requests)
