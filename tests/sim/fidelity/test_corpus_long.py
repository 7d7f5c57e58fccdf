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
    row = replace(row, adp_prompts_per_release=0)  # a release takes every waiting prompt (the queue below aside)
    assert adp_hold_ms(row, 30.0, 1.85) == pytest.approx(1665.0)
    assert adp_hold_ms(replace(row, adp_hold_iters=0), 30.0, 1.85) == 0.0


def test_release_queue_wait_matches_its_closed_form_and_a_simulated_queue():
    """release_wait_slots: a server that serves one waiting request at the end of each release period, Poisson
    arrivals of rho per period. Closed form of the mean by hand: 1/2 + rho / (2 (1 - rho)), 1.0 at rho = 0.5, the
    plain half period as rho -> 0; the median against a simulation of the queue (the independent oracle)."""
    import collections

    import numpy as np

    from sim.fidelity.corpus import release_wait_slots

    assert release_wait_slots(0.0) == 0.5 and release_wait_slots(0.5) == pytest.approx(1.0)
    assert release_wait_slots(0.0, "median") == pytest.approx(0.5, abs=1e-3)
    rng = np.random.default_rng(5)
    for rho in (0.3, 0.6):
        n = 60000
        t = np.sort(rng.uniform(0.0, n / rho, n))
        waiting, i, waits = collections.deque(), 0, []
        for k in range(1, int(n / rho) + 1):
            while i < n and t[i] < k:
                waiting.append(t[i])
                i += 1
            if waiting:
                waits.append(k - waiting.popleft())
        assert release_wait_slots(rho) == pytest.approx(np.mean(waits), rel=0.03)
        assert release_wait_slots(rho, "median") == pytest.approx(np.median(waits), rel=0.03)
    with pytest.raises(ValueError):
        release_wait_slots(1.0)


def test_trtllm_adp_prompts_per_release_worked_by_hand():
    from sim.fidelity.corpus_long import trtllm_adp_prompts_per_release

    # dsr1_fp8_h200_trt.sh, 8k prompts at concurrency 64 on 8 ranks: max(8192, 64 + 8192 + 64 rounded up to 64 =
    # 8320) = 8320 per rank, less its 8 generation requests: 8312, one 8,192-token prompt.
    assert trtllm_adp_prompts_per_release(8192, 64, 8, False) == 1
    # 1k prompts: 8192 - 8 = 8184, seven.
    assert trtllm_adp_prompts_per_release(1024, 64, 8, False) == 7
    # The MTP script at concurrency 256: 32 per rank, (2 x 32 + 1024 + 64) rounded up to 64 = 1152, less the 32
    # drafts and the 32 generation tokens: 1088, one 1,024-token prompt.
    assert trtllm_adp_prompts_per_release(1024, 256, 8, True) == 1


def test_one_prompt_per_release_makes_the_hold_a_queue_at_its_fixed_point(corpus):
    """InferenceX's TensorRT-LLM 8k/1k attention-DP rows at concurrency 64: each rank prefills one prompt per release
    and sees rho = 8 requests x 60 iterations / (0.9 x 1024 decode iterations + the hold) arrivals per timeout. The
    mean hold s (in timeouts) solves s = 1/2 + rho / (2 (1 - rho)) with that rho: checked on the equation, not on
    the loop that finds it (s ~ 0.98, about twice the plain half timeout)."""
    from dataclasses import replace

    from sim.fidelity.corpus import adp_hold_ms

    row = next(r for r in corpus[0] if r.source == "inferencex_dsr1_h100_h200" and r.adp_hold_iters
               and not r.mtp_draft_tokens and r.statistic == "median")
    assert (row.input_tokens, row.output_tokens, row.batch_size, row.adp_prompts_per_release) == (8192, 1024, 64, 1)
    mean_row = replace(row, statistic="mean")
    s = adp_hold_ms(mean_row, 40.0, 1.0) / (60 * 40.0)
    rho = 8 * 60 / (0.9 * 1024 + 60 * s)
    assert s == pytest.approx(0.5 + rho / (2 * (1 - rho)), rel=1e-6)
    assert 0.95 < s < 1.0
    # The median row takes the law's median, below the mean; with every prompt released at once, the plain half.
    assert 0.5 < adp_hold_ms(row, 40.0, 1.0) / (60 * 40.0) < s
    assert adp_hold_ms(replace(row, adp_prompts_per_release=0), 40.0, 1.0) == pytest.approx(0.5 * 60 * 40.0)
    # At rho >= 1 (concurrency 256, short answers) the ranks fill and release together: the plain half is kept.
    busy = replace(mean_row, batch_size=256)
    assert adp_hold_ms(busy, 40.0, 1.0) == pytest.approx(0.5 * 60 * 40.0)
