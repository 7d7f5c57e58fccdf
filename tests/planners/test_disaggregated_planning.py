"""Disaggregated deployments in the planners (planners.disagg): the unit model's capacity and monotonicity, the
search's tables with and without disaggregation, placement of the pools, and the planners' choices."""
from __future__ import annotations

import numpy as np
import pytest

from planners.base import get_planner
from planners.checker import check_plan
from planners.disagg import SPLITS, lindley_wait_s
from planners.estimator import ReplicaModel
from planners.search import SearchContext

from conftest import make_problem


def _tier_load(ctx, tier):
    mask = np.zeros((ctx.sample.num_requests, ctx.num_tiers), dtype=bool)
    mask[:, tier] = True
    return ctx.loads_from_mask(mask)[tier]


def test_lindley_wait_against_a_hand_worked_queue():
    # Arrivals at 0, 1, 1.5, 5 with work 2, 2, 1, 1: waits 0, 1, 2.5, 0 (the third waits for both before it).
    w = lindley_wait_s(np.array([1.0, 0.5]), np.array([0.0, 1.0, 1.5, 5.0]), np.array([2.0, 2.0, 1.0, 1.0]))
    assert np.allclose(w[0], [0.0, 1.0, 2.5, 0.0])
    assert np.allclose(w[1], [0.0, 0.0, 0.5, 0.0])  # half the work: only the third waits, for the second (done at 2)


def test_a_unit_carries_its_bottleneck_pool_and_its_p95_grows_with_load():
    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    ctx = SearchContext(problem, disaggregation="disaggregated")
    models = ctx.replica_models(_tier_load(ctx, 1))
    assert models and all(m.disaggregated for m in models)
    assert {(m.num_prefill, m.num_decode) for m in models} == set(SPLITS)
    for m in models:
        assert m.max_rps == pytest.approx(min(m.num_prefill * m.prefill.cap_rps, m.num_decode * m.decode.cap_rps))
        assert m.num_gpus == m.num_prefill * m.prefill.tp * m.prefill.pp + m.num_decode * m.decode.tp * m.decode.pp
        p95 = m.p95_at(np.linspace(0.0, 0.99, 30))
        assert np.all(np.diff(p95) >= -1e-9)
        assert m.p95_at(np.array([1.2]))[0] > p95[-1]  # saturated: a finite penalty that grows with overload
        # The p95 is over (a subsample of) the per-request latencies the end-to-end estimate sums.
        lat = m.request_latencies_s(0.5)
        assert abs(np.quantile(lat, 0.95) - m.p95_at(np.array([0.5]))[0]) <= 0.1 * m.p95_at(np.array([0.5]))[0]


def test_the_best_table_is_the_pointwise_minimum_of_colocated_and_disaggregated():
    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    tables = {}
    for dep in ("colocated", "disaggregated", "best"):
        ctx = SearchContext(problem, disaggregation=dep)
        tables[dep] = ctx.table(_tier_load(ctx, 1)).latency_s
    assert np.array_equal(tables["best"], np.minimum(tables["colocated"], tables["disaggregated"]))


def test_single_model_takes_the_better_deployment_and_places_both_pools():
    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    plans = {dep: get_planner("single_model", deployment=dep).plan(problem)
             for dep in ("colocated", "disaggregated", "best")}
    est = {dep: p.estimates["p95_tier_s"][-1] for dep, p in plans.items()}
    assert est["best"] == pytest.approx(min(est["colocated"], est["disaggregated"]))
    dis = plans["disaggregated"]
    assert check_plan(dis, problem.cascade, problem.cluster) == []
    tier = dis.tiers[-1]
    roles = [r.role for r in tier.replicas]
    assert tier.disaggregated and "prefill" in roles and "decode" in roles
    assert tier.deployment() == f"P{roles.count('prefill')}:D{roles.count('decode')}"
    assert dis.estimates["deployment_per_tier"] == ["none", tier.deployment()]
    assert plans["colocated"].estimates["deployment_per_tier"][-1] == "colocated"


@pytest.mark.integration  # three full Cascadia plans on the real cost model
def test_cascadia_with_disaggregation_is_no_worse_than_colocated_and_the_ablation_never_disaggregates():
    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    best = get_planner("cascadia").plan(problem)
    colo = get_planner("cascadia_colocated").plan(problem)
    assert check_plan(best, problem.cascade, problem.cluster) == []
    assert best.estimates["J"] <= colo.estimates["J"] * (1 + 1e-9)
    assert not any(t.disaggregated for t in colo.tiers)
    assert not any(t.disaggregated for t in get_planner("cascadia_no_parallelism").plan(problem).tiers)
    with pytest.raises(Exception, match="disaggregation"):
        get_planner("cascadia", disaggregation="sometimes")


def test_online_replanning_settings_hold_every_tier_colocated():
    from planners.base import colocated_settings

    assert colocated_settings("cascadia", {"mu": 1.0}) == {"mu": 1.0, "disaggregation": "colocated"}
    assert colocated_settings("single_model") == {"deployment": "colocated"}
    assert colocated_settings("cascadia_colocated") == {}  # fixed by its name already
    assert colocated_settings("cascadeserve") == {}  # never disaggregates
    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    plan = get_planner("cascadia", **colocated_settings("cascadia")).plan(problem)
    assert not any(t.disaggregated for t in plan.tiers)


@pytest.mark.parametrize("factor, margin, max_util", [(1.0, 0.0, 1.0), (1.3, 0.05, 0.8), (1.6, 0.15, 0.6)])
def test_a_disaggregated_unit_enters_the_table_only_where_its_gate_holds(factor, margin, max_util):
    """Brute force over f and the disaggregated units with their own p95_at, against the plain colocated table at
    the planned and the hotter rate: the gated table is the colocated one, except where an admissible unit
    (p95 <= (1 - margin) x the incumbent at f, no worse than colocated at factor x rate, bottleneck <= max_util busy
    there) is lower. (1.0, 0.0, 1.0) is the ungated pointwise minimum."""
    from planners.strategy import latency_table

    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    ctx = SearchContext(problem, disaggregation="best")
    load = _tier_load(ctx, 1)
    models = ctx.replica_models(load)
    colo = [m for m in models if not getattr(m, "disaggregated", False)]
    n = ctx.num_gpus
    rate = load.rate_rps
    plain = latency_table(colo, rate, n, idle_ok=False).latency_s
    hot = latency_table(colo, rate * factor, n, idle_ok=False).latency_s
    expected = plain.copy()
    for m in (m for m in models if getattr(m, "disaggregated", False)):
        for f in range(n + 1):
            d = f // m.num_gpus
            if d == 0:
                continue
            lat = float(m.p95_at(np.array([rate / (d * m.max_rps)]))[0])
            lat_hot = float(m.p95_at(np.array([factor * rate / (d * m.max_rps)]))[0])
            # The margin is over the incumbent at f: the colocated deployment or a unit admitted before this one.
            if (lat <= (1 - margin) * expected[f] and lat_hot <= hot[f] and factor * rate <= max_util * d * m.max_rps
                    and lat < expected[f]):
                expected[f] = lat
    got = latency_table(models, rate, n, idle_ok=False, disagg_load_factor=factor, disagg_margin=margin,
                        disagg_max_utilisation=max_util)
    assert np.allclose(got.latency_s, expected, rtol=1e-12, atol=0.0)
    chosen = [getattr(models[c], "disaggregated", False) for c in got.c1 if c >= 0]
    if (factor, margin, max_util) == (1.0, 0.0, 1.0):
        assert any(chosen) and not all(chosen)  # both kinds win somewhere: the check is not vacuous
    if factor == 1.6:
        assert not any(chosen)  # the strict gate turns this instance's disaggregated wins away


def test_a_units_p95_rows_filled_on_demand_are_those_of_the_whole_grid():
    """DisaggModel fills a p95 row when a table first reads it; the row is the nearest-rank quantile of the sampled
    requests' wait + decode latency + prefill and transfer at that utilisation, whatever was read before."""
    from planners.disagg import U_GRID, _rows

    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    ctx = SearchContext(problem, disaggregation="disaggregated")
    m = ctx.replica_models(_tier_load(ctx, 1))[3]
    assert np.isnan(m.p95_s).all()  # nothing computed before a table reads it
    rho = np.array([0.05, 0.42, 0.97])
    first = m.p95_at(rho)
    assert 2 <= np.isfinite(m.p95_s).sum() <= 6  # only the rows either side of the three utilisations
    # Oracle: every row written out from the sides' whole tables (numpy's sort, not the model's partition).
    pair = m.pairing
    cols = m.decode.columns.cols
    lat = _rows(pair.wait_sub, m.u_p) + _rows(_whole_decode_table(m.decode)[:, cols], m.u_d) + pair.base_sub[None, :]
    full = np.sort(lat, axis=1)[:, pair.rank]
    assert np.array_equal(first, np.interp(rho, U_GRID, full))
    assert np.array_equal(m.p95_at(U_GRID), full)  # the rest filled later: identical rows
    assert np.array_equal(m.p95_at(rho), first)


def _whole_decode_table(side):
    """(U, m) a decode side's latency at every grid utilisation and request in one _latencies call (the means from
    the arrays, as before the side filled its rows on demand)."""
    from planners.disagg import U_GRID
    from planners.estimator import _latencies

    return _latencies(U_GRID, U_GRID, side.token_s, side.wait_s, np.zeros(side.steps.shape[0]), side.steps,
                      side.window, side.profile, side.local_factor)


def test_a_decode_sides_rows_filled_on_demand_are_those_of_the_whole_table():
    """DecodeSide fills a latency row (p95 columns or every request) when first read: the floats of the whole table,
    whatever was read before; fails if a row's floats depended on the other rows or on the columns taken."""
    from planners.disagg import U_GRID, _rows

    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0, n=1200)
    ctx = SearchContext(problem, disaggregation="disaggregated")
    side = ctx.replica_models(_tier_load(ctx, 1))[0].decode
    cols = side.columns.cols
    assert cols is not None and cols.size < side.steps.size  # the p95 sample is a subset here: the case to check
    assert side.profile.num_windows > 1 and side.local_factor.shape[0] > 1  # the local-rate branch is exercised
    whole = _whole_decode_table(side)
    assert np.isnan(side.sub_s).all() and np.isnan(side.full_s).all()  # nothing computed before it is read
    u = np.array([0.31, 0.93])
    assert np.array_equal(side.sub_rows(u), _rows(whole[:, cols], u))
    assert 2 <= np.count_nonzero(~np.isnan(side.sub_s[:, 0])) <= 4 and np.isnan(side.full_s).all()
    assert np.array_equal(side.full_rows(u[1:]), _rows(whole, u[1:]))
    assert np.array_equal(side.sub_rows(U_GRID), whole[:, cols])  # the rest filled later: identical rows
    assert np.array_equal(side.full_rows(U_GRID), whole)


def test_the_best_deployments_on_a_subset_of_gpu_counts_are_those_entries_of_the_whole():
    from planners.strategy import _best_deployments

    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)
    ctx = SearchContext(problem, disaggregation="colocated")
    load = _tier_load(ctx, 1)
    models = ctx.replica_models(load)
    n = ctx.num_gpus + 1
    whole = _best_deployments(models, list(range(len(models))), load.rate_rps * 1.3, n, 0.95)
    at = np.array([1, 5, 9, n - 1])
    part = _best_deployments(models, list(range(len(models))), load.rate_rps * 1.3, n, 0.95, f=at)
    for w, p in zip(whole, part):
        assert np.array_equal(w[at], p)


def _read_p95(model, rho, used):
    return model.p95_at(rho, used) if isinstance(model, ReplicaModel) else model.p95_at(rho)


def _is_disagg(model):
    return getattr(model, "disaggregated", False)


def _loop_best_deployments(models, idx: list[int], rate_rps: float, n: int, quantile: float,
                           f: np.ndarray | None = None):
    """planners.strategy._best_deployments as a loop over the combinations, each p95 read through p95_at (which fills
    its own rows): the oracle of the one-array version."""
    f = np.arange(n) if f is None else np.asarray(f, dtype=np.int64)
    n = f.size
    best = np.full(n, np.inf)
    c1b, d1b, c2b, d2b = (np.full(n, -1), np.zeros(n, int), np.full(n, -1), np.zeros(n, int))
    minor = 1.0 - quantile
    combos = []  # (i, j, d1, d2, rho, share of the capacity in configuration j or None)
    for i in idx:
        m1 = models[i]
        g1 = m1.num_gpus
        d1 = f // g1
        rest = f - d1 * g1
        mixes = [] if _is_disagg(m1) else [j for j, m in enumerate(models)
                                           if m.num_gpus < g1 and not _is_disagg(m)]
        for j in [-1] + mixes:
            if j >= 0:
                d2 = rest // models[j].num_gpus
                cap2 = d2 * models[j].max_rps
            else:
                d2, cap2 = np.zeros(n, int), np.zeros(n)
            cap = d1 * m1.max_rps + cap2
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = np.where(cap > 0, rate_rps / cap, np.inf)
                share2 = np.where(cap > 0, cap2 / cap, 0.0) if j >= 0 else None
            combos.append((i, j, d1, d2, rho, share2))
    # The p95 rows each colocated model is read at, computed in one pass per model (ReplicaModel fills them lazily).
    wanted: dict[int, list] = {}
    for i, j, d1, _, rho, share2 in combos:
        finite = np.isfinite(rho)
        wanted.setdefault(i, []).append(rho[finite & (d1 > 0)])
        if j >= 0:
            wanted.setdefault(j, []).append(rho[finite & (share2 > minor)])
    for k, parts in wanted.items():
        if isinstance(models[k], ReplicaModel):
            models[k].prepare(np.concatenate(parts))
    for i, j, d1, d2, rho, share2 in combos:
        finite = np.isfinite(rho)
        at = np.where(finite, rho, 0.0)
        lat = np.where(d1 > 0, _read_p95(models[i], at, finite & (d1 > 0)), np.inf)
        lat = np.where(finite, lat, np.inf)
        if j >= 0:
            lat2 = _read_p95(models[j], at, finite & (share2 > minor))
            lat = np.where(share2 > minor, np.maximum(lat, lat2), lat)
        better = lat < best
        best = np.where(better, lat, best)
        c1b = np.where(better, i, c1b)
        d1b = np.where(better, d1, d1b)
        c2b = np.where(better, j, c2b)
        d2b = np.where(better, d2, d2b)
    return best, c1b, d1b, c2b, d2b



@pytest.mark.parametrize("deployment,factor", [("colocated", 1.0), ("colocated", 3.0), ("best", 1.0), ("best", 0.4)])
def test_the_best_deployments_in_one_array_are_those_of_a_loop_over_the_combinations(deployment, factor):
    """Every entry (latency, both configurations and counts) equals the loop's, with mixes, disaggregated units (the
    ungated table's path), GPU counts where nothing fits, ties (the models listed twice: the first copy must win, as
    the loop keeps only strictly lower latencies) and a subset of GPU counts. Fresh models for each side, so neither
    reads rows the other filled."""
    from planners.strategy import _best_deployments

    problem = make_problem(num_tiers=2, num_nodes=2, rate_rps=6.0)

    def models():
        ctx = SearchContext(problem, disaggregation=deployment)
        load = _tier_load(ctx, 1)
        return ctx.replica_models(load), load.rate_rps * factor, ctx.num_gpus + 1

    got_models, rate, n = models()
    want_models, _, _ = models()
    assert any(m.num_gpus > min(x.num_gpus for x in got_models) for m in got_models)  # mixes exist
    for doubled in (False, True):
        gm = list(got_models) * (2 if doubled else 1)
        wm = list(want_models) * (2 if doubled else 1)
        for f in (None, np.array([0, 3, 7, n - 1])):
            got = _best_deployments(gm, list(range(len(gm))), rate, n, 0.95, f=f)
            want = _loop_best_deployments(wm, list(range(len(wm))), rate, n, 0.95, f=f)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and np.array_equal(g, w)
            if doubled:
                assert (got[1] < len(got_models)).all()  # the first copy wins every tie
            assert np.isinf(got[0][0]) and got[1][0] == -1 if f is None else True  # no GPU: nothing fits
    if deployment == "best":
        assert any(_is_disagg(got_models[c]) for c in got[1] if c >= 0) or factor != 1.0


def test_the_gates_load_factor_is_the_planning_samples_p90_window_rate():
    from planners.disagg import disagg_load_factor

    assert disagg_load_factor(np.ones(1)) == 1.0  # stationary
    assert disagg_load_factor(np.array([0.5, 0.9, 1.0, 1.1, 1.5])) == pytest.approx(np.quantile([0.5, 0.9, 1.0, 1.1, 1.5], 0.9))
    assert disagg_load_factor(np.array([1.0, 1.0])) == 1.0  # never below the mean
