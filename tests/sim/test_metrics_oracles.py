"""sim.metrics against brute force and exact contracts: the SLO scale as the smallest passing scale found by
enumeration, the reference deployment as the first TP that fits found by trying each, the summary's documented
keys (a renamed key breaks every table that reads it), the empty case, and the throughput bisection's bracket."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from sim.common.errors import ConfigError, DeploymentDoesNotFit
from sim.metrics import (reference_deployment, request_slo_ratios, slo_scale, summarize, throughput_at_slo)
from sim.runtime.records import SimResult
from sim.simulator import SimConfig, simulate
from sim.spec.cascade import cascade_from_dict

SUMMARY_KEYS = {"requests", "completed", "dropped", "attainment", "dropped_by_reason", "context_skipped", "slo_scale",
                "reference", "completed_rps", "quality", "gpu_s", "gpu_s_per_request", "gpu_s_per_1k_requests",
                "busy_gpu_s_per_request", "tier_share", "final_tier_share", "per_tier", "sim_wall_s", "plan",
                *(f"{s}_{m}" for s in ("p50", "p95", "p99", "mean") for m in ("latency_s", "ttft_s", "tpot_s"))}
PCT_KEYS = {"p50", "p95", "p99", "mean"}


def _brute_force_slo_scale(lat, ref, attainment):
    """Smallest s among the candidate ratios such that at least `attainment` of all requests (dropped = never)
    finish within s x ref."""
    ratios = np.where(np.isfinite(lat), lat / ref, np.inf)
    for s in np.sort(ratios):
        if np.mean(ratios <= s) >= attainment - 1e-12:
            return float(s)
    return float("inf")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("attainment", [0.5, 0.9, 0.95, 0.99])
def test_slo_scale_equals_brute_force(seed, attainment):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    lat = rng.exponential(2.0, n)
    lat[rng.random(n) < 0.05] = np.nan
    ref = rng.uniform(0.5, 2.0, n)
    assert slo_scale(lat, ref, attainment) == _brute_force_slo_scale(lat, ref, attainment)


def test_slo_scale_of_nothing_is_nan_and_of_one_request_its_ratio():
    assert math.isnan(slo_scale(np.array([]), np.array([]), 0.95))
    assert slo_scale(np.array([3.0]), np.array([2.0]), 0.95) == 1.5


@pytest.mark.parametrize("model", ["codellama_34b", "llama3_70b"])
def test_reference_deployment_is_the_smallest_tp_that_fits_one_node(model):
    from sim.perf.cost_model import build_replica_cost

    cas = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": model}]})
    cl = cluster()
    tier = cas.tiers[-1]
    fits = []
    for tp in (1, 2, 4, 8):
        try:
            fits.append((tp, build_replica_cost(tier.model, cl.gpu, tp, 1, tier.weights, tier.kv)))
        except (DeploymentDoesNotFit, ConfigError):
            continue
    t, tp, cost = reference_deployment(cas, cl)
    assert (t, tp) == (1, fits[0][0])
    assert cost.kv_capacity_blocks == fits[0][1].kv_capacity_blocks
    assert (cost.tp, cost.pp) == (tp, 1)
    sg = reference_deployment(cas, cl, engine="sglang")[2]
    assert sg.iteration_time_s != cost.iteration_time_s or sg is not cost  # the engine reaches the cost model


def test_reference_deployment_that_fits_no_node_names_the_model():
    cas = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "deepseek_v3"}]})
    with pytest.raises(ConfigError, match=r"reference model .*deepseek.* does not fit one node of 8 x"):
        reference_deployment(cas, cluster())


def _result():
    w = poisson_workload(200, 20.0, 1)
    return simulate(plan((1, 1)), llama_cascade(), cluster(), w, SimConfig(), seed=1, cost_factory=fake_factory(),
                    judge=OracleJudge(0.1))


def test_summary_has_exactly_the_documented_keys():
    r = _result()
    s = summarize(r, llama_cascade(), plan((1, 1)), cluster=cluster())
    assert set(s) == SUMMARY_KEYS
    assert s["requests"] == 200 == s["completed"] + s["dropped"] and s["attainment"] == 0.95
    assert s["reference"]["tier"] == 1 and s["reference"]["length"] == "largest_tier"
    for p in s["per_tier"]:
        assert set(p) == {"tier", "model", "share_reaching", "share_answered", "ttft_s", "tpot_s", "service_s"}
        for k in ("ttft_s", "tpot_s", "service_s"):
            assert set(p[k]) == PCT_KEYS
    assert [p["model"] for p in s["per_tier"]] == ["llama3_8b", "llama3_70b"]
    assert sum(s["final_tier_share"]) == pytest.approx(1.0)
    df = r.requests
    assert s["quality"] == pytest.approx(df.final_score.mean())
    assert s["completed_rps"] == pytest.approx(200 / r.meta["makespan_s"])
    assert s["busy_gpu_s_per_request"] == pytest.approx(r.meta["busy_gpu_s"] / 200)
    # The attainment argument wins over the run's; the SLO scale moves with it.
    s50 = summarize(r, llama_cascade(), cluster=cluster(), attainment=0.5)
    assert s50["attainment"] == 0.5 and s50["slo_scale"] < s["slo_scale"]


def test_summary_of_a_run_where_nothing_completed_is_nan_under_the_same_keys():
    df = pd.DataFrame({"status": ["dropped"] * 2, "drop_reason": ["x", "x"], "latency_s": [np.nan] * 2,
                       "ttft_s": [np.nan] * 2, "final_score": [np.nan] * 2, "final_tier": [-1, -1],
                       "output_tokens_final": [0, 0], "input_tokens": [10, 10],
                       **{f"{c}_t{t}": [np.nan] * 2 for c in ("enter_s", "queue_s", "prefill_s", "decode_s")
                          for t in (0, 1)},
                       **{f"output_tokens_t{t}": [5, 5] for t in (0, 1)}})
    s = summarize(SimResult(df, None, {"makespan_s": 1.0, "gpu_s": 8.0}), llama_cascade())
    assert s["completed"] == 0 and s["dropped"] == 2 and s["dropped_by_reason"] == {"x": 2}
    for m in ("latency_s", "ttft_s", "tpot_s"):
        for p in PCT_KEYS:
            assert math.isnan(s[f"{p}_{m}"])
    assert math.isnan(s["quality"]) and s["gpu_s_per_request"] == 8.0  # no completed request: divided by 1
    assert all(set(p["ttft_s"]) == PCT_KEYS for p in s["per_tier"])


def test_slo_ratios_use_the_runs_reference_tier_and_engine():
    r = _result()
    ref_last, info = request_slo_ratios(r, llama_cascade(), cluster())
    assert info["tier"] == 1 and info["model"] == "llama3_70b"
    r.meta["sim_config"]["reference_tier"] = 0
    ref_first, info0 = request_slo_ratios(r, llama_cascade(), cluster())
    assert info0["tier"] == 0 and info0["model"] == "llama3_8b"
    from sim.metrics import reference_latency_s

    df = r.requests
    t0, tp0, cost0 = reference_deployment(llama_cascade(), cluster(), 0)
    np.testing.assert_array_equal(ref_first, reference_latency_s(df.input_tokens, df.output_tokens_t0, cost0))
    assert not np.array_equal(ref_first, ref_last)
    r.meta["sim_config"]["engine"] = "sglang"
    ref_sg, _ = request_slo_ratios(r, llama_cascade(), cluster())
    assert not np.array_equal(ref_sg, ref_first)


def test_throughput_bisection_brackets_the_highest_passing_rate():
    """A fake run whose SLO holds exactly up to factor 3.3: the answer is the highest bisection point at or below
    it, within the documented resolution (hi/lo)**(2**-iters)."""
    cas, cl = llama_cascade(), cluster()
    base = _result()
    ref, _ = request_slo_ratios(base, cas, cl)

    def run(f):
        df = base.requests.copy()
        df["latency_s"] = ref * (1.0 if f <= 3.3 else 10.0)  # SLO scale 1 below the knee, 10 above
        return SimResult(df, None, base.meta)

    lo, hi, iters = 0.25, 16.0, 8
    f = throughput_at_slo(run, 2.0, lo=lo, hi=hi, iters=iters, cascade=cas, cluster=cl)
    assert f <= 3.3 < f * (hi / lo) ** (2.0 ** -iters) * (1 + 1e-12)
    assert throughput_at_slo(run, 2.0, lo=0.25, hi=3.0, cascade=cas, cluster=cl) == 3.0  # hi passes
    assert throughput_at_slo(run, 0.5, lo=0.25, hi=3.0, cascade=cas, cluster=cl) == 0.0  # even lo fails
    with pytest.raises(ConfigError, match="0 < lo < hi"):
        throughput_at_slo(run, 2.0, lo=2.0, hi=1.0, cascade=cas, cluster=cl)
    with pytest.raises(ConfigError, match="needs the cascade"):
        throughput_at_slo(run, 2.0)


def test_defaults_when_a_result_lacks_run_metadata():
    """A hand-made SimResult (no attainment, GPU-seconds or sim_config in its meta) gets the documented defaults:
    attainment 0.95, NaN GPU-seconds, the largest tier and vLLM as the reference."""
    r = _result()
    bare = SimResult(r.requests, None, {"makespan_s": r.meta["makespan_s"]})
    s = summarize(bare, llama_cascade(), cluster=cluster())
    assert s["attainment"] == 0.95
    assert math.isnan(s["gpu_s"]) and math.isnan(s["gpu_s_per_request"]) and math.isnan(s["busy_gpu_s_per_request"])
    ref, info = request_slo_ratios(bare, llama_cascade(), cluster())
    assert info["tier"] == 1 and info["length"] == "largest_tier"
    np.testing.assert_array_equal(ref, request_slo_ratios(r, llama_cascade(), cluster())[0])
    full = summarize(r, llama_cascade(), cluster=cluster())
    assert s["slo_scale"] == full["slo_scale"]


def test_meets_slo_is_slo_scale_at_most_the_target_at_the_runs_attainment():
    from sim.metrics import meets_slo

    r = _result()
    cas, cl = llama_cascade(), cluster()
    s95 = summarize(r, cas, cluster=cl)["slo_scale"]
    assert meets_slo(r, s95, cas, cl) and not meets_slo(r, s95 * (1 - 1e-9), cas, cl)  # the boundary passes
    half = SimResult(r.requests, None, {**r.meta, "attainment": 0.5})
    s50 = summarize(half, cas, cluster=cl)["slo_scale"]
    assert s50 < s95 and meets_slo(half, s50, cas, cl) and not meets_slo(r, s50, cas, cl)
    bare = SimResult(r.requests, None, {})
    assert meets_slo(bare, s95, cas, cl) and not meets_slo(bare, s95 * (1 - 1e-9), cas, cl)  # 0.95 by default
    # The engine argument reaches the reference: SGLang's reference times differ, so does the verdict at the edge.
    s_sg = summarize(r, cas, cluster=cl, engine="sglang")["slo_scale"]
    assert s_sg != s95
    assert meets_slo(r, s_sg, cas, cl, engine="sglang") and meets_slo(r, s_sg, cas, cl) == (s95 <= s_sg)


def test_returned_length_uses_a_one_token_answer():
    df = pd.DataFrame({"input_tokens": [200, 200], "output_tokens_t0": [1, 1], "output_tokens_t1": [400, 400],
                       "output_tokens_final": [1, 400], "final_tier": [0, 1], "status": ["completed"] * 2,
                       "latency_s": [1.0, 2.0]})
    returned, _ = request_slo_ratios(SimResult(df, None, {"sim_config": {"reference_length": "returned"}}),
                                     llama_cascade(), cluster())
    largest, _ = request_slo_ratios(SimResult(df, None, {"sim_config": {}}), llama_cascade(), cluster())
    assert returned[0] < largest[0] and returned[1] == largest[1]


def _records_with(df_extra: dict, n: int = 4, tiers: int = 2) -> pd.DataFrame:
    """A hand-made record table of n completed requests answered by tier 0 (columns as sim.runtime.records)."""
    base = {"status": ["completed"] * n, "drop_reason": [""] * n, "latency_s": np.linspace(1.0, 2.0, n),
            "ttft_s": np.linspace(0.1, 0.2, n), "final_score": np.linspace(10, 40, n), "final_tier": [0] * n,
            "output_tokens_final": [5] * n, "input_tokens": [100] * n,
            **{f"{c}_t{t}": [np.nan] * n for c in ("enter_s", "queue_s", "prefill_s", "decode_s")
               for t in range(tiers)},
            **{f"output_tokens_t{t}": [5] * n for t in range(tiers)}}
    base.update(df_extra)
    return pd.DataFrame(base)


def test_per_tier_metrics_equal_numpy_on_the_records():
    """Each tier's TTFT, TPOT, service time and answered share recomputed from the record columns with numpy
    (TPOT over answers of 2 tokens or more: a one-token answer has no inter-token gap; a visit counts where it was
    served, i.e. decoded)."""
    r = _result()
    df = r.requests.copy()
    # Make the per-tier columns carry distinct values, with one- and two-token answers among them.
    df.loc[df.index[:5], "output_tokens_t0"] = 1
    df.loc[df.index[5:12], "output_tokens_t0"] = 2
    # A visit prefilled but never decoded (dropped during decode) has a queue and prefill time and no service.
    prefilled = df.index[np.isfinite(df.decode_s_t0.to_numpy())][20]
    df.loc[prefilled, "decode_s_t0"] = np.nan
    s = summarize(SimResult(df, None, r.meta), llama_cascade())
    done = (df.status == "completed").to_numpy()
    for t, p in enumerate(s["per_tier"]):
        served = np.isfinite(df[f"decode_s_t{t}"].to_numpy())
        assert served.sum() >= 10
        q, pf, d = (df[f"{c}_t{t}"].to_numpy()[served] for c in ("queue_s", "prefill_s", "decode_s"))
        o = df[f"output_tokens_t{t}"].to_numpy()[served]
        multi = o >= 2
        want = {"ttft_s": q + pf, "tpot_s": d[multi] / (o[multi] - 1), "service_s": q + pf + d}
        for key, x in want.items():
            assert p[key]["p50"] == pytest.approx(np.percentile(x, 50), rel=1e-12), (t, key)
            assert p[key]["p95"] == pytest.approx(np.percentile(x, 95), rel=1e-12), (t, key)
            assert p[key]["p99"] == pytest.approx(np.percentile(x, 99), rel=1e-12), (t, key)
            assert p[key]["mean"] == pytest.approx(np.mean(x), rel=1e-12), (t, key)
        assert p["share_answered"] == pytest.approx(np.mean(done & (df.final_tier.to_numpy() == t)))
        assert p["share_reaching"] == pytest.approx(np.mean(np.isfinite(df[f"enter_s_t{t}"].to_numpy())))
    assert s["per_tier"][0]["share_answered"] + s["per_tier"][1]["share_answered"] == pytest.approx(done.mean())


def test_one_token_answers_raise_no_numpy_warning():
    """A one-token answer has no TPOT (0 / 0 decode time per gap): it is left out silently, not with a
    RuntimeWarning in every run's log."""
    import warnings

    df = _records_with({"output_tokens_final": [1, 1, 5, 5], "output_tokens_t0": [1, 1, 5, 5],
                        "decode_s_t0": [0.0, 0.0, 0.4, 0.8], "queue_s_t0": [0.0] * 4, "prefill_s_t0": [0.1] * 4,
                        "enter_s_t0": [0.0] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = summarize(SimResult(df, None, {"makespan_s": 2.0}), llama_cascade())
    assert s["p50_tpot_s"] == pytest.approx(0.15) and s["per_tier"][0]["tpot_s"]["mean"] == pytest.approx(0.15)


def test_summary_without_a_cluster_has_no_slo_scale_and_no_reference():
    r = _result()
    s = summarize(r, llama_cascade(), plan((1, 1)))
    assert math.isnan(s["slo_scale"]) and s["reference"] is None
    assert s["plan"] == plan((1, 1)).describe() and "plan" not in summarize(r, llama_cascade())
    assert s["sim_wall_s"] == r.meta["wall_s"] > 0


def test_completed_rps_needs_a_positive_makespan():
    """completed / makespan for any positive makespan (also below one second); NaN when the run recorded none
    or a zero span (not a division by zero)."""
    df = _records_with({})
    assert summarize(SimResult(df, None, {"makespan_s": 0.5}), llama_cascade())["completed_rps"] == 8.0
    assert summarize(SimResult(df, None, {"makespan_s": 2.0}), llama_cascade())["completed_rps"] == 2.0
    for meta in ({"makespan_s": 0.0}, {}):
        s = summarize(SimResult(df, None, meta), llama_cascade())
        assert math.isnan(s["completed_rps"]) and math.isnan(s["sim_wall_s"])
        assert s["context_skipped"] == 0 and s["dropped_by_reason"] == {}


def test_busy_gpu_seconds_per_request_divides_by_completed_requests():
    df = _records_with({"status": ["completed", "dropped", "dropped", "dropped"]})
    s = summarize(SimResult(df, None, {"makespan_s": 1.0, "gpu_s": 6.0, "busy_gpu_s": 3.0}), llama_cascade())
    assert s["busy_gpu_s_per_request"] == 3.0 and s["gpu_s_per_request"] == 6.0


def test_slo_scale_attains_95_percent_by_default():
    rng = np.random.default_rng(3)
    lat, ref = rng.exponential(2.0, 41), rng.uniform(0.5, 2.0, 41)
    assert slo_scale(lat, ref) == _brute_force_slo_scale(lat, ref, 0.95)


def test_reference_latency_of_a_one_token_answer_is_its_prefill_alone():
    """Output of 1 token (or 0, clamped to 1): the prefill iteration only, no decode step; each further token
    adds one batch-1 decode step over a context one token longer (oracle: the cost model summed step by step)."""
    from sim.metrics import reference_latency_s
    from sim.perf.batch import BatchShape

    cost = reference_deployment(llama_cascade(), cluster())[2]
    p = 300
    prefill = cost.iteration_time_s(BatchShape(prefill_tokens=p, prefill_attn_pairs=p * (p + 1) / 2.0,
                                               num_prefill_seqs=1))
    got = reference_latency_s(np.array([p, p, p]), np.array([0, 1, 4]), cost)
    assert got[0] == got[1] == pytest.approx(prefill, rel=1e-12)
    steps = sum(cost.iteration_time_s(BatchShape(decode_seqs=1, decode_ctx_tokens=p + g)) for g in (1, 2, 3))
    assert got[2] == pytest.approx(prefill + steps, rel=1e-9)


def test_reference_deployment_uses_the_tiers_kv_precision():
    """An FP8 KV cache holds twice the tokens of BF16 in the same memory: the reference's capacity says so."""
    bf16 = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b"}]})
    fp8 = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "llama3_70b", "kv": "fp8"}]})
    (_, tp16, c16), (_, tp8, c8) = reference_deployment(bf16, cluster()), reference_deployment(fp8, cluster())
    assert tp16 == tp8
    assert c8.kv_capacity_blocks == pytest.approx(2 * c16.kv_capacity_blocks, rel=0.01)


def test_reference_deployment_doubles_tp_until_it_fits():
    """A model too large for 1, 2 or 4 GPUs of the node is placed on 8 (1 -> 2 -> 4 -> 8, powers of two): the
    first TP that fits, found here by trying each degree."""
    from sim.perf.cost_model import build_replica_cost

    cl = cluster()
    wants = []
    for model, weights in (("llama31_405b", "fp8"), ("mixtral_8x22b", "bf16"), ("llama3_70b", "bf16"),
                           ("codellama_34b", "bf16"), ("llama2_13b", "bf16")):
        cas = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"},
                                                        {"model": model, "weights": weights}]})
        tier = cas.tiers[-1]
        first = None
        for tp in (1, 2, 3, 4, 5, 6, 7, 8):
            try:
                build_replica_cost(tier.model, cl.gpu, tp, 1, tier.weights, tier.kv, **tier.deployment(tp))
            except (DeploymentDoesNotFit, ConfigError):
                continue
            first = tp
            break
        want = min(x for x in (1, 2, 4, 8) if x >= first)
        assert reference_deployment(cas, cl)[1] == want, (model, weights)
        wants.append(want)
    assert max(wants) >= 4  # at least one model needs more than one doubling


def test_returned_length_keeps_the_reference_length_for_a_dropped_request():
    """A dropped request returned nothing, whatever partial count its record holds: its ref(r) keeps the
    reference tier's length."""
    df = pd.DataFrame({"input_tokens": [200, 200], "output_tokens_t0": [3, 3], "output_tokens_t1": [400, 400],
                       "output_tokens_final": [7, 7], "final_tier": [-1, 0], "status": ["dropped", "completed"],
                       "latency_s": [np.nan, 2.0]})
    returned, _ = request_slo_ratios(SimResult(df, None, {"sim_config": {"reference_length": "returned"}}),
                                     llama_cascade(), cluster())
    largest, _ = request_slo_ratios(SimResult(df, None, {"sim_config": {}}), llama_cascade(), cluster())
    assert returned[0] == largest[0] and returned[1] < largest[1]


def test_reference_tier_defaults_to_the_last_of_three():
    cas = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "codellama_34b"},
                                                    {"model": "llama3_70b"}]})
    df = pd.DataFrame({"input_tokens": [50], **{f"output_tokens_t{t}": [10 * (t + 1)] for t in range(3)}})
    _, info = request_slo_ratios(SimResult(df, None, {}), cas, cluster())
    assert info["tier"] == 2 and info["model"] == "llama3_70b"


def test_throughput_bisection_defaults_and_bounds():
    """Defaults lo 0.25, hi 4, 6 geometric steps: the answer is the largest point 0.25 * 16**(k / 64) at or below
    the knee (the exact result of 6 halvings of the log-range). An early stop (SloMissed) is a failed rate; the
    bounds must satisfy 0 < lo < hi strictly and both the cascade and the cluster are needed."""
    from sim.runtime.slo_stop import SloMissed

    cas, cl = llama_cascade(), cluster()
    base = _result()
    ref, _ = request_slo_ratios(base, cas, cl)
    knee = 0.25 * 16 ** (10.7 / 64)

    def run(f):
        if f > knee:
            raise SloMissed("stopped early")
        df = base.requests.copy()
        df["latency_s"] = ref
        return SimResult(df, None, base.meta)

    assert throughput_at_slo(run, 2.0, cascade=cas, cluster=cl) == pytest.approx(0.25 * 16 ** (10 / 64), rel=1e-12)
    assert throughput_at_slo(lambda f: run(min(f, knee)), 2.0, cascade=cas, cluster=cl) == 4.0
    for lo, hi in ((0.0, 1.0), (1.0, 1.0)):
        with pytest.raises(ConfigError, match="0 < lo < hi"):
            throughput_at_slo(run, 2.0, lo=lo, hi=hi, cascade=cas, cluster=cl)
    for kw in ({"cascade": cas}, {"cluster": cl}):
        with pytest.raises(ConfigError, match=r"^throughput_at_slo needs the cascade and the cluster"):
            throughput_at_slo(run, 2.0, **kw)


def test_slo_stop_of_one_request_and_its_engine():
    """A one-request workload still gets an early stop (fail at its one miss); ref(r) comes from the engine
    argument, else the run's configured engine (oracle: reference_latency_s on that engine's reference)."""
    from dataclasses import replace

    from sim.metrics import reference_latency_s, slo_stop

    cas, cl = llama_cascade(), cluster()
    one = poisson_workload(1, 1.0, 2)
    stop = slo_stop(one, 3.0, cas, cl, SimConfig())
    assert stop is not None and stop.fail_at_misses == 1 and stop.target_scale == 3.0
    assert slo_stop(poisson_workload(0, 1.0, 2), 3.0, cas, cl, SimConfig()) is None
    w = poisson_workload(30, 5.0, 2)
    sg_cost = reference_deployment(cas, cl, -1, "sglang")[2]
    want_sg = reference_latency_s(w.input_tokens, np.maximum(w.output_tokens[:, 1], 1), sg_cost)
    vl_cost = reference_deployment(cas, cl, -1, "vllm")[2]
    want_vl = reference_latency_s(w.input_tokens, np.maximum(w.output_tokens[:, 1], 1), vl_cost)
    assert not np.array_equal(want_sg, want_vl)
    sg_cfg = replace(SimConfig(), engine="sglang")
    np.testing.assert_array_equal(slo_stop(w, 3.0, cas, cl, sg_cfg).ref_s, want_sg)
    np.testing.assert_array_equal(slo_stop(w, 3.0, cas, cl, SimConfig(), "sglang").ref_s, want_sg)
    np.testing.assert_array_equal(slo_stop(w, 3.0, cas, cl, sg_cfg, "vllm").ref_s, want_vl)


def test_throughput_bisection_judges_with_the_given_engine():
    """Latencies exactly at SGLang's reference (SLO scale 1 under SGLang) against a target between that and their
    SLO scale under vLLM's reference (oracle: slo_scale on them): one engine passes at every rate, the other at
    none, and the bisection follows the engine it was given (vLLM by default)."""
    cas, cl = llama_cascade(), cluster()
    base = _result()
    ref_sg, _ = request_slo_ratios(base, cas, cl, "sglang")
    ref_vl, _ = request_slo_ratios(base, cas, cl, "vllm")
    lat = ref_sg  # SLO scale exactly 1 under SGLang
    s_vl = slo_scale(lat, ref_vl)
    assert s_vl != 1.0
    target = 1.0 if s_vl > 1.0 else s_vl  # one engine passes it, the other does not
    passes_sg, passes_vl = 1.0 <= target, s_vl <= target
    assert passes_sg != passes_vl

    def run(f):
        df = base.requests.copy()
        df["latency_s"] = lat
        return SimResult(df, None, base.meta)

    assert throughput_at_slo(run, target, cascade=cas, cluster=cl, engine="sglang") == (4.0 if passes_sg else 0.0)
    assert throughput_at_slo(run, target, cascade=cas, cluster=cl) == (4.0 if passes_vl else 0.0)


def test_slo_stop_fails_at_the_miss_count_where_the_quantile_exceeds_the_target():
    """Oracle: brute force over the miss count with slo_scale itself, for sizes where inverted-CDF and linear
    quantiles pick different order statistics; one-token outputs keep their one-token reference."""
    from dataclasses import replace

    from sim.metrics import reference_latency_s, slo_stop

    cas, cl = llama_cascade(), cluster()
    for n in (1, 2, 3, 7, 10, 20, 33):
        for att in (0.5, 0.9, 0.95):
            stop = slo_stop(poisson_workload(n, 5.0, n), 1.0, cas, cl, replace(SimConfig(), attainment=att))
            brute = next(m for m in range(n + 1)
                         if slo_scale(np.r_[np.full(n - m, 0.5), np.full(m, 2.0)], np.ones(n), att) > 1.0)
            assert stop.fail_at_misses == brute, (n, att)
    w0 = poisson_workload(6, 5.0, 4)
    out = w0.output_tokens.copy()
    out[:3, 1] = 1
    w = replace(w0, output_tokens=out)
    cost = reference_deployment(cas, cl)[2]
    np.testing.assert_array_equal(slo_stop(w, 2.0, cas, cl, SimConfig()).ref_s,
                                  reference_latency_s(w.input_tokens, w.output_tokens[:, 1], cost))


def test_reference_that_fits_only_at_a_tp_its_heads_do_not_divide_is_refused():
    """28 heads (Qwen2 7B's) on a model made too large for 4 GPUs: TP 8 does not divide the heads, so no TP of
    one node serves it and the reference is refused by name (the search ends, it does not loop)."""
    from dataclasses import replace

    from sim.spec.cascade import CascadeSpec, TierSpec
    from sim.spec.models import load_model

    wide = replace(load_model("deepseek_r1_distill_qwen_7b"), name="qwen_wide", num_layers=28 * 30)
    cas = CascadeSpec("c", (TierSpec(load_model("llama3_8b")), TierSpec(wide)))
    with pytest.raises(ConfigError, match=r"reference model qwen_wide \(bf16\) does not fit one node of 8 x"):
        reference_deployment(cas, cluster())
    fits4 = CascadeSpec("c", (TierSpec(load_model("llama3_8b")), TierSpec(replace(wide, num_layers=28 * 12))))
    assert reference_deployment(fits4, cluster())[1] == 4


def test_reference_of_a_moe_tier_keeps_its_expert_parallelism():
    """Mixtral 8x22B with ep: tp fits one node at TP 4: the reference replica has EP 4 (whole experts per GPU), not
    the TP-sharded experts of EP 1, so its decode step costs what the tier's own replicas cost."""
    from sim.perf.batch import BatchShape
    from sim.perf.cost_model import build_replica_cost

    cl = cluster()
    cas = cascade_from_dict({"name": "c", "tiers": [{"model": "llama3_8b"}, {"model": "mixtral_8x22b", "ep": "tp"}]})
    t, tp, ref = reference_deployment(cas, cl)
    tier = cas.tiers[t]
    ep4 = build_replica_cost(tier.model, cl.gpu, tp, 1, tier.weights, tier.kv, ep=4)
    ep1 = build_replica_cost(tier.model, cl.gpu, tp, 1, tier.weights, tier.kv)
    step = BatchShape(decode_seqs=32, decode_ctx_tokens=32 * 1000)
    assert tp == 4 and ref.iteration_time_s(step) == ep4.iteration_time_s(step) != ep1.iteration_time_s(step)


def test_reference_latency_memo_returns_the_same_floats_and_never_serves_a_changed_cost():
    """ref(r)'s lone-prompt prefill times are memoized per frozen cost object: the second call returns the very
    floats of the first without evaluating the cost model again; a cost that is not frozen is evaluated every call
    (it may have changed), and two equal-valued but distinct frozen costs keep separate memos."""
    from dataclasses import dataclass

    from sim.perf.batch import BatchShape
    from sim.metrics import reference_latency_s

    calls = []

    @dataclass(frozen=True)
    class Frozen:
        base_s: float

        def iteration_time_s(self, shape: BatchShape) -> float:
            calls.append(shape.prefill_tokens)
            return self.base_s + 1e-5 * shape.prefill_tokens + 1e-9 * shape.prefill_attn_pairs

        def decode_affine(self, n: int):
            return 0.01, 1e-6

    prompts, outs = np.array([100, 7, 100, 4000]), np.array([5, 1, 9, 3])
    cost = Frozen(0.002)
    first = reference_latency_s(prompts, outs, cost)
    # the oracle: the docstring's formula by hand
    want = [0.002 + 1e-5 * p + 1e-9 * p * (p + 1) / 2 + (o - 1) * 0.01 + 1e-6 * ((o - 1) * p + (o - 1) * o / 2)
            for p, o in zip(prompts, outs)]
    np.testing.assert_allclose(first, want, rtol=1e-12)
    assert sorted(calls) == [7, 100, 4000]
    again = reference_latency_s(prompts, outs, cost)
    assert np.array_equal(first, again) and len(calls) == 3  # memo hit: no new evaluation
    other = Frozen(0.004)  # a different cost object: its own memo
    assert np.all(reference_latency_s(prompts, outs, other) > first) and len(calls) == 6

    class Mutable:
        base_s = 0.002
        iteration_time_s = Frozen.iteration_time_s
        decode_affine = Frozen.decode_affine

    m = Mutable()
    before = reference_latency_s(prompts, outs, m)
    m.base_s = 0.003
    after = reference_latency_s(prompts, outs, m)
    np.testing.assert_allclose(after - before, 0.001, rtol=1e-9)
