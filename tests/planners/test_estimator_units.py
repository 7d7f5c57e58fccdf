"""planners/estimator.py's small pieces against hand-worked values: the prefill-burst sub-grid (every
BURST_GRID_STEP-th point and the last, each grid point interpolated from its two neighbours; computed fresh, not
from the process-wide memo), the inter-arrival ca2 of a burst at one instant, and Lindley's busy period with a
wait at float-noise level."""
from __future__ import annotations

import numpy as np
import pytest

import planners.estimator as est

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [61, 13, 12, 7, 2])
def test_burst_sub_grid_holds_every_step_and_the_last_point_and_interpolates_each_point(size, monkeypatch):
    monkeypatch.setattr(est, "_BURST_GRIDS", {})  # the memo is process-wide: compute this size afresh
    sub, j, frac = est._burst_grid(size)
    want = sorted(set(range(0, size, est.BURST_GRID_STEP)) | {size - 1})
    assert sub.tolist() == want
    assert j.shape == frac.shape == (size,) and np.all((0 <= j) & (j <= sub.size - 2))
    assert np.all((0 <= frac) & (frac <= 1))
    # Oracle: interpolating the sub-grid's positions at (j, frac) gives back every grid point.
    np.testing.assert_allclose(sub[j] + frac * (sub[j + 1] - sub[j]), np.arange(size), atol=1e-12)
    assert est._burst_grid(size) is est._BURST_GRIDS[size]  # memoised after the first call


def test_arrivals_all_at_one_instant_have_ca2_one_not_nan():
    """No positive mean gap to normalise by: the Poisson default, as for fewer than three arrivals."""
    assert est.arrival_ca2(np.zeros(10)) == 1.0
    assert est.arrival_ca2(np.array([0.0, 1.0])) == 1.0
    gaps = np.array([1.0, 5.0, 3.0, 3.0])  # mean 3: var / 9
    assert est.arrival_ca2(np.r_[0.0, np.cumsum(gaps)]) == pytest.approx(gaps.var() / gaps.mean() ** 2)


def test_prefill_burst_counts_a_float_noise_wait_as_an_empty_queue():
    """Two prompts at t = 0: the first brings 1e-12 s of prefill work, the second 5 s. The second waits 1e-12 s,
    float noise at the tolerance, so it starts a new busy period: the first's decode stalls for nothing (delay 0),
    the second waits its 1e-12 s and then stalls until its own prefill ends, no later (delay 1e-12)."""
    out = est.prefill_burst_s(np.array([1.0]), np.array([0.0, 0.0]), np.array([1e-12, 5.0]))
    np.testing.assert_array_equal(out, [[0.0, 1e-12]])
    # A real wait (0.5 s of work ahead) keeps both in one busy period: the first stalls until the second's
    # prefill is through, 0.5 + 5 - 0.5 = 5 s later.
    out = est.prefill_burst_s(np.array([1.0]), np.array([0.0, 0.0]), np.array([0.5, 5.0]))
    np.testing.assert_allclose(out, [[5.0, 0.5]])


def test_rate_profile_with_one_request_per_window():
    """min_per_window 1: ten arrivals make ten equal windows of one request each, every factor 1."""
    t = np.arange(10.0)
    profile, idx, _ = est.rate_profile(t, min_per_window=1, max_windows=16)
    assert profile.num_windows == 10 and idx.tolist() == list(range(10))
    np.testing.assert_allclose(profile.window_factor, np.ones(10))
    assert profile.window_s == pytest.approx(0.9)
    # Time units do not matter: the same arrivals within half a second make the same ten windows.
    short, idx, _ = est.rate_profile(t / 18.0, min_per_window=1, max_windows=16)
    assert short.num_windows == 10 and idx.tolist() == list(range(10))
    assert short.window_s == pytest.approx(0.05)


class _FlatCost:
    """Every prefill takes 0.1 s and every decode step 10 ms whatever the batch: the queueing terms by hand."""

    tp = pp = 1
    kv_capacity_blocks, kv_block_size = 10_000, 16

    def iteration_time_s(self, shape):
        return 0.1

    def decode_affine(self, b):
        return 0.01, 0.0


def test_admission_wait_is_sakasegawas_mgc_formula_at_each_utilisation():
    """The docstring's M/G/c wait, W = (S/c) rho^(sqrt(2(c+1)) - 1) / (1 - rho) (ca2 + cs2) / 2, written out from
    its definitions: S and cs2 are the mean and squared CV of the service times at that utilisation (prefill +
    (out - 1) tokens at T / (1 - rho_p)), c = b_max batch slots."""
    out = np.array([2, 11, 21, 41, 81], dtype=np.int64)
    load = est.TierLoad(rate_rps=1.0, input_tokens=np.full(5, 100, dtype=np.int64), output_tokens=out,
                        arrival_ca2=1.0)
    model = est.build_replica_model(_FlatCost(), load, max_num_seqs=8)
    c = 8.0  # KV holds far more than 8 sequences
    steps = out.mean() - 1
    max_rps = 1.0 / (steps * 0.01 / c + 0.1)
    assert model.b_max == c and model.max_rps == pytest.approx(max_rps, rel=1e-12)
    rho = model.rho_grid
    rho_p = np.minimum(rho * max_rps * 0.1, 0.999999)
    token_s = 0.01 / (1 - rho_p)
    service = 0.1 + (out[None, :] - 1) * token_s[:, None]
    s, cs2 = service.mean(axis=1), service.var(axis=1) / service.mean(axis=1) ** 2
    want = s / c * rho ** (np.sqrt(2 * (c + 1)) - 1) / np.maximum(1 - rho, 1e-9) * (1.0 + cs2) / 2
    np.testing.assert_allclose(model.token_s, token_s, rtol=1e-12)
    np.testing.assert_allclose(model.wait_s, want, rtol=1e-9)
    assert np.all(np.diff(model.wait_s) >= 0) and model.wait_s[-1] > 1e3 * model.wait_s[30]  # grows with load
