"""Pre-cut decode jumps (Engine._precut_jump, CascadeFlow.arm_precut): a run with one engine plans each decode jump to
end where the next arrival would cut it. The oracles are the same run with the pre-cut disarmed (the arrival cuts the
jump: Engine._cut_jump) and the reference mode (one event per iteration): request tables, meta (jumps, iterations)
and iteration logs equal float for float, also with arrivals placed exactly on iteration ends and with requests
dropped for their context between arrivals; the stale boundary entries the cuts left behind are gone."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sim_fakes import OracleJudge, cluster, context_cascade, fake_factory, plan

from sim.bench import llama2_70b_tp8_azure2k
from sim.runtime.flow import CascadeFlow
from sim.runtime.replica import Engine
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload
from tools.queue_entries import count

STALE = "engine boundary, stale (its jump was cut short)"


def _equal(a, b) -> None:
    pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
    assert a.meta["iterations"] == b.meta["iterations"]
    if a.meta["sim_config"] == b.meta["sim_config"]:  # both fast: the whole meta, jumps and per-replica counts too
        assert {k: v for k, v in a.meta.items() if k != "wall_s"} == {k: v for k, v in b.meta.items() if k != "wall_s"}


def _three(monkeypatch, *args, **kw):
    """(armed fast, disarmed fast, reference) results of one run."""
    plan_, cascade, cl, w, cfg = args
    armed = simulate(plan_, cascade, cl, w, cfg, seed=0, **kw)
    with monkeypatch.context() as m:
        m.setattr(CascadeFlow, "arm_precut", lambda self: False)
        disarmed = simulate(plan_, cascade, cl, w, cfg, seed=0, **kw)
    ref = simulate(plan_, cascade, cl, w, replace(cfg, mode="reference"), seed=0, **kw)
    return armed, disarmed, ref


def _named_case(n: int, scale: float):
    plan_, cascade, cl, w, cfg = llama2_70b_tp8_azure2k(0)
    w = w.window(0.0, float(w.arrival_s[n - 1]))
    return plan_, cascade, cl, replace(w, arrival_s=w.arrival_s * scale), cfg


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_the_named_case_is_unchanged_and_loses_its_stale_entries(monkeypatch, scale):
    args = _named_case(400, scale)
    armed, disarmed, ref = _three(monkeypatch, *args[:4], replace(args[4], record_iterations=True))
    _equal(armed, disarmed)
    _equal(armed, ref)
    pd.testing.assert_frame_equal(armed.iterations, disarmed.iterations, check_exact=True)
    counts_armed = count(*args)[0]
    with monkeypatch.context() as m:
        m.setattr(CascadeFlow, "arm_precut", lambda self: False)
        counts_disarmed = count(*args)[0]
    assert counts_disarmed[STALE] > 20  # the cuts the pre-cut replaces
    assert counts_armed[STALE] <= counts_disarmed[STALE] // 10
    assert sum(counts_armed.values()) == sum(counts_disarmed.values()) - counts_disarmed[STALE] + counts_armed[STALE]


def test_arrivals_on_iteration_ends_order_as_the_cut_orders_them(monkeypatch):
    # Arrivals placed exactly on the iteration ends of a long decode stretch (and pairs: one just before an end, the
    # next exactly on it), where the event loop's clock sums decide the order of a boundary and an arrival.
    args = list(_named_case(300, 1.0))
    ref = simulate(*args[:4], replace(args[4], mode="reference", record_iterations=True), seed=0)
    it = ref.iterations
    dec = it[(it.prefill_tokens == 0) & (it.decode_seqs > 0)]
    ends = (dec.start_s + dec.duration_s).to_numpy()[::7][:40]
    w = args[3]
    extra = np.concatenate([ends, ends[::2] - 1e-4])
    arrival = np.sort(np.concatenate([w.arrival_s, extra]))
    idx = np.arange(len(extra)) % w.num_requests
    w2 = Workload(w.name, arrival, np.concatenate([w.input_tokens, w.input_tokens[idx]]),
                  np.concatenate([w.output_tokens, w.output_tokens[idx]]), np.concatenate([w.scores, w.scores[idx]]),
                  np.concatenate([w.question_ids, w.question_ids[idx]]), w.tier_models)
    armed, disarmed, ref2 = _three(monkeypatch, args[0], args[1], args[2], w2, args[4])
    _equal(armed, disarmed)
    _equal(armed, ref2)


def test_requests_dropped_for_their_context_between_arrivals(monkeypatch):
    # Only tier 1 (llama3_70b, 8192 tokens) has a replica. Prompts over 4096 tokens do not fit tier 0 but reach the
    # engine (CascadeFlow.precut_reaches); over 8192 they are dropped at their arrival and cut nothing.
    rng = np.random.default_rng(3)
    n = 300
    inp = rng.choice([200, 5000, 9000], n, p=[0.6, 0.25, 0.15]).astype(np.int64)
    out = rng.integers(20, 300, (n, 2)).astype(np.int64)
    w = Workload("ctx", np.cumsum(rng.exponential(0.4, n)), inp, out, np.zeros((n, 2)),
                 np.array([f"q{i}" for i in range(n)]), ("a", "b"))
    p = plan((0, 1), thresholds=(50.0,), models=("llama2_7b", "llama3_70b"))
    reached = []
    orig = CascadeFlow.precut_reaches

    def spy(self, i):
        reached.append(orig(self, i))
        return reached[-1]

    monkeypatch.setattr(CascadeFlow, "precut_reaches", spy)
    armed, disarmed, ref = _three(monkeypatch, p, context_cascade(), cluster(), w, SimConfig(),
                                  cost_factory=fake_factory(), judge=OracleJudge(0.1))
    _equal(armed, disarmed)
    _equal(armed, ref)
    assert (armed.requests.drop_reason == "context_exceeded").sum() == (inp + out[:, 1] > 8192).sum() > 10
    assert True in reached and False in reached  # both kinds were looked past or found


@pytest.mark.parametrize("replicas,pp", [((2, 1), (1, 1)), ((1, 0), (2, 1)), ((1, 1), (1, 1))])
def test_not_armed_where_another_engine_or_tier_could_take_the_next_arrival(monkeypatch, replicas, pp):
    calls = []
    monkeypatch.setattr(Engine, "_precut_jump", lambda self, k, end: calls.append(k) or (k, end))
    from sim_fakes import llama_cascade, poisson_workload

    r = simulate(plan(replicas, pp=pp), llama_cascade(), cluster(), poisson_workload(200, 8.0, 1), SimConfig(),
                 cost_factory=fake_factory(), judge=OracleJudge(0.1))
    assert (r.requests.status == "completed").all() and calls == []
    one = simulate(plan((1, 0)), llama_cascade(), cluster(), poisson_workload(200, 8.0, 1), SimConfig(),
                   cost_factory=fake_factory(), judge=OracleJudge(0.1))
    assert (one.requests.status == "completed").all() and len(calls) > 20  # the spy sees an armed engine
