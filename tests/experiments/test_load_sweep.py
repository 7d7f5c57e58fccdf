"""The load sweep's pieces: the load rule (rates as fractions of the single model's capacity), the SLO attainment
curve each run reports, and throughput with a plan per bisected rate (throughput.replan_per_rate)."""
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.scenario import single_model_capacity
from experiments.protocol import ATTAINMENT_METRICS, ATTAINMENT_SCALES, seed_split
from sim.common.paths import CONF_DIR

register_configs()
SMALL = ["trace_window.duration_s=60", "horizon_s=null", "seeds=1", "plan_sample_size=200", "progress=false",
         "figure=false", "throughput.enabled=false", "planner=[single_model,cascadia]"]


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_load_fraction_sets_the_rate_to_that_share_of_the_capacity_for_every_seed_and_level():
    cap = single_model_capacity(_cfg([*SMALL, "workload=deepseek_reasoning"]))
    # the best-throughput configuration fills the cluster with replicas of the largest model
    assert cap["replicas"] * cap["tp"] * cap["pp"] <= 32 and cap["capacity_rps"] == pytest.approx(
        cap["replicas"] * cap["replica_max_rps"])
    for seed, level in ((0, 0.5), (3, 0.85)):
        cfg = _cfg([*SMALL, "workload=deepseek_reasoning", "load_fraction=0.5", f"q_min_level={level}"])
        sp = seed_split(cfg, seed)
        n = sp.plan.workload.num_requests + sp.test.workload.num_requests
        span = 60.0 / sp.test.extras["rate_factor"]
        assert n / span == pytest.approx(0.5 * cap["capacity_rps"])


def test_capacity_falls_when_answers_get_longer():
    # decode steps dominate: the reasoning tiers' longer answers must give the largest model a lower capacity than
    # the stand-in's shorter ones (V3 1,415 vs GPT-4-turbo's 716 tokens on average)
    real = single_model_capacity(_cfg([*SMALL, "workload=deepseek_reasoning"]))["capacity_rps"]
    stand_in = single_model_capacity(_cfg([*SMALL, "workload=conversation"]))["capacity_rps"]
    assert real < stand_in


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from experiments.run import run_experiment

    out = tmp_path_factory.mktemp("loadsweep")
    return run_experiment(_cfg([*SMALL, "workload=deepseek_reasoning", "load_fraction=0.9"]), out)


def test_attainment_curve_is_monotone_and_agrees_with_the_slo_scale(tiny_run):
    for name, s in tiny_run["planners"].items():
        curve = [s[k] for k in ATTAINMENT_METRICS]
        assert all(0.0 <= a <= 1.0 for a in curve) and np.all(np.diff(curve) >= 0), name
        # the SLO scale is the 95th percentile of latency / ref: at every s at or above it >= 95% attain, below it < 95%
        for x, a in zip(ATTAINMENT_SCALES, curve):
            if x >= s["slo_scale"]:
                assert a >= 0.95, (name, x)
            elif x < s["slo_scale"] * (1 - 1e-9):
                assert a < 0.95, (name, x)


def test_replan_per_rate_plans_once_per_bisected_rate(monkeypatch):
    """throughput_rps with replan: one plan per probed rate factor, each on the planning split re-timed by that
    factor. The simulation is replaced by the probe's rate and the SLO check by "rate <= 5x the base rate", so the
    bisection's path is known in advance (hi fails, lo passes, then geometric mid-points)."""
    import sim.metrics
    import experiments.main_job as run

    cfg = _cfg([*SMALL, "workload=deepseek_reasoning", "load_fraction=0.5", "throughput.iters=3",
                "throughput.horizon_s=30", "throughput.lo=0.5", "throughput.hi=40.0"])
    sp = seed_split(cfg, 0)
    plan, _ = run.make_plan("single_model", {"model": "largest"}, sp.plan, 200)
    base = sp.test.workload.window(0.0, 30.0)
    planned = []
    real_make_plan = run.make_plan

    def spy(planner, settings, scenario, sample):
        planned.append(scenario.workload.rate_rps / sp.plan.workload.rate_rps)
        return real_make_plan(planner, settings, scenario, sample)

    monkeypatch.setattr(run, "make_plan", spy)
    monkeypatch.setattr(run, "simulate_plan", lambda p, sc, workload=None, **k: workload.rate_rps)
    monkeypatch.setattr(run, "gear_controller", lambda p, w: None)
    monkeypatch.setattr(sim.metrics, "meets_slo", lambda rate, *a, **k: rate <= 5.0 * base.rate_rps * (1 + 1e-9))
    fixed = run.throughput_rps(plan, sp.test, cfg.throughput)
    assert planned == []  # the fixed-plan throughput never re-plans
    again = run.throughput_rps(plan, sp.test, cfg.throughput, replan=("single_model", {"model": "largest"}, sp.plan, 200))
    # probes: hi 40 (fails), then sqrt(0.5 x 40) = 4.47 (passes), sqrt(4.47 x 40), ...; lo 0.5 is never run (a
    # mid passed, so lo passes under the bisection's monotonicity: sim.metrics.throughput_at_slo)
    expect = [40.0]
    lo, hi = 0.5, 40.0
    for _ in range(3):
        mid = float(np.sqrt(lo * hi))
        expect.append(mid)
        lo, hi = (mid, hi) if mid <= 5.0 else (lo, mid)
    assert planned == pytest.approx(expect)
    assert fixed == again == pytest.approx(lo * base.rate_rps)  # same oracle, same answer: only the plans differ


def test_attainment_counts_a_ratio_of_one_up_to_rounding_and_nothing_further():
    """A request served alone finishes at its reference latency, rounded differently by the clock and by ref(r)'s
    closed form: it attains scale 1 whichever way the last bit falls; a real excess (1e-6) does not, nor a drop."""
    from experiments.protocol import attainment_shares

    one = 1.0
    ratio = np.array([np.nextafter(one, 2.0), np.nextafter(one, 0.0), one * (1 + 1e-6), np.inf])
    shares = attainment_shares(ratio)
    assert shares["attain_at_1"] == 0.5  # the two rounded ones, not the excess nor the drop
    assert shares["attain_at_1.25"] == 0.75 and shares["attain_at_50"] == 0.75  # a dropped request never attains
    # numpy's own count at the rounded scale, the oracle for every scale
    for key, s in zip(ATTAINMENT_METRICS, ATTAINMENT_SCALES):
        assert shares[key] == np.mean(ratio <= s * (1 + 1e-9)), key
