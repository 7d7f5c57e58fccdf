"""Test doubles for the simulator: a ReplicaCost whose times the test chooses, small workloads and plans."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
from sim.spec.cascade import cascade_from_dict
from sim.spec.hardware import load_cluster
from sim.perf.batch import BatchShape
from sim.workload.prefix import PrefixHashes
from sim.workload.types import Workload


@dataclass
class FakeCost:
    """Iteration time = base + per prefill token + per decode sequence + per decode context token."""

    tp: int = 1
    pp: int = 1
    kv_block_size: int = 16
    kv_capacity_blocks: int = 100_000
    base_s: float = 0.004
    prefill_s_per_token: float = 2e-5
    decode_s_per_seq: float = 1e-4
    ctx_s_per_token: float = 3e-8

    def iteration_time_s(self, b: BatchShape) -> float:
        return (self.base_s + self.prefill_s_per_token * b.prefill_tokens + self.decode_s_per_seq * b.decode_seqs
                + self.ctx_s_per_token * b.decode_ctx_tokens)

    def stage_time_s(self, b: BatchShape) -> float:
        return self.iteration_time_s(b) / self.pp

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        return self.base_s + self.decode_s_per_seq * decode_seqs, self.ctx_s_per_token


def fake_factory(**kw):
    def factory(tier, replica, cluster, engine="vllm"):
        return FakeCost(tp=replica.tp, pp=replica.pp, **kw)

    return factory


class OracleJudge:
    """Gate = real score; fixed latency."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency = latency_s

    def gate_scores(self, scores, tier=0, rng=None):
        return np.asarray(scores, dtype=np.float64).copy()

    def latency_s(self, rng, n=None):
        return np.full(n, self.latency)


def llama_cascade():
    return cascade_from_dict({"name": "llama3", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b"}]})


# Tiers whose context windows differ (4096 then 8192 tokens), to exercise sim.context_policy.
CONTEXT_MODELS = ("llama2_7b", "llama3_70b")


def context_cascade():
    return cascade_from_dict({"name": "ctx", "tiers": [{"model": m} for m in CONTEXT_MODELS]})


def unlimited_context(cascade):
    """The cascade with every model's max_context lifted, for oracles whose drawn prompt lengths are service times."""
    return replace(cascade, tiers=tuple(replace(t, model=replace(t.model, max_context=2**62)) for t in cascade.tiers))


def cluster():
    return load_cluster("paper_4x8_h100")


def plan(replicas_per_tier=(2, 1), thresholds=(50.0,), tp=(1, 1), pp=(1, 1), routing="cascade", error=0.0,
         models=("llama3_8b", "llama3_70b")) -> CascadePlan:
    tiers, g = [], 0
    for t, nrep in enumerate(replicas_per_tier):
        reps = []
        for _ in range(nrep):
            k = tp[t] * pp[t]
            gpus = tuple((x // 8, x % 8) for x in range(g, g + k))
            g += k
            reps.append(ReplicaPlan(tp[t], pp[t], gpus))
        tiers.append(TierPlan(models[t], tuple(reps)))
    return CascadePlan("test", tuple(tiers), tuple(thresholds), routing=routing, router_error_rate=error)


def poisson_workload(n: int, rate: float, seed: int, tiers: int = 2, mean_in: int = 300, mean_out: int = 120,
                     max_out: int = 600) -> Workload:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    inp = rng.integers(8, 2 * mean_in, n)
    out = np.minimum(rng.geometric(1 / mean_out, (n, tiers)), max_out)
    scores = rng.uniform(0, 100, (n, tiers))
    return Workload("synthetic", arrival, inp.astype(np.int64), out.astype(np.int64), scores,
                    np.array([f"q{i}" for i in range(n)]), tuple(f"m{t}" for t in range(tiers)))


def shared_prefixes(w, groups: int = 4, shared_blocks: int = 12):
    """The workload with KV block hash ids: request i shares its first blocks with every request of its group."""
    ids, nxt = [], 10_000
    for i, tokens in enumerate(w.input_tokens.tolist()):
        n = tokens // 16
        shared = [1000 * (i % groups) + j for j in range(min(n, shared_blocks))]
        ids.append(tuple(shared + list(range(nxt, nxt + n - len(shared)))))
        nxt += n
    return replace(w, prefix=PrefixHashes(16, tuple(ids)))
