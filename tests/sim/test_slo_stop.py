"""The throughput bisection's early stop (sim.metrics.slo_stop): a run stopped with SloMissed gives the verdict the
whole run would give. Oracles: numpy's quantile for the miss count, and the full run's meets_slo."""
import numpy as np
import pytest

from sim.bench import default_scenario
from sim.metrics import meets_slo, slo_scale, slo_stop, throughput_at_slo
from sim.runtime.slo_stop import SloMissed
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
    verdicts, stopped = [], 0
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
        assert early == full, factor
        verdicts.append(full)
    assert True in verdicts and False in verdicts and stopped >= 1  # both verdicts seen; the stop was used


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
