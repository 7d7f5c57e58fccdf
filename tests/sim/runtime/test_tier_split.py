"""The tier split (sim.runtime.tier_split): a run with the first tier and its verdicts in a forked process equals the
same run in one process, float for float (request tables and meta: iterations, jumps, per-replica busy time and KV
counts, end time, mean number in system), across the paths that cross the split: verdict entries and inline verdicts
(zero judge latency), direct routing, reference mode, Sarathi, prefix caching, KV-capacity drops and preemptions at
the first tier, requests that skip it for their context, several engines per replica (PP), a disaggregated later
tier. A tie the merge cannot order falls back to one process (forced, and met naturally on a lattice of times); a
first-tier error comes back as the same error; runs the split cannot serve say why."""
from __future__ import annotations

from dataclasses import replace
from heapq import heappush

import numpy as np
import pandas as pd
import pytest
from sim_fakes import (OracleJudge, cluster, context_cascade, fake_factory, llama_cascade, plan, poisson_workload,
                       shared_prefixes)

from sim.bench import default_scenario
from sim.common.errors import SimulationStuck
from sim.runtime import tier_split
from sim.runtime.cluster import Cluster
from sim.runtime.kv_cache import KVCache
from sim.runtime.loop import NORMAL, EventLoop
from sim.simulator import SimConfig, simulate
from sim.spec.cascade import cascade_from_dict
from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
from sim.workload import build_workload
from sim.workload.types import Workload

SPLIT_KEYS = ("wall_s", "sim_config", "tier_split", "tier_split_not", "tier_split_child_private_mb",
              "tier_split_child_cpu_s")


def _both(plan_, cascade, cl, w, cfg=SimConfig(), **kw):
    """(split, one-process) results of one run; asserts the split happened."""
    split = simulate(plan_, cascade, cl, w, replace(cfg, tier_split="on"), seed=3, **kw)
    one = simulate(plan_, cascade, cl, w, replace(cfg, tier_split="off"), seed=3, **kw)
    assert split.meta["tier_split"] is True, split.meta.get("tier_split_not")
    assert one.meta["tier_split"] is False and one.meta["tier_split_not"] == "off"
    return split, one


def _assert_equal(a, b) -> None:
    pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
    assert {k: v for k, v in a.meta.items() if k not in SPLIT_KEYS} == \
           {k: v for k, v in b.meta.items() if k not in SPLIT_KEYS}


def test_the_default_scenario_splits_identically():
    """The benchmark's scenario (three tiers, the calibrated cost model, the paper's judge) on 3,000 requests."""
    plan_, cascade, cl, _, cfg = default_scenario(0)
    w = build_workload("conversation", cascade, seed=1, arrival_process="poisson", num_requests=3000)
    split, one = _both(plan_, cascade, cl, w, cfg)
    _assert_equal(split, one)
    done = split.requests
    assert set(done.final_tier) == {0, 1, 2} and (done.tiers_visited > 1).mean() > 0.3  # forwarding crossed it
    assert split.meta["tier_split_child_private_mb"] > 0


@pytest.mark.parametrize("judge_s", [0.0, 0.05])
@pytest.mark.parametrize("overrides", [{}, {"mode": "reference"}, {"batching": "sarathi"},
                                       {"forward_with_draft": True}, {"load_balancer": "round_robin"}])
def test_fake_cost_runs_split_identically(judge_s, overrides):
    w = poisson_workload(600, 30.0, seed=4)
    split, one = _both(plan((3, 2)), llama_cascade(), cluster(), w, SimConfig(**overrides),
                       cost_factory=fake_factory(), judge=OracleJudge(judge_s))
    _assert_equal(split, one)
    assert 0 < (split.requests.final_tier == 1).sum() < len(w.arrival_s)


@pytest.mark.parametrize("seed", range(6))
def test_random_cascades_split_identically(seed):
    """Random three-tier plans (replicas, PP, thresholds), loads, judge latencies and KV sizes."""
    rng = np.random.default_rng(100 + seed)
    reps = tuple(int(x) for x in rng.integers(1, 4, 3))
    p = plan(reps, thresholds=tuple(float(x) for x in rng.uniform(20, 80, 2)), tp=(1, 1, 1),
             pp=(int(rng.integers(1, 3)), 1, 1),
             models=("llama2_7b", "llama2_13b", "llama2_70b"))
    w = poisson_workload(int(rng.integers(200, 700)), float(rng.uniform(5, 80)), seed=seed, tiers=3,
                         mean_in=int(rng.integers(50, 800)))
    cascade = cascade_from_dict({"name": "three", "tiers": [{"model": m} for m in ("llama2_7b", "llama2_13b",
                                                                                     "llama2_70b")]})
    split, one = _both(p, cascade, cluster(), w, SimConfig(mode=str(rng.choice(["fast", "reference"]))),
                       cost_factory=fake_factory(kv_capacity_blocks=int(rng.integers(200, 5000))),
                       judge=OracleJudge(float(rng.choice([0.0, 0.003, 0.2]))))
    _assert_equal(split, one)


def test_direct_routing_splits_identically():
    w = poisson_workload(800, 40.0, seed=5)
    split, one = _both(plan((2, 2), routing="direct", error=0.2), llama_cascade(), cluster(), w,
                       cost_factory=fake_factory(), judge=OracleJudge(0.02))
    _assert_equal(split, one)
    assert set(split.requests.final_tier) == {0, 1}


def test_kv_drops_preemptions_and_pipeline_engines_at_the_first_tier():
    """A small KV cache at the first tier: preemptions (counted through the split), prompts too long for it (dropped
    there: the drop reason crosses the split), and two PP engines per replica."""
    w = poisson_workload(500, 60.0, seed=6, mean_in=700)
    split, one = _both(plan((2, 1), pp=(2, 1)), llama_cascade(), cluster(), w,
                       cost_factory=fake_factory(kv_capacity_blocks=90), judge=OracleJudge(0.01))
    _assert_equal(split, one)
    r = split.requests
    assert (r.drop_reason == "prompt_exceeds_kv_capacity_t0").sum() > 0 and r.preemptions.sum() > 0


@pytest.mark.parametrize("balancer", ["least_work", "prefix_aware"])
def test_prefix_caching_splits_identically(balancer):
    w = shared_prefixes(poisson_workload(600, 40.0, seed=7, mean_in=500))
    split, one = _both(plan((2, 2)), llama_cascade(), cluster(), w, SimConfig(load_balancer=balancer),
                       cost_factory=fake_factory(), judge=OracleJudge(0.01))
    _assert_equal(split, one)
    assert split.requests.cached_tokens_t0.fillna(0).sum() > 0 and split.requests.cached_tokens_t1.fillna(0).sum() > 0


@pytest.mark.parametrize("policy", ["skip", "drop"])
def test_requests_too_long_for_the_first_tier(policy):
    """context_cascade: 4,096 then 8,192 tokens. Under skip, a long request enters the second tier at its arrival
    (in the parent, beside the child's first tier); under drop it is dropped there."""
    rng = np.random.default_rng(8)
    n = 400
    inp = np.where(rng.random(n) < 0.2, rng.integers(4100, 7000, n), rng.integers(50, 900, n))
    w = Workload("long", np.cumsum(rng.exponential(1 / 20.0, n)), inp.astype(np.int64),
                 rng.integers(5, 200, (n, 2)).astype(np.int64), rng.uniform(0, 100, (n, 2)),
                 np.array([f"q{i}" for i in range(n)]), ("a", "b"))
    split, one = _both(plan((2, 1), models=("llama2_7b", "llama3_70b")), context_cascade(), cluster(), w,
                       SimConfig(context_policy=policy), cost_factory=fake_factory(), judge=OracleJudge(0.03))
    _assert_equal(split, one)
    long_ = split.requests[inp > 4096]
    if policy == "skip":
        assert (long_.final_tier == 1).all() and (long_.tiers_visited == 1).all()
    else:
        assert (long_.drop_reason == "context_exceeded").all()


def test_a_disaggregated_later_tier_splits_identically():
    def rp(tp, node, first, role):
        return ReplicaPlan(tp, 1, tuple((node, first + g) for g in range(tp)), role)

    p = CascadePlan("test", (TierPlan("llama3_8b", (rp(1, 0, 0, "colocated"), rp(1, 0, 1, "colocated"))),
                             TierPlan("llama3_70b", (rp(2, 1, 0, "prefill"), rp(4, 0, 4, "decode")))), (50.0,))
    w = poisson_workload(500, 25.0, seed=9)
    split, one = _both(p, llama_cascade(), cluster(), w, cost_factory=fake_factory(), judge=OracleJudge(0.02))
    _assert_equal(split, one)
    assert (split.requests.kv_transfer_s_t1.notna()).sum() > 0


def test_a_first_tier_error_comes_back_as_the_same_error(monkeypatch):
    """A KV block leaked at the first tier stalls its engine: the child's SimulationStuck is raised by the parent."""
    def leak(self, seq):
        self.free_blocks += seq.blocks - 1

    monkeypatch.setattr(KVCache, "release", leak)
    with pytest.raises(SimulationStuck, match="were KV blocks leaked"):
        simulate(plan((1, 1)), llama_cascade(), cluster(), poisson_workload(200, 40.0, 0), SimConfig(tier_split="on"),
                 cost_factory=fake_factory(kv_capacity_blocks=100), judge=OracleJudge())


class _Replay:
    """The parent's side of a split with a scripted child: items (verdicts) at the given loop times."""

    def __init__(self, times):
        self.items = [(0.0, k, t) for k, t in enumerate(times)]
        self.applied = 0
        self.at = []

    def head(self):
        return self.items[0] if self.items else None

    def apply(self, item):
        assert item is self.items[0]
        self.at.append(self.items.pop(0)[2])
        self.applied += 1


def test_the_merge_orders_by_time_and_refuses_a_tie():
    env = EventLoop()
    seen = []
    for t in (0.5, 2.0):
        heappush(env._queue, (t, NORMAL, next(env._eid), seen.append, t))
    replay = _Replay([0.25, 1.0, 3.0])
    tier_split._merge(env, replay)
    assert seen == [0.5, 2.0] and replay.at == [0.25, 1.0, 3.0]

    env = EventLoop()
    heappush(env._queue, (1.0, NORMAL, next(env._eid), seen.append, "parent"))
    with pytest.raises(tier_split.TierSplitTie, match="t=1.0"):
        tier_split._merge(env, _Replay([0.5, 1.0]))


def test_a_forced_tie_falls_back_to_one_process(monkeypatch):
    w = poisson_workload(300, 30.0, seed=10)
    args = (plan((2, 1)), llama_cascade(), cluster(), w)
    kw = dict(cost_factory=fake_factory(), judge=OracleJudge(0.02))
    one = simulate(*args, SimConfig(tier_split="off"), seed=3, **kw)

    def tie(env, flow):
        raise tier_split.TierSplitTie("a first-tier boundary and another entry both at t=1.0 s")

    monkeypatch.setattr(tier_split, "run_split", tie)
    fell_back = simulate(*args, SimConfig(tier_split="on"), seed=3, **kw)
    _assert_equal(fell_back, one)
    assert fell_back.meta["tier_split"] is False and fell_back.meta["tier_split_not"].startswith("tie: ")
    assert fell_back.meta["sim_config"]["tier_split"] == "on"


def test_a_lattice_of_times_meets_a_real_tie_and_still_equals_one_process():
    """Every iteration 0.25 s, arrivals on a 0.25 s grid, no judge latency: first-tier boundaries and second-tier
    entries fall on the same float times, the merge meets a tie, and the run is done again in one process."""
    n = 120
    w = Workload("grid", np.arange(n) * 0.25, np.full(n, 64, dtype=np.int64), np.full((n, 2), 3, dtype=np.int64),
                 np.where(np.arange(n) % 2 == 0, 10.0, 90.0)[:, None] * np.ones((1, 2)),
                 np.array([f"q{i}" for i in range(n)]), ("a", "b"))
    factory = fake_factory(base_s=0.25, prefill_s_per_token=0.0, decode_s_per_seq=0.0, ctx_s_per_token=0.0)
    args = (plan((1, 1)), llama_cascade(), cluster(), w)
    split = simulate(*args, SimConfig(tier_split="on"), seed=0, cost_factory=factory, judge=OracleJudge(0.0))
    one = simulate(*args, SimConfig(tier_split="off"), seed=0, cost_factory=factory, judge=OracleJudge(0.0))
    _assert_equal(split, one)
    assert split.meta["tier_split_not"].startswith("tie: ")


def test_runs_the_split_cannot_serve_say_why():
    def reason(p, cfg=SimConfig(tier_split="on"), n=10, **kw):
        c = Cluster(EventLoop(), p, llama_cascade(), cluster(), cfg, fake_factory())
        args = {"controller": None, "arrivals": None, "slo_stop": None} | kw
        return tier_split.split_reason(cfg, c.routers, n, **args)

    assert reason(plan((2, 1))) == ""
    assert reason(plan((2, 1)), SimConfig(tier_split="off")) == "off"
    assert "fewer than 200,000" in reason(plan((2, 1)), SimConfig())
    auto = reason(plan((2, 1)), SimConfig(), n=200_000)  # big enough: split where this machine allows it
    assert auto == "" or auto == "one CPU" or auto.startswith("other threads are running")
    assert "controller" in reason(plan((2, 1)), controller=object())
    assert "controller" in reason(plan((2, 1)), slo_stop=object())
    assert "iteration log" in reason(plan((2, 1)), SimConfig(tier_split="on", record_iterations=True))
    assert "no later tier" in reason(plan((2, 0)))
    assert "first tier" in reason(plan((0, 2)))


def test_a_sweep_sized_run_stays_in_one_process_by_default():
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), poisson_workload(100, 30.0, 0), SimConfig(),
                 cost_factory=fake_factory(), judge=OracleJudge())
    assert r.meta["tier_split"] is False and "fewer than" in r.meta["tier_split_not"]
