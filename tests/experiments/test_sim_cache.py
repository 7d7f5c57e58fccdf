"""Throughput bisections reused on equal inputs (experiments.sim_cache): the key changes with every input the
bisection reads and not with the planner's name; a reused value equals a fresh bisection; a sweep shares its
bisections through its own folder."""
import json
import subprocess
import sys
from dataclasses import replace

import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.protocol import seed_split
from experiments.run import throughput_rps
from experiments.scenario import make_plan
from experiments.sim_cache import ThroughputCache, throughput_key
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()
SMALL = ["horizon_s=60", "seeds=1", "throughput.iters=2", "throughput.horizon_s=30", "plan_sample_size=100"]


@pytest.fixture(scope="module")
def case():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=SMALL)
    split = seed_split(cfg, 0)
    plan, _ = make_plan("single_model", {}, split.plan, 100)
    return cfg, split.test, plan


def test_key_follows_every_input_but_the_planner_name(case):
    cfg, sc, plan = case
    t = {"slo_scale": 10.0, "lo": 0.05, "hi": 10.0, "iters": 2, "horizon_s": 30.0, "enabled": True}
    k = throughput_key(plan, sc, t)
    assert throughput_key(plan, sc, dict(t)) == k
    assert throughput_key(replace(plan, planner="someone_else"), sc, t) == k
    w = sc.workload
    changed = [
        throughput_key(replace(plan, thresholds=(1.0, 2.0)), sc, t),
        throughput_key(replace(plan, tiers=plan.tiers[::-1]), sc, t),
        throughput_key(replace(plan, estimates={**plan.estimates, "sim_overrides": {"batching": "sarathi"}}), sc, t),
        throughput_key(plan, replace(sc, seed=sc.seed + 1), t),
        throughput_key(plan, replace(sc, workload=w.with_arrivals(w.arrival_s + 1e-9)), t),
        throughput_key(plan, replace(sc, sim_cfg=replace(sc.sim_cfg, max_num_seqs=sc.sim_cfg.max_num_seqs + 1)), t),
        throughput_key(plan, sc, {**t, "slo_scale": 9.0}),
        throughput_key(plan, sc, {**t, "horizon_s": 31.0}),
    ]
    assert k not in changed and len(set(changed)) == len(changed)


def test_reused_value_equals_a_fresh_bisection(case, tmp_path):
    cfg, sc, plan = case
    fresh = throughput_rps(plan, sc, cfg.throughput)
    cache = ThroughputCache(tmp_path)
    assert throughput_rps(plan, sc, cfg.throughput, cache) == fresh and cache.hits == 0
    assert len(list(tmp_path.glob("*.json"))) == 1
    other = ThroughputCache(tmp_path)  # another job of the sweep: reads the folder
    assert throughput_rps(plan, sc, cfg.throughput, other) == fresh and other.hits == 1


def test_unreadable_entry_is_computed_again(case, tmp_path):
    cfg, sc, plan = case
    cache = ThroughputCache(tmp_path)
    fresh = throughput_rps(plan, sc, cfg.throughput, cache)
    next(tmp_path.glob("*.json")).write_text("{not json")
    again = ThroughputCache(tmp_path)
    assert throughput_rps(plan, sc, cfg.throughput, again) == fresh and again.hits == 0


@pytest.mark.slow
def test_a_sweep_shares_bisections_between_its_jobs(tmp_path):
    """single_model deploys the same plan at both quality requirements: one bisection, the same throughput in both
    jobs, and the same as a run outside any sweep."""
    sweep = tmp_path / "sweep"
    run = [sys.executable, "-m", "experiments.run"]
    base = ["planner=[single_model]", "progress=false", "figure=false", *SMALL]
    proc = subprocess.run(run + ["--multirun", *base, f"hydra.sweep.dir={sweep}", "q_min_level=0.5,0.95"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = tmp_path / "single"
    proc = subprocess.run(run + [*base, f"output_dir={single}", "q_min_level=0.95"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    thr = [json.loads(p.read_text())["planners"]["single_model"]["throughput_rps"]
           for p in sorted(sweep.rglob("summary.json"))]
    assert len(thr) == 2 and len(list((sweep / ".cache" / "throughput").glob("*.json"))) == 1
    assert thr[0] == thr[1] == json.loads((single / "summary.json").read_text())["planners"]["single_model"]["throughput_rps"]


def test_cache_env_names_a_folder_shared_across_sweeps(case, tmp_path, monkeypatch):
    """make results sets CACHE_ENV for all its sweeps: a job finds what another sweep's job bisected."""
    from experiments.sim_cache import CACHE_ENV, sweep_cache

    cfg, sc, plan = case
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "shared"))
    first = sweep_cache()
    fresh = throughput_rps(plan, sc, cfg.throughput, first)
    second = sweep_cache()  # another sweep's job, another process: only the folder is shared
    assert second is not first and second.folder == tmp_path / "shared"
    assert throughput_rps(plan, sc, cfg.throughput, second) == fresh and second.hits == 1
    monkeypatch.delenv(CACHE_ENV)
    assert sweep_cache().folder is None  # outside a sweep and without the variable: this process's alone


def test_simulation_reused_on_equal_inputs_only(case, tmp_path):
    """Whole runs (the main job's test-split and in-sample runs): the cached result's request table equals a fresh
    run's; the key ignores the planner's name (whose plan description the result then carries) and follows the
    plan, seed and workload; an unreadable pickle is simulated again."""
    import pandas as pd

    from experiments.main_job import simulate_plan
    from experiments.sim_cache import SimulationCache, simulation_key

    cfg, sc, plan = case
    fresh = simulate_plan(plan, sc)
    calls = []

    def sim(p=plan, s=sc):
        calls.append(1)
        return simulate_plan(p, s)

    cache = SimulationCache(tmp_path / "simulations")
    first = cache.run(simulation_key(plan, sc), plan, sim)
    other = SimulationCache(tmp_path / "simulations")  # another job: reads the folder
    renamed = replace(plan, planner="someone_else")
    again = other.run(simulation_key(renamed, sc), renamed, sim)
    assert len(calls) == 1 and other.hits == 1
    pd.testing.assert_frame_equal(first.requests, fresh.requests, check_exact=True)
    pd.testing.assert_frame_equal(again.requests, fresh.requests, check_exact=True)
    assert again.meta["plan"] == renamed.describe() != fresh.meta["plan"]
    assert {k: v for k, v in again.meta.items() if k not in ("plan", "wall_s")} == \
        {k: v for k, v in fresh.meta.items() if k not in ("plan", "wall_s")}
    k = simulation_key(plan, sc)
    assert simulation_key(plan, replace(sc, seed=sc.seed + 1)) != k
    assert simulation_key(replace(plan, thresholds=(1.0, 2.0)), sc) != k
    w = sc.workload
    assert simulation_key(plan, replace(sc, workload=w.with_arrivals(w.arrival_s + 1e-9))) != k
    next((tmp_path / "simulations").glob("*.pkl")).write_bytes(b"not a pickle")
    third = SimulationCache(tmp_path / "simulations")
    third.run(k, plan, sim)
    assert third.hits == 0 and len(calls) == 2
    mem = SimulationCache()  # no folder: this process's dict
    mem.run(k, plan, sim), mem.run(k, plan, sim)
    assert mem.hits == 1 and len(calls) == 3


def test_request_tables_of_a_repeated_run_are_the_bytes_write_table_writes(case, tmp_path):
    """write_requests: the table at each path is byte for byte what write_table writes for that run (the oracle), the
    first time and when another job (a new cache on the same folder) or this process repeats the run; a repeat makes
    no new table (to_csv is not called), a kept file that is unreadable is made again, and a plain .csv path gets the
    uncompressed bytes, not the kept gzip ones."""
    import pandas as pd

    from experiments.main_job import simulate_plan
    from experiments.sim_cache import SimulationCache, simulation_key
    from sim.common.io import write_table

    cfg, sc, plan = case
    requests = simulate_plan(plan, sc).requests
    oracle = write_table(requests, tmp_path / "oracle.csv.gz").read_bytes()
    plain = write_table(requests, tmp_path / "oracle.csv").read_bytes()
    key = simulation_key(plan, sc)
    made = []

    class Counting(pd.DataFrame):
        def to_csv(self, *a, **kw):
            made.append(1)
            return pd.DataFrame.to_csv(self, *a, **kw)

    counted = Counting(requests)
    for cache in (SimulationCache(tmp_path / "simulations"), SimulationCache()):
        cache.write_requests(key, counted, tmp_path / "a.csv.gz")
        SimulationCache(cache.folder).write_requests(key, counted, tmp_path / "b.csv.gz") if cache.folder else \
            cache.write_requests(key, counted, tmp_path / "b.csv.gz")
        assert (tmp_path / "a.csv.gz").read_bytes() == oracle == (tmp_path / "b.csv.gz").read_bytes()
        cache.write_requests(key, counted, tmp_path / "c.csv")
        assert (tmp_path / "c.csv").read_bytes() == plain
    assert len(made) == 4  # once per cache and format
    kept = next((tmp_path / "simulations").glob("*.requests.csv.gz"))
    kept.unlink()
    kept.mkdir()  # unreadable as a file, and cannot be kept again: made again, and the table is still written
    SimulationCache(tmp_path / "simulations").write_requests(key, counted, tmp_path / "d.csv.gz")
    assert (tmp_path / "d.csv.gz").read_bytes() == oracle and len(made) == 5


def test_hinted_throughput_equals_the_plain_bisection(case):
    """experiments.main_job.throughput_rps with a hint (another seed's throughput) on a real plan: the same float as
    the plain bisection from hints below, at and above the answer, with fewer runs at the answer."""
    cfg, sc, plan = case
    from omegaconf import OmegaConf

    tcfg = OmegaConf.merge(cfg.throughput, {"iters": 5, "horizon_s": 30.0, "slo_scale": 2.0})  # an inner answer
    plain_trace: list = []
    fresh = throughput_rps(plan, sc, tcfg, trace=plain_trace)
    for scale in (0.5, 1.0, 1.2, 3.0):
        trace: list = []
        assert throughput_rps(plan, sc, tcfg, hint_rps=fresh * scale, trace=trace) == fresh
        if scale == 1.0:
            assert len(trace) <= 2 < len(plain_trace)


def test_whole_runs_on_disk_only_under_make_results(tmp_path, monkeypatch):
    from experiments.sim_cache import CACHE_ENV, simulation_cache

    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert simulation_cache(ThroughputCache(tmp_path / "sweep" / "throughput")) is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "shared" / "throughput"))
    assert simulation_cache(ThroughputCache(tmp_path / "shared" / "throughput")).folder == tmp_path / "shared" / "simulations"


def test_hinted_search_takes_the_plain_bisection_of_the_same_plan(case, tmp_path):
    """A hinted search whose own key is not cached takes the cached plain bisection of the same plan (no run); a
    plan with neither searches from its hint, and a later search of it from another hint takes that answer."""
    from omegaconf import OmegaConf

    cfg, sc, plan = case
    tcfg = OmegaConf.merge(cfg.throughput, {"iters": 4, "horizon_s": 30.0, "slo_scale": 2.0})
    cache = ThroughputCache(tmp_path)
    plain_trace: list = []
    fresh = throughput_rps(plan, sc, tcfg, cache, trace=plain_trace)
    assert len(plain_trace) >= 3 and len(list(tmp_path.glob("*.json"))) == 1
    trace: list = []
    assert throughput_rps(plan, sc, tcfg, ThroughputCache(tmp_path), hint_rps=fresh * 0.5, trace=trace) == fresh
    assert trace == [] and len(list(tmp_path.glob("*.json"))) == 1
    other = ThroughputCache(tmp_path / "other")
    assert throughput_rps(plan, sc, tcfg, other, hint_rps=fresh, trace=trace) == fresh
    assert 1 <= len(trace) <= 2 and len(list((tmp_path / "other").glob("*.json"))) == 2  # its key and "any hint"
    trace = []  # another planner's search of the same plan from another hint: found, no run
    again = ThroughputCache(tmp_path / "other")
    assert throughput_rps(plan, sc, tcfg, again, hint_rps=fresh * 3, trace=trace) == fresh
    assert trace == []

