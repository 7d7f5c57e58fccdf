"""The process planning cache (planners.plan_cache): plans float-for-float equal with it cold, warm and off; its key
changes with every input a replica model or latency table reads; reused build seconds are charged; LRU bound."""
from dataclasses import fields, is_dataclass, replace
from types import SimpleNamespace

import numpy as np
import pytest

import planners.search as search
from planners import plan_cache
from planners.base import PLANNERS, get_planner
from planners.search import SearchContext

from conftest import make_problem, roofline_cost_fn

TIMING = {"time_s", "solve_s", "router_train_s", "train_s", "wall_s", "reused_s"}  # seconds, never equal twice


def assert_same(a, b, path="plan"):
    """a == b exactly: arrays element for element (NaN equal to NaN), floats bit for bit, timings skipped."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for f in fields(a):
            if f.name not in TIMING:
                assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert set(a) - TIMING == set(b) - TIMING, path
        for k in set(a) - TIMING:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


@pytest.fixture
def cache_size():
    """Restore the cache's bound after a test that turns it off."""
    size = plan_cache.CACHE.max_bytes
    yield
    plan_cache.CACHE.max_bytes = size
    plan_cache.clear()


@pytest.mark.integration  # every planner, four times
def test_every_planner_plans_the_same_with_the_cache_off_cold_and_warm(cache_size):
    """Two quality levels on one sample (the across-level sharing) and every planner after the others (the across-
    planner sharing): each plan equals the cache-off plan of the same problem in every tier, threshold and estimate.
    Fails if a key misses an input that differs between the planners or levels (a table of another deployment
    mode or parallelism search would be served), or if a shared model's lazily filled rows differ."""
    base = make_problem(num_tiers=3, num_nodes=2, rate_rps=6.0, n=500)
    z1, z2 = base.quality_span
    problems = [replace(base, q_min=z2 + f * (z1 - z2)) for f in (0.5, 0.8)]
    plan_cache.CACHE.max_bytes = 0  # off
    off = {(i, name): get_planner(name).plan(p) for i, p in enumerate(problems) for name in PLANNERS}
    plan_cache.CACHE.max_bytes = 512e6
    plan_cache.clear()
    hits0 = plan_cache.CACHE.hits
    for i, p in enumerate(problems):
        for name in PLANNERS:
            assert_same(get_planner(name).plan(p), off[(i, name)], f"{name} at level {i}")
    assert plan_cache.CACHE.hits - hits0 > 0  # the warm plans did take entries (else the test proves nothing)
    for name in ("cascadia", "cascadeserve"):  # and once more, everything warm
        assert_same(get_planner(name).plan(problems[1]), off[(1, name)], f"{name} warm")


def _key(problem, **ctx):
    return SearchContext(problem, **ctx)._key


def test_context_key_changes_with_every_input_of_a_model_or_table(monkeypatch):
    """Each line changes one input the replica models or tables read; a key that left it out would equal the
    base key (and serve the other problem's tables)."""
    base = make_problem(num_tiers=2, num_nodes=1, rate_rps=4.0, n=300, max_sample_requests=200)
    key = _key(base)
    assert _key(base) == key and _key(replace(base, q_min=base.q_min - 1.0)) == key  # q_min is not read
    assert _key(replace(base, judge_latency_s=1.0)) == key  # nor the judge's latency (not a table's input)
    w = base.workload
    others = {
        "cascade": replace(base, cascade=replace(base.cascade, tiers=(base.cascade.tiers[0],
                                                                       replace(base.cascade.tiers[1], kv="fp8")))),
        "cluster": replace(base, cluster=replace(base.cluster, ib_bw_gbps=100.0)),
        "engine": replace(base, engine="sglang"),
        "gpu_memory_utilization": replace(base, gpu_memory_utilization=0.8),
        "max_num_seqs": replace(base, max_num_seqs=128),
        "slo_attainment": replace(base, slo_attainment=0.9),
        "context_policy": replace(base, context_policy="drop"),
        "cost_fn": replace(base, cost_fn=roofline_cost_fn(base.cluster)),  # equal content, another function
        "arrival_s": replace(base, workload=replace(w, arrival_s=w.arrival_s * 1.5)),  # the rate too
        "input_tokens": replace(base, workload=replace(w, input_tokens=w.input_tokens + 1)),
        "output_tokens": replace(base, workload=replace(w, output_tokens=w.output_tokens + 1)),
    }
    # ca2 of the whole workload, the sample equal: move one arrival the sample does not hold, inside its gap.
    idx = np.unique(np.linspace(0, w.num_requests - 1, 200).round().astype(np.int64))
    j = next(k for k in range(1, w.num_requests - 1) if k not in set(idx.tolist()))
    arr = w.arrival_s.copy()
    arr[j] = (arr[j - 1] + arr[j]) / 2
    moved = replace(base, workload=replace(w, arrival_s=arr))
    assert np.array_equal(moved.sample.arrival_s, base.sample.arrival_s) and moved.rate_rps == base.rate_rps
    others["ca2 of the whole workload"] = moved
    for what, p in others.items():
        assert _key(p) != key, what
    assert _key(base, parallelism_search=False) != key, "parallel configs"
    assert _key(base, disaggregation="best") != key, "deployment mode"
    monkeypatch.setattr(search, "DISAGG_MARGIN", search.DISAGG_MARGIN + 0.01)
    assert _key(base) != key, "disaggregation gate"


def test_a_table_is_shared_only_by_loads_of_equal_requests_and_rate():
    """Across contexts of equal inputs: the same mask and rate take the entry's table object; another mask, or the
    same mask at another rate (a CascadeServe gear), gets its own."""
    problem = make_problem(num_tiers=2, num_nodes=1, rate_rps=4.0, n=300)
    a, b = SearchContext(problem), SearchContext(problem)
    mask = np.zeros((a.sample.num_requests, 2), dtype=bool)
    mask[::2, 0] = True
    mask[:, 1] = ~mask[:, 0]
    la, lb = a.loads_from_mask(mask), b.loads_from_mask(mask)
    ta, tb = a.tables(la), b.tables(lb)
    assert all(x is y for x, y in zip(ta, tb)) and b.tables_reused == 2 and a.tables_reused == 0
    other = mask.copy()
    other[1, 0], other[1, 1] = True, False
    assert b.table(b.loads_from_mask(other)[0]) is not ta[0]
    hot = replace(lb[0], rate_rps=lb[0].rate_rps * 2, key=lb[0].key + (2.0,))
    t_hot = b.table(hot)
    assert t_hot is not ta[0] and t_hot.rate_rps == hot.rate_rps
    assert b.replica_models(hot) is b.replica_models(lb[0])  # the rate is not a model's input


def test_reused_build_seconds_are_charged_to_the_plan_that_reuses_them():
    """A second context on equal inputs is charged exactly the build seconds of the models and tables it took
    (once each), and the process counter moves by the same amount; the first context, which built them, is not."""
    problem = make_problem(num_tiers=2, num_nodes=1, rate_rps=4.0, n=300)
    a = SearchContext(problem)
    loads = a.cascade_loads((50.0,))
    a.tables(loads)
    a.tables(loads)
    assert a.reused_s == 0.0 and a.tables_built == 2
    before = plan_cache.charged_s()
    b = SearchContext(problem)
    b.tables(b.cascade_loads((50.0,)))
    b.tables(b.cascade_loads((50.0,)))
    entries = [plan_cache.CACHE.get(b._load_key(ld)) for ld in loads]
    expected = sum(e.models_build_s + e.tables[float(ld.rate_rps)][1] for e, ld in zip(entries, loads))
    assert expected > 0 and b.reused_s == pytest.approx(expected, rel=1e-12)
    assert plan_cache.charged_s() - before == pytest.approx(expected, rel=1e-12)


def test_the_cache_keeps_its_byte_bound_least_recently_used_first():
    """Bytes counted are those of the arrays an entry holds (each once); past the bound the oldest-used entries
    go, the newest stays."""
    cache = plan_cache.PlanningCache(max_bytes=2500)
    arr = np.zeros(100)  # 800 bytes
    shared = [arr, arr[10:]]  # a view: its base counted once
    assert plan_cache.array_bytes(shared) == 800
    for k in range(3):
        cache.put(("k", k), plan_cache.LoadEntry([np.zeros(100)], 0.1))
    assert len(cache) == 3 and cache.nbytes == 2400
    cache.get(("k", 0))  # now the most recently used
    cache.put(("k", 3), plan_cache.LoadEntry([np.zeros(100)], 0.1))
    assert cache.get(("k", 1)) is None and cache.get(("k", 0)) is not None and cache.nbytes == 2400
    assert cache.evictions == 1
    entry = cache.get(("k", 3))
    z = np.zeros(0)
    table = SimpleNamespace(latency_s=np.zeros(100), c1=z, d1=z, c2=z, d2=z, models=tuple(entry.models))
    cache.add_table(("k", 3), entry, 1.0, table, 0.2)  # its arrays, not the models' again
    assert entry.nbytes == 1600 and cache.nbytes <= 2500 and cache.get(("k", 3)) is entry


def test_a_bad_cache_size_is_one_clear_error(monkeypatch):
    from sim.common.errors import ConfigError

    monkeypatch.setenv(plan_cache.CACHE_MB_ENV, "lots")
    with pytest.raises(ConfigError, match=plan_cache.CACHE_MB_ENV):
        plan_cache._max_bytes_from_env()
    monkeypatch.setenv(plan_cache.CACHE_MB_ENV, "0")
    assert plan_cache._max_bytes_from_env() == 0.0


def test_router_features_are_built_once_for_the_same_questions_and_the_router_is_the_same(cache_size):
    """RouteLLM at a second q_min on the same questions takes the TF-IDF features (term counts, fold vocabularies,
    matrices) built for the first, is charged their build seconds, and trains the router it trains cold; other
    vectoriser settings build their own (a key without them would serve the wrong vocabulary)."""
    from planners import routellm
    from planners.routellm import RouteLLMPlanner

    problem = make_problem(num_tiers=3, num_nodes=2, rate_rps=6.0, n=500)
    z1, z2 = problem.quality_span
    q = [z2 + f * (z1 - z2) for f in (0.5, 0.8)]
    plan_cache.CACHE.max_bytes = 0
    cold = [RouteLLMPlanner().train(problem.workload, x) for x in q]
    assert not routellm._FEATURES  # off: nothing kept
    plan_cache.CACHE.max_bytes = 512e6
    first = RouteLLMPlanner().train(problem.workload, q[0])
    before = plan_cache.charged_s()
    second = RouteLLMPlanner().train(problem.workload, q[1])
    assert len(routellm._FEATURES) == 1 and len(routellm._FITS) == 2  # other labels: fitted again
    assert plan_cache.charged_s() - before == routellm._FEATURES.popitem()[1][1] > 0
    for warm, ref in zip((first, second), cold):
        assert_same(warm, ref)
    RouteLLMPlanner().train(problem.workload, q[0])
    RouteLLMPlanner(ngram=1).train(problem.workload, q[0])
    assert len(routellm._FEATURES) == 2
    plan_cache.clear()
    assert not routellm._FEATURES


def test_router_fits_are_shared_by_quality_requirements_with_equal_labels(cache_size):
    """Scores come in steps of 10 here: two q_min inside one step give every question the same smallest sufficient
    tier, so the second train takes the first's fits (charged their seconds) and still calibrates its own confidence
    for its own q_min, as a cold train does. A key without the labels would fail the third train (other labels)."""
    from planners import routellm
    from planners.routellm import RouteLLMPlanner

    problem = make_problem(num_tiers=3, num_nodes=2, rate_rps=6.0, n=500)
    q = (61.0, 69.0, 75.0)  # the first two share their labels, the third does not
    plan_cache.CACHE.max_bytes = 0
    cold = [RouteLLMPlanner().train(problem.workload, x) for x in q]
    plan_cache.CACHE.max_bytes = 512e6
    warm = [RouteLLMPlanner().train(problem.workload, q[0])]
    fit_s = next(iter(routellm._FITS.values()))[1]
    before = plan_cache.charged_s()
    warm.append(RouteLLMPlanner().train(problem.workload, q[1]))
    assert len(routellm._FITS) == 1 and plan_cache.charged_s() - before == pytest.approx(
        fit_s + next(iter(routellm._FEATURES.values()))[1], rel=1e-12)
    warm.append(RouteLLMPlanner().train(problem.workload, q[2]))
    assert len(routellm._FITS) == 2
    for w, c in zip(warm, cold):
        assert_same(w, c)


class _SpyPlanner:
    """A real planner that records how many entries the process cache held when each plan started."""

    def __init__(self, real, starts: list):
        self.real, self.starts = real, starts

    def plan(self, problem):
        self.starts.append(len(plan_cache.CACHE))
        return self.real.plan(problem)


@pytest.mark.integration  # two real Cascadia plans on the bench's 32 GPUs and two on planner_time's 8
def test_the_timed_cold_plans_of_the_benchmarks_start_with_an_empty_cache(monkeypatch, tmp_path):
    """planners.bench times a plan after a warm-up plan of the same problem, experiments.planner_time plans each
    size twice (cold_s, warm_s): without their plan_cache.clear() the timed plans would find the first plan's
    tables and time a reuse."""
    import planners.base
    import planners.bench as bench
    from experiments.planner_time import main

    starts: list = []
    real = planners.base.get_planner
    monkeypatch.setattr(bench, "get_planner", lambda name, **kw: _SpyPlanner(real(name, **kw), starts))
    bench.plan_times(0.7, sizes=(32,))
    assert len(starts) == 2 and starts[1] == 0 and len(plan_cache.CACHE) > 0
    starts.clear()
    monkeypatch.setattr(planners.base, "get_planner", lambda name, **kw: _SpyPlanner(real(name, **kw), starts))
    main(["--gpus", "8", "--out", str(tmp_path / "t.csv"), "--raw-dir", str(tmp_path / "raw")])
    assert starts == [0, 0] and len(plan_cache.CACHE) > 0
