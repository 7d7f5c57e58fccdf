"""Dataset-length rows (issue 18, build item 1): ShareGPT lengths drawn as the clients sample them, and vLLM's
multi-step TTFT wait, each against a case worked by hand or numpy on the draws."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.fidelity.corpus import drawn_lengths, load_corpus, multi_step_wait_ms
from sim.fidelity.length_datasets import SHAREGPT, dataset_named, draw_lengths, lognormal_locations


def test_sharegpt_draws_obey_the_clients_filter_and_hit_the_published_means():
    inp, out = draw_lengths(SHAREGPT, 50_000, np.random.default_rng(7))
    inp, out = np.array(inp), np.array(out)
    assert len(inp) == len(out) == 50_000
    # sample_sharegpt_requests: prompt and output >= 4 tokens, prompt <= 1,024, prompt + output <= 2,048
    assert inp.min() >= 4 and out.min() >= 4 and inp.max() <= 1024 and (inp + out).max() <= 2048
    # the filtered means are the published ones (219.2 / 200.8); 50k draws: standard error ~1 token
    assert inp.mean() == pytest.approx(219.2, rel=0.02)
    assert out.mean() == pytest.approx(200.8, rel=0.02)
    # the spread is the dataset's (cv 1 before the filter): far from fixed lengths
    assert np.median(inp) < 0.85 * inp.mean() and inp.std() > 0.6 * inp.mean()


def test_lognormal_sigma_follows_the_cv_and_the_filter_moves_the_location_up():
    mu_in, mu_out, sigma = lognormal_locations(SHAREGPT)
    assert sigma == pytest.approx(math.sqrt(math.log(2.0)), rel=1e-12)  # cv 1: sigma^2 = ln(1 + 1)
    # Unfiltered, the mean would be exp(mu + sigma^2 / 2); the filter cuts the long tail, so to keep the published
    # filtered mean the unfiltered one must be larger.
    assert math.exp(mu_in + sigma ** 2 / 2) > 219.2 and math.exp(mu_out + sigma ** 2 / 2) > 200.8
    with pytest.raises(ConfigError, match="cv must be positive"):
        lognormal_locations(replace(SHAREGPT, cv=0.0))
    with pytest.raises(ConfigError, match="unknown length dataset"):
        dataset_named("alpaca")


def test_draws_are_reproducible_per_seed():
    a = draw_lengths(SHAREGPT, 300, np.random.default_rng(3))
    assert a == draw_lengths(SHAREGPT, 300, np.random.default_rng(3))
    assert a != draw_lengths(SHAREGPT, 300, np.random.default_rng(4))


def test_multi_step_wait_is_half_a_run_of_decode_steps():
    row = replace(_row(3), scheduler_steps=10)
    # hand-worked: 10 steps of 14 ms each, a Poisson arrival lands at a uniform phase: 5 steps = 70 ms on average
    assert multi_step_wait_ms(row, 14.0) == pytest.approx(70.0)
    assert multi_step_wait_ms(replace(row, scheduler_steps=1), 14.0) == 0.0


@pytest.fixture(scope="module")
def rows():
    return {r.line: r for r in load_corpus()[0] if r.source == "sglang_benchmark_vllm_060"}


def _row(line):
    return next(r for r in load_corpus()[0] if r.source == "sglang_benchmark_vllm_060" and r.line == line)


def test_sglang_vllm_060_sharegpt_rows_are_predicted_not_skipped(rows):
    assert sorted(rows) == list(range(2, 14))  # all 12 rows of the source
    vllm4 = rows[3]  # vLLM 0.6.0, 8B on A100, 4 req/s, 1,200 prompts, --num-scheduler-steps 10
    assert (vllm4.engine, vllm4.kind, vllm4.length_dataset, vllm4.num_prompts) == ("vllm", "serving", "sharegpt", 1200)
    assert vllm4.scheduler_steps == 10 and vllm4.request_rate == 4.0 and vllm4.statistic == "median"
    # multi-step: ITL is the gap between 10-token chunks, so the per-token metric is TPOT
    assert dict(vllm4.measured) == {"serving_ttft_ms": 100.48, "tpot_ms": 14.14}
    assert rows[2].scheduler_steps == 1 and dict(rows[2].measured)["serving_itl_ms"] == 11.93  # SGLang: plain ITL
    offline = rows[10]  # 5,000 prompts at rate inf: simulated, throughput = output tokens / makespan
    assert (offline.kind, offline.request_rate, offline.num_prompts) == ("serving", None, 5000)
    assert dict(offline.measured) == {"output_tokens_per_s": 4281.51}  # 5,000 >= BURST_THROUGHPUT_MIN_PROMPTS
    inp, out = drawn_lengths(offline)
    assert len(inp) == 5000 and np.mean(out) == pytest.approx(200.8, rel=0.05)


# ---- Lambda's vLLM 0.5.4 ShareGPT bursts ---------------------------------------------------------------------------
def test_lambda_bursts_predict_itl_with_the_runs_own_means_and_list_what_they_cannot():
    from sim.fidelity.corpus import BURST_THROUGHPUT_MIN_PROMPTS
    rows, skipped = load_corpus()
    lam = {r.line: r for r in rows if r.source == "lambdalabs_vllm_benchmark"}
    big = lam[28]  # Mistral-7B-Instruct-v0.3, H100 TP1, 320 prompts at once; its JSON: totals 73,671 / 71,810 tokens
    assert (big.model, big.gpu, big.kind, big.request_rate, big.num_prompts) == ("mistral_7b", "h100_sxm", "serving",
                                                                                 None, 320)
    assert big.length_dataset == "sharegpt" and big.statistic == "median"  # "output tok/s / MEDIAN ITL"
    assert (big.input_tokens, big.output_tokens) == (round(73671 / 320), round(71810 / 320))  # 230, 224
    # 320 < BURST_THROUGHPUT_MIN_PROMPTS: the burst's throughput is not scored, its ITL is
    assert 320 < BURST_THROUGHPUT_MIN_PROMPTS and dict(big.measured) == {"serving_itl_ms": 27.23}
    small = lam[50]  # 10 prompts, totals 1,585 / 2,490 tokens: the run's own means; columns are MEANS
    assert (small.input_tokens, small.output_tokens) == (round(1585 / 10), round(2490 / 10))
    assert small.statistic == "mean" and dict(small.measured) == {"serving_itl_ms": pytest.approx(8.044675804977672)}
    reasons = {s["reason"] for s in skipped if s["source"] == "lambdalabs_vllm_benchmark"}
    assert any("Marlin W8A16" in r for r in reasons)  # FP8 checkpoints on A100 are weight-only FP8 in vLLM
    assert not [r for r in lam.values() if r.gpu == "a100_80gb" and r.weights == "fp8"]
