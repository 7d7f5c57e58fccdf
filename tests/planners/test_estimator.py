"""Estimator: light load reduces to serving alone, latency grows with load, capacity is consistent with Little's law,
PP engines each hold max_num_seqs, a drifting rate costs more than a flat one at the same mean load."""
from dataclasses import replace

import numpy as np
import pytest

from planners.estimator import (MAX_WINDOWS, SATURATED_S, TierLoad, alone_latency_s, build_replica_model,
                                fluid_backlog_s, rate_profile)
from sim.perf.batch import BatchShape

from conftest import make_cascade, make_cluster, roofline_cost_fn


@pytest.fixture
def setup():
    cluster = make_cluster(1)
    cost = roofline_cost_fn(cluster)(make_cascade(2).tiers[0], 1, 1, False)
    rng = np.random.default_rng(1)
    load = TierLoad(2.0, rng.integers(100, 1000, 500), rng.integers(50, 400, 500), 1.0, ("t",))
    return cost, load, build_replica_model(cost, load)


def test_light_load_equals_serving_alone(setup):
    cost, load, rm = setup
    a, b = cost.decode_affine(1)
    ctx = load.input_tokens + load.output_tokens / 2
    alone = np.array([cost.iteration_time_s(BatchShape(prefill_tokens=int(n), prefill_attn_pairs=n * (n + 1) / 2,
                                                       num_prefill_seqs=1)) for n in load.input_tokens])
    alone = alone + (load.output_tokens - 1) * (a + b * ctx.mean())
    assert rm.p95_at(np.array([0.0]))[0] == pytest.approx(np.quantile(alone, 0.95), rel=0.05)


def test_latency_grows_with_load_and_saturates(setup):
    _, _, rm = setup
    p = rm.p95_at(np.array([0.1, 0.5, 0.9, 0.99, 1.0, 2.0]))
    assert np.all(np.diff(p) > 0)
    assert p[-1] == pytest.approx(2 * SATURATED_S)


def test_capacity_matches_littles_law(setup):
    cost, load, rm = setup
    # At saturation B = b_max sequences each needing (out - 1) steps of T(b_max) plus the prefill share.
    a, b = cost.decode_affine(int(rm.b_max))
    ctx = float((load.output_tokens * (load.input_tokens + load.output_tokens / 2)).sum() / load.output_tokens.sum())
    t = a + b * rm.b_max * ctx
    lam = 1.0 / ((load.output_tokens.mean() - 1) * t / rm.b_max + rm.prefill_s.mean())
    assert rm.max_rps == pytest.approx(lam, rel=0.02)


def test_pipeline_engines_each_hold_max_num_seqs():
    # vLLM V0 runs one scheduler per PP stage ("virtual engine"), each with its own max_num_seqs.
    cluster = make_cluster(1)
    cost_fn = roofline_cost_fn(cluster)
    tier = make_cascade(2).tiers[0]
    rng = np.random.default_rng(2)
    load = TierLoad(2.0, rng.integers(100, 400, 300), rng.integers(50, 200, 300), 1.0, ("t",))
    b1 = build_replica_model(cost_fn(tier, 1, 1, False), load, max_num_seqs=8).b_max
    b2 = build_replica_model(cost_fn(tier, 1, 2, False), load, max_num_seqs=8).b_max
    assert b1 == 8 and b2 == 16


def test_rate_profile_flat_for_poisson_and_follows_a_ramp():
    rng = np.random.default_rng(3)
    flat = np.cumsum(rng.exponential(0.1, 3000))
    prof, window, local = rate_profile(flat)
    assert prof.num_windows == MAX_WINDOWS and np.all(np.abs(prof.window_factor - 1) < 0.2)
    assert window.min() == 0 and window.max() == prof.num_windows - 1
    # The rate doubles over the span: the last window sees about 4/3 of the mean rate, the first 2/3.
    ramp = np.sqrt(np.linspace(0, 1, 3000)) * 300  # density grows linearly in time
    prof, _, local = rate_profile(ramp)
    assert prof.window_factor[-1] > 1.5 * prof.window_factor[1]
    # The narrowest kernel follows the ramp; at the end of a flat sample no arrivals follow, so a kernel wider
    # than a window sees about half the rate there (the batch drains after the last arrival).
    assert local[0, 2000] > local[0, 1000]
    _, _, local = rate_profile(flat)
    assert local[5, -1] < 0.7 < 0.9 < local[5, 1500]
    single, w, loc = rate_profile(flat[:50])
    assert single.num_windows == 1 and loc.shape == (1, 50)


def test_rising_rate_raises_p95_at_the_same_mean_load(setup):
    cost, load, rm = setup
    m = load.num_requests
    ramp = np.sqrt(np.linspace(0, 1, m)) * 300
    prof, window, local = rate_profile(ramp, min_per_window=50)
    drifting = replace(load, window=window, profile=prof, local_factor=local)
    rd = build_replica_model(cost, drifting)
    rho = np.array([0.5, 0.8])
    assert np.all(rd.p95_at(rho) > rm.p95_at(rho))
    # The fluid backlog: a window above capacity queues the excess (seconds of work), then drains.
    back = fluid_backlog_s(np.array([0.9]), prof)
    assert back[0, 0] == 0.0 and back.max() > 0.0


def test_alone_latency_matches_a_batch_of_one(setup):
    cost, load, rm = setup
    a, b = cost.decode_affine(1)
    inp, out = np.array([500]), np.array([101])
    prefill = cost.iteration_time_s(BatchShape(prefill_tokens=500, prefill_attn_pairs=500 * 501 / 2, num_prefill_seqs=1))
    direct = prefill + sum(a + b * (500 + g) for g in range(1, 101))
    assert alone_latency_s(cost, inp, out)[0] == pytest.approx(direct, rel=1e-3)


def test_prefill_burst_oracle_simultaneous_and_spaced():
    """Analytic oracle: N prompts arriving together on one prefill server of work w each: the k-th waits k w and
    its decode stalls until the last prefill ends, so every request is delayed (N - 1) w in all. Prompts spaced
    wider than their work never queue."""
    from planners.estimator import prefill_burst_s

    n, w = 6, 0.1
    together = prefill_burst_s(np.array([1.0]), np.zeros(n), np.full(n, w))[0]
    assert together == pytest.approx(np.full(n, (n - 1) * w))
    spaced = prefill_burst_s(np.array([1.0]), np.arange(n) * 1.0, np.full(n, w))[0]
    assert spaced == pytest.approx(np.zeros(n))


def test_prefill_burst_matches_lindley_loop():
    """The vectorised waits and busy-period ends equal a plain event-by-event prefill queue."""
    from planners.estimator import prefill_burst_s

    rng = np.random.default_rng(3)
    t = np.sort(np.concatenate([rng.uniform(0, 20, 60), np.full(25, 7.0)]))  # Poisson-ish plus one burst
    work = rng.uniform(0.01, 0.3, t.size)
    got = prefill_burst_s(np.array([0.7]), t, work)[0]
    s = 0.7 * work
    free, start = 0.0, np.zeros(t.size)
    for k in range(t.size):
        start[k] = max(free, t[k])
        free = start[k] + s[k]
    done = start + s
    want = np.zeros(t.size)
    for k in range(t.size):
        j = k
        while j + 1 < t.size and start[j + 1] > t[j + 1] + 1e-12:  # next arrival finds the queue busy
            j += 1
        want[k] = (start[k] - t[k]) + (done[j] - done[k])
    assert got == pytest.approx(want, abs=1e-9)


def test_bursty_arrivals_cost_more_than_spread_ones(setup):
    """Same rate and lengths: arrivals in bursts (as the Azure code trace) give a higher p95 than evenly spread
    ones, through the prefill queue; without arrival times the estimate is the stationary one."""
    cost, load, rm = setup
    m = load.num_requests
    even = np.linspace(0.0, m / load.rate_rps, m)
    bursts = np.repeat(np.arange(m // 50) * 50 / load.rate_rps, 50)  # 50 prompts at once every 25 s
    p_even = build_replica_model(cost, replace(load, arrival_s=even)).p95_at(np.array([0.3]))[0]
    p_burst = build_replica_model(cost, replace(load, arrival_s=bursts)).p95_at(np.array([0.3]))[0]
    assert p_burst > 1.5 * p_even
    assert p_even == pytest.approx(rm.p95_at(np.array([0.3]))[0], rel=0.1)
