"""Cost-model invariants: monotone in tokens and context, exact decode_affine, TP trade-offs, MoE, memory fit."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.spec.plan import ReplicaPlan
from sim.spec.cascade import TierSpec
from sim.common.errors import ConfigError, DeploymentDoesNotFit
from sim.spec.hardware import load_cluster, load_gpu
from sim.spec.models import load_model
from sim.perf.batch import BatchShape
from sim.fidelity.calibrate import predict_gemm_s
from sim.perf.cost_model import build_replica_cost, moe_time_s, replica_cost_for
from sim.perf.kernels import expected_distinct_experts, gemm_time_s
from sim.perf.params import load_params

H100 = load_gpu("h100_sxm")
CLUSTER = load_cluster("paper_4x8_h100")


def cost(name, tp=1, pp=1, weights="bf16", engine="vllm", **kw):
    return build_replica_cost(load_model(name), H100, tp, pp, weights, cluster=CLUSTER, engine=engine, **kw)


# Deployments covering dense GQA (TP, PP), quantised weights, and MoE/MLA across nodes.
DEPLOYMENTS = [("llama3_8b", 1, 1, "bf16"), ("llama3_70b", 4, 1, "bf16"), ("llama3_70b", 8, 1, "fp8"),
               ("llama3_70b", 2, 2, "bf16"), ("deepseek_r1_distill_qwen_7b", 2, 1, "awq_int4"),
               ("deepseek_v3", 8, 2, "fp8")]


def prefill(tokens, ctx_before=0):
    return BatchShape(prefill_tokens=tokens, prefill_attn_pairs=tokens * (ctx_before + (tokens + 1) / 2),
                      num_prefill_seqs=1)


@pytest.mark.parametrize("dep", DEPLOYMENTS)
@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 16384), extra=st.integers(1, 4096), decode=st.integers(0, 512))
def test_more_tokens_never_take_less_time(dep, t, extra, decode):
    c = cost(*dep, pp_spans_nodes=dep[0] == "deepseek_v3")
    small = BatchShape(prefill_tokens=t, prefill_attn_pairs=t * (t + 1) / 2, num_prefill_seqs=1,
                       decode_seqs=decode, decode_ctx_tokens=decode * 100)
    big = BatchShape(prefill_tokens=t + extra, prefill_attn_pairs=(t + extra) * (t + extra + 1) / 2,
                     num_prefill_seqs=1, decode_seqs=decode, decode_ctx_tokens=decode * 100)
    assert c.iteration_time_s(big) >= c.iteration_time_s(small)
    assert c.stage_time_s(big) >= c.stage_time_s(small)


@pytest.mark.parametrize("dep", DEPLOYMENTS)
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 1024))
def test_more_decode_sequences_never_take_less_time(dep, b):
    c = cost(*dep, pp_spans_nodes=dep[0] == "deepseek_v3")
    assert (c.iteration_time_s(BatchShape(decode_seqs=b + 1, decode_ctx_tokens=(b + 1) * 500))
            >= c.iteration_time_s(BatchShape(decode_seqs=b, decode_ctx_tokens=b * 500)))


@pytest.mark.parametrize("dep", DEPLOYMENTS)
def test_decode_time_grows_with_context(dep):
    c = cost(*dep, pp_spans_nodes=dep[0] == "deepseek_v3")
    times = [c.decode_time_s(16, ctx) for ctx in (128, 1024, 8192, 32768)]
    assert all(b > a for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("dep", DEPLOYMENTS)
@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 2048), s=st.integers(0, 10_000_000))
def test_decode_affine_is_exact(dep, b, s):
    c = cost(*dep, pp_spans_nodes=dep[0] == "deepseek_v3")
    a, slope = c.decode_affine(b)
    assert a + slope * s == c.iteration_time_s(BatchShape(decode_seqs=b, decode_ctx_tokens=s))


def test_prefill_keeps_growing_beyond_profiled_range():
    c = cost("llama3_70b", 4)
    t4k, t8k, t16k = (c.iteration_time_s(prefill(n)) for n in (4096, 8192, 16384))
    assert t8k > 1.8 * t4k and t16k > 1.8 * t8k  # compute-bound: ~linear GEMMs plus quadratic attention


def test_tp_lowers_compute_per_gpu_and_adds_communication():
    big = prefill(4096)
    t1, t2, t8 = (cost("llama3_8b", tp, engine="none").iteration_time_s(big) for tp in (1, 2, 8))
    assert t2 < t1 and t8 < t2
    assert t2 > t1 / 2 and t8 > t1 / 8  # all-reduces and smaller, less efficient GEMMs
    # The communication is real: the same TP group across nodes (InfiniBand) is slower than inside one.
    inside = cost("llama3_8b", 2, engine="none").iteration_time_s(big)
    across = cost("llama3_8b", 2, engine="none", tp_spans_nodes=True).iteration_time_s(big)
    assert across > inside * 1.05


def test_decode_at_tp8_is_dominated_by_fixed_costs():
    c = cost("llama3_70b", 8)
    step = c.decode_time_s(1, 512)
    weight_streaming = c.weight_bytes_per_gpu / (H100.hbm_bw_gbps * 1e9)
    assert weight_streaming < 0.5 * step
    assert 0.010 < step < 0.030  # public ballpark for vLLM on H100: ~15-25 ms per token


def test_engine_profile_changes_fixed_costs_only():
    b = BatchShape(decode_seqs=8, decode_ctx_tokens=8 * 1000)
    none, sglang, vllm = (cost("llama3_8b", engine=e).iteration_time_s(b) for e in ("none", "sglang", "vllm"))
    assert none < sglang < vllm
    with pytest.raises(ConfigError, match="unknown engine 'tgi'"):
        cost("llama3_8b", engine="tgi")


def test_moe_costs_more_as_it_touches_more_experts():
    c = cost("deepseek_v3", 8, 2, "fp8", pp_spans_nodes=True)
    moe = c.stages[0].moe
    assert moe is not None
    times = [moe_time_s(moe, 64, d) for d in (8, 64, 256)]
    assert times[0] < times[1] < times[2]
    d = [expected_distinct_experts(t, 256, 8) for t in (1, 8, 64, 512)]
    assert d[0] == pytest.approx(8) and all(b > a for a, b in zip(d, d[1:])) and d[-1] < 256
    # Decode batch 64 touches ~225 experts instead of 8: much dearer per step than for a dense model.
    moe_ratio = c.decode_time_s(64, 1000) / c.decode_time_s(1, 1000)
    dense = cost("llama3_70b", 8, 1, "fp8")
    dense_ratio = dense.decode_time_s(64, 1000) / dense.decode_time_s(1, 1000)
    assert moe_ratio > dense_ratio + 0.3


def test_precisions():
    bf16, fp8, awq = (cost("llama3_70b", 4, 1, w) for w in ("bf16", "fp8", "awq_int4"))
    assert fp8.weight_bytes_per_gpu < bf16.weight_bytes_per_gpu and awq.weight_bytes_per_gpu < fp8.weight_bytes_per_gpu
    assert awq.kv_capacity_blocks > fp8.kv_capacity_blocks > bf16.kv_capacity_blocks
    big = prefill(4096)
    assert fp8.iteration_time_s(big) < bf16.iteration_time_s(big) < awq.iteration_time_s(big)  # AWQ dequantises
    assert awq.decode_time_s(1, 512) < bf16.decode_time_s(1, 512)  # but streams 4x fewer weight bytes


def test_deployment_that_does_not_fit_errors_clearly():
    with pytest.raises(DeploymentDoesNotFit) as err:
        cost("llama3_70b", 1)
    msg = str(err.value)
    assert msg.startswith("llama3_70b in bf16 on TP1 x PP1 needs ") and "GB missing" in msg and "\n" not in msg
    missing = float(msg.split("(")[-1].split(" GB missing")[0])
    # weights + reserve (1.5 GB base + ~2 GB activations of 8192 tokens) - 0.9 x 85.52 GB (81,559 MiB)
    assert missing == pytest.approx(141.1 + 3.5 - 0.9 * 85.52, abs=1.0)
    with pytest.raises(DeploymentDoesNotFit, match=r"deepseek_v3 in fp8 on TP8 x PP1 .* GB missing"):
        cost("deepseek_v3", 8, 1, "fp8")
    with pytest.raises(ConfigError, match="TP3 must divide num_heads"):
        cost("llama3_8b", 3)
    with pytest.raises(ConfigError, match="needs the cluster"):
        build_replica_cost(load_model("llama3_8b"), H100, 2, 1, tp_spans_nodes=True)


def test_kv_capacity_from_free_memory():
    c = cost("llama3_8b", 1)
    free = 0.9 * H100.memory_bytes - c.weight_bytes_per_gpu - c.reserve_bytes_per_gpu
    assert c.kv_capacity_blocks == int(free // (131072 * 16))
    assert c.kv_capacity_tokens == c.kv_capacity_blocks * 16 and c.kv_block_size == 16


def test_construction_is_cached_and_replica_plan_placement_is_read():
    assert cost("llama3_8b", 2) is cost("llama3_8b", 2)
    tier = TierSpec(load_model("llama3_70b"))
    inside = replica_cost_for(tier, ReplicaPlan(4, 1, tuple((0, g) for g in range(4))), CLUSTER)
    across = replica_cost_for(tier, ReplicaPlan(4, 1, ((0, 6), (0, 7), (1, 0), (1, 1))), CLUSTER)
    piped = replica_cost_for(tier, ReplicaPlan(4, 2, tuple((0, g) for g in range(4)) + tuple((1, g) for g in range(4))), CLUSTER)
    assert inside is cost("llama3_70b", 4)
    assert across.decode_time_s(1, 100) > inside.decode_time_s(1, 100)
    assert piped.stages[0].send_fixed_s > 0 and piped.stages[1].send_fixed_s == 0


def test_vectorised_calibration_predictor_matches_the_kernel():
    g = load_params("h100_sxm").gemm
    x = [g.compute_eff_max, g.overlap_exponent, g.mem_eff, g.launch_s]
    for tokens, k, n in [(1, 4096, 12288), (300, 8192, 7168), (4096, 1024, 8192)]:
        assert predict_gemm_s(x, tokens, k, n, H100) == pytest.approx(
            gemm_time_s(tokens, k, n, 2.0, H100.bf16_tflops * 1e12, H100.hbm_bw_gbps * 1e9, g), rel=1e-12)


def test_stage_time_is_the_slowest_stage_and_iteration_sums_them():
    c = cost("llama3_70b", 2, 2)
    b = BatchShape(decode_seqs=32, decode_ctx_tokens=32 * 700)
    assert c.stage_time_s(b) < c.iteration_time_s(b) < 2 * c.stage_time_s(b) + 1e-3


STAGE_BATCHES = [BatchShape(decode_seqs=1, decode_ctx_tokens=700), BatchShape(decode_seqs=8, decode_ctx_tokens=9000),
                 prefill(1), prefill(2048), BatchShape(prefill_tokens=300, prefill_attn_pairs=300 * 500.0,
                                                        num_prefill_seqs=2, decode_seqs=16, decode_ctx_tokens=20000)]


@pytest.mark.parametrize("batch", STAGE_BATCHES)
def test_stage_time_is_the_iteration_time_without_pipeline_and_the_slowest_stage_with_it(batch):
    """PP 1: one stage, so a micro-batch's stage time is the whole iteration. PP 2 over layers split evenly: the
    iteration is the CPU time, both stages and the one send between them, so the stage time is half of what is
    left after the send plus the stage's 1/PP share of the CPU time."""
    # TP 8: a decode step shorter than the eager launch floor, so CUDA graphs (decode) and eager (prefill) differ.
    for one in (cost("llama3_8b"), cost("llama3_8b", 8), cost("mixtral_8x7b", 2), cost("llama3_8b", 8, engine="sglang")):
        assert one.stage_time_s(batch) == pytest.approx(one.iteration_time_s(batch), rel=1e-12)
    two = cost("llama3_8b", 1, 2)
    assert [st.layers for st in two.stages] == [16, 16]
    cpu = two.engine.cpu_time_s(batch.num_seqs, two.tp)
    send = sum(st.send_fixed_s + st.send_s_per_token * batch.num_tokens for st in two.stages)
    lm_head_stage = max(range(2), key=lambda i: two.stages[i].lm_head is not None)
    # The stages differ only by the LM head on the last: the slowest is that one, bounded by the even split.
    even = cpu / 2 + (two.iteration_time_s(batch) - cpu - send) / 2
    assert lm_head_stage == 1 and even <= two.stage_time_s(batch) < two.iteration_time_s(batch) - send - cpu / 2
    assert two.stage_time_s(batch) == pytest.approx(even, rel=0.25)


def test_stage_time_of_an_empty_batch_is_zero():
    for c in (cost("llama3_8b"), cost("llama3_8b", 1, 2)):
        assert c.stage_time_s(BatchShape()) == 0.0 and c.iteration_time_s(BatchShape()) == 0.0


def test_moe_time_of_no_expert_is_zero():
    moe = cost("deepseek_v3", 8, 2, "fp8", pp_spans_nodes=True).stages[0].moe
    assert moe_time_s(moe, 0, 0.0) == 0.0 and moe_time_s(moe, 64, 0.0) == 0.0
    assert moe_time_s(moe, 1, 1.0) > 0.0


def test_moe_time_worked_by_hand():
    """2 layers, 8 tokens, top-2 routing over 4 distinct experts, hottest rank at 1.5x the mean, half the experts
    on this rank, overlap exponent 1 (compute + memory): rows per expert = 8 * 2 / 4 * 1.5 = 6; per expert
    0.5 * 6 + (3 + 0.25 * 6) = 7.5 s; per layer 1 + 4 * 0.5 * 7.5 = 16 s; 32 s in all, plus the all-to-all of
    2 * (0.75 + 0.125 * 8) = 3.5 s when there is one."""
    from dataclasses import replace

    from sim.perf.cost_model import MoeTerm

    moe = MoeTerm(layers=2, launch_s=1.0, num_experts=8, experts_per_token=2, compute_s_per_token_expert=0.5,
                  overlap_exponent=1.0, memory_s_per_expert=3.0, memory_s_per_token_expert=0.25, rank_share=0.5,
                  imbalance=1.5)
    assert moe_time_s(moe, 8, 4.0) == pytest.approx(32.0, rel=1e-12)
    a2a = replace(moe, a2a_fixed_s=0.75, a2a_s_per_token=0.125)
    assert moe_time_s(a2a, 8, 4.0) == pytest.approx(35.5, rel=1e-12)


@pytest.mark.parametrize("layers,pp", [(32, 1), (32, 2), (32, 3), (80, 3), (61, 4), (7, 7), (10, 4)])
def test_layers_split_contiguously_and_as_evenly_as_possible(layers, pp):
    """Oracle: stages cover 0..layers-1 back to back, sizes differ by at most one, the larger ones first."""
    from sim.perf.cost_model import _split_layers

    split = _split_layers(layers, pp)
    assert len(split) == pp and sum(c for _, c in split) == layers
    assert [f for f, _ in split] == [sum(c for _, c in split[:s]) for s in range(pp)]
    counts = [c for _, c in split]
    assert max(counts) - min(counts) <= (0 if layers % pp == 0 else 1) and counts == sorted(counts, reverse=True)


def test_awq_slows_the_gemms_compute_side_by_its_dequantisation_factor():
    """The compute coefficient of a GEMM (2 k n FLOPs per token at BF16 peak) does not depend on the weight bytes,
    so AWQ's is BF16's times the dequantisation factor, GEMM by GEMM."""
    factor = load_params("h100_sxm").awq_compute_factor
    assert factor != 1.0
    awq, bf16 = cost("deepseek_r1_distill_qwen_7b", 2, 1, "awq_int4"), cost("deepseek_r1_distill_qwen_7b", 2, 1)
    for g_awq, g_bf16 in zip(awq.stages[0].gemms, bf16.stages[0].gemms, strict=True):
        assert g_awq[2] == pytest.approx(g_bf16[2] * factor, rel=1e-12)


def test_attention_flops_per_gpu_worked_by_hand():
    """Per query-key pair (prefill) and per context token (decode): QK^T and PV, 2 FLOPs per multiply-add, the
    heads split over TP. Llama 3 8B (32 heads of 128): 4 * 32 * 128 = 16384 at TP 1. DeepSeek V3 (MLA, 128 heads):
    prefill un-absorbed, 2 * 128 * (128 + 64 + 128) = 81920; decode on the latent, 2 * 128 * (2 * 512 + 64)."""
    from sim.perf.cost_model import _attention_flops_per_pair_gpu, _decode_attention_flops_per_ctx_gpu

    llama, v3 = load_model("llama3_8b"), load_model("deepseek_v3")
    for tp in (1, 2, 8):
        assert _attention_flops_per_pair_gpu(llama, tp) == 16384 / tp
        assert _decode_attention_flops_per_ctx_gpu(llama, tp) == 16384 / tp
        assert _attention_flops_per_pair_gpu(v3, tp) == 81920 / tp
        assert _decode_attention_flops_per_ctx_gpu(v3, tp) == 2 * 128 * (2 * 512 + 64) / tp


def test_data_parallel_gemm_is_the_gemm_of_its_share_of_the_tokens():
    """A GEMM on dp ranks, each with 1 / dp of the tokens, takes the time of that share on one rank."""
    from sim.perf.cost_model import _dp_term, _gemm_time

    term = cost("llama3_70b", 8, 1, "fp8").stages[0].gemms[0]
    assert _dp_term(term, 1) is term
    for dp in (2, 4, 8):
        for tokens in (1, 64, 4096):
            assert _gemm_time(_dp_term(term, dp), tokens) == pytest.approx(_gemm_time(term, tokens / dp), rel=1e-12)


def test_replica_spans_from_the_gpus_stage_by_stage():
    from sim.perf.cost_model import replica_spans

    assert replica_spans((), 2, 2) == (False, False)
    assert replica_spans(((0, 0), (0, 1), (0, 2), (0, 3)), 2, 2) == (False, False)
    assert replica_spans(((0, 6), (0, 7), (1, 0), (1, 1)), 2, 2) == (False, True)  # stages on two nodes
    assert replica_spans(((0, 7), (1, 0)), 2, 1) == (True, False)  # one stage over two nodes


def test_replica_moe_options_override_the_tiers():
    """A replica plan's own EP (or DP attention) replaces the tier's default; None keeps the tier's."""
    tier = TierSpec(load_model("mixtral_8x7b"))
    gpus = tuple((0, g) for g in range(2))
    step = BatchShape(decode_seqs=64, decode_ctx_tokens=64 * 800)
    own = replica_cost_for(tier, ReplicaPlan(2, 1, gpus, ep=2), CLUSTER)
    default = replica_cost_for(tier, ReplicaPlan(2, 1, gpus), CLUSTER)
    want_ep2 = build_replica_cost(tier.model, H100, 2, 1, cluster=CLUSTER, ep=2)
    want_ep1 = build_replica_cost(tier.model, H100, 2, 1, cluster=CLUSTER)
    assert own.iteration_time_s(step) == want_ep2.iteration_time_s(step) != want_ep1.iteration_time_s(step)
    assert default.iteration_time_s(step) == want_ep1.iteration_time_s(step)
    dp = replica_cost_for(tier, ReplicaPlan(2, 1, gpus, dp_attention=True), CLUSTER)
    assert dp.iteration_time_s(step) == build_replica_cost(tier.model, H100, 2, 1, cluster=CLUSTER,
                                                           dp_attention=True).iteration_time_s(step)
    assert dp.dp_attention and not default.dp_attention


def test_replica_cost_passes_its_memory_block_engine_and_mtp_settings():
    tier = TierSpec(load_model("llama3_8b"))
    rep = ReplicaPlan(1, 1, ((0, 0),))
    base = replica_cost_for(tier, rep, CLUSTER)
    half = replica_cost_for(tier, rep, CLUSTER, gpu_memory_utilization=0.5)
    want = build_replica_cost(tier.model, H100, 1, 1, cluster=CLUSTER, gpu_memory_utilization=0.5)
    assert half.kv_capacity_blocks == want.kv_capacity_blocks < base.kv_capacity_blocks
    big = replica_cost_for(tier, rep, CLUSTER, kv_block_size=32)
    assert big.kv_block_size == 32 and base.kv_block_size == 16
    sg = replica_cost_for(tier, rep, CLUSTER, engine="sglang")
    assert sg.engine.name == "sglang" and base.engine.name == "vllm"
    v3 = TierSpec(load_model("deepseek_v3"), "fp8")
    gpus = tuple((n, g) for n in (0, 1) for g in range(8))
    mtp = replica_cost_for(v3, ReplicaPlan(8, 2, gpus, mtp_draft_tokens=1), CLUSTER)
    assert mtp.mtp_draft_tokens == 1 and replica_cost_for(v3, ReplicaPlan(8, 2, gpus), CLUSTER).mtp_draft_tokens == 0


def test_cuda_graphs_cover_decode_batches_up_to_the_engines_limit_per_rank():
    """A decode-only batch of at most cuda_graph_max_seqs sequences replays a graph; one more, or any prefill
    token, runs eager. With DP attention the limit is per rank: each of the TP ranks holds ceil(seqs / TP)."""
    c = cost("llama3_8b")
    m = c.cuda_graph_max_seqs
    assert c._graph(BatchShape(decode_seqs=m)) and not c._graph(BatchShape(decode_seqs=m + 1))
    assert c._graph(BatchShape(decode_seqs=1)) and not c._graph(prefill(1))
    assert not c._graph(BatchShape(prefill_tokens=5, prefill_attn_pairs=15.0, num_prefill_seqs=1, decode_seqs=1))
    dp = cost("deepseek_v3", 8, 2, "fp8", pp_spans_nodes=True, dp_attention=True)
    assert dp.dp_attention and dp.tp == 8
    md = dp.cuda_graph_max_seqs
    assert dp._graph(BatchShape(decode_seqs=8 * md)) and not dp._graph(BatchShape(decode_seqs=8 * md + 1))
    assert dp._graph(BatchShape(decode_seqs=8 * (md - 1) + 1))


@pytest.mark.parametrize("name,tp,pp,kw,message", [
    ("llama3_8b", 0, 1, {}, r"^TP and PP must be at least 1, got TP0 x PP1$"),
    ("llama3_8b", 1, 0, {}, r"^TP and PP must be at least 1, got TP1 x PP0$"),
    ("llama3_8b", 3, 1, {}, r"^model 'llama3_8b': TP3 must divide num_heads=32; valid TP degrees divide 32$"),
    ("deepseek_r1_distill_qwen_7b", 8, 1, {}, r"TP8 must divide num_heads=28; valid TP degrees divide 4$"),
    ("llama3_8b", 1, 33, {}, r"^model 'llama3_8b': PP33 exceeds its 32 layers$"),
    ("llama3_8b", 2, 1, {"ep": 2}, r"^model 'llama3_8b' has no experts; expert parallelism \(EP2\) needs an MoE"),
    ("mixtral_8x7b", 4, 1, {"ep": 3}, r"^EP3 must be a positive divisor of TP4 \(EP ranks"),
    ("mixtral_8x7b", 4, 1, {"ep": 0}, r"^EP0 must be a positive divisor of TP4"),
    ("mixtral_8x7b", 1, 1, {"mtp_draft_tokens": -1}, r"^mtp_draft_tokens must be 0 \(off\) or a positive number of "
                                                     r"draft tokens, got -1$"),
])
def test_impossible_shapes_and_options_are_refused_by_name(name, tp, pp, kw, message):
    with pytest.raises(ConfigError, match=message):
        cost(name, tp, pp, **kw)


def test_the_largest_valid_shapes_are_accepted():
    """The boundaries themselves: PP equal to the layer count, TP equal to the heads' divisor, EP equal to TP."""
    assert cost("llama2_7b", 1, 32).pp == 32
    assert cost("deepseek_r1_distill_qwen_7b", 4).tp == 4
    assert cost("mixtral_8x7b", 8, 1, ep=8).tp == 8


def test_activation_width_is_the_widest_mlp_a_token_passes_through():
    """Dense: the MLP's intermediate size. MoE: its routed experts' widths side by side plus the shared experts',
    when wider than a dense layer: Mixtral 2 x 14336 = 28672; DeepSeek V3 (8 + 1) x 2048 = 18432 = its dense 18432;
    a V3 with 12 routed experts per token: 13 x 2048 = 26624."""
    from dataclasses import replace

    from sim.perf.cost_model import _activation_width

    assert _activation_width(load_model("llama3_8b")) == 14336
    assert _activation_width(load_model("mixtral_8x7b")) == 28672
    v3 = load_model("deepseek_v3")
    assert _activation_width(v3) == 18432
    assert _activation_width(replace(v3, experts_per_token=12)) == 26624
    assert _activation_width(replace(v3, num_shared_experts=5)) == 13 * 2048


def test_replica_cost_reads_the_placement_and_the_tiers_kv_precision():
    """A PP replica whose stages sit on two nodes pays the inter-node send; a tier's FP8 KV doubles its blocks
    (oracle: build_replica_cost told the same)."""
    tier = TierSpec(load_model("llama3_70b"), kv="fp8")
    piped = ReplicaPlan(4, 2, tuple((0, g) for g in range(4)) + tuple((1, g) for g in range(4)))
    got = replica_cost_for(tier, piped, CLUSTER)
    across = build_replica_cost(tier.model, H100, 4, 2, "bf16", "fp8", cluster=CLUSTER, pp_spans_nodes=True)
    inside = build_replica_cost(tier.model, H100, 4, 2, "bf16", "fp8", cluster=CLUSTER, pp_spans_nodes=False)
    b = prefill(4096)
    assert got.iteration_time_s(b) == across.iteration_time_s(b) > inside.iteration_time_s(b)
    bf16 = build_replica_cost(tier.model, H100, 4, 2, cluster=CLUSTER, pp_spans_nodes=True)
    assert got.kv_capacity_blocks == across.kv_capacity_blocks == pytest.approx(2 * bf16.kv_capacity_blocks, rel=0.01)


def test_mtp_changes_decode_steps_and_adds_one_layer_over_prompt_tokens():
    """Multi-token prediction drafts tokens in decode steps; an iteration with prompt tokens (prefill alone or mixed
    with decodes) costs what the same deployment without MTP costs plus the MTP module's pass over its prompt tokens,
    one layer of DeepSeek-V3's 61: 1 / 61 of a prompt-only iteration (issue 18, branch ttft18; the engines' sources
    in ReplicaCostModel._mtp_draft_extend_s)."""
    mtp = cost("deepseek_v3", 8, 2, "fp8", pp_spans_nodes=True, mtp_draft_tokens=1)
    plain = cost("deepseek_v3", 8, 2, "fp8", pp_spans_nodes=True)
    mixed = BatchShape(prefill_tokens=100, prefill_attn_pairs=5050.0, num_prefill_seqs=1, decode_seqs=4,
                       decode_ctx_tokens=4000)
    for b in (prefill(512), mixed):
        prompt = BatchShape(prefill_tokens=b.prefill_tokens, prefill_attn_pairs=b.prefill_attn_pairs,
                            num_prefill_seqs=b.num_prefill_seqs)
        assert mtp.iteration_time_s(b) == pytest.approx(
            plain.iteration_time_s(b) + plain.iteration_time_s(prompt) / 61, rel=1e-12)
    decode = BatchShape(decode_seqs=4, decode_ctx_tokens=4000)
    assert mtp.iteration_time_s(decode) != plain.iteration_time_s(decode)


def test_a_one_token_prefill_chunk_pays_attention_over_its_cached_context():
    """Chunked prefill: the last chunk of one token after 8000 cached tokens attends to all of them."""
    c = cost("llama3_8b")
    assert c.iteration_time_s(prefill(1, ctx_before=8000)) > c.iteration_time_s(prefill(1))


def test_check_messages_name_the_width_and_the_experts():
    from dataclasses import replace

    from sim.perf.cost_model import build_replica_cost

    odd_mlp = replace(load_model("llama3_8b"), intermediate_size=14335)
    with pytest.raises(ConfigError, match=r"TP2 must divide intermediate_size=14335; valid TP degrees divide 1$"):
        build_replica_cost(odd_mlp, H100, 2, 1)
    mix = load_model("mixtral_8x7b")
    with pytest.raises(ConfigError, match=r"TP2 must divide moe_intermediate_size=14337"):
        build_replica_cost(replace(mix, moe_intermediate_size=14337), H100, 2, 1)
    with pytest.raises(ConfigError, match=r"^model 'mixtral_8x7b': EP2 must divide its 7 routed experts$"):
        build_replica_cost(replace(mix, num_routed_experts=7), H100, 2, 1, cluster=CLUSTER, ep=2)
