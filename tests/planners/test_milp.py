"""Allocation MILP: known optima on both backends, and equality with brute-force enumeration (Hypothesis)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from planners.milp import (AllocationInfeasible, BACKENDS, SolverSettings, brute_force_allocation, exact_allocation,
                           solve_allocation)
from sim.common.errors import ConfigError

INF = np.inf


def table(values):
    t = np.asarray(values, dtype=float)
    return np.minimum.accumulate(t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_optimum_two_tiers(backend):
    # tier 0: 1 GPU -> 10 s, 2 -> 5 s; tier 1 needs 2 GPUs (8 s) or 4 (3 s). N = 6: (2, 4) with L = 5.
    t0 = table([INF, 10, 5, 5, 5, 5, 5])
    t1 = table([INF, INF, 8, 8, 3, 3, 3])
    res = solve_allocation([t0, t1], 6, SolverSettings(backend))
    assert res.gpus == (2, 4)
    assert res.latency_s == pytest.approx(5.0)
    assert res.status == "OPTIMAL"


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_optimum_bottleneck_and_empty_tier(backend):
    # tier 2 has no load (0 GPUs, 0 s); the bottleneck is tier 1, which should get everything it can use.
    t0 = table([INF, 2, 1, 1, 1])
    t1 = table([INF, 9, 7, 6, 4])
    t2 = np.zeros(5)
    res = solve_allocation([t0, t1, t2], 4, SolverSettings(backend))
    assert res.gpus == (1, 3, 0)
    assert res.latency_s == pytest.approx(6.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_infeasible_raises_clear_error(backend):
    t0 = table([INF, INF, INF, 4])
    t1 = table([INF, INF, 3, 3])
    with pytest.raises(AllocationInfeasible, match="need at least"):
        solve_allocation([t0, t1], 3, SolverSettings(backend))


def test_unknown_backend():
    with pytest.raises(ConfigError, match="valid"):
        SolverSettings("gurobi")


@st.composite
def tables_strategy(draw):
    n = draw(st.integers(2, 8))
    c = draw(st.integers(2, 3))
    tabs = []
    for _ in range(c):
        first = draw(st.integers(1, n))
        vals = draw(st.lists(st.integers(1, 50), min_size=n + 1, max_size=n + 1))
        t = np.array(vals, dtype=float)
        t[:first] = np.inf
        tabs.append(np.minimum.accumulate(t))
    return n, tabs


@settings(max_examples=40, deadline=None)
@given(tables_strategy(), st.sampled_from(BACKENDS))
def test_milp_equals_brute_force(data, backend):
    n, tabs = data
    bf_gpus, bf_l = brute_force_allocation(tabs, n)
    if not bf_gpus or not np.isfinite(bf_l):
        with pytest.raises(AllocationInfeasible):
            solve_allocation(tabs, n, SolverSettings(backend))
        return
    res = solve_allocation(tabs, n, SolverSettings(backend))
    assert res.latency_s == pytest.approx(bf_l)
    assert res.gpus == bf_gpus  # canonical: each tier on the fewest GPUs reaching the optimum
    assert exact_allocation(tabs, n) == (bf_gpus, pytest.approx(bf_l))


@pytest.mark.parametrize("backend", BACKENDS)
def test_solvers_print_nothing_under_info_logging(backend):
    """Sweeps log at INFO (Hydra); a solver's banner or log line there breaks every progress display."""
    import subprocess
    import sys

    code = ("import logging, numpy as np; logging.basicConfig(level=logging.INFO)\n"
            "from planners.milp import SolverSettings, solve_allocation\n"
            "t = np.minimum.accumulate(np.array([np.inf, 10, 5, 5, 5, 5, 5]))\n"
            f"solve_allocation([t, t], 6, SolverSettings({backend!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == "", (proc.stdout, proc.stderr)
