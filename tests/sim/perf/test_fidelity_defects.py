"""Cost-model defects that once inflated latency: no BF16-fitted padding floor on INT4 or per-expert GEMMs; real GPU memory with an engine reserve."""
from __future__ import annotations

import pytest

from sim.spec.hardware import load_gpu
from sim.spec.models import WEIGHT_BYTES, load_model
from sim.perf.cost_model import build_replica_cost, moe_time_s
from sim.perf.kernels import expected_distinct_experts, gemm_time_s
from sim.perf.layers import dense_layer_ops
from sim.perf.params import load_params

H100 = load_gpu("h100_sxm")


def test_awq_decode_gemms_at_batch_1_sit_on_their_weight_bytes_floor():
    # Llama-3-70B at TP8, one token: every linear of a layer streams its INT4 weights once; the tensor-core work
    # of one row is negligible, so kernel time ~ launch + weight bytes / achieved HBM bandwidth.
    p = load_params("h100_sxm").gemm
    hbm = H100.hbm_bw_gbps * 1e9
    gemms, _ = dense_layer_ops(load_model("llama3_70b"), 8)
    for precision, peak in (("awq_int4", H100.bf16_tflops * 1e12), ("bf16", H100.bf16_tflops * 1e12),
                            ("fp8", H100.fp8_tflops * 1e12)):
        wb = WEIGHT_BYTES[precision]
        time = sum(gemm_time_s(1, g.k, g.n, wb, peak, hbm, p, dequant_factor=1.3) for g in gemms)
        floor = sum(p.launch_s + (g.k * g.n * wb + (g.k + g.n) * 2.0) / (hbm * p.mem_eff) for g in gemms)
        assert floor <= time <= 1.05 * floor, precision


def test_awq_decode_is_much_faster_than_bf16_at_batch_1():
    # Kernels only (engine none): INT4 weights are ~3.8x fewer bytes; fixed costs (launches, all-reduces) stay.
    bf16 = build_replica_cost(load_model("llama3_70b"), H100, 8, 1, "bf16", engine="none").decode_time_s(1, 100)
    awq = build_replica_cost(load_model("llama3_70b"), H100, 8, 1, "awq_int4", engine="none").decode_time_s(1, 100)
    assert awq < 0.8 * bf16


@pytest.mark.parametrize("weights", ["bf16", "fp8", "awq_int4"])
def test_moe_layer_time_tracks_the_bytes_of_the_experts_it_touches(weights):
    model = load_model("deepseek_v3")
    cost = build_replica_cost(model, H100, 8, 4, weights, engine="none")
    moe = cost.stages[0].moe
    p = load_params("h100_sxm").gemm
    expert_bytes = 3 * model.hidden_size * (model.moe_intermediate_size / 8) * WEIGHT_BYTES[weights]
    for tokens in (1, 8, 64):
        distinct = expected_distinct_experts(tokens, model.num_routed_experts, model.experts_per_token)
        floor = moe.layers * (moe.launch_s + distinct * expert_bytes / (H100.hbm_bw_gbps * 1e9 * p.mem_eff))
        assert floor <= moe_time_s(moe, tokens, distinct) <= 1.1 * floor, (weights, tokens)


def test_h100_memory_is_what_nvidia_smi_reports():
    assert H100.memory_bytes == pytest.approx(81559 * 2**20, rel=1e-4)  # 81,559 MiB


def test_llama2_70b_tp2_kv_capacity_is_about_30k_tokens():
    # By hand, vllm profile, gpu_memory_utilization 0.9:
    #   usable   = 0.9 x 85.52e9                                            = 76.968e9 B per GPU
    #   weights  = 68.977e9 params x 2 B / 2 GPUs                           = 68.977e9 B
    #   reserve  = 1.5e9 (CUDA context, NCCL, graphs) + 8192 tokens x 2 B x (4 x 8192 + 3 x 28672 / 2) = 2.742e9 B
    #   KV/token = 80 layers x 2 (K, V) x 4 KV heads x 128 x 2 B            = 163,840 B per GPU
    #   capacity = (76.968 - 68.977 - 2.742)e9 / 163,840 = 32,040 tokens -> 2,002 blocks of 16 = 32,032 tokens
    cost = build_replica_cost(load_model("llama2_70b"), H100, 2, 1, "bf16", engine="vllm")
    assert cost.kv_capacity_tokens == pytest.approx(32032, rel=0.01)


def test_llama3_70b_fits_on_tp2():
    cost = build_replica_cost(load_model("llama3_70b"), H100, 2, 1, "bf16", engine="vllm")
    assert cost.kv_capacity_tokens > 10_000


def test_cost_model_gemm_terms_are_the_kernel_formula():
    from sim.perf.cost_model import _gemm_time
    from sim.perf.layers import attention_gemms

    p = load_params("h100_sxm")
    cost = build_replica_cost(load_model("llama3_8b"), H100, 1, 1, "awq_int4", engine="none")
    gemm = attention_gemms(load_model("llama3_8b"), 1)[0]
    for tokens in (1, 37, 300, 5000):
        kernel = gemm_time_s(tokens, gemm.k, gemm.n, WEIGHT_BYTES["awq_int4"], H100.bf16_tflops * 1e12,
                             H100.hbm_bw_gbps * 1e9, p.gemm, dequant_factor=p.awq_compute_factor)
        assert _gemm_time(cost.stages[0].gemms[0], tokens) == pytest.approx(32 * kernel, rel=1e-12)
