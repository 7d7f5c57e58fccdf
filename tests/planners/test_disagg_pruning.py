"""The disaggregation search's shortcuts against brute force (issue 21 item 4): a gated latency table computes a unit's
p95 only at GPU counts where its bottleneck pool has room at the hotter rate, the colocated p95 at the hotter rate
only where some unit passes the margin, and a unit's hotter-rate p95 only for units that pass the margin against
the colocated deployment somewhere; all p95 rows of a pairing's units in one pass. The oracle evaluates every unit
at every GPU count with its own p95_at, one at a time, in the models' order, on fresh models: the pruned table must
be that one entry for entry (latency, configurations and counts), and a plan made with it the same plan."""
from __future__ import annotations

import numpy as np
import pytest

import planners.search as search
from planners import plan_cache
from planners.base import get_planner
from planners.search import SearchContext
from planners.strategy import latency_table

from conftest import make_problem
from test_disaggregated_planning import _loop_best_deployments
from test_plan_cache import assert_same


def unpruned_table(models, rate_rps, num_gpus, quantile=0.95, empty=False, idle_ok=True, disagg_load_factor=1.0,
                   disagg_margin=0.0, disagg_max_utilisation=1.0, refused_hot: list | None = None):
    """latency_table's contract written out with no shortcut: every unit's p95 at every f and at the hotter rate,
    the colocated table at the hotter rate at every f, the gate applied unit by unit in the models' order.
    refused_hot, if given, receives the (unit, f) turned away by the hotter rate's condition alone."""
    n = num_gpus + 1
    colocated = [i for i, m in enumerate(models) if not getattr(m, "disaggregated", False)]
    disagg = [i for i, m in enumerate(models) if getattr(m, "disaggregated", False)]
    assert colocated and disagg and not empty
    best, c1, d1, c2, d2 = (np.array(a) for a in _loop_best_deployments(models, colocated, rate_rps, n, quantile))
    hot_rps = rate_rps * max(disagg_load_factor, 1.0)
    best_hot = _loop_best_deployments(models, colocated, hot_rps, n, quantile)[0]
    for i in disagg:
        m = models[i]
        for f in range(n):
            d = f // m.num_gpus
            if d == 0:
                continue
            lat = float(m.p95_at(np.array([rate_rps / (d * m.max_rps)]))[0])
            lat_hot = float(m.p95_at(np.array([hot_rps / (d * m.max_rps)]))[0])
            room = hot_rps <= disagg_max_utilisation * d * m.max_rps
            if room and lat <= (1.0 - disagg_margin) * best[f] and lat_hot <= best_hot[f] and lat < best[f]:
                best[f], c1[f], d1[f], c2[f], d2[f] = lat, i, d, -1, 0
            elif room and lat <= (1.0 - disagg_margin) * best[f] and lat < best[f] and refused_hot is not None:
                refused_hot.append((i, f))
    if idle_ok:  # the best on at most f GPUs, as latency_table
        keep = np.maximum.accumulate(np.where(best < np.r_[np.inf, np.minimum.accumulate(best)[:-1]], np.arange(n), 0))
        best, c1, d1, c2, d2 = best[keep], c1[keep], d1[keep], c2[keep], d2[keep]
    return best, c1, d1, c2, d2


def _load(ctx, tier, keep_every=1):
    mask = np.zeros((ctx.sample.num_requests, ctx.num_tiers), dtype=bool)
    mask[::keep_every, tier] = True
    return ctx.loads_from_mask(mask)[tier]


@pytest.fixture(scope="module")
def bench_problem():
    """planners.bench's 32-GPU problem (the DeepSeek cascade, conversation x4): units win at many GPU counts there,
    at several P:D splits, and the gate turns many away."""
    from planners.bench import BASE_RATE_SCALE_32, conversation, deepseek_cascade, h100_cluster
    from planners.problem import PlanningProblem

    cascade = deepseek_cascade()
    wl = conversation(cascade, BASE_RATE_SCALE_32, 600.0)
    return PlanningProblem(cascade, h100_cluster(4), wl, wl.quality_at_level(0.7))


@pytest.mark.parametrize("tier", [0, 1])
def test_the_pruned_gated_table_is_the_unpruned_one(bench_problem, tier):
    pruned_ctx = SearchContext(bench_problem, disaggregation="best")
    splits_won, units_turned_away, refused_hot = set(), 0, []
    for keep_every, rate_factor in ((1, 1.0), (1, 0.5), (3, 0.7)):
        # the search's own gate, and one where the hotter rate's condition turns units away (it never binds on its own
        # at the first: the room condition is the stricter there)
        for gate in (pruned_ctx.table_gate, dict(disagg_load_factor=1.6, disagg_margin=0.0,
                                                 disagg_max_utilisation=0.95)):
            load = _load(pruned_ctx, tier, keep_every)
            rate = load.rate_rps * rate_factor
            models = pruned_ctx.replica_models(load)
            got = latency_table(models, rate, pruned_ctx.num_gpus, idle_ok=False, **gate)
            plan_cache.clear()  # fresh models for the oracle: no row the pruned table filled
            fresh_ctx = SearchContext(bench_problem, disaggregation="best")
            oracle_models = fresh_ctx.replica_models(_load(fresh_ctx, tier, keep_every))
            assert oracle_models is not models
            want = unpruned_table(oracle_models, rate, fresh_ctx.num_gpus, idle_ok=False, refused_hot=refused_hot,
                                  **gate)
            for name, g, w in zip(("latency_s", "c1", "d1", "c2", "d2"),
                                  (got.latency_s, got.c1, got.d1, got.c2, got.d2), want):
                assert np.array_equal(g, w), (name, keep_every, rate_factor, gate)
            ungated = latency_table(models, rate, pruned_ctx.num_gpus, idle_ok=False)
            for f, c in enumerate(got.c1):
                if c >= 0 and getattr(models[c], "disaggregated", False):
                    splits_won.add((models[c].num_prefill, models[c].num_decode))
                elif getattr(models[ungated.c1[f]], "disaggregated", False):
                    units_turned_away += 1
    # Neither side of the gate is vacuous: units of several splits enter somewhere, and some are turned away, some
    # by the hotter rate alone.
    assert len(splits_won) >= 2 and units_turned_away > 0 and refused_hot


def test_a_plan_made_with_the_pruned_tables_is_the_plan_made_with_the_unpruned_ones(monkeypatch):
    """Cascadia with disaggregation=best, the search's own gate, at loads where it does and does not disaggregate:
    the same plan, field by field, when every gated table is built without shortcuts."""
    disaggregated_somewhere = False
    for num_tiers, num_nodes, rate_rps in ((2, 1, 16.0), (3, 2, 16.0), (2, 2, 6.0)):
        problem = make_problem(num_tiers=num_tiers, num_nodes=num_nodes, rate_rps=rate_rps)
        plan_cache.clear()
        pruned = get_planner("cascadia", disaggregation="best").plan(problem)
        with monkeypatch.context() as patch:
            def table(models, rate, num_gpus, quantile=0.95, empty=False, **kw):
                gated = (not empty and any(getattr(m, "disaggregated", False) for m in models)
                         and any(not getattr(m, "disaggregated", False) for m in models))
                fn = unpruned_table if gated else latency_table
                best, c1, d1, c2, d2 = (fn(models, rate, num_gpus, quantile, empty, **kw) if gated else
                                        (lambda t: (t.latency_s, t.c1, t.d1, t.c2, t.d2))(
                                            latency_table(models, rate, num_gpus, quantile, empty, **kw)))
                return search.TierTable(best, c1, d1, c2, d2, tuple(models), rate)

            patch.setattr(search, "latency_table", table)
            plan_cache.clear()
            unpruned = get_planner("cascadia", disaggregation="best").plan(problem)
        assert_same(pruned, unpruned)
        disaggregated_somewhere |= any(t.disaggregated for t in pruned.tiers)
    assert disaggregated_somewhere  # the units' side of the search was exercised
