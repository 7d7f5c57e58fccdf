"""Issue 18's fourth-pass engine terms, each against a case worked by hand or the source it was fitted on: the
two-node SGLang 0.4.1 rows over NCCL's socket transport, and TensorRT-LLM's context attention fitted on issue #5929."""
from __future__ import annotations

import pytest

from sim.fidelity.corpus import load_corpus


# ---- NCCL over TCP sockets between nodes (sglang_benchmark_dsv3's two-node runs) -------------------------------
def test_socket_transport_rows_are_only_the_sources_two_node_runs():
    from sim.fidelity.corpus import NCCL_SOCKET_GB_S
    rows = [r for r in load_corpus()[0] if r.source in ("sglang_benchmark_dsv3", "community_issues_and_vllm_blog")]
    socket = {(r.source, r.line) for r in rows if r.inter_node_gb_s is not None}
    assert socket == {("sglang_benchmark_dsv3", line) for line in range(10, 18)}  # the TP16 x 2-node lines
    assert all(r.inter_node_gb_s == NCCL_SOCKET_GB_S for r in rows if r.inter_node_gb_s is not None)
    # sglang #3361's two-node TP16 (H800) ran over working InfiniBand: it keeps the pods' 200 GB/s
    assert not [r for r in rows if r.source == "community_issues_and_vllm_blog" and r.inter_node_gb_s is not None]


def test_inter_node_bandwidth_enters_the_tp_all_reduce_as_a_hand_worked_ring():
    from sim.fidelity.serving import bench_cluster
    from sim.perf.batch import BatchShape
    from sim.perf.cost_model import build_replica_cost
    from sim.perf.engine import load_engine
    from sim.spec.hardware import load_gpu
    from sim.spec.models import load_model

    model, gpu, eng = load_model("deepseek_v3"), load_gpu("h200_sxm"), load_engine("sglang")

    def step_s(bw: float, batch: int) -> float:
        cost = build_replica_cost(model, gpu, 16, 1, "fp8", "bf16", engine=eng, tp_spans_nodes=True,
                                  cluster=bench_cluster("h200_sxm", 16, bw))
        return cost.iteration_time_s(BatchShape(decode_seqs=batch, decode_ctx_tokens=batch * 1500))

    # Per extra sequence: 2 all-reduces per layer x 61 layers + the vocab-parallel embedding's = 123 ring
    # all-reduces of one 7,168-wide BF16 row (a ring over 16 ranks moves 2 x 15 / 16 of it through the slowest link),
    # and the LM head's all-gather of 129,280 BF16 logits (15 / 16 of them), at the engine's achieved fraction (0.8)
    # of the link. Socket (2.78 GB/s) minus InfiniBand (200 GB/s), per sequence:
    per_byte_s = 1 / (2.78e9 * 0.8) - 1 / (200e9 * 0.8)
    per_seq_s = (123 * (30 / 16) * 7168 * 2 + (15 / 16) * 129280 * 2) * per_byte_s  # 1.466 + 0.107 ms
    assert per_seq_s == pytest.approx(1.573e-3, rel=1e-3)
    extra = (step_s(2.78, 200) - step_s(2.78, 100)) - (step_s(200.0, 200) - step_s(200.0, 100))
    assert extra == pytest.approx(100 * per_seq_s, rel=1e-6)


# ---- TensorRT-LLM PyTorch backend: context attention fitted on TensorRT-LLM issue #5929 ----------------------------
def test_trtllm_pytorch_prefill_reproduces_the_batch1_ttft_it_was_fitted_on():
    from sim.fidelity.timing import batch_prefill_time_s
    from sim.perf.cost_model import build_replica_cost
    from sim.perf.engine import load_engine
    from sim.spec.hardware import load_gpu
    from sim.spec.models import load_model

    eng = load_engine("trtllm_pytorch")
    assert eng.attn_prefill_eff == 0.235
    model, gpu = load_model("deepseek_r1"), load_gpu("h200_sxm")
    # issue #5929: 8x H200, TP8, batch 1, TTFT p50 (ms) at ISL 1,600 / 8,192; the residuals the yaml states
    for ep, isl, measured_ms, residual in ((4, 1600, 134.36, 0.026), (4, 8192, 370.07, -0.025),
                                           (8, 1600, 124.11, 0.105), (8, 8192, 352.81, 0.015)):
        cost = build_replica_cost(model, gpu, 8, 1, "fp8", "bf16", engine=eng, ep=ep)
        got = batch_prefill_time_s(cost, 1, isl) * 1e3
        assert got / measured_ms - 1 == pytest.approx(residual, abs=0.01)
    # What was fitted is the slope: ~35 ms per 1k tokens between the two lengths at EP8 (measured 34.7)
    cost = build_replica_cost(model, gpu, 8, 1, "fp8", "bf16", engine=eng, ep=8)
    slope = (batch_prefill_time_s(cost, 1, 8192) - batch_prefill_time_s(cost, 1, 1600)) / (8192 - 1600) * 1e6
    assert slope == pytest.approx((352.81 - 124.11) / (8192 - 1600) * 1e3, rel=0.1)
