"""The replica model's lazily filled p95 rows are the floats of the eager computation (every grid row at once, as
before issue 21's planner speed-up), and quantile_rows is np.quantile(axis=1) float for float. The oracles: the
eager formula written out here, and numpy itself."""
import numpy as np
import pytest

from planners.estimator import (BURST_GRID_STEP, TierLoad, _latencies, build_replica_model, prefill_burst_s,
                                quantile_rows, rate_profile)

from conftest import make_cascade, make_cluster, roofline_cost_fn


def eager_p95(rm, load, quantile):
    """Every row at once, as build_replica_model computed it before the rows were filled on demand."""
    rho = rm.rho_grid
    out = load.output_tokens.astype(np.float64)
    body = _latencies(rho, rho, rm.token_s, rm.wait_s, rm.prefill_s, np.maximum(out - 1, 0), rm.window, rm.profile,
                      rm.local_factor)
    if rm.arrival_s is not None:
        sub = np.unique(np.r_[np.arange(0, rho.size, BURST_GRID_STEP), rho.size - 1])
        at_sub = prefill_burst_s(rho[sub], rm.arrival_s, rm.prefill_work_s)
        pos = np.interp(np.arange(rho.size), sub, np.arange(sub.size))
        j = np.minimum(pos.astype(np.int64), sub.size - 2)
        frac = (pos - j)[:, None]
        body = body + at_sub[j] * (1 - frac) + at_sub[j + 1] * frac
    return np.quantile(body, quantile, axis=1)


@pytest.fixture
def drifting_bursty_load():
    rng = np.random.default_rng(3)
    m = 900
    arrival = np.sort(rng.uniform(0.0, 300.0, m) ** 1.3)  # a rising rate: several rate windows
    arrival[100:160] = arrival[100]  # a burst of 60 prompts at once: the prefill-burst term is active
    arrival = np.sort(arrival)
    profile, window, local = rate_profile(arrival)
    assert profile.num_windows > 1
    return TierLoad(m / (arrival[-1] - arrival[0]), rng.integers(50, 3000, m), rng.integers(20, 800, m), 2.0, ("t",),
                    window, profile, local, arrival)


@pytest.mark.parametrize("quantile", [0.95, 0.9])
def test_rows_filled_on_demand_equal_the_eager_computation(drifting_bursty_load, quantile):
    load = drifting_bursty_load
    cost = roofline_cost_fn(make_cluster(1))(make_cascade(2).tiers[0], 1, 1, False)
    rm = build_replica_model(cost, load, quantile=quantile)
    assert np.isnan(rm.p95_s).all()  # nothing computed before it is read
    rng = np.random.default_rng(4)
    want_full = eager_p95(rm, load, quantile)
    for _ in range(6):  # a table's reads, in pieces, in any order
        rho = rng.uniform(0.0, 1.2, 7)
        got = rm.p95_at(rho)
        want = np.where(rho < 1.0, np.interp(np.minimum(rho, rm.rho_grid[-1]), rm.rho_grid, want_full), got)
        np.testing.assert_array_equal(got, want)
    assert np.isnan(rm.p95_s).any()  # only the rows read were computed
    rm.prepare(rm.rho_grid)
    np.testing.assert_array_equal(rm.p95_s, want_full)


def test_used_mask_computes_no_other_rows(drifting_bursty_load):
    load = drifting_bursty_load
    cost = roofline_cost_fn(make_cluster(1))(make_cascade(2).tiers[0], 1, 1, False)
    rm = build_replica_model(cost, load)
    rho = np.array([0.05, 0.5, 0.97])
    got = rm.p95_at(rho, used=np.array([False, True, False]))
    assert np.count_nonzero(~np.isnan(rm.p95_s)) == 2  # the two grid points around 0.5
    assert got[1] == build_replica_model(cost, load).p95_at(rho)[1]


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 0.99, 1.0, 0.123456789])
def test_quantile_rows_equals_numpy(q):
    rng = np.random.default_rng(5)
    for trial in range(200):
        rows, n = int(rng.integers(1, 9)), int(rng.integers(1, 30) if trial % 2 else rng.integers(30, 2500))
        x = rng.lognormal(0.0, 2.0, (rows, n)) if trial % 3 else rng.integers(0, 4, (rows, n)).astype(np.float64)
        if trial % 7 == 0:
            x[0, 0] = np.nan  # numpy's NaN rule holds too
        np.testing.assert_array_equal(quantile_rows(x.copy(), q), np.quantile(x, q, axis=1))


def test_the_profiles_kept_backlog_rows_are_those_of_any_subset_of_the_grid(drifting_bursty_load):
    """grid_backlog_s computes the fluid backlog once per grid and profile; a row taken from it must be the row
    fluid_backlog_s gives for any subset of utilisations (its early exit when no row overloads a window included).
    Fails if a row read another row's state or the profile's cache were keyed on the wrong grid."""
    from planners.estimator import _RHO_GRID, fluid_backlog_s, grid_backlog_s

    profile = drifting_bursty_load.profile
    whole = grid_backlog_s(profile, _RHO_GRID)
    assert (whole > 0).any() and (whole[0] == 0).all()  # overloaded windows at high utilisation, none at 0
    rng = np.random.default_rng(6)
    for rows in [np.arange(3), np.array([_RHO_GRID.size - 1]), np.sort(rng.choice(_RHO_GRID.size, 9, replace=False))]:
        np.testing.assert_array_equal(whole[rows], fluid_backlog_s(_RHO_GRID[rows], profile))
    coarse = np.linspace(0.0, 0.999, 7)
    np.testing.assert_array_equal(grid_backlog_s(profile, coarse), fluid_backlog_s(coarse, profile))
    assert grid_backlog_s(profile, _RHO_GRID) is whole  # kept
