"""Analytic oracles (queueing theory): a replica with batch size 1 is a single-server FCFS queue."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload, unlimited_context

from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload

# Service = one prefill iteration of input_tokens x 1e-4 s (output_tokens = 1, max_num_seqs = 1), so the
# replica is exactly one FCFS server whose service time the test draws.
SINGLE_SERVER = SimConfig(max_num_seqs=1, kv_watermark=0.0)
S_PER_TOKEN = 1e-4


def _single_server_workload(n: int, lam: float, service_s: np.ndarray, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / lam, n))
    tokens = np.maximum(np.rint(service_s / S_PER_TOKEN), 1).astype(np.int64)
    ones = np.ones((n, 2), dtype=np.int64)
    return Workload("mm1", arrival, tokens, ones, np.full((n, 2), 50.0), np.array([str(i) for i in range(n)]),
                    ("a", "b"))


def _mean_sojourn(service_draw, lam: float, seeds, n: int = 12_000, warmup: int = 1_000) -> float:
    means = []
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        w = _single_server_workload(n, lam, service_draw(rng, n), seed)
        # Tier 1 has no replicas, so tier 0 is the last live tier and answers every request (no judge).
        # The drawn service times' tail means prompts past the models' 8192 tokens: lift the context limit.
        r = simulate(plan((1, 0)), unlimited_context(llama_cascade()), cluster(), w, SINGLE_SERVER, seed=seed,
                     cost_factory=fake_factory(base_s=0.0, prefill_s_per_token=S_PER_TOKEN,
                                               kv_capacity_blocks=10_000_000),
                     judge=OracleJudge())
        assert (r.requests.status == "completed").all()
        means.append(r.requests.latency_s.to_numpy()[warmup:].mean())
    return float(np.mean(means))


def test_mm1_mean_sojourn_matches_1_over_mu_minus_lambda():
    lam, mu = 0.5, 1.0
    w = _mean_sojourn(lambda rng, n: rng.exponential(1.0 / mu, n), lam, seeds=range(4))
    expected = 1.0 / (mu - lam)
    assert abs(w - expected) / expected < 0.05, (w, expected)


def test_md1_mean_sojourn_matches_pollaczek_khinchine():
    lam, service = 0.6, 1.0
    w = _mean_sojourn(lambda rng, n: np.full(n, service), lam, seeds=range(3))
    rho = lam * service
    expected = service + rho * service / (2 * (1 - rho))  # P-K: W = 1/mu + rho / (2 mu (1 - rho))
    assert abs(w - expected) / expected < 0.05, (w, expected)


@pytest.mark.parametrize("batching", ["vllm", "sarathi"])
def test_littles_law_on_a_whole_cascade(batching):
    w = poisson_workload(1500, 25.0, seed=3)
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(batching=batching), seed=3,
                 cost_factory=fake_factory(), judge=OracleJudge(0.27))
    df = r.requests
    assert (df.status == "completed").all()
    horizon = r.meta["end_s"]
    lam = len(df) / horizon
    # L is integrated by the flow from arrival/departure counts, independently of the per-request records. W is
    # not the recorded latency (L = lam W on that is an accounting identity that holds whatever the latency
    # misses) but its parts: time at each tier plus the judge's latency after tier 0, so a judge whose latency is
    # recorded but never waited for breaks the law.
    L = r.meta["mean_in_system"]
    parts = sum((df[f"queue_s_t{t}"] + df[f"prefill_s_t{t}"] + df[f"decode_s_t{t}"]).fillna(0.0) for t in (0, 1))
    parts = parts + df.judge_s_t0.fillna(0.0)
    assert (df.judge_s_t0 == 0.27).all()
    assert L == pytest.approx(lam * parts.mean(), rel=1e-9)
    assert 1.0 < L  # the cascade actually queues (the check is not vacuous)


def _erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a = lambda / mu (< c)."""
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (s + top)


def test_mmc_mean_sojourn_matches_erlang_c():
    """M/M/c: one engine with max_num_seqs = c is c servers with one FCFS queue when an iteration costs a fixed
    dt whatever the batch (Sarathi: a newcomer's prefill rides along with the decodes, so nobody stalls) and a
    request's service is its output tokens x dt, geometric with mean 1/mu (exponential up to the dt grid).
    W = C(c, a) / (c mu - lambda) + 1/mu; at c = 4, rho = 0.75 the wait is a third of W, so dropping it (or the
    queue) fails. Seeded replications, 10% warm-up cut, 5% tolerance (3 x 8000 requests: seed spread about 5%)."""
    c, lam, mu, dt, n = 4, 3.0, 1.0, 0.02, 8000
    means = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        arrival = np.cumsum(rng.exponential(1 / lam, n))
        out = rng.geometric(dt * mu, n).astype(np.int64)
        w = Workload("mmc", arrival, np.full(n, 16, dtype=np.int64), np.stack([out, out], axis=1),
                     np.full((n, 2), 50.0), np.array([str(i) for i in range(n)]), ("a", "b"))
        r = simulate(plan((1, 0)), llama_cascade(), cluster(), w,
                     SimConfig(batching="sarathi", max_num_seqs=c, chunk_tokens=512, kv_watermark=0.0), seed=seed,
                     cost_factory=fake_factory(base_s=dt, prefill_s_per_token=0.0, decode_s_per_seq=0.0,
                                               ctx_s_per_token=0.0, kv_capacity_blocks=10_000_000),
                     judge=OracleJudge())
        assert (r.requests.status == "completed").all()
        means.append(r.requests.latency_s.to_numpy()[n // 10:].mean())
    expected = _erlang_c(c, lam / mu) / (c * mu - lam) + 1 / mu
    assert abs(np.mean(means) - expected) / expected < 0.05, (means, expected)
