"""The event core's inline paths (issue 21, sixth pass) against independent oracles: a jump's cut
(Engine._cut_segment, the root and stepping inline, counting up to k - 1) against a linear scan over jump.segment_end;
the per-request records that RecordBook.to_frame derives (queue/prefill/decode durations, final score, TTFT, final
answer length) against the arithmetic done by hand on the stored times; the one-prompt prefill memo by prompt length
against the cost model itself; and runs that take the inline paths (one-prompt and several-prompt prefills,
prefix-cached prompts, KV-limited jumps with preemptions) against the same runs on the general paths (vLLM's policy
called as a function: batching's admit and _shape, the memo by shape, no inline decode plan) and in reference mode."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from sim_fakes import shared_prefixes

from sim.bench import llama2_70b_tp8_azure2k
from sim.perf.batch import BatchShape
from sim.runtime import cluster
from sim.runtime.jump import segment_end
from sim.runtime.records import STATUS_COMPLETED, STATUS_DROPPED, RecordBook
from sim.runtime.replica import Engine
from sim.simulator import simulate


class _SegmentHolder:
    """What Engine._cut_segment reads: the engine's current decode segment."""

    def __init__(self, seg):
        self._seg = seg


def _cut_by_scan(s0, a, b, f, n, c0, j0, k, t):
    """The first iteration end strictly after t among the jump's k iterations, by a linear scan over segment_end:
    None where that is the jump's own end (or none is after t), else (iterations kept, that end)."""
    for cut in range(1, k + 1):
        end = segment_end(s0, a, b, f, n, c0, j0 + cut)
        if end > t:
            return None if cut >= k else (cut, end)
    return None


@pytest.mark.parametrize("seed", range(40))
def test_a_cut_lands_on_the_first_iteration_end_after_the_arrival(seed):
    rng = np.random.default_rng(seed)
    s0 = float(rng.uniform(0, 5e4))
    a, b = float(rng.uniform(1e-3, 5e-2)), float(rng.uniform(0, 1e-6))
    f = 1.0 if seed % 3 else float(rng.uniform(1.0, 3.0))
    n, c0 = int(rng.integers(1, 256)), int(rng.integers(0, 400_000))
    j0, k = int(rng.integers(0, 50)), int(rng.integers(2, 300))
    ends = [segment_end(s0, a, b, f, n, c0, j) for j in range(j0 + 1, j0 + k + 1)]
    start = segment_end(s0, a, b, f, n, c0, j0) if j0 else s0
    # arrivals on iteration ends exactly, an ulp either side, between ends, before the jump and after it
    probes = [start - 1.0, start, ends[-1], ends[-1] + 1.0]
    for e in ends[:: max(1, k // 12)] + ends[-3:]:
        probes += [e, math.nextafter(e, -math.inf), math.nextafter(e, math.inf)]
    probes += list(rng.uniform(start, ends[-1], 20))
    for t in probes:
        seg = (s0, a, b, f, n, c0, j0 + k, ends[-1])
        got = Engine._cut_segment(_SegmentHolder(seg), k, float(t))
        want = _cut_by_scan(s0, a, b, f, n, c0, j0, k, float(t))
        if want is None:
            assert got is None, (t, got)
        else:
            cut, end = want
            assert got == (cut, (s0, a, b, f, n, c0, j0 + cut, end)), (t, got, want)


def test_records_derived_at_to_frame_are_the_stored_times_differences_and_final_tier_values():
    arrival = np.array([0.5, 1.25, 2.0, 3.0])
    book = RecordBook(arrival, np.array([10, 20, 30, 40]), 2, output_tokens=np.array([[5, 7], [6, 8], [1, 9], [2, 3]]),
                      scores=np.array([[40.0, 90.0], [75.0, 80.0], [10.0, 20.0], [1.0, 2.0]]))
    # request 0: tier 0 (judged, forwarded), then tier 1 answers; request 1: tier 0 answers; request 2: dropped at
    # tier 1 after tier 0; request 3: never served (dropped at its arrival)
    for i, t, enter, sched, first, done in [(0, 0, 0.5, 0.75, 1.5, 3.0), (0, 1, 3.25, 3.5, 4.125, 6.0),
                                           (1, 0, 1.25, 1.25, 2.0, 2.5), (2, 0, 2.0, 2.5, 2.75, 3.5)]:
        book.enter_s[t][i], book.first_sched_s[t][i] = enter, sched
        book.first_token_s[t][i], book.done_s[t][i] = first, done
    book.enter_s[1][2] = 3.75
    book.final_tier[0], book.completion_s[0], book.status[0] = 1, 6.0, STATUS_COMPLETED
    book.final_tier[1], book.completion_s[1], book.status[1] = 0, 2.75, STATUS_COMPLETED
    book.status[2] = book.status[3] = STATUS_DROPPED
    df = book.to_frame()
    nan = float("nan")
    np.testing.assert_array_equal(df.queue_s_t0, [0.75 - 0.5, 0.0, 2.5 - 2.0, nan])
    np.testing.assert_array_equal(df.prefill_s_t0, [1.5 - 0.75, 2.0 - 1.25, 2.75 - 2.5, nan])
    np.testing.assert_array_equal(df.decode_s_t0, [3.0 - 1.5, 2.5 - 2.0, 3.5 - 2.75, nan])
    np.testing.assert_array_equal(df.queue_s_t1, [3.5 - 3.25, nan, nan, nan])  # request 2 entered tier 1, unserved
    np.testing.assert_array_equal(df.decode_s_t1, [6.0 - 4.125, nan, nan, nan])
    np.testing.assert_array_equal(df.final_score, [90.0, 75.0, nan, nan])
    np.testing.assert_array_equal(df.ttft_s, [4.125 - 0.5, 2.0 - 1.25, nan, nan])
    np.testing.assert_array_equal(df.output_tokens_final, [7, 6, 0, 0])
    np.testing.assert_array_equal(df.latency_s, [6.0 - 0.5, 2.75 - 1.25, nan, nan])
    assert df.output_tokens_final.dtype == np.int64 and df.final_tier.tolist() == [1, 0, -1, -1]


def test_the_prompt_memo_holds_the_cost_models_time_and_shape_of_each_one_prompt_prefill():
    plan, cascade, cl, w, cfg = llama2_70b_tp8_azure2k(0)
    w = w.window(0.0, 120.0)
    cluster._shared_prompt_times.clear()
    cold = simulate(plan, cascade, cl, w, cfg, seed=0)
    (cost, memo), = cluster._shared_prompt_times.values()  # the calibrated model is frozen: its memo is kept
    assert len(memo) > 20
    for c, (t, key) in list(memo.items())[:50]:
        assert key == (c, c * (c + 1) / 2, 1, 0, 0)  # BatchShape's fields of one prompt of c tokens, none cached
        assert t == cost.iteration_time_s(BatchShape(*key))
    warm = simulate(plan, cascade, cl, w, cfg, seed=0)
    pd.testing.assert_frame_equal(cold.requests, warm.requests, check_exact=True)


@dataclass(frozen=True)
class _FrozenCost:
    a: float


@dataclass
class _MutableCost:
    a: float


@pytest.mark.parametrize("memo_for", [cluster.decode_affine_for, cluster.prompt_times_for])
def test_the_decode_affine_and_prompt_memos_outlive_a_run_only_for_a_frozen_cost(memo_for):
    frozen = _FrozenCost(1.0)
    assert memo_for(frozen) is memo_for(frozen)
    assert memo_for(_MutableCost(1.0)) is not memo_for(_MutableCost(1.0))
    assert memo_for(_FrozenCost(1.0)) is not memo_for(frozen)  # by object, not by value


def _general_paths(monkeypatch):
    """Engines built from here on take the general paths: a scheduler that is vLLM's policy called as a function is
    not `schedule_vllm` itself, so Engine._next calls it (batching's admit, _shape and the memo by shape) and no
    engine plans its decode jumps inline (_next_decode)."""
    from sim.runtime import batching, replica

    def vllm_called(eng, now):
        return batching.schedule_vllm(eng, now)

    monkeypatch.setitem(replica.SCHEDULERS, "vllm", vllm_called)


def _equal_runs(monkeypatch, plan, cascade, cl, w, cfg) -> None:
    """fast == reference == the fast run on the general paths (an oracle that shares none of the inline code)."""
    fast = simulate(plan, cascade, cl, w, cfg, seed=0)
    ref = simulate(plan, cascade, cl, w, replace(cfg, mode="reference"), seed=0)
    with monkeypatch.context() as m:
        _general_paths(m)
        general = simulate(plan, cascade, cl, w, cfg, seed=0)
    for other in (ref, general):
        pd.testing.assert_frame_equal(fast.requests, other.requests, check_exact=True)
        assert fast.meta["iterations"] == other.meta["iterations"]
    # the KV accounts too: peak use as the general paths count it, and every block back at the end
    assert fast.meta["replicas"] == general.meta["replicas"]
    assert all(r["kv_used_blocks_end"] == 0 for r in fast.meta["replicas"])
    return fast


@pytest.mark.parametrize("scale, overrides", [
    (1.0, {}),  # one-prompt prefills, cuts, pre-cut jumps
    (0.05, {}),  # a burst: prefills of several prompts (the _shape path) and queues
    (0.05, {"gpu_memory_utilization": 0.3}),  # KV-limited jumps, preemptions, re-prefills
    (0.3, {"gpu_memory_utilization": 0.35}),
    (0.3, {"max_batched_tokens": 2048}),  # budget-limited prefill batches
])
def test_the_inline_paths_equal_the_general_ones_and_the_reference(monkeypatch, scale, overrides):
    plan, cascade, cl, w, cfg = llama2_70b_tp8_azure2k(0)
    w = w.window(0.0, float(w.arrival_s[299]))
    _equal_runs(monkeypatch, plan, cascade, cl, replace(w, arrival_s=w.arrival_s * scale), replace(cfg, **overrides))


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_prefix_cached_prompts_take_the_shape_path_and_equal_the_general_one(monkeypatch, scale):
    plan, cascade, cl, w, cfg = llama2_70b_tp8_azure2k(0)
    w = shared_prefixes(w.window(0.0, float(w.arrival_s[299])))
    fast = _equal_runs(monkeypatch, plan, cascade, cl, replace(w, arrival_s=w.arrival_s * scale), cfg)
    assert (fast.requests.cached_tokens_t1 > 0).sum() > 50  # prompts admitted with cached blocks (prefilled > 0)


def test_several_replicas_and_judged_tiers_equal_the_general_paths(monkeypatch):
    from sim.bench import default_scenario

    plan, cascade, cl, w, cfg = default_scenario(0)
    _equal_runs(monkeypatch, plan, cascade, cl, w.window(0.0, 60.0), cfg)
