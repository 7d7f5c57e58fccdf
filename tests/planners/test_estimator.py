"""Estimator: light load reduces to serving alone, latency grows with load, capacity is consistent with Little's law."""
import numpy as np
import pytest

from planners.estimator import SATURATED_S, TierLoad, build_replica_model, mixture_quantile
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


def test_mixture_quantile():
    a, b = np.arange(100.0), np.arange(100.0) + 1000
    assert mixture_quantile([a, b], [1.0, 0.0], 0.95) == 94.0
    assert mixture_quantile([a, b], [0.5, 0.5], 0.4) == 79.0
