"""Tiny fakes for planner tests: a roofline cost model and a synthetic workload with correlated tier scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sim.spec.cascade import CascadeSpec, TierSpec
from sim.common.errors import DeploymentDoesNotFit
from sim.spec.hardware import ClusterSpec, load_gpu
from sim.spec.models import load_model
from sim.perf.batch import BatchShape
from sim.workload.types import Workload

from planners.problem import PlanningProblem


@dataclass(frozen=True)
class RooflineCost:
    """Weights and KV streamed from HBM at full bandwidth, prefill at half peak FLOPs, fixed 4 ms overhead."""

    tp: int
    pp: int
    weight_bytes: float
    kv_bytes_per_token: float
    active_params: float
    hbm_bw: float
    flops: float
    kv_capacity_blocks: int
    kv_block_size: int = 16
    overhead_s: float = 0.004

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        a = self.weight_bytes / (self.tp * self.hbm_bw) + self.overhead_s + 2 * self.active_params * decode_seqs / (
            self.tp * self.flops)
        return a, self.kv_bytes_per_token / (self.tp * self.hbm_bw)

    def stage_time_s(self, batch: BatchShape) -> float:
        return self.iteration_time_s(batch) / self.pp

    def iteration_time_s(self, batch: BatchShape) -> float:
        a, b = self.decode_affine(max(batch.decode_seqs, 1))
        compute = 2 * self.active_params * batch.prefill_tokens / (self.tp * self.flops * 0.5)
        return max(a + b * batch.decode_ctx_tokens, compute + self.overhead_s)


def roofline_cost_fn(cluster: ClusterSpec):
    def build(tier: TierSpec, tp: int, pp: int, spans: bool):
        m = tier.model
        weights = m.weight_bytes(tier.weights)
        budget = cluster.gpu.memory_bytes * 0.9 * tp * pp
        if weights > budget * 0.95:
            raise DeploymentDoesNotFit(f"{m.name} does not fit TP{tp}xPP{pp}")
        kv = m.kv_bytes_per_token(tier.kv)
        blocks = int((budget * 0.95 - weights) / kv / 16)
        return RooflineCost(tp, pp, weights, kv, m.active_params, cluster.gpu.hbm_bw_gbps * 1e9,
                            cluster.gpu.bf16_tflops * 1e12, blocks)
    return build


def make_workload(n: int, rate_rps: float, num_tiers: int, seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate_rps, n))
    inp = np.clip(rng.lognormal(6.0, 0.8, n), 16, 4000).astype(np.int64)
    base = rng.lognormal(5.5, 0.7, n)
    out = np.clip(base[:, None] * np.linspace(1.0, 1.3, num_tiers)[None, :], 4, 2000).astype(np.int64)
    difficulty = rng.random(n)
    skill = np.linspace(0.35, 0.85, num_tiers)
    raw = skill[None, :] - difficulty[:, None] + 0.25 * rng.standard_normal((n, num_tiers))
    scores = np.clip(np.round((raw + 0.5) * 9) + 1, 1, 10) * 10.0  # 10 distinct values like Arena's 1-10
    # Prompt texts for the learned router: a noisy hint of the difficulty (right 2 times in 3) and filler words.
    hint = np.where(rng.random(n) < 2 / 3, np.minimum((difficulty * 3).astype(int), 2), rng.integers(0, 3, n))
    words = ("easy", "medium", "hard")
    prompts = {f"q{i}": f"question {i % 17} about topic{i % 5} {words[h]} level" for i, h in enumerate(hint)}
    return Workload("synthetic", arrival, inp, out, scores, np.array([f"q{i}" for i in range(n)]),
                    tuple(f"m{i}" for i in range(num_tiers)), {"prompt_texts": prompts})


MODELS = {2: ("llama3_8b", "llama3_70b"), 3: ("llama3_8b", "llama3_70b", "deepseek_v3"),
          "small3": ("llama3_8b", "codellama_34b", "llama3_70b")}


def make_cascade(num_tiers) -> CascadeSpec:
    weights = {"deepseek_v3": "awq_int4"}
    return CascadeSpec(f"test{num_tiers}", tuple(TierSpec(load_model(m), weights.get(m, "bf16"))
                                                  for m in MODELS[num_tiers]))


def make_cluster(num_nodes: int, gpus_per_node: int = 8) -> ClusterSpec:
    return ClusterSpec(f"h100_{num_nodes}x{gpus_per_node}", load_gpu("h100_sxm"), num_nodes, gpus_per_node, 200.0, 5.0)


def make_problem(num_tiers=2, num_nodes=1, gpus_per_node=8, rate_rps=4.0, q_min=None, n=600, seed=0, **kw):
    cluster = make_cluster(num_nodes, gpus_per_node)
    cascade = make_cascade(num_tiers)
    wl = make_workload(n, rate_rps, cascade.num_tiers, seed)
    if q_min is None:
        z1, z2 = float(wl.scores[:, -1].mean()), float(wl.scores[:, 0].mean())
        q_min = z2 + 0.6 * (z1 - z2)
    return PlanningProblem(cascade, cluster, wl, q_min, cost_fn=roofline_cost_fn(cluster), **kw)


@pytest.fixture(autouse=True)
def _cold_planning_cache():
    """Each planner test starts with an empty process planning cache (planners.plan_cache): a test that counts
    builds, or patches a builder, must not find another test's entries."""
    from planners import plan_cache

    plan_cache.clear()
    yield


@pytest.fixture
def small_problem():
    return make_problem()
