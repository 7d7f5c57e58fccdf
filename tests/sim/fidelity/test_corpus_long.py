"""Issue 18 corpus readers: each long-format row maps onto the deployment the source ran, or is listed with why."""
from __future__ import annotations

import numpy as np
import pytest

from sim.fidelity.corpus import drawn_lengths, load_corpus, predict_row


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_rows_carry_the_deployment_the_source_ran(corpus):
    rows, _ = corpus
    gpt = [r for r in rows if r.source == "gpt_fast_tp_a100"]
    assert {r.allreduce for r in gpt if "NCCL" in r.engine_version} == {"nccl"}
    assert {r.allreduce for r in gpt if "NCCL" not in r.engine_version} == {"custom"}
    ix = [r for r in rows if r.source == "inferencex_dsr1_h100_h200"]
    assert {(r.tp, r.weights) for r in ix} == {(8, "fp8")} and {r.ep for r in ix} == {1, 8}
    assert any(r.dp_attention for r in ix) and any(r.mtp_draft_tokens for r in ix)
    assert all(r.kind == "closed_loop" and r.num_prompts == 10 * r.batch_size and r.length_ratio == 0.8 for r in ix)
    # InferenceX runs TensorRT-LLM's PyTorch backend, with the attention-DP balance hold of 60 iterations on ADP runs.
    assert {r.engine for r in ix} == {"sglang", "trtllm_pytorch"}
    assert {r.adp_hold_iters for r in ix if r.engine == "trtllm_pytorch" and r.dp_attention} == {60}
    assert {r.adp_hold_iters for r in ix if not (r.engine == "trtllm_pytorch" and r.dp_attention)} == {0}
    assert {r.gpu for r in rows if r.source == "mlc_llm_perf_bench_2023"} == {"a100_pcie"}
    graphs_off = [r for r in rows if r.source == "community_issues_and_vllm_blog"]
    assert graphs_off and not any(r.cuda_graphs for r in graphs_off) and all(r.tp_spans_nodes for r in graphs_off)


def test_restated_and_unmodelled_rows_are_listed_with_their_reason(corpus):
    _, skipped = corpus
    reasons = {(s["source"], s["kind"]): s["reason"] for s in skipped}
    assert "restated" in reasons[("argonne_llm_inference_bench", "total_token_throughput")]
    assert "tail percentile" in reasons[("lmdeploy_turbomind_a100_2023", "token_latency_p99")]
    assert "disaggregated" in " ".join(s["reason"] for s in skipped if s["source"] == "inferencex_dsr1_h100_h200")
    assert all(s["reason"] for s in skipped)


def test_random_lengths_are_drawn_uniformly_in_the_benchmark_range(corpus):
    row = next(r for r in corpus[0] if r.source == "inferencex_dsr1_h100_h200" and r.batch_size >= 64)
    isl, osl = drawn_lengths(row)
    isl = np.array(isl)
    assert len(isl) == row.num_prompts
    assert isl.min() >= int(0.8 * row.input_tokens) and isl.max() <= row.input_tokens  # bench_serving: int(L x ratio)
    # Uniform on [0.8 L, L]: mean 0.9 L, standard deviation 0.2 L / sqrt(12), sampled with a fixed seed per run.
    assert abs(isl.mean() - 0.9 * row.input_tokens) < 4 * 0.2 * row.input_tokens / np.sqrt(12 * len(isl))
    assert drawn_lengths(row) == (tuple(isl.tolist()), osl)


def test_kernel_floor_all_reduce_matches_the_ring_formula_by_hand(corpus):
    # NCCL ring of S bytes over n ranks: base + 2(n-1) hops + 2(n-1)/n S / (link x eff), engine none's numbers.
    from sim.perf.engine import load_engine
    from sim.perf.params import load_params
    from sim.spec.hardware import load_gpu

    row = next(r for r in corpus[0] if r.kind == "kernel_allreduce" and r.gpu == "h100_sxm" and r.tp == 8)
    eng, hop = load_engine("none"), load_params("h100_sxm").allreduce.step_latency_s
    n, size = 8, row.batch_size
    by_hand = (eng.allreduce_nvlink_base_us * 1e-6 + 2 * (n - 1) * hop
               + 2 * (n - 1) / n * size / (load_gpu("h100_sxm").nvlink_bw_gbps * 1e9 * eng.allreduce_nvlink_bw_eff))
    assert predict_row(row, "none")["kernel_ms"] == pytest.approx(by_hand * 1e3, rel=1e-9)


def test_attention_dp_balance_hold_is_half_the_timeout_in_iterations(corpus):
    # TensorRT-LLM holds context requests up to timeout_iters iterations (counter cycling from the last release): a
    # request waits timeout / 2 iterations at the median. By hand: 60 / 2 x (30 ms TPOT x 1.85 tokens per MTP step)
    # = 1,665 ms; no hold without ADP balance.
    from dataclasses import replace

    from sim.fidelity.corpus import adp_hold_ms

    row = next(r for r in corpus[0] if r.source == "inferencex_dsr1_h100_h200" and r.adp_hold_iters)
    assert adp_hold_ms(row, 30.0, 1.85) == pytest.approx(1665.0)
    assert adp_hold_ms(replace(row, adp_hold_iters=0), 30.0, 1.85) == 0.0
