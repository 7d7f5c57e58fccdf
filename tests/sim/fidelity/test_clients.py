"""The closed-loop benchmark client: concurrency cap, release times, determinism, fast == reference, and the
serving metrics against hand-computed values on a cost model whose times the test chooses."""
from dataclasses import replace

import numpy as np
import pytest

from sim.spec.cascade import TierSpec
from sim.fidelity.clients import (ClientSpec, release_times_s, run_client, serving_metrics, token_gaps_s,
                         weighted_median)
from sim.common.errors import ConfigError
from sim.spec.models import load_model
from sim.fidelity.serving import bench_cluster
from sim.simulator import SimConfig
from sim_fakes import FakeCost, fake_factory

TIER = TierSpec(load_model("llama3_8b"))
CLUSTER = bench_cluster("h100_sxm", 1)


def run(spec, seed=0, cfg=SimConfig(), **cost):
    return run_client(spec, TIER, 1, 1, CLUSTER, cfg, seed=seed, cost_factory=fake_factory(**cost))


def metrics(result, **cost):
    return serving_metrics(result, lambda _rid: FakeCost(**cost))


def in_flight_at(req, t):
    return int(((req.arrival_s <= t) & (req.completion_s > t)).sum())


def test_concurrency_cap_holds_and_each_finish_admits_the_next():
    rng = np.random.default_rng(1)
    spec = ClientSpec(tuple(rng.integers(50, 400, 60).tolist()), tuple(rng.integers(5, 80, 60).tolist()), 4)
    req = run(spec).requests
    assert (req.status == "completed").all()
    times = np.concatenate([req.arrival_s, req.completion_s])
    assert max(in_flight_at(req, t) for t in times) == 4
    # Closed loop: the first 4 start at 0; every later request starts exactly when an earlier one finished.
    assert (req.arrival_s[:4] == 0).all()
    assert set(req.arrival_s[4:]) <= set(req.completion_s)
    assert np.all(np.diff(req.arrival_s) >= 0)  # admission in release order


def test_rate_cap_releases_poisson_and_slots_delay_admission():
    n, rate = 400, 5.0
    release = release_times_s(n, rate, np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0]))
    spec = ClientSpec((100,) * n, (20,) * n, None, rate)
    req = run(spec, seed=3).requests
    assert np.array_equal(req.arrival_s.to_numpy(), release)  # no cap: each starts at its release
    assert release[0] == 0 and np.mean(np.diff(release)) == pytest.approx(1 / rate, rel=0.1)
    capped = run(replace(spec, concurrency=1), seed=3).requests
    assert np.all(capped.arrival_s.to_numpy() >= release)
    assert np.all(capped.arrival_s.to_numpy()[1:] >= capped.completion_s.to_numpy()[:-1])


def test_same_seed_same_records_and_fast_equals_reference():
    rng = np.random.default_rng(7)
    spec = ClientSpec(tuple(rng.integers(20, 3000, 80).tolist()), tuple(rng.integers(1, 300, 80).tolist()), 8, 20.0)
    fast = run(spec, seed=5)
    again = run(spec, seed=5)
    ref = run(spec, seed=5, cfg=SimConfig(mode="reference"))
    assert fast.requests.equals(again.requests)
    assert fast.requests.equals(ref.requests)
    mf, mr = metrics(fast), metrics(ref)
    assert mf.pop("itl_ms_median") == pytest.approx(mr.pop("itl_ms_median"), rel=1e-9)
    assert mf == mr
    assert not run(spec, seed=6).requests.equals(fast.requests)


def test_metrics_match_hand_computed_times_at_concurrency_one():
    cost = dict(base_s=0.01, prefill_s_per_token=1e-5, decode_s_per_seq=1e-3, ctx_s_per_token=0.0)
    n, inp, out = 5, 1000, 11
    res = run(ClientSpec((inp,) * n, (out,) * n, 1), **cost)
    m = metrics(res, **cost)
    ttft_ms = (0.01 + 1e-5 * inp) * 1e3  # one prefill iteration
    step_ms = (0.01 + 1e-3) * 1e3  # one decode iteration of one sequence
    assert m["ttft_ms_mean"] == pytest.approx(ttft_ms) and m["ttft_ms_p99"] == pytest.approx(ttft_ms)
    assert m["itl_ms_mean"] == pytest.approx(step_ms) and m["itl_ms_median"] == pytest.approx(step_ms)
    assert m["tpot_ms_mean"] == pytest.approx(step_ms)
    e2e_ms = ttft_ms + (out - 1) * step_ms
    assert m["e2e_ms_mean"] == pytest.approx(e2e_ms)
    assert m["output_tokens_per_s"] == pytest.approx(n * out / (n * e2e_ms / 1e3))
    assert m["requests"] == n


def test_prefill_stalls_lengthen_the_gaps_of_running_sequences():
    # vLLM V0 runs a newcomer's prefill alone (prefill first): the sequences already decoding wait, and their
    # next gap holds that prefill. Request 0 is prefilled (0.11 s), then request 1 (0.11 s, stalling request 0),
    # then both decode (0.01 s per step); request 1 is done after one gap, request 0 after 49.
    cost = dict(base_s=0.01, prefill_s_per_token=1e-4, decode_s_per_seq=0.0, ctx_s_per_token=0.0)
    res = run(ClientSpec((1000, 1000), (50, 2), 2), **cost)
    gaps, counts = token_gaps_s(res.iterations, lambda _rid: FakeCost(**cost))
    got = sorted(np.repeat(np.round(gaps, 12), counts).tolist())
    assert got == [0.01] * 49 + [0.12]
    m = metrics(res, **cost)
    assert m["itl_ms_mean"] == pytest.approx((0.12 + 49 * 0.01) / 50 * 1e3)
    assert m["itl_ms_median"] == pytest.approx(10.0)


def test_gaps_from_the_log_add_up_to_the_records_decode_time():
    # Invariant: the token gaps rebuilt from the iteration log sum to each request's decode time (no
    # preemption here: ample KV; every output 2+ tokens, since a one-token answer ends at its prefill and the log
    # cannot say which prompt that was), so their token-weighted mean is the records' mean ITL.
    rng = np.random.default_rng(11)
    spec = ClientSpec(tuple(rng.integers(20, 2000, 120).tolist()), tuple(rng.integers(2, 200, 120).tolist()), 6,
                      30.0)
    for batching in ("vllm", "sarathi"):
        res = run(spec, seed=2, cfg=SimConfig(batching=batching))
        assert res.requests.preemptions.sum() == 0
        gaps, counts = token_gaps_s(res.iterations, lambda _rid: FakeCost())
        assert counts.sum() == (res.requests.output_tokens_final - 1).sum()
        assert (gaps * counts).sum() * 1e3 / counts.sum() == pytest.approx(metrics(res)["itl_ms_mean"], rel=1e-9)


def test_weighted_median_counts_repeats():
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.array([1, 5, 1])) == 1.0
    assert weighted_median(np.array([3.0, 1.0]), np.array([3, 2])) == 3.0


def test_bad_client_specs_are_user_errors():
    with pytest.raises(ConfigError, match="concurrency"):
        ClientSpec((10,), (10,), 0)
    with pytest.raises(ConfigError, match="request_rate"):
        ClientSpec((10,), (10,), None, 0.0)
    with pytest.raises(ConfigError, match="as many output lengths"):
        ClientSpec((10, 20), (10,))


def test_littles_law_closed_loop_keeps_n_in_system():
    # Oracle: with N clients that resend at once, N requests are in the system until the last wave drains, so
    # the time-average number in system (kept by the flow apart from the records) is N up to that drain, and
    # equals the sum of latencies over the run length (Little's law on the whole run, exactly).
    rng = np.random.default_rng(4)
    n, slots = 300, 8
    spec = ClientSpec(tuple(rng.integers(50, 500, n).tolist()), tuple(rng.integers(20, 120, n).tolist()), slots)
    res = run(spec)
    req = res.requests
    assert res.meta["mean_in_system"] * res.meta["end_s"] == pytest.approx(req.latency_s.sum(), rel=1e-9)
    assert slots * 0.95 < res.meta["mean_in_system"] <= slots
    throughput_rps = n / res.meta["end_s"]
    assert throughput_rps * req.latency_s.mean() == pytest.approx(slots, rel=0.05)
