"""The planner's latency estimator against an independent oracle, the simulator, from light load to saturation.

One replica (the simulator tests' FakeCost, max_num_seqs 8 so that the admission queue matters) serves Poisson
arrivals at utilisations chosen before running: 0.3, 0.6, 0.8, 0.9, 0.95 of the estimator's own capacity. The
simulated p95 is the mean over 3 seeds of 3000 requests, the first 10% cut as warm-up. Tolerance: 15% up to
rho 0.8, 20% at 0.9, 30% at 0.95, where the p95 of one seed varies by 15-25% (measured: ratios 0.91-1.01 at 3000
requests, 0.73-0.99 at 6000, mean over seeds). Without the estimator's queueing wait, its p95 at 0.95 is about
half the simulator's, so the test fails."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import FakeCost, OracleJudge, cluster, fake_factory, llama_cascade, plan

from planners.estimator import SATURATED_S, TierLoad, build_replica_model
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload

MAX_NUM_SEQS = 8
N, WARMUP, SEEDS = 3000, 300, range(3)


def _workload(rate_rps: float, seed: int, n: int) -> Workload:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_rps, n))
    inp = rng.integers(50, 600, n).astype(np.int64)
    out = np.minimum(rng.geometric(1 / 100, n), 500).astype(np.int64)
    return Workload("est", arrival, inp, np.stack([out, out], axis=1), np.full((n, 2), 50.0),
                    np.array([str(i) for i in range(n)]), ("a", "b"))


@pytest.fixture(scope="module")
def replica_model():
    sample = _workload(1.0, 99, 3000)  # the planner's sample: same length distributions, other draws
    load = TierLoad(1.0, sample.input_tokens, sample.output_tokens[:, 0], 1.0, ("t",))
    return build_replica_model(FakeCost(), load, max_num_seqs=MAX_NUM_SEQS)


def _simulated(rate_rps: float, seed: int) -> np.ndarray:
    r = simulate(plan((1, 0)), llama_cascade(), cluster(), _workload(rate_rps, seed, N),
                 SimConfig(max_num_seqs=MAX_NUM_SEQS), seed=seed, cost_factory=fake_factory(), judge=OracleJudge())
    assert (r.requests.status == "completed").all()
    return r.requests.latency_s.to_numpy()


@pytest.mark.parametrize("rho,tol", [(0.3, 0.15), (0.6, 0.15), (0.8, 0.15), (0.9, 0.20), (0.95, 0.30)])
def test_estimated_p95_matches_the_simulator_up_to_saturation(replica_model, rho, tol):
    rm = replica_model
    assert rm.b_max == MAX_NUM_SEQS
    sim_p95 = float(np.mean([np.percentile(_simulated(rho * rm.max_rps, s)[WARMUP:], 95) for s in SEEDS]))
    est_p95 = float(rm.p95_at(np.array([rho]))[0])
    assert abs(est_p95 / sim_p95 - 1) <= tol, (rho, est_p95, sim_p95)


def test_past_the_estimated_capacity_the_simulated_queue_grows_without_bound(replica_model):
    """rho = 1.2 of the estimated capacity: the estimator reports saturation, and the simulator agrees that the
    deployment cannot keep up (latency keeps growing through the run instead of settling)."""
    rm = replica_model
    assert rm.p95_at(np.array([1.2]))[0] >= SATURATED_S
    lat = _simulated(1.2 * rm.max_rps, 0)
    first, last = lat[WARMUP:2 * WARMUP].mean(), lat[-WARMUP:].mean()
    assert last > 3 * first, (first, last)
