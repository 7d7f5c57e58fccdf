"""predict_serving: the benchmark's metrics from the full simulator with the calibrated cost model."""
import pytest

from sim.spec.hardware import load_gpu
from sim.spec.models import load_model
from sim.perf.cost_model import build_replica_cost
from sim.perf.engine import load_engine
from sim.fidelity.serving import SERVING_KEYS, ServingBench, predict_serving, simulate_serving
from sim.common.errors import ConfigError


def test_concurrency_one_matches_the_cost_model_by_hand():
    # One request at a time: TTFT is one prefill iteration, every gap one decode iteration at its context.
    bench = ServingBench("llama3_8b", input_tokens=512, output_tokens=3, concurrency=1, num_prompts=4)
    m = predict_serving(bench)
    assert tuple(m) == SERVING_KEYS
    cost = build_replica_cost(load_model("llama3_8b"), load_gpu("h100_sxm"), 1, 1)
    assert m["ttft_ms_mean"] == pytest.approx(cost.prefill_time_s(512) * 1e3, rel=1e-12)
    # decode step g needs prompt + g KV slots (g = 1, 2 generated tokens)
    gaps_ms = [cost.decode_time_s(1, 512 + g) * 1e3 for g in (1, 2)]
    assert m["itl_ms_mean"] == pytest.approx(sum(gaps_ms) / 2, rel=1e-9)
    assert m["tpot_ms_mean"] == pytest.approx(m["itl_ms_mean"], rel=1e-9)
    assert m["requests"] == 4


def test_more_concurrency_more_throughput_and_longer_gaps():
    lo = predict_serving(ServingBench("llama3_8b", input_tokens=256, output_tokens=64, concurrency=2, num_prompts=40))
    hi = predict_serving(ServingBench("llama3_8b", input_tokens=256, output_tokens=64, concurrency=32,
                                      num_prompts=40))
    assert hi["output_tokens_per_s"] > 3 * lo["output_tokens_per_s"]
    assert hi["itl_ms_mean"] > lo["itl_ms_mean"] and hi["ttft_ms_mean"] > lo["ttft_ms_mean"]


def test_engine_profile_object_and_name_agree_and_seed_is_deterministic():
    bench = ServingBench("llama3_8b", input_tokens=300, output_tokens=40, concurrency=4, request_rate=8.0,
                         num_prompts=30)
    by_name = predict_serving(bench, engine="vllm", seed=3)
    assert predict_serving(bench, engine=load_engine("vllm"), seed=3) == by_name
    assert predict_serving(bench, engine="vllm", seed=3) == by_name
    assert predict_serving(bench, engine="vllm", seed=4) != by_name
    assert predict_serving(bench, engine="sglang", seed=3) != by_name


def test_per_request_lengths_and_sim_overrides():
    bench = ServingBench("llama3_8b", input_tokens=1, output_tokens=1, concurrency=4, num_prompts=3)
    m = simulate_serving(bench, input_lens=[100, 2000, 50], output_lens=[10, 20, 5], sim={"batching": "sarathi"})
    assert m["requests"] == 3
    # The lengths given are the lengths served: 35 output tokens, TPOT over the 32 decode gaps.
    assert m["itl_ms_mean"] > 0 and m["e2e_ms_mean"] > m["ttft_ms_mean"] > 0
    longer = simulate_serving(bench, input_lens=[100, 2000, 50], output_lens=[40, 80, 20], sim={"batching": "sarathi"})
    assert longer["e2e_ms_mean"] > m["e2e_ms_mean"] + 20 * m["itl_ms_mean"]
    # The override is applied: vLLM's prefill-first batching admits the three prompts in one prefill, Sarathi
    # chunks them over several iterations, so the first tokens come at other times.
    vllm = simulate_serving(bench, input_lens=[100, 2000, 50], output_lens=[10, 20, 5])
    assert vllm["ttft_ms_mean"] != m["ttft_ms_mean"]


def test_sampled_lengths_stay_in_range_and_follow_the_seed():
    import numpy as np

    from sim.fidelity.clients import sampled_lengths

    xs = sampled_lengths(1000, 0.5, 4000, np.random.default_rng(1))
    assert min(xs) >= 500 and max(xs) <= 1500 and abs(np.mean(xs) - 1000) < 20
    assert sampled_lengths(64, 0.0, 5, np.random.default_rng(2)) == (64,) * 5
    bench = ServingBench("llama3_8b", input_tokens=400, output_tokens=50, concurrency=4, num_prompts=30)
    a = simulate_serving(bench, seed=1, range_ratio=0.5)
    assert a == simulate_serving(bench, seed=1, range_ratio=0.5)
    assert a != simulate_serving(bench, seed=1) and a != simulate_serving(bench, seed=2, range_ratio=0.5)
    with pytest.raises(ConfigError, match="range_ratio"):
        simulate_serving(bench, range_ratio=1.5)


def test_bad_bench_is_a_user_error():
    with pytest.raises(ConfigError, match="ServingBench.tp"):
        ServingBench("llama3_8b", input_tokens=10, output_tokens=10, tp=0)
