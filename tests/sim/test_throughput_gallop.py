"""The hinted throughput search (sim.metrics.throughput_at_slo with hint=) against the plain geometric bisection:
for a verdict monotone in the rate factor, the same float from every hint (the bisection itself is the oracle,
and the brute-force highest passing point of lo * (hi/lo)**(k/2**iters) checks both), and 2 runs when the hint is
the answer. A non-monotone verdict shows what the search does return: a passing point next to a failing one."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from sim.metrics import rate_grid_factor, rate_grid_index, request_slo_ratios, throughput_at_slo
from sim.runtime.records import SimResult
from sim.simulator import SimConfig, simulate

LO, HI, ITERS = 0.05, 10.0, 7
N = 1 << ITERS


@pytest.fixture(scope="module")
def verdicts():
    """(passing result, failing result) at SLO scale target 2: latencies 1x and 10x ref(r)."""
    cas, cl = llama_cascade(), cluster()
    base = simulate(plan((1, 1)), cas, cl, poisson_workload(60, 20.0, 1), SimConfig(), seed=1,
                    cost_factory=fake_factory(), judge=OracleJudge(0.1))
    ref, _ = request_slo_ratios(base, cas, cl)
    out = []
    for scale in (1.0, 10.0):
        df = base.requests.copy()
        df["latency_s"] = ref * scale
        out.append(SimResult(df, None, base.meta))
    return tuple(out)


def _search(verdicts, passes, hint=None, lo=LO, hi=HI, iters=ITERS):
    trace: list = []
    f = throughput_at_slo(lambda x: verdicts[0] if passes(x) else verdicts[1], 2.0, lo=lo, hi=hi, iters=iters,
                          cascade=llama_cascade(), cluster=cluster(), hint=hint, trace=trace)
    return f, trace


def test_grid_points_are_the_bisections_floats_and_the_geometric_grid():
    # the brute-force grid, to rounding; the bisection's own mids exactly (path of each point's bits)
    for k in range(N + 1):
        assert rate_grid_factor(k, LO, HI, ITERS) == pytest.approx(LO * (HI / LO) ** (k / N), rel=1e-12)
        assert rate_grid_index(rate_grid_factor(k, LO, HI, ITERS), LO, HI, ITERS) == k
    assert rate_grid_factor(0, LO, HI, ITERS) == LO and rate_grid_factor(N, LO, HI, ITERS) == HI
    assert rate_grid_index(0.0, LO, HI, ITERS) == -1 and rate_grid_index(1e9, LO, HI, ITERS) == N


# Every hint at each knee costs about a second: the unit tier (make test-unit, 60 s budget) keeps the knees below,
# at and above the range plus one inside it; the other three inside knees run with the integration tier (make test).
_INSIDE = pytest.mark.integration


@pytest.mark.parametrize("knee", [0.01, LO, pytest.param(0.3, marks=_INSIDE), 1.0, pytest.param(2.718, marks=_INSIDE),
                                  pytest.param(9.99, marks=_INSIDE), HI, 50.0])
def test_every_hint_gives_the_bisections_answer(verdicts, knee):
    """A verdict passing up to `knee` (exactly, so a grid point at the knee passes): the plain bisection's float,
    equal to the brute-force highest passing grid point, from every grid index as hint, and from the factor 0."""
    passes = lambda x: x <= knee  # noqa: E731
    plain, plain_trace = _search(verdicts, passes)
    grid = [rate_grid_factor(k, LO, HI, ITERS) for k in range(N + 1)]
    passing = [g for g in grid if passes(g)]
    expected = 0.0 if not passing else (HI if passes(HI) else max(passing))
    assert plain == expected
    for k in range(-1, N + 1):
        hint = 0.0 if k < 0 else grid[k]
        got, trace = _search(verdicts, passes, hint=hint)
        assert got == plain, (knee, k)
        assert all(v == passes(f) for f, v in trace)
        assert set(f for f, _ in trace) <= set(grid)  # only the bisection's own grid is ever simulated
        if hint == plain:
            assert len(trace) <= 2  # right hint: it and the next point up (hi: one run)
        if plain not in (0.0, HI):
            assert len(trace) <= 2 * (ITERS + 1) + 1
    # the plain bisection: hi first, lo only when every mid failed
    assert len(plain_trace) == (1 if plain == HI else ITERS + 2 if plain in (0.0, LO) else ITERS + 1)
    assert (LO in [f for f, _ in plain_trace]) == (plain in (0.0, LO))


def test_close_hints_need_few_runs(verdicts):
    knee = rate_grid_factor(70, LO, HI, ITERS) * (1 + 1e-9)
    passes = lambda x: x <= knee  # noqa: E731
    plain, plain_trace = _search(verdicts, passes)
    assert plain == rate_grid_factor(70, LO, HI, ITERS) and len(plain_trace) == ITERS + 1  # hi, then the mids
    runs = {d: len(_search(verdicts, passes, hint=rate_grid_factor(70 + d, LO, HI, ITERS))[1]) for d in range(-3, 4)}
    # e.g. hint 69 (d=-1): 69 and 70 pass, 72 and 71 fail; hint 71 (d=1): 71 fails, 70 passes
    assert runs == {-3: 6, -2: 4, -1: 4, 0: 2, 1: 2, 2: 4, 3: 4}


def test_non_monotone_verdict_returns_a_bracket_not_necessarily_the_bisections(verdicts):
    """Passes up to grid point 40, fails 41-59, passes 60-90, fails above: the bisection (first mid: point 64
    passes) answers 90; a search from hint point 40 answers 40. Each answer is a passing point next to a
    failing one; which one is found depends on where the search looks (the documented assumption)."""
    grid = [rate_grid_factor(k, LO, HI, ITERS) for k in range(N + 1)]
    ok_idx = set(range(0, 41)) | set(range(60, 91))
    passes = lambda x: grid.index(x) in ok_idx  # noqa: E731
    assert _search(verdicts, passes)[0] == grid[90]
    assert _search(verdicts, passes, hint=grid[40])[0] == grid[40]
    assert _search(verdicts, passes, hint=grid[88])[0] == grid[90]


def test_randomised_knees_and_hints(verdicts):
    rng = np.random.default_rng(7)
    for _ in range(60):
        lo = float(rng.uniform(0.01, 1.0))
        hi = lo * float(rng.uniform(1.5, 400.0))
        iters = int(rng.integers(1, 9))
        knee = float(np.exp(rng.uniform(np.log(lo / 2), np.log(hi * 2))))
        passes = lambda x, knee=knee: x <= knee  # noqa: E731
        plain, _ = _search(verdicts, passes, lo=lo, hi=hi, iters=iters)
        hint = float(np.exp(rng.uniform(np.log(lo / 4), np.log(hi * 4))))
        assert _search(verdicts, passes, hint=hint, lo=lo, hi=hi, iters=iters)[0] == plain


@pytest.mark.parametrize("hint", [0.0, LO / 2, LO])
def test_a_hint_at_or_below_lo_runs_lo_first(verdicts, hint):
    """A hint at or below lo is grid point 0 (the factor 0, 'even lo fails', clamps there too): the gallop starts at
    lo itself. Worked by hand: when lo fails that one run is the whole search (answer 0.0); when lo passes and the
    next grid point fails, lo and then that point, answer lo."""
    g1 = rate_grid_factor(1, LO, HI, ITERS)
    got, trace = _search(verdicts, lambda x: False, hint=hint)
    assert (got, trace) == (0.0, [(LO, False)])
    got, trace = _search(verdicts, lambda x: x <= LO, hint=hint)
    assert (got, trace) == (LO, [(LO, True), (g1, False)])
