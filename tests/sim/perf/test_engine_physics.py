"""Issue 18 physics terms, each against a case worked by hand from the formula's inputs (model dims, link numbers,
engine fields): EP all-to-all, DP attention, CUDA graphs on/off, PCIe against NVLink all-reduce, MTP."""
from __future__ import annotations

from dataclasses import replace

import pytest

from sim.common.errors import ConfigError
from sim.perf.cost_model import build_replica_cost, expected_tokens_per_step
from sim.perf.engine import load_engine
from sim.perf.kernels import AllReduceParams, allreduce_coefficients, ring_allreduce_time_s
from sim.perf.params import load_params
from sim.spec.hardware import GPUSpec, load_gpu
from sim.spec.models import load_model

H200 = load_gpu("h200_sxm")
DSV3 = load_model("deepseek_v3")
LLAMA8 = load_model("llama31_8b")


def test_pcie_ring_pays_the_pcie_hop_latency_on_every_ring_step():
    # Same bandwidth, only the per-hop latency differs: TP2 has 2(n-1) = 2 ring steps per all-reduce, 2L + 1
    # all-reduces (two per layer, one after the vocab-parallel embedding), and one all-gather of the logits
    # (n - 1 = 1 step). Difference = (2 * (2L + 1) + 1) * (pcie_hop - fitted_nvlink_hop).
    nvlink = GPUSpec("x_nvlink", 80.0, 312.0, 624.0, 2000.0, 25.0, 2.5)
    pcie = replace(nvlink, name="x_pcie", nvlink_latency_us=12.5, interconnect="pcie")
    eng = load_engine("vllm_0_2")
    t_nv = build_replica_cost(LLAMA8, nvlink, 2, 1, engine=eng).decode_time_s(1, 100)
    t_pc = build_replica_cost(LLAMA8, pcie, 2, 1, engine=eng).decode_time_s(1, 100)
    hop_fit = load_params("x_nvlink").allreduce.step_latency_s  # the H100 fit every GPU borrows
    steps = 2 * (2 * 32 + 1) + 1
    assert t_pc - t_nv == pytest.approx(steps * (12.5e-6 - hop_fit), rel=1e-6)


def test_custom_allreduce_replaces_nccl_latency_and_ring_steps_over_nvlink_only():
    # NCCL: base + 2(n-1) hops per all-reduce, base + (n-1) hops per all-gather; custom: one kernel latency each.
    eng = replace(load_engine("vllm_0_2"), allreduce_nvlink_base_us=24.0, allreduce_custom_base_us=6.0)
    custom = replace(eng, allreduce_algorithm="custom")
    gpu = load_gpu("a100_80gb")
    n, layers = 4, 32
    hop = load_params(gpu.name).allreduce.step_latency_s
    t_nccl = build_replica_cost(LLAMA8, gpu, n, 1, engine=eng).decode_time_s(1, 100)
    t_custom = build_replica_cost(LLAMA8, gpu, n, 1, engine=custom).decode_time_s(1, 100)
    by_hand = (2 * layers + 1) * (24e-6 + 2 * (n - 1) * hop - 6e-6) + (24e-6 + (n - 1) * hop - 6e-6)
    assert t_nccl - t_custom == pytest.approx(by_hand, rel=1e-6)
    # On a PCIe-only GPU the custom kernel is not used: both profiles give the same time.
    pcie = replace(gpu, name="a100_pcie_test", interconnect="pcie")
    assert (build_replica_cost(LLAMA8, pcie, n, 1, engine=eng).decode_time_s(1, 100)
            == build_replica_cost(LLAMA8, pcie, n, 1, engine=custom).decode_time_s(1, 100))


def test_graphs_off_step_is_the_host_launch_time_when_it_exceeds_the_gpu_work():
    # Eager per-layer host time far above the GPU work: a decode step costs CPU + sum over layers of the eager
    # overhead (dense layers and MoE/MLA layers at their own rates) + the context-linear decode attention.
    eng = replace(load_engine("sglang"), layer_overhead_eager_us=400.0, layer_overhead_eager_moe_us=1500.0,
                  layer_overhead_tp_exponent=0.5, eager_host_overlaps_gpu=True)
    on = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    off = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, cuda_graph_max_seqs=0))
    batch, ctx = 8, 1000
    # DeepSeek-V3: first 3 layers dense (their eager gap grows with TP^0.5), 58 MoE layers (host launch time per
    # layer, the same at any TP: ranks launch in parallel).
    host = 3 * 400e-6 * 8 ** 0.5 + 58 * 1500e-6
    expected = eng.cpu_time_s(batch, 8) + host + off.ctx_rate_s * batch * ctx
    assert off.decode_time_s(batch, ctx) == pytest.approx(expected, rel=1e-9)
    # With graphs the gaps are the graph per-layer gaps: 61 layers x 18 us, far below.
    assert on.decode_time_s(batch, ctx) < 0.5 * off.decode_time_s(batch, ctx)


def test_graphs_off_host_time_adds_to_the_gpu_work_where_the_host_does_not_run_ahead():
    # eager_host_overlaps_gpu false (SGLang, TensorRT-LLM's PyTorch backend): an eager step costs its GPU work (the
    # graph step's kernels and per-layer gaps, the CPU share being the same) plus the eager host time of the MoE/MLA
    # layers, by hand 58 x 1,500 us, however long the GPU work is; the 3 dense layers' eager launches (3 x 40 us x
    # 8^0.5 = 0.34 ms) still run ahead of the GPU work (~30 ms here) and add nothing.
    eng = replace(load_engine("sglang"), layer_overhead_eager_us=40.0, layer_overhead_eager_moe_us=1500.0,
                  layer_overhead_tp_exponent=0.5, eager_host_overlaps_gpu=False)
    on = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    off = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, cuda_graph_max_seqs=0))
    host = 58 * 1500e-6
    for batch, ctx in ((8, 1000), (128, 4000)):
        assert off.decode_time_s(batch, ctx) - on.decode_time_s(batch, ctx) == pytest.approx(host, rel=1e-9)
    # A prefill (never graph-replayed) pays it too: 8k tokens cost GPU + host, not the larger of the two. A dense
    # model has no MoE/MLA layers: its eager launches stay hidden under the GPU work whatever the field says.
    overlapped = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, eager_host_overlaps_gpu=True))
    assert off.prefill_time_s(8192) - overlapped.prefill_time_s(8192) == pytest.approx(host, rel=1e-9)
    dense_off = build_replica_cost(LLAMA8, H200, 1, 1, engine=replace(eng, cuda_graph_max_seqs=0))
    dense_max = build_replica_cost(LLAMA8, H200, 1, 1, engine=replace(eng, cuda_graph_max_seqs=0,
                                                                        eager_host_overlaps_gpu=True))
    assert dense_off.prefill_time_s(4096) == dense_max.prefill_time_s(4096)


def test_dp_attention_replays_cuda_graphs_per_rank_batch():
    # SGLang's cuda-graph-max-bs and TensorRT-LLM's cuda_graph_config.max_batch_size bound each DP rank's batch:
    # with DP attention on TP8 and a 128 limit, 1,024 sequences (128 per rank) replay graphs, 1,025 do not.
    eng = replace(load_engine("sglang"), cuda_graph_max_seqs=128)
    dp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng, dp_attention=True)
    tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    from sim.perf.batch import BatchShape
    assert dp._graph(BatchShape(decode_seqs=1024)) and not dp._graph(BatchShape(decode_seqs=1025))
    assert tp._graph(BatchShape(decode_seqs=128)) and not tp._graph(BatchShape(decode_seqs=129))


def test_ep_all_to_all_costs_two_calls_and_the_fp8_out_bf16_back_bytes_per_layer():
    # 58 MoE layers; per layer dispatch + combine: 2 x base latency, and each of a rank's T/dp tokens sends
    # k (EP-1)/EP copies of its hidden state out in FP8 (+ a 4-byte scale per 128) and back in BF16.
    eng = load_engine("sglang")
    a = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, a2a_nvlink_base_us=30.0,
                                                                    a2a_nvlink_bw_eff=0.5), ep=8, dp_attention=True)
    b = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, a2a_nvlink_base_us=50.0,
                                                                    a2a_nvlink_bw_eff=0.25), ep=8, dp_attention=True)
    tokens = 64
    h, k, ep, dp, layers, link = 7168, 8, 8, 8, 58, 400e9
    bytes_per_rank = tokens / dp * k * (ep - 1) / ep * h * (1 + 4 / 128 + 2)
    by_hand = layers * (2 * (50e-6 - 30e-6) + bytes_per_rank * (1 / (link * 0.25) - 1 / (link * 0.5)))
    assert b.decode_time_s(tokens, 500) - a.decode_time_s(tokens, 500) == pytest.approx(by_hand, rel=1e-6)
    # Without DP attention the tokens are already on every rank: no all-to-all, so the link numbers do not matter.
    a_tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, a2a_nvlink_base_us=30.0), ep=8)
    b_tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, a2a_nvlink_base_us=50.0), ep=8)
    assert a_tp.decode_time_s(tokens, 500) == b_tp.decode_time_s(tokens, 500)


def test_dp_attention_reads_each_rank_own_sequences_latent_and_multiplies_kv_room():
    # MLA latent per token per layer: (kv_lora_rank + rope dim) x 2 bytes, replicated on every TP rank. Decode
    # attention per context token and layer: TP8 reads the whole latent for 16 heads; DP8 reads it for 128 heads on
    # 1/8 of the sequences. Each is max(bytes / (HBM x eff), flops / (BF16 peak x eff)).
    eng = load_engine("sglang")
    tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", "bf16", engine=eng)
    dp = build_replica_cost(DSV3, H200, 8, 1, "fp8", "bf16", engine=eng, dp_attention=True)
    latent = (512 + 64) * 2.0
    hbm, peak = 4800e9 * eng.attn_decode_mem_eff, 989.4e12 * eng.attn_prefill_eff

    def per_ctx(heads: int) -> float:
        return max(latent / hbm, 2.0 * heads * (2 * 512 + 64) / peak)

    assert tp.ctx_rate_s == pytest.approx(61 * per_ctx(16), rel=1e-9)
    assert dp.ctx_rate_s == pytest.approx(61 * per_ctx(128) / 8, rel=1e-9)
    # Attention weights are replicated on the 8 ranks instead of split: +7/8 of them per GPU (FP8: 1 byte each).
    assert dp.weight_bytes_per_gpu - tp.weight_bytes_per_gpu == pytest.approx(61 * DSV3.attn_params * 7 / 8, rel=1e-9)
    # Each rank stores only its own sequences' latent, so the replica holds ~8x the tokens (less the extra weights).
    assert 6 * tp.kv_capacity_tokens < dp.kv_capacity_tokens < 8 * tp.kv_capacity_tokens


def test_mtp_time_per_token_is_verify_plus_draft_over_expected_accepted_tokens():
    # k = 2 drafts, acceptance 0.8: 1 + 0.8 + 0.64 = 2.44 tokens per step. A step verifies 3 tokens per sequence
    # (each reading its context) and runs 2 draft passes of one extra layer (2/61 of a 1-token step).
    eng = replace(load_engine("sglang"), mtp_acceptance=0.8)
    assert expected_tokens_per_step(2, 0.8) == pytest.approx(2.44)
    base = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    mtp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng, mtp_draft_tokens=2)
    batch, ctx = 16, 2000
    a3, b = base.decode_affine(batch * 3)
    a1, _ = base.decode_affine(batch)
    by_hand = (a3 + b * batch * ctx * 3 + 2 / 61 * (a1 + b * batch * ctx)) / 2.44
    assert mtp.decode_time_s(batch, ctx) == pytest.approx(by_hand, rel=1e-9)
    assert mtp.decode_time_s(batch, ctx) < base.decode_time_s(batch, ctx)


def test_deployment_options_are_checked():
    with pytest.raises(ConfigError, match="divisor of TP"):
        build_replica_cost(DSV3, H200, 8, 1, "fp8", ep=3)
    with pytest.raises(ConfigError, match="no experts"):
        build_replica_cost(LLAMA8, H200, 2, 1, ep=2)
    with pytest.raises(ConfigError, match="mtp_draft_tokens"):
        build_replica_cost(DSV3, H200, 8, 1, "fp8", mtp_draft_tokens=-1)


def test_tier_options_reach_the_simulator_and_the_planner_estimator_alike():
    from sim.perf.cost_model import replica_cost_for
    from sim.spec.cascade import cascade_from_dict
    from sim.spec.hardware import load_cluster
    from sim.spec.plan import ReplicaPlan

    spec = cascade_from_dict({"name": "t", "tiers": [
        {"model": "llama31_8b"}, {"model": "deepseek_v3", "weights": "fp8", "ep": "tp", "dp_attention": True,
                                  "mtp_draft_tokens": 1}]})
    tier = spec.tiers[1]
    cluster = replace(load_cluster(), gpu=H200)  # DeepSeek-V3 in FP8 needs 141 GB GPUs on one node
    replica = ReplicaPlan(tp=8, pp=1, gpus=tuple((0, g) for g in range(8)))
    sim_cost = replica_cost_for(tier, replica, cluster, engine="sglang")
    direct = build_replica_cost(DSV3, cluster.gpu, 8, 1, "fp8", engine="sglang", ep=8, dp_attention=True,
                                mtp_draft_tokens=1)
    assert (sim_cost.ep, sim_cost.dp_attention, sim_cost.mtp_draft_tokens) == (8, True, 1)
    assert sim_cost.decode_time_s(32, 1000) == direct.decode_time_s(32, 1000)
    assert spec.tiers[0].deployment(2) == {}  # dense tiers keep plain TP
    with pytest.raises(ConfigError, match="ep must be"):
        cascade_from_dict({"name": "t", "tiers": [{"model": "llama31_8b"}, {"model": "deepseek_v3", "ep": 0}]})


def test_overlap_scheduler_off_exposes_the_whole_cpu_time():
    # SGLang's profile carries the CPU tail left exposed by its overlap scheduler (0.25 ms + 0.010 ms per sequence +
    # 0.11 ms x log2 TP), a quarter of the whole; with the overlap off the whole of it is serial with the GPU. By
    # hand at 100 sequences on TP8: exposed 0.25 + 1.0 + 0.33 = 1.58 ms, whole 4 x 1.58 = 6.32 ms, so a decode step
    # (plain TP, no DP attention) costs 4.74 ms more and nothing else changes.
    eng = load_engine("sglang")
    assert (eng.cpu_base_ms, eng.cpu_per_seq_ms, eng.cpu_per_log2_tp_ms, eng.cpu_scale_without_overlap) == \
        (0.25, 0.010, 0.11, 4.0)
    off = eng.without_overlap_scheduler()
    assert off.cpu_time_s(100, 8) == pytest.approx(6.32e-3, rel=1e-9)
    assert eng.cpu_time_s(100, 8) == pytest.approx(1.58e-3, rel=1e-9)
    on_cost = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    off_cost = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=off)
    assert off_cost.decode_time_s(100, 1500) - on_cost.decode_time_s(100, 1500) == pytest.approx(4.74e-3, rel=1e-9)
    # An engine without an overlap scheduler (scale 1) is unchanged; a scale below 1 would hide CPU time.
    vllm = load_engine("vllm")
    assert vllm.without_overlap_scheduler().cpu_time_s(100, 8) == vllm.cpu_time_s(100, 8)
    with pytest.raises(ConfigError, match="cpu_scale_without_overlap"):
        replace(eng, cpu_scale_without_overlap=0.5)


def test_dp_attention_ranks_schedule_their_own_sequences_in_parallel():
    # With DP attention each of the 8 ranks runs its own scheduler on its own sequences: a 100-sequence step's
    # per-sequence CPU work is the busiest rank's ceil(100 / 8) = 13 sequences. By hand with the exposed SGLang
    # profile (0.010 ms per sequence): 0.010 x (100 - 13) = 0.87 ms less CPU than one scheduler for all 100; the
    # base and per-log2-TP parts are paid once per step either way.
    eng = load_engine("sglang")
    dp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng, dp_attention=True)
    from sim.perf.batch import BatchShape
    one = BatchShape(decode_seqs=100, decode_ctx_tokens=150_000)
    assert dp._cpu_seqs(one) == 13
    whole = replace(dp, dp_attention=False)  # same stages, one scheduler for every sequence
    assert whole.iteration_time_s(one) - dp.iteration_time_s(one) == pytest.approx(0.87e-3, rel=1e-9)
    tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    assert tp._cpu_seqs(one) == 100


def test_dp_attention_prefill_of_one_sequence_runs_on_one_rank():
    # DP attention on TP8 (DeepSeek-V3, FP8, H200): a prompt is whole on one rank, so one 1,024-token prefill costs
    # the busiest rank 7/8 of a single rank's attention work more than the even 1/8 split. By hand, per query-key
    # pair on one rank: 61 layers x 2 x 128 heads x (128 + 64 + 128) FLOPs / (989.4 TFLOPS x attn_prefill_eff 0.5);
    # per prompt token: the attention projections' 2 x 187.1 M FLOPs per layer at the FP8 GEMM rate
    # (1,978.9 TFLOPS x 0.75), plus attention elementwise traffic (less than a third more).
    from sim.perf.batch import BatchShape
    eng = load_engine("sglang")
    dp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng, dp_attention=True)
    balanced = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=replace(eng, dp_prefill_balanced=True),
                                  dp_attention=True)
    pair_s = 61 * 2 * 128 * (128 + 64 + 128) / (989.4e12 * 0.5)
    gemm_token_s = 61 * 2 * 187_107_328 / (1978.9e12 * 0.75)
    pairs = 1024 * 1025 / 2

    def prefill(n_seqs, tokens, pair_count):
        return BatchShape(prefill_tokens=tokens, prefill_attn_pairs=pair_count, num_prefill_seqs=n_seqs)

    # One more pair costs a whole rank's pair time (1/8 split + 7/8 excess), not 1/8 of it.
    one = prefill(1, 1024, pairs)
    assert (dp.iteration_time_s(prefill(1, 1024, pairs + 1e6)) - dp.iteration_time_s(one)) == pytest.approx(
        1e6 * pair_s, rel=1e-3)
    excess = dp.iteration_time_s(one) - balanced.iteration_time_s(one)
    token_part = excess - 7 / 8 * pairs * pair_s
    assert gemm_token_s <= token_part / (7 / 8 * 1024) <= 1.3 * gemm_token_s
    # Eight equal prompts fill the eight ranks: no excess. Nine: the busiest rank holds two, 2/9 - 1/8 of the work.
    eight = prefill(8, 8 * 1024, 8 * pairs)
    assert dp.iteration_time_s(eight) == balanced.iteration_time_s(eight)
    nine = prefill(9, 9 * 1024, 9 * pairs)
    assert dp.iteration_time_s(nine) - balanced.iteration_time_s(nine) == pytest.approx(
        (2 / 9 - 1 / 8) * 8 / 7 * 9 * excess, rel=1e-9)
    # Plain TP splits every prompt over the ranks' heads: the term does not apply.
    tp = build_replica_cost(DSV3, H200, 8, 1, "fp8", engine=eng)
    assert tp.stages[0].dp_ranks == 1


def test_new_profile_and_hardware_fields_are_checked():
    with pytest.raises(ConfigError, match="allreduce_algorithm"):
        replace(load_engine("vllm"), allreduce_algorithm="ring")
    with pytest.raises(ConfigError, match="expert_imbalance"):
        replace(load_engine("sglang"), expert_imbalance=0.5)
    with pytest.raises(ConfigError, match="mtp_acceptance"):
        replace(load_engine("sglang"), mtp_acceptance=1.5)
    with pytest.raises(ConfigError, match="eager_host_overlaps_gpu"):
        replace(load_engine("sglang"), eager_host_overlaps_gpu="no")
    with pytest.raises(ConfigError, match="dp_prefill_balanced"):
        replace(load_engine("sglang"), dp_prefill_balanced=1)
    with pytest.raises(ConfigError, match="interconnect"):
        replace(H200, interconnect="infiniband")
    assert load_gpu("a100_pcie").interconnect == "pcie" and H200.interconnect == "nvlink"


def test_allreduce_formula_is_the_kernels_one_and_the_cost_model_uses_it():
    # Issue 17/18: the all-reduce is written once, in sim.perf.kernels. By hand, 65 ring all-reduces (two per layer of
    # Llama-3.1-8B's 32, one after the embedding) on 4 ranks: 2(n-1) = 6 steps, each moving 1/4 of the message.
    p = AllReduceParams(bw_eff=0.8, step_latency_s=2e-6, base_latency_s=20e-6)
    fixed, per_token = allreduce_coefficients(4, 4096, 300e9, p, count=65)
    assert fixed == pytest.approx(65 * (20e-6 + 6 * 2e-6))  # 2.08 ms
    assert per_token == pytest.approx(65 * 6 / 4 * 4096 * 2 / (300e9 * 0.8))  # 8.32 us per token
    assert fixed + 100 * per_token == pytest.approx(65 * ring_allreduce_time_s(100 * 4096 * 2, 4, 300e9, p))
    assert allreduce_coefficients(1, 4096, 300e9, p, count=65) == (0.0, 0.0)
    # The cost model's coefficients move by exactly that formula when the engine's NCCL latency and efficiency move.
    gpu = load_gpu("h100_sxm")
    eng = replace(load_engine("vllm_0_2"), allreduce_algorithm="nccl", allreduce_nvlink_base_us=20.0,
                  allreduce_nvlink_bw_eff=0.8)
    slow = replace(eng, allreduce_nvlink_base_us=50.0, allreduce_nvlink_bw_eff=0.5)
    a = build_replica_cost(LLAMA8, gpu, 4, 1, engine=eng).stages[0]
    b = build_replica_cost(LLAMA8, gpu, 4, 1, engine=slow).stages[0]
    bw = gpu.nvlink_bw_gbps * 1e9
    assert b.fixed_s - a.fixed_s == pytest.approx(65 * 30e-6, rel=1e-9)
    assert b.per_token_s - a.per_token_s == pytest.approx(65 * 6 / 4 * 4096 * 2 / bw * (1 / 0.5 - 1 / 0.8), rel=1e-9)
