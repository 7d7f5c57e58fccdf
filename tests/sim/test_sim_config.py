"""Config, plan and metric checks: user mistakes raise one clear ConfigError; metric formulas hold."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import FakeCost, OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from planners.plan import CascadePlan, ReplicaPlan, TierPlan
from sim.common.errors import ConfigError
from sim.metrics import reference_latency_s, slo_scale, summarize, throughput_at_slo
from sim.perf.batch import BatchShape
from sim.spec.plan_io import load_plan, plan_from_dict, plan_to_dict
from sim.simulator import SimConfig, sim_config_from_dict, simulate


@pytest.mark.parametrize("kw, word", [({"batching": "dynamic"}, "batching"), ({"mode": "turbo"}, "mode"),
                                      ({"load_balancer": "random"}, "load_balancer"),
                                      ({"max_num_seqs": 0}, "max_num_seqs")])
def test_bad_sim_config_is_one_clear_error(kw, word):
    with pytest.raises(ConfigError, match=word):
        SimConfig(**kw)


def test_unknown_sim_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys"):
        sim_config_from_dict({"batchng": "vllm"})


def test_sim_conf_files_load():
    from omegaconf import OmegaConf

    from sim.common.paths import CONF_DIR

    cfg = sim_config_from_dict(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sim" / "default.yaml")))
    assert cfg == SimConfig(judge=cfg.judge)


def test_plan_errors_name_the_replica():
    bad = CascadePlan("x", (TierPlan("llama3_8b", (ReplicaPlan(1, 1, ((0, 0),)), ReplicaPlan(1, 1, ((0, 0),)))),
                            TierPlan("llama3_70b", ())), (50.0,))
    with pytest.raises(ConfigError, match=r"GPU \(0, 0\) is already used"):
        simulate(bad, llama_cascade(), cluster(), poisson_workload(5, 1.0, 0), cost_factory=fake_factory(),
                 judge=OracleJudge())
    with pytest.raises(ConfigError, match="thresholds"):
        simulate(plan((1, 1), thresholds=()), llama_cascade(), cluster(), poisson_workload(5, 1.0, 0),
                 cost_factory=fake_factory(), judge=OracleJudge())


def test_plan_yaml_round_trip_and_default_plan_uses_32_gpus():
    p = load_plan("deepseek_default")
    assert p.num_gpus == 32 and p.gpus_per_tier() == (8, 8, 16)
    assert plan_from_dict(plan_to_dict(p)) == p
    with pytest.raises(ConfigError, match="not found"):
        load_plan("no_such_plan")
    with pytest.raises(ConfigError, match="unknown key"):
        plan_from_dict({"tiers": [], "thresold": 1})


def test_reference_latency_closed_form_equals_iteration_sum():
    cost = FakeCost()
    p, out = 100, 7
    steps = sum(cost.iteration_time_s(BatchShape(decode_seqs=1, decode_ctx_tokens=p + g)) for g in range(1, out))
    pre = cost.iteration_time_s(BatchShape(prefill_tokens=p, prefill_attn_pairs=p * (p + 1) / 2, num_prefill_seqs=1))
    got = reference_latency_s(np.array([p]), np.array([out]), cost)[0]
    assert got == pytest.approx(pre + steps, rel=1e-12)


def test_slo_scale_is_the_attainment_quantile_and_counts_drops_as_misses():
    ref = np.ones(20)
    lat = np.arange(1, 21, dtype=float)
    assert slo_scale(lat, ref, 0.95) == 19.0
    lat[-2:] = np.nan
    assert slo_scale(lat, ref, 0.95) == np.inf


def test_summarize_and_throughput_bisection(cluster_spec=None):
    cas, cl = llama_cascade(), cluster()
    base = poisson_workload(300, 10.0, 2)

    def run(f):
        return simulate(plan((1, 1)), cas, cl, base.scale_rate(f), SimConfig(), cost_factory=fake_factory(),
                        judge=OracleJudge(0.27))

    s = summarize(run(1.0), cas, plan((1, 1)), cluster=cl)
    for key in ("slo_scale", "quality", "completed_rps", "gpu_s_per_request", "p95_latency_s", "p50_ttft_s",
                "p99_tpot_s", "tier_share", "dropped", "per_tier"):
        assert key in s
    assert s["tier_share"][0] == 1.0 and 0 < s["tier_share"][1] < 1
    target = 2.0 * s["slo_scale"]
    f = throughput_at_slo(run, target, lo=0.5, hi=64.0, iters=5, cascade=cas, cluster=cl)
    assert 1.0 <= f < 64.0  # the plan meets a looser target at its own rate and breaks at some higher rate


def test_reference_length_choice_changes_ref_only_for_requests_answered_with_another_length():
    import pandas as pd

    from sim.metrics import request_slo_ratios
    from sim.runtime.records import SimResult

    df = pd.DataFrame({"input_tokens": [200, 200, 200], "output_tokens_t0": [50, 50, 50],
                       "output_tokens_t1": [400, 400, 400], "output_tokens_final": [50, 400, 0],
                       "final_tier": [0, 1, -1], "status": ["completed", "completed", "dropped"],
                       "latency_s": [1.0, 2.0, np.nan]})

    def ref(length):
        cfg = {"reference_length": length} if length else {}
        r, info = request_slo_ratios(SimResult(df, None, {"sim_config": cfg}), llama_cascade(), cluster())
        return r, info["length"]

    largest, name = ref(None)
    assert name == "largest_tier" and largest[0] == largest[1] == largest[2]  # plan-independent denominators
    returned, name = ref("returned")
    assert name == "returned"
    assert returned[0] < largest[0]  # answered early with a shorter answer: a shorter reference
    assert returned[1] == largest[1] and returned[2] == largest[2]  # answered by the reference tier; dropped
    with pytest.raises(ConfigError, match="reference_length"):
        SimConfig(reference_length="shortest")


@pytest.mark.parametrize("tier", [2, 5, -3])
def test_reference_tier_out_of_range_is_an_error_not_a_wrapped_tier(tier):
    """A 2-tier cascade has tiers -2..1: tier 2 once meant tier 0 (index modulo tiers), the smallest model."""
    cas, cl = llama_cascade(), cluster()
    from sim.metrics import reference_deployment

    with pytest.raises(ConfigError, match=r"reference_tier = .* out of range .* give -2\.\.1"):
        reference_deployment(cas, cl, tier)
    with pytest.raises(ConfigError, match="out of range"):
        simulate(plan((1, 1)), cas, cl, poisson_workload(20, 5.0, 2), SimConfig(reference_tier=tier),
                 cost_factory=fake_factory(), judge=OracleJudge())
    assert reference_deployment(cas, cl, -1)[0] == reference_deployment(cas, cl, 1)[0] == 1
    assert reference_deployment(cas, cl, -2)[0] == 0
