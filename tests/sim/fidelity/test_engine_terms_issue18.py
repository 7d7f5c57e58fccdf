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


# ---- TensorRT-LLM PyTorch backend: context attention and eager host time fitted on TensorRT-LLM issue #5929 ----------
# issue #5929: 8x H200, TP8, batch 1, TTFT p50 (ms) at ISL 1,600 / 8,192, EP4 and EP8
ISSUE_5929 = ((4, 1600, 134.36), (4, 8192, 370.07), (8, 1600, 124.11), (8, 8192, 352.81))


def _issue_5929_ms(eng) -> list[float]:
    from sim.fidelity.timing import batch_prefill_time_s
    from sim.perf.cost_model import build_replica_cost
    from sim.spec.hardware import load_gpu
    from sim.spec.models import load_model

    model, gpu = load_model("deepseek_r1"), load_gpu("h200_sxm")
    return [batch_prefill_time_s(build_replica_cost(model, gpu, 8, 1, "fp8", "bf16", engine=eng, ep=ep), 1, isl) * 1e3
            for ep, isl, _ in ISSUE_5929]


def _log_sse(eng) -> float:
    import math
    return sum(math.log(got / m) ** 2 for got, (_, _, m) in zip(_issue_5929_ms(eng), ISSUE_5929))


def test_trtllm_pytorch_prefill_reproduces_the_batch1_ttft_it_was_fitted_on():
    from sim.perf.engine import load_engine

    eng = load_engine("trtllm_pytorch")
    assert (eng.attn_prefill_eff, eng.layer_overhead_eager_moe_us) == (0.21, 1150.0)
    # the residuals the yaml states (EP4 1,600 / 8,192, EP8 1,600 / 8,192)
    for got, (_, _, measured_ms), residual in zip(_issue_5929_ms(eng), ISSUE_5929, (-0.036, -0.020, 0.038, 0.021)):
        assert got / measured_ms - 1 == pytest.approx(residual, abs=0.005)
    # The slope over the prompt, measured 34.7 ms per 1k tokens at EP8, and the fixed part: the line through the EP8
    # points meets zero tokens at 124.11 - 1.6 x 34.7 = 68.6 ms; the model's fixed part (its 1,600-token time less
    # 1.6 x its own slope) must be within 10 ms of it (the host time alone is 58 MoE layers x 1.15 = 66.7 ms of it).
    ep8_1600, ep8_8192 = _issue_5929_ms(eng)[2:]
    slope = (ep8_8192 - ep8_1600) / 6.592
    assert slope == pytest.approx((352.81 - 124.11) / 6.592, rel=0.1)
    assert ep8_1600 - 1.6 * slope == pytest.approx(124.11 - 1.6 * (352.81 - 124.11) / 6.592, abs=10.0)


def test_trtllm_pytorch_host_and_attention_are_the_least_squares_optimum_on_issue_5929():
    """Brute force around the shipped pair: every neighbour on the fit's grid (5 us, 0.001) and the values before the
    joint fit (0.235 with SGLang's 1.3 ms) fit the four points worse."""
    from dataclasses import replace

    from sim.perf.engine import load_engine

    eng = load_engine("trtllm_pytorch")
    best = _log_sse(eng)
    assert best == pytest.approx(0.0036, abs=0.0002)
    for dh in (-5.0, 0.0, 5.0):
        for de in (-0.001, 0.0, 0.001):
            if dh or de:
                other = replace(eng, layer_overhead_eager_moe_us=eng.layer_overhead_eager_moe_us + dh,
                                attn_prefill_eff=eng.attn_prefill_eff + de)
                assert _log_sse(other) > best
    before = replace(eng, layer_overhead_eager_moe_us=1300.0, attn_prefill_eff=0.235)
    assert _log_sse(before) == pytest.approx(0.0115, abs=0.0005) and _log_sse(before) > 3 * best


# ---- InferenceX's TensorRT-LLM MTP launch: --max_num_tokens without the 8,192 floor (issue 18, branch ttft18) -------
def test_trtllm_mtp_token_budget_is_the_launch_scripts_formula_worked_by_hand():
    from sim.fidelity.corpus_long import trtllm_mtp_token_budget

    # dsr1_fp8_h200_trt_mtp.sh without attention DP: MTP 3, max_batch_size = conc = 16, 1k prompts:
    # (4 x 16 + 1024 + 64) = 1152, rounded up to 64: 1152; TensorRT-LLM charges each generation request 1 + 3 tokens,
    # the simulator 1, so 3 x 16 = 48 fewer prompt tokens: 1104, room for one 1k prompt per iteration.
    assert trtllm_mtp_token_budget(1024, 16, 8, False) == 1104
    # With attention DP: MTP 1, max_batch_size = 256 / 8 = 32 per rank, 8k prompts: 2 x 32 + 8192 + 64 = 8320 (a
    # multiple of 64), minus 32 = 8288 per rank, eight ranks scheduled as one replica: 66,304.
    assert trtllm_mtp_token_budget(8192, 256, 8, True) == 66304


def test_only_inferencex_trtllm_mtp_rows_carry_a_token_budget():
    rows = [r for r in load_corpus()[0] if r.source == "inferencex_dsr1_h100_h200"]
    budget = [r for r in rows if r.max_num_batched_tokens]
    assert budget and all(r.engine == "trtllm_pytorch" and r.mtp_draft_tokens for r in budget)
    assert not [r for r in rows if r.engine == "trtllm_pytorch" and r.mtp_draft_tokens and not r.max_num_batched_tokens]


def test_a_one_prompt_budget_queues_simultaneous_prompts_behind_each_other():
    # The bug this guards: the row's budget not reaching the simulated scheduler. With a budget of one 1k prompt
    # per iteration, the 16 prompts a closed loop sends at once are prefilled across iterations, so the mean TTFT
    # rises above the 8,192-token budget's, where eight prompts share an iteration.
    from dataclasses import replace

    from sim.fidelity.corpus import predict_row

    row = next(r for r in load_corpus()[0] if r.source == "inferencex_dsr1_h100_h200" and r.max_num_batched_tokens
               and r.batch_size == 16 and r.input_tokens == 1024 and r.statistic == "mean")
    assert row.max_num_batched_tokens == 1104
    tight = predict_row(row, row.engine)["closed_ttft_ms"]
    loose = predict_row(replace(row, max_num_batched_tokens=8192), row.engine)["closed_ttft_ms"]
    assert tight > loose * 1.05


# ---- MTP's pass over the prompt (SGLang _draft_extend_for_prefill; TensorRT-LLM's MTP layer over the context) ------
def test_mtp_prefill_pays_one_more_layer_over_the_prompt_worked_by_hand():
    from sim.perf.batch import BatchShape
    from sim.perf.cost_model import build_replica_cost
    from sim.perf.engine import load_engine
    from sim.spec.hardware import load_gpu
    from sim.spec.models import load_model

    model, gpu = load_model("deepseek_r1"), load_gpu("h200_sxm")
    assert model.num_layers == 61
    for engine in ("sglang", "trtllm_pytorch"):
        eng = load_engine(engine)
        plain, mtp1, mtp3 = (build_replica_cost(model, gpu, 8, 1, "fp8", "fp8", engine=eng, mtp_draft_tokens=k)
                             for k in (0, 1, 3))
        prompt = BatchShape(prefill_tokens=1000, prefill_attn_pairs=1000 * 1001 / 2, num_prefill_seqs=1)
        # A 1,000-token prefill: the target's 61 layers plus the MTP module's one, i.e. 62 / 61 of the plain time,
        # the same for 1 or 3 draft tokens (the later draft steps run over the last token only).
        assert mtp1.iteration_time_s(prompt) == pytest.approx(plain.iteration_time_s(prompt) * 62 / 61, rel=1e-12)
        assert mtp3.iteration_time_s(prompt) == pytest.approx(plain.iteration_time_s(prompt) * 62 / 61, rel=1e-12)
        # A mixed iteration: the 1 / 61 is charged on its prompt part only (decode tokens stay without MTP).
        mixed = BatchShape(prefill_tokens=1000, prefill_attn_pairs=1000 * 1001 / 2, num_prefill_seqs=1,
                           decode_seqs=16, decode_ctx_tokens=16 * 1500)
        assert mtp1.iteration_time_s(mixed) - plain.iteration_time_s(mixed) == pytest.approx(
            plain.iteration_time_s(prompt) / 61, rel=1e-12)
        # Decode-only iterations are untouched by this term.
        decode = BatchShape(decode_seqs=16, decode_ctx_tokens=16 * 1500)
        a, b = mtp1.decode_affine(16)
        assert mtp1.iteration_time_s(decode) == a + b * decode.decode_ctx_tokens


# ---- MTP's step wait (issue 18, branch ttft18c) ---------------------------------------------------------------------
def test_mtp_step_wait_worked_by_hand():
    from dataclasses import replace

    from sim.fidelity.corpus import mtp_step_wait_ms

    row = next(r for r in load_corpus()[0] if r.source == "inferencex_dsr1_h100_h200" and r.mtp_draft_tokens)
    # TPOT 10 ms with 1.85 tokens per step (one draft at 0.85): a step is 18.5 ms, the simulator charged 10 of it.
    assert mtp_step_wait_ms(row, 10.0, 1.85) == pytest.approx(8.5)
    assert mtp_step_wait_ms(replace(row, mtp_draft_tokens=0), 10.0, 1.85) == 0.0
    assert mtp_step_wait_ms(replace(row, kind="serving"), 10.0, 1.85) == 0.0  # open loop: not this term


def test_simulated_closed_loop_waits_one_per_token_iteration_with_mtp():
    """The premise of mtp_step_wait_ms: with MTP the simulator's decode iterations are per emitted token, so a closed
    loop's newcomer waits about one TPOT, not one verification step (tokens_per_step TPOTs), before its prefill. The
    bug this guards: the runtime starting to run whole MTP steps, which would double-count the wait."""
    import numpy as np

    from sim.fidelity.clients import ClientSpec, run_client
    from sim.fidelity.serving import bench_cluster, engine_cost_factory
    from sim.perf.batch import BatchShape
    from sim.perf.cost_model import build_replica_cost
    from sim.perf.engine import load_engine
    from sim.simulator import sim_config_from_dict
    from sim.spec.cascade import TierSpec
    from sim.spec.hardware import load_gpu
    from sim.spec.models import load_model

    eng = load_engine("sglang")
    model, gpu = load_model("deepseek_v3"), load_gpu("h200_sxm")
    cfg = sim_config_from_dict({"batching": "sarathi", "chunk_tokens": 8192, "max_num_seqs": 64})
    inp = (1000, 1010, 1020, 1030, 1040, 1050)
    # Request 1's long answer is still decoding when each of requests 2-5 arrives (after 60-token answers).
    out = (60, 200, 60, 60, 60, 60)
    tier = TierSpec(model, "fp8", "bf16", mtp_draft_tokens=1)
    res = run_client(ClientSpec(inp, out, 2, None), tier, 8, 1, bench_cluster("h200_sxm", 8), cfg,
                     cost_factory=engine_cost_factory(eng, cfg))
    cost = build_replica_cost(model, gpu, 8, 1, "fp8", "bf16", engine=eng, mtp_draft_tokens=1)
    req = res.requests.sort_values("arrival_s")
    later = req.iloc[2:]  # the first two arrive together on an idle engine
    own = np.array([cost.iteration_time_s(BatchShape(prefill_tokens=n, prefill_attn_pairs=n * (n + 1) / 2,
                                                     num_prefill_seqs=1)) for n in later.input_tokens])
    excess = later.ttft_s.to_numpy() - own
    token_step = cost.iteration_time_s(BatchShape(decode_seqs=1, decode_ctx_tokens=1100))
    assert cost.mtp_tokens_per_step == pytest.approx(1.85)
    assert np.all(excess > 0.5 * token_step) and np.all(excess < 1.5 * token_step)
