"""The decode segment's clock in the engine (sim.runtime.jump, replica): analytic oracle and the cost contract.

A lone request decodes in one segment, so its completion is its first token plus the exact sum of its decode
iterations (rationals, no rounding); a second request that joins starts a new segment at its prefill's end. Reference
mode refuses a cost model whose decode_affine differs from its own iteration time (the ReplicaCost contract both
modes' clocks rely on) rather than simulate on with a wrong clock."""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from sim_fakes import FakeCost, OracleJudge, cluster, llama_cascade, plan

from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload


def _workload(arrivals, prompts, outs):
    n = len(arrivals)
    out = np.array([[o, o] for o in outs], dtype=np.int64)
    return Workload("lone", np.array(arrivals, dtype=np.float64), np.array(prompts, dtype=np.int64), out,
                    np.full((n, 2), 99.0), np.array([f"q{i}" for i in range(n)]), ("m0", "m1"))


def _factory(cost_type=FakeCost):
    def factory(tier, replica, cluster, engine="vllm"):
        return cost_type(tp=replica.tp, pp=replica.pp)
    return factory


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_lone_request_completes_at_the_exact_sum_of_its_decode_iterations(mode):
    prompt, out = 300, 400
    w = _workload([0.5], [prompt], [out])
    r = simulate(plan((1, 0)), llama_cascade(), cluster(), w, SimConfig(mode=mode), seed=0, cost_factory=_factory(),
                 judge=OracleJudge(0.0))
    row = r.requests.iloc[0]
    c = FakeCost()
    a, b = (Fraction(x) for x in c.decode_affine(1))
    first = Fraction(float(row.arrival_s + row.ttft_s))
    # after the prefill's token, out - 1 decode iterations, the i-th with prompt + i context tokens (i = 1..)
    exact = first + sum(a + b * (prompt + i) for i in range(1, out))
    assert abs(Fraction(float(row.completion_s)) - exact) <= 4 * np.spacing(float(exact))
    assert r.meta["iterations"] == out  # one prefill, out - 1 decodes


def test_fast_equals_reference_when_segments_restart_at_joins():
    w = _workload([0.0, 0.37, 0.371, 2.5], [300, 50, 4000, 20], [400, 90, 120, 300])
    frames = [simulate(plan((1, 0)), llama_cascade(), cluster(), w, SimConfig(mode=m), seed=0,
                       cost_factory=_factory(), judge=OracleJudge(0.0)).requests for m in ("fast", "reference")]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


@dataclass
class ContractBreakingCost(FakeCost):
    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        a, b = super().decode_affine(decode_seqs)
        return a, float(np.nextafter(b, 1.0))  # an ulp off: a + b * S no longer equals iteration_time_s


def test_reference_mode_refuses_a_cost_that_breaks_the_contract():
    w = _workload([0.0], [300], [40])
    with pytest.raises(RuntimeError, match="ReplicaCost contract"):
        simulate(plan((1, 0)), llama_cascade(), cluster(), w, SimConfig(mode="reference"), seed=0,
                 cost_factory=_factory(ContractBreakingCost), judge=OracleJudge(0.0))
