"""planners/milp.py beyond the optimum itself: the infeasibility message names what each tier needs, the
Allocation names its backend and the backend asked for is the one that solves, python-mip's INFO logger is
quietened in-process, an all-zero instance (no load anywhere) costs 0 on the fewest GPUs, and spread_spare's
greedy (slowest tier first, each to its next breakpoint while it fits) worked by hand, and an optimum 1 % better
than its neighbour found (CBC's absolute gap far below the scaled objective's unit)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import planners.milp as milp
from planners.milp import AllocationInfeasible, BACKENDS, SolverSettings, solve_allocation, spread_spare

pytestmark = pytest.mark.unit
INF = np.inf


def test_infeasible_message_lists_each_tiers_fewest_gpus():
    t0 = np.array([INF, INF, 4.0, 3.0])
    t1 = np.array([INF, INF, INF, 2.0])
    with pytest.raises(AllocationInfeasible, match=r"need at least \[2, 3\] GPUs"):
        solve_allocation([t0, t1], 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_allocation_names_the_backend_that_solved_it(backend, monkeypatch):
    calls = []
    real = {b: getattr(milp, f"_solve_{b}") for b in BACKENDS}
    for b in BACKENDS:
        monkeypatch.setattr(milp, f"_solve_{b}", lambda *a, b=b: calls.append(b) or real[b](*a))
    t = np.minimum.accumulate(np.array([INF, 10, 5, 5, 5, 5, 5]))
    res = solve_allocation([t, t], 6, SolverSettings(backend))
    assert calls == [backend] and res.backend == backend and res.status == "OPTIMAL"
    assert res.gpus == (2, 2) and res.latency_s == 5.0


def test_cbc_quietens_python_mips_info_logger_in_process():
    logging.getLogger("mip").setLevel(logging.NOTSET)
    t = np.minimum.accumulate(np.array([INF, 10, 5, 5]))
    solve_allocation([t], 3, SolverSettings("cbc"))
    assert logging.getLogger("mip").level == logging.WARNING


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_load_anywhere_costs_nothing_on_the_fewest_gpus(backend):
    """Tables of zeros (tiers with no requests): L = 0, and each tier on its first breakpoint."""
    zeros = np.zeros(5)
    res = solve_allocation([zeros, np.r_[INF, np.zeros(4)]], 4, SolverSettings(backend))
    assert res.latency_s == 0.0 and res.gpus == (0, 1)


def test_spread_spare_gives_the_slowest_tier_its_next_breakpoint_first():
    """N = 7 from (1, 1): 5 spare. Tier 0 (10 s) is slowest; its next drop is at 5 GPUs (4 more): (5, 1), 1 spare.
    Then tier 1 (8 s) drops only at 3 GPUs (2 more): it does not fit, and tier 0 has no drop within 1: done."""
    t0 = np.array([INF, 10, 10, 10, 10, 6, 6, 6])
    t1 = np.array([INF, 8, 8, 5, 5, 5, 5, 5])
    assert spread_spare([t0, t1], (1, 1), 7) == (5, 1)
    # One GPU more and tier 1's drop fits after tier 0's: (5, 3).
    t0b, t1b = np.r_[t0, 6], np.r_[t1, 5]
    assert spread_spare([t0b, t1b], (1, 1), 8) == (5, 3)
    # A drop exactly `spare` GPUs away is reached: 3 spare, tier 0's drop 3 ahead.
    assert spread_spare([np.array([INF, 9, 9, 9, 4])], (1,), 4) == (4,)
    assert spread_spare([t0, t1], (5, 1), 6) == (5, 1)  # no spare: unchanged


def test_spread_spare_keeps_the_optimum_and_the_pool():
    """Property against the min-max optimum: the spread never raises any tier's latency nor the worst one, and
    never uses more than the pool."""
    rng = np.random.default_rng(4)
    for _ in range(50):
        n, c = int(rng.integers(3, 16)), int(rng.integers(1, 4))
        tables = [np.minimum.accumulate(np.r_[INF, rng.integers(1, 30, n).astype(float)]) for _ in range(c)]
        try:
            res = solve_allocation(tables, n)
        except AllocationInfeasible:
            continue
        out = spread_spare(tables, res.gpus, n)
        assert sum(out) <= n and all(o >= g for o, g in zip(out, res.gpus))
        assert all(t[o] <= t[g] for t, o, g in zip(tables, out, res.gpus))
        assert max(t[o] for t, o in zip(tables, out)) == res.latency_s


def test_highs_gets_the_settings_time_limit_and_gap(monkeypatch):
    """SolverSettings.time_limit_s and mip_gap reach HiGHS (its own defaults are no limit and a 1e-4 gap, which
    can stop short of the optimum the planner promises)."""
    import scipy.optimize

    seen = {}
    real = scipy.optimize.milp

    def spy(*args, **kwargs):
        seen.update(kwargs.get("options") or {})
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "milp", spy)
    t = np.minimum.accumulate(np.array([INF, 10, 5, 5]))
    solve_allocation([t], 3, SolverSettings("highs", time_limit_s=7.0, mip_gap=0.0))
    assert seen.get("time_limit") == 7.0 and seen.get("mip_rel_gap") == 0.0 and seen.get("disp") is False


def test_a_time_limit_before_any_feasible_point_is_a_clear_error(monkeypatch):
    """HiGHS status 1 (time or iteration limit) with no solution: AllocationInfeasible naming the status, not a
    crash on a missing x."""
    import types

    import scipy.optimize

    monkeypatch.setattr(scipy.optimize, "milp", lambda *a, **k: types.SimpleNamespace(
        status=1, x=None, message="Time limit reached", mip_gap=None))
    t = np.minimum.accumulate(np.array([INF, 10, 5, 5]))
    with pytest.raises(AllocationInfeasible, match=r"HiGHS\) ended with status 1 \(Time limit reached\)"):
        solve_allocation([t], 3, SolverSettings("highs"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_one_percent_better_allocation_is_found(backend):
    """Optima that differ by far less than the scaled objective's unit: L / _scale is 88/40 = 2.2 against 89/40 =
    2.225, so a solver stopping within an absolute gap of 1 (or any above 0.025) may return the worse one. By hand,
    each tier needs a GPU and one of the 4 gets a second: (2, 1, 1) -> max(60, 89, 40) = 89, (1, 2, 1) ->
    max(88, 30, 40) = 88, (1, 1, 2) -> 89, so (1, 2, 1) at 88 s."""
    tabs = [np.array([np.inf, 88.0, 60.0, 52.0, 27.0]), np.array([np.inf, 89.0, 30.0, 30.0, 15.0]),
            np.array([np.inf, 40.0, 40.0, 40.0, 40.0])]
    res = solve_allocation(tabs, 4, SolverSettings(backend))
    assert (res.gpus, res.latency_s) == ((1, 2, 1), 88.0) == milp.brute_force_allocation(tabs, 4)
