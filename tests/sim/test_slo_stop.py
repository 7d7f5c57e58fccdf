"""The throughput bisection's early stop (sim.metrics.slo_stop): a run stopped with SloMissed or SloMet gives the
verdict the whole run would give. Oracles: numpy's quantile for the miss count, and the full run's meets_slo."""
import numpy as np
import pytest

from sim.bench import default_scenario
from sim.metrics import meets_slo, slo_scale, slo_stop, throughput_at_slo
from sim.runtime.slo_stop import SloMet, SloMissed
from sim.simulator import simulate

TARGET = 4.0  # an SLO scale the default plan meets at low rates and misses at high ones on its first 120 s


@pytest.mark.parametrize("attainment", [0.5, 0.9, 0.95, 0.99])
def test_miss_count_at_which_the_quantile_exceeds_the_target(attainment):
    """slo_scale > target exactly when fail_at_misses or more ratios exceed it (checked on every miss count)."""
    rng = np.random.default_rng(0)
    j_of = lambda n: int(np.quantile(np.arange(n, dtype=float), attainment, method="inverted_cdf"))  # noqa: E731
    for n in (1, 2, 3, 7, 20, 101, 1000):
        fail_at = n - j_of(n)
        for misses in range(n + 1):
            ratio = np.r_[rng.uniform(0.1, 1.0, n - misses), rng.uniform(1.0001, 5.0, misses)]
            rng.shuffle(ratio)
            fails = slo_scale(ratio, np.ones(n), attainment) > 1.0
            assert fails == (misses >= fail_at), (n, misses, fail_at)


@pytest.fixture(scope="module")
def scenario():
    plan, cascade, cluster, workload, cfg = default_scenario()
    return plan, cascade, cluster, workload.window(0.0, 120.0), cfg


def test_stopped_runs_give_the_full_runs_verdict(scenario):
    plan, cascade, cluster, base, cfg = scenario
    verdicts, stopped, met = [], 0, 0
    for factor in (0.5, 2.0, 8.0, 32.0):
        w = base.scale_rate(factor)
        full = meets_slo(simulate(plan, cascade, cluster, w, cfg), TARGET, cascade, cluster, cfg.engine)
        stop = slo_stop(w, TARGET, cascade, cluster, cfg, cfg.engine)
        try:
            early = meets_slo(simulate(plan, cascade, cluster, w, cfg, slo_stop=stop), TARGET, cascade, cluster,
                              cfg.engine)
        except SloMissed as exc:
            early, stopped = False, stopped + 1
            assert exc.misses == stop.fail_at_misses
        except SloMet as exc:
            early, met = True, met + 1
            assert exc.attained == w.num_requests - stop.fail_at_misses + 1
        assert early == full, factor
        verdicts.append(full)
    assert True in verdicts and False in verdicts and stopped >= 1 and met >= 1  # both verdicts and stops seen


def test_reference_from_the_workload_equals_the_records(scenario):
    """slo_stop's ref(r) is the one meets_slo computes from the run's records, float for float."""
    from sim.metrics import request_slo_ratios

    plan, cascade, cluster, w, cfg = scenario
    ref, _ = request_slo_ratios(simulate(plan, cascade, cluster, w, cfg), cascade, cluster, cfg.engine)
    assert np.array_equal(slo_stop(w, 10.0, cascade, cluster, cfg, cfg.engine).ref_s, ref)


def test_bisection_with_early_stop_equals_plain_bisection(scenario):
    plan, cascade, cluster, base, cfg = scenario

    def run(stop):
        def one(f):
            w = base.scale_rate(f)
            s = slo_stop(w, TARGET, cascade, cluster, cfg, cfg.engine) if stop else None
            return simulate(plan, cascade, cluster, w, cfg, slo_stop=s)
        return one

    args = dict(lo=0.5, hi=32.0, iters=4, cascade=cascade, cluster=cluster, engine=cfg.engine)
    assert throughput_at_slo(run(True), TARGET, **args) == throughput_at_slo(run(False), TARGET, **args)


def test_no_stop_where_ref_depends_on_the_run(scenario):
    from dataclasses import replace

    plan, cascade, cluster, w, cfg = scenario
    assert slo_stop(w, 10.0, cascade, cluster, replace(cfg, reference_length="returned"), cfg.engine) is None


def _verdict_with_stop(plan, cascade, cluster, w, cfg, target, **kw):
    """(verdict, how): the stopped run's verdict and which stop gave it ("missed", "met" or "full")."""
    stop = slo_stop(w, target, cascade, cluster, cfg, cfg.engine)
    try:
        result = simulate(plan, cascade, cluster, w, cfg, slo_stop=stop, **kw)
    except SloMissed:
        return False, "missed"
    except SloMet:
        return True, "met"
    return meets_slo(result, target, cascade, cluster, cfg.engine), "full"


def test_certain_pass_and_miss_agree_with_the_full_run_on_random_small_runs():
    """Property: on random small runs (size, rate, deployment, attainment) and targets at the run's own SLO scale
    (the boundary: passes), one ulp below it (fails) and at random quantiles of its ratios, the stopped run's
    verdict equals meets_slo on the whole run (oracle). Bugs it catches: an off-by-one in the pass count (the
    boundary targets), a pass counted with other arithmetic than the records' ratio, a drop or late finish
    counted as a pass."""
    from dataclasses import replace

    from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

    from sim.metrics import request_slo_ratios
    from sim.simulator import SimConfig

    rng = np.random.default_rng(21)
    cas, cl = llama_cascade(), cluster()
    hows = {"missed": 0, "met": 0, "full": 0}
    verdicts = set()
    for case in range(40):
        n = int(rng.integers(1, 40))
        w = poisson_workload(n, float(rng.uniform(0.5, 60.0)), int(rng.integers(1 << 30)))
        p = plan((int(rng.integers(1, 3)), 1))
        cfg = replace(SimConfig(), attainment=float(rng.choice([0.5, 0.9, 0.95, 0.99])))
        kw = dict(seed=case, cost_factory=fake_factory(), judge=OracleJudge(0.1))
        full = simulate(p, cas, cl, w, cfg, **kw)
        ref, _ = request_slo_ratios(full, cas, cl, cfg.engine)
        lat = full.requests["latency_s"].to_numpy()
        scale = slo_scale(lat, ref, cfg.attainment)
        ratios = np.where(np.isfinite(lat), lat / ref, np.inf)
        targets = [float(np.quantile(ratios[np.isfinite(ratios)], rng.uniform())) if np.isfinite(ratios).any()
                   else 1.0]
        if np.isfinite(scale):
            targets += [scale, float(np.nextafter(scale, -np.inf))]
        for target in targets:
            want = meets_slo(full, target, cas, cl, cfg.engine)
            got, how = _verdict_with_stop(p, cas, cl, w, cfg, target, **kw)
            assert got == want, (case, n, target, how)
            hows[how] += 1
            verdicts.add(want)
    assert verdicts == {True, False} and hows["missed"] > 5 and hows["met"] > 5, hows


def test_certain_pass_ends_the_run_at_the_attained_request_that_settles_it(scenario):
    """A run within its target ends once n - fail_at_misses + 1 requests finished within it: at the finish of that
    many-th attained request of the whole run (oracle: the full run's records), before its last finish."""
    plan, cascade, cluster, base, cfg = scenario
    w = base.scale_rate(0.5)
    full = simulate(plan, cascade, cluster, w, cfg)
    assert meets_slo(full, TARGET, cascade, cluster, cfg.engine)
    stop = slo_stop(w, TARGET, cascade, cluster, cfg, cfg.engine)
    with pytest.raises(SloMet) as exc:
        simulate(plan, cascade, cluster, w, cfg, slo_stop=stop)
    done = full.requests["completion_s"].to_numpy()
    attained = np.sort(done[full.requests["latency_s"].to_numpy() / stop.ref_s <= TARGET])
    assert exc.value.attained == w.num_requests - stop.fail_at_misses + 1
    assert exc.value.at_s == pytest.approx(attained[exc.value.attained - 1], abs=1e-9)
    assert exc.value.at_s < np.nanmax(done)


def test_due_s_is_the_first_test_of_check_open():
    """The flow calls SloWatch.check_open only when now - CLOCK_MARGIN_S > watch.due_s. That skips nothing only if
    due_s is always the deadline check_open's loop tests first (inf once all are decided), so that a call at any
    earlier time changes no state. Random open/finished requests and calls at random increasing times (the oracle:
    the watch's own deadline list and a call made regardless)."""
    from sim.runtime.slo_stop import CLOCK_MARGIN_S, SloStop, SloWatch

    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        arrival = np.sort(rng.uniform(0, 10, n)).tolist()
        ref = rng.uniform(0.1, 2.0, n)
        status = [0] * n
        watch = SloWatch(SloStop(ref, float(rng.uniform(1, 5)), n + 1), arrival, status)  # never stops
        for now in np.sort(rng.uniform(0, 30, 20)):
            if rng.random() < 0.3:
                status[int(rng.integers(n))] = 1  # finished (the flow's record book)
            expected = watch.deadline[watch.next] if watch.next < n else float("inf")
            assert watch.due_s == expected
            state = (watch.next, watch.left, list(watch.counted))
            if not now - CLOCK_MARGIN_S > watch.due_s:
                watch.check_open(now)  # what the flow skips: must be a no-op
                assert (watch.next, watch.left, list(watch.counted)) == state
            else:
                watch.check_open(now)
            assert watch.due_s == (watch.deadline[watch.next] if watch.next < n else float("inf"))
