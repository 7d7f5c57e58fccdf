"""Issue 20: an all-reduce whose TP group spans nodes costs NCCL's hierarchical latency (its own tuning model), not a
flat ring that pays the InfiniBand latency on each of its 2 (n - 1) steps."""
from __future__ import annotations

import pytest

from sim.perf.batch import BatchShape
from sim.perf.cost_model import build_replica_cost
from sim.perf.kernels import nccl_internode_allreduce_latency_s
from sim.spec.hardware import ClusterSpec, load_cluster, load_gpu
from sim.spec.models import load_model


@pytest.mark.parametrize("ranks, nodes, expected_us", [
    # Worked by hand from NVIDIA/nccl src/graph/tuning.cc (LL): tree = 6.8 + 2 ((ppn - 1) 0.6 + log2(nodes) 5.0),
    # ring = 6.6 + (2 (n - 1) - 2 (nodes - 1)) max(0.6, 1.0) + 2 (nodes - 1) net; NCCL takes the smaller.
    (16, 2, 25.2),  # tree 6.8 + 2 (4.2 + 5.0) = 25.2; ring 6.6 + 28 + 5.4 = 40.0
    (32, 4, 35.2),  # tree 6.8 + 2 (4.2 + 10.0) = 35.2; ring 6.6 + 56 + 16.2 = 78.8
    (2, 2, 16.6),  # one GPU per node: tree 6.8 + 10.0 = 16.8; ring with the tree's 5.0: 6.6 + 0 + 10.0 = 16.6
    (64, 8, 45.2),  # tree 6.8 + 2 (4.2 + 15.0) = 45.2; ring 6.6 + 112 + 37.8 = 156.4
])
def test_nccl_latency_hand_worked(ranks, nodes, expected_us):
    assert nccl_internode_allreduce_latency_s(ranks, nodes) * 1e6 == pytest.approx(expected_us)


def test_two_node_tp16_decode_pays_nccl_latency_per_all_reduce():
    """A DeepSeek-V3 TP16 decode step over two nodes costs (batch 1, where bytes are negligible) the same step inside
    one (NVLink) node plus, per all-reduce, NCCL's latency minus the NVLink one: 2 per layer + the embedding's."""
    model, gpu, cluster = load_model("deepseek_v3"), load_gpu("h100_sxm"), load_cluster("paper_4x8_h100")
    kw = dict(cluster=cluster, engine="sglang", gpu_memory_utilization=0.9)
    across = build_replica_cost(model, gpu, 16, 1, "fp8", tp_spans_nodes=True, **kw)
    inside = build_replica_cost(model, gpu, 16, 1, "fp8", tp_spans_nodes=False, **kw)
    batch = BatchShape(decode_seqs=1, decode_ctx_tokens=1000)
    n_allreduce = 2 * model.num_layers + 1
    # sglang's NVLink all-reduce is its custom one-shot kernel: allreduce_custom_base_us per call, no hops.
    per_call = nccl_internode_allreduce_latency_s(16, 2) - across.engine.allreduce_custom_base_us * 1e-6
    delta = across.iteration_time_s(batch) - inside.iteration_time_s(batch)
    # The LM head's all-gather pays the NCCL latency too; bytes at batch 1 add well under a microsecond per call.
    assert delta == pytest.approx(n_allreduce * per_call, rel=0.05)
    # The flat ring it replaces charged 30 steps x 5 us + 30 us per call: about 6x this.
    assert delta < 0.3 * n_allreduce * (30 * 5e-6 + 30e-6)


def test_cross_node_all_to_all_runs_at_each_gpus_own_nic_as_deepeps_figures():
    """DeepEP's low-latency kernels at EP16 on H800 + one CX7 400 Gb/s NIC per GPU (data/measurements/
    kernels_h800_deepep_flashmla_deepgemm.csv): 128 tokens per rank, dispatch 173 us + combine 314 us. The model's
    dispatch + combine of one MoE layer for 16 ranks x 128 tokens on nodes of 8 GPUs with 8 x 50 GB/s each:
    2 x 20 us + 2048 tokens x 7.5 remote copies x 7168 x (1.03 + 2) B / 16 ranks / (50 GB/s x 0.9) = 530 us, within
    10 % of the measured 487 us. Charged at the whole node's 400 GB/s instead, it would be 8x faster (~100 us)."""
    model, gpu = load_model("deepseek_v3"), load_gpu("h100_sxm")
    cluster = ClusterSpec("dgx", gpu, 2, 8, ib_bw_gbps=400.0, ib_latency_us=5.0)
    c = build_replica_cost(model, gpu, 16, 1, "fp8", cluster=cluster, engine="sglang", tp_spans_nodes=True,
                           gpu_memory_utilization=0.9, ep=16, dp_attention=True)
    moe = c.stages[0].moe
    per_layer_s = moe.a2a_fixed_s + moe.a2a_s_per_token * 16 * 128
    copies = 8 * 15 / 16
    by_hand = 2 * 20e-6 + 2048 * copies * 7168 * (1 + 4 / 128 + 2) / 16 / (50e9 * 0.9)
    assert per_layer_s == pytest.approx(by_hand, rel=1e-6)
    assert per_layer_s == pytest.approx((173 + 314) * 1e-6, rel=0.10)
