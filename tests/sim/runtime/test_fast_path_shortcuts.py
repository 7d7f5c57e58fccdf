"""Shortcuts the simulator takes on its hot path give the answers of the checks they skip: the once-per-request
context-limit decision (a forwarded draft counts) and the per-run memo of prefill-batch times (a rebuilt cost
after a degraded link is used from then on; the memo's size is capped)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sim_fakes import OracleJudge, cluster, context_cascade, fake_factory, llama_cascade, plan, poisson_workload

from sim.control.controller import OnlineController
from sim.spec.faults import faults_from_config
from sim.perf.batch import BatchShape
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_forwarded_draft_counts_against_the_next_tiers_context(mode):
    # llama2_7b takes 4096 tokens, llama3_70b 8192. Request 0: 3000 + 1000 fits tier 0, and 3000 + 5000 fits tier 1,
    # but with the 1000-token draft forwarded 9000 does not: tier 0's answer stands. Request 1 fits everywhere.
    w = Workload("ctx", np.array([0.0, 1.0]), np.array([3000, 100], dtype=np.int64),
                 np.array([[1000, 5000], [10, 10]], dtype=np.int64), np.zeros((2, 2)), np.array(["0", "1"]), ("a", "b"))
    p = plan((1, 1), thresholds=(50.0,), models=("llama2_7b", "llama3_70b"))

    def final_tiers(draft):
        r = simulate(p, context_cascade(), cluster(), w, SimConfig(mode=mode, forward_with_draft=draft),
                     cost_factory=fake_factory(), judge=OracleJudge(0.1))
        assert (r.requests.status == "completed").all()
        return r.requests.final_tier.tolist()

    assert final_tiers(False) == [1, 1]  # both fail the gate (score 0 < 50) and are forwarded
    assert final_tiers(True) == [0, 1]


def test_prefill_iterations_after_a_degraded_link_take_the_rebuilt_cost():
    def factory(tier, replica, cluster_spec, engine="vllm"):
        return fake_factory(base_s=0.004 * 200.0 / cluster_spec.ib_bw_gbps)(tier, replica, cluster_spec, engine)

    cl, fault_s = cluster(), 10.0  # every replica of plan((2, 1)) is on node 0
    faults = faults_from_config([{"kind": "link_degraded", "at_s": fault_s, "node": 0, "factor": 0.5}], cl)
    r = simulate(plan((2, 1)), llama_cascade(), cl, poisson_workload(400, 30.0, 2), SimConfig(record_iterations=True),
                 cost_factory=factory, judge=OracleJudge(0.27), controller=OnlineController(faults))
    pre = r.iterations[r.iterations.prefill_tokens > 0]
    any_replica = plan((1,)).tiers[0].replicas[0]
    healthy = factory(None, any_replica, cl)
    degraded = factory(None, any_replica, replace(cl, ib_bw_gbps=cl.ib_bw_gbps * 0.5))
    expected = [(degraded if start >= fault_s else healthy).iteration_time_s(
        BatchShape(prefill_tokens=int(p), num_prefill_seqs=int(s), decode_seqs=int(d), decode_ctx_tokens=int(c)))
        for start, p, s, d, c in zip(pre.start_s, pre.prefill_tokens, pre.prefill_seqs, pre.decode_seqs,
                                     pre.decode_ctx_tokens)]
    after = pre.start_s.to_numpy() >= fault_s
    assert after.sum() > 50 and (~after).sum() > 50
    # Prompt lengths recur (8..600 tokens over 400 requests), so times memoized before the rebuild would show here.
    assert pre.prefill_tokens[after].isin(pre.prefill_tokens[~after]).any()
    np.testing.assert_array_equal(pre.duration_s.to_numpy(), np.array(expected))


def test_the_prefill_memo_stops_growing_at_its_cap_and_changes_no_record(monkeypatch):
    import sim.runtime.replica

    w = poisson_workload(300, 30.0, 3)

    def run():
        return simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                        judge=OracleJudge(0.27))

    unbounded = run()
    monkeypatch.setattr(sim.runtime.replica, "STEP_TIMES_MAX", 3)
    replicas = []
    real_init = sim.runtime.replica.Replica.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        replicas.append(self)

    monkeypatch.setattr(sim.runtime.replica.Replica, "__init__", init)
    capped = run()
    assert replicas and all(len(rep.step_times) == 3 for rep in replicas)
    pd.testing.assert_frame_equal(unbounded.requests, capped.requests, check_exact=True)
