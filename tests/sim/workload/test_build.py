"""build_workload: the named defaults, rate scaling, windows, synthetic arrivals, determinism, drift, tier mapping."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sim.spec.cascade import CascadeSpec, TierSpec
from sim.common.errors import ConfigError
from sim.spec.models import load_model
from sim.common.paths import PROJECT_ROOT
from sim.workload import build_workload


def _cv(x: np.ndarray) -> float:
    gaps = np.diff(x)
    return float(gaps.std() / gaps.mean())


def test_conversation_over_the_whole_azure_trace_has_19366_requests():
    w = build_workload("conversation")
    assert w.num_requests == 19366
    assert w.scores.shape == w.output_tokens.shape == (19366, 3)
    assert np.all(w.output_tokens >= 1) and np.all((w.scores >= 0) & (w.scores <= 100))
    assert w.meta["pool_questions"] == 291 and w.meta["dropped_invalid_questions"] == 9


@pytest.mark.parametrize("name", ["conversation", "coding", "math", "math_gsm8k"])
def test_mean_scores_rise_with_tier_size(name):
    means = build_workload(name).scores.mean(axis=0)
    assert np.all(np.diff(means) > 5), means


@pytest.mark.parametrize("factor", [0.5, 2.0, 8.0])
def test_rate_scaling_keeps_the_shape_of_inter_arrival_times(factor):
    base = build_workload("conversation", num_requests=4000)
    scaled = build_workload("conversation", num_requests=4000, rate_scale=factor)
    g0, g1 = np.diff(base.arrival_s), np.diff(scaled.arrival_s)
    assert g1.mean() == pytest.approx(g0.mean() / factor, rel=1e-9)
    assert _cv(scaled.arrival_s) == pytest.approx(_cv(base.arrival_s), rel=1e-9)
    np.testing.assert_array_equal(base.scores, scaled.scores)  # same requests, same bound questions


def test_same_seed_same_workload_and_other_seed_other_binding():
    a = build_workload("coding", seed=7, process="gamma", cv=2.0, num_requests=3000)
    b = build_workload("coding", seed=7, process="gamma", cv=2.0, num_requests=3000)
    c = build_workload("coding", seed=8, process="gamma", cv=2.0, num_requests=3000)
    for f in ("arrival_s", "input_tokens", "output_tokens", "scores", "question_ids"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.question_ids, c.question_ids)
    assert not np.array_equal(a.arrival_s, c.arrival_s)


@pytest.mark.parametrize("process,cv", [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_synthetic_arrivals_have_the_asked_rate_and_burstiness(process, cv):
    n = 20000
    w = build_workload("conversation", process=process, cv=cv, rate_rps=10.0, num_requests=n, seed=3)
    assert w.num_requests == n
    assert w.rate_rps == pytest.approx(10.0, rel=4 * cv / np.sqrt(n))  # 4 standard errors of the mean gap
    # The sample cv of gamma gaps converges slowly for cv > 1 (heavy fourth moment): a looser band there.
    assert _cv(w.arrival_s) == pytest.approx(cv, rel=0.03 if cv <= 1 else 0.12)
    # Lengths come from the trace's empirical (input, output) pairs.
    trace = build_workload("conversation")
    assert set(w.input_tokens.tolist()) <= set(trace.input_tokens.tolist())


def test_synthetic_without_num_requests_fills_the_window_at_the_trace_rate():
    w = build_workload("conversation", process="poisson", duration_s=1200.0, seed=1)
    trace_rate = build_workload("conversation", duration_s=1200.0).rate_rps
    assert w.arrival_s.max() < 1200.0
    assert w.rate_rps == pytest.approx(trace_rate, rel=0.1)


def test_window_is_in_trace_time_and_retimed_to_zero():
    full = build_workload("conversation")
    w = build_workload("conversation", window=(600.0, 900.0))
    expected = (full.arrival_s >= 600.0) & (full.arrival_s < 900.0)
    assert w.num_requests == expected.sum()
    np.testing.assert_allclose(w.arrival_s, full.arrival_s[expected] - 600.0)


def test_drift_is_three_phases_of_8_16_and_10_minutes():
    w = build_workload("drift")
    phases = w.meta["phases"]
    assert [p["end_s"] - p["start_s"] for p in phases] == [480.0, 960.0, 600.0]
    assert [p["dataset"] for p in phases] == ["arena_bench_v1", "routerbench_mbpp", "routerbench_arc_challenge"]
    assert np.all(np.diff(w.arrival_s) >= 0) and w.arrival_s.max() < 2040.0
    for p in phases:
        inside = (w.arrival_s >= p["start_s"]) & (w.arrival_s < p["end_s"])
        assert inside.sum() == p["requests"] > 100
        assert all(q.startswith(p["dataset"] + ":") for q in w.question_ids[inside])
    # The phases really differ: prompt lengths and the small model's quality.
    first, second = (w.arrival_s < 480.0), (w.arrival_s >= 480.0) & (w.arrival_s < 1440.0)
    assert w.input_tokens[second].mean() > 1.4 * w.input_tokens[first].mean()


def _cascade(*models: str, dataset_models: tuple[str, ...] = ()) -> CascadeSpec:
    names = dataset_models or ("",) * len(models)
    return CascadeSpec("c", tuple(TierSpec(load_model(m), dataset_model=d) for m, d in zip(models, names)))


def test_two_tier_cascade_uses_the_llama3_mapping_and_cascade_names_win():
    llama3 = _cascade("llama3_8b", "llama3_70b")
    w = build_workload("conversation", cascade=llama3, num_requests=100)
    assert w.tier_models == ("Mixtral-8x7B-Instruct-v0.1", "gpt-4-0314")
    named = _cascade("llama3_8b", "llama3_70b", dataset_models=("Mistral-7B-Instruct-v0.1", "Llama-2-70b-chat"))
    assert build_workload("conversation", cascade=named, num_requests=10).tier_models == (
        "Mistral-7B-Instruct-v0.1", "Llama-2-70b-chat")


def test_tier_count_mismatch_is_a_config_error():
    cfg = {"name": "x", "trace": {"path": "data/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv.gz"},
           "quality": {"dataset": "gsm8k", "tier_models": ["Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]}}
    with pytest.raises(ConfigError, match="maps 2 tiers"):
        build_workload(cfg, cascade=_cascade("llama3_8b", "llama3_70b", "deepseek_v3"))


@pytest.mark.parametrize("bad,match", [
    ({"arrivals": {"process": "hawkes"}}, "arrivals.process is 'hawkes'; valid: trace, poisson, gamma"),
    ({"quality": {"datset": "gsm8k"}}, r"unknown key\(s\) \['datset'\]"),
    ({"window": {"start_s": 10.0, "end_s": 5.0}}, "must be after"),
    ({"num_requests": "many"}, "workload.num_requests = 'many' is not valid; it must be an integer"),
])
def test_bad_config_values_are_named(bad, match):
    from sim.workload import load_workload_dict

    cfg = load_workload_dict("conversation")
    for k, v in bad.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and k in cfg and isinstance(cfg[k], dict) else v
    with pytest.raises(ConfigError, match=match):
        build_workload(cfg)


def test_describe_cli_ends_with_the_json_summary():
    proc = subprocess.run([sys.executable, "-m", "sim.workload", "describe", "math", "--num-requests", "500"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) == {"name", "requests", "duration_s", "rate_rps", "mean_input_tokens", "mean_output_tokens",
                            "tier_models", "tier_mean_score", "tier_mean_output_tokens", "questions", "prefix_reuse_pct"}
    assert summary["requests"] == 500 and len(summary["tier_mean_score"]) == 3
    assert summary["prefix_reuse_pct"] == 0  # the Azure trace carries no block hash ids


@pytest.mark.parametrize("name", ["conversation", "coding", "math", "math_gsm8k", "drift", "deepseek_reasoning",
                                  "deepseek_reasoning_r1", "deepseek_reasoning_korgym"])
def test_every_workload_yaml_merges_onto_the_structured_schema(name):
    from omegaconf import OmegaConf

    from sim.workload import WorkloadConfig

    cfg = OmegaConf.merge(OmegaConf.structured(WorkloadConfig), OmegaConf.load(PROJECT_ROOT / f"conf/workload/{name}.yaml"))
    assert build_workload(cfg, num_requests=50).num_requests == 50


def test_rate_scaling_a_drift_keeps_its_phase_boundaries_on_its_requests():
    w = build_workload("drift", seed=0)
    fast = w.scale_rate(2.0)
    for p, q in zip(w.meta["phases"], fast.meta["phases"]):
        assert (q["start_s"], q["end_s"]) == (p["start_s"] / 2, p["end_s"] / 2)
        inside = (fast.arrival_s >= q["start_s"]) & (fast.arrival_s < q["end_s"])
        assert inside.sum() == p["requests"]


def test_window_edges_are_start_inclusive_end_exclusive_with_requests_on_both():
    """The window is [start_s, end_s) (docs/INTERFACES.md): a request arriving exactly at start_s is kept (and
    re-timed to 0), one exactly at end_s is left out. The edges are real arrival times of the trace, so flipped
    edges lose the first request and gain the last (a window whose edges no request falls on cannot tell)."""
    full = build_workload("conversation")
    a = full.arrival_s
    k, m = 100, 400
    assert a[k - 1] < a[k] and a[m - 1] < a[m]  # no tie at either edge
    w = build_workload("conversation", window=(float(a[k]), float(a[m])))
    assert w.num_requests == m - k
    assert w.arrival_s[0] == 0.0
    np.testing.assert_array_equal(w.arrival_s, a[k:m] - a[k])
    np.testing.assert_array_equal(w.input_tokens, full.input_tokens[k:m])
