"""Planners and context limits: a request no tier can take is left out of planning (one absurd prompt does not
move the plan for the others), and under context_policy skip routing is replayed past the tiers that cannot take
a request."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from planners.base import get_planner
from planners.problem import PlanningProblem
from planners.routing import context_ok, final_tiers, reach_mask

from conftest import make_problem


def _with_outlier(problem: PlanningProblem, prompt_tokens: int) -> PlanningProblem:
    w = problem.workload
    mid = w.num_requests // 2
    w2 = w.take(np.r_[np.arange(w.num_requests), mid])  # a copy of a middle row: the rate span is unchanged
    inp = w2.input_tokens.copy()
    inp[mid] = prompt_tokens
    return replace(problem, workload=replace(w2, input_tokens=inp))


@pytest.mark.integration  # two full plans per planner on the real cost model
@pytest.mark.parametrize("planner", ["cascadia", "cascadeserve", "single_model"])
def test_a_billion_token_prompt_does_not_change_the_plan(planner):
    base = make_problem(num_tiers=3, num_nodes=2, rate_rps=8.0)
    outlier = _with_outlier(base, 10**9)
    assert outlier.excluded_requests == 1 and outlier.workload.num_requests == base.workload.num_requests
    a, b = get_planner(planner).plan(base), get_planner(planner).plan(outlier)
    assert a.tiers == b.tiers and a.thresholds == b.thresholds


def test_drop_policy_plans_without_requests_the_first_tier_refuses():
    base = make_problem(num_tiers=3, context_policy="drop")
    # llama3_8b (the first tier) takes 8192 tokens; deepseek_v3 (the last) 163840.
    p = _with_outlier(base, 20000)
    assert p.excluded_requests == 1
    assert _with_outlier(make_problem(num_tiers=3), 20000).excluded_requests == 0  # skip: the last tier takes it


def test_skip_routing_passes_over_tiers_that_cannot_take_a_request():
    scores = np.array([[90.0, 90.0, 90.0], [90.0, 90.0, 90.0], [0.0, 0.0, 0.0]])
    accepts = context_ok(np.array([100, 9000, 100]), np.ones((3, 3), dtype=np.int64), [8192, 8192, 163840])
    assert accepts.tolist() == [[True] * 3, [False, False, True], [True] * 3]
    final = final_tiers(scores, (50.0, 50.0), accepts)
    assert final.tolist() == [0, 2, 2]
    reach = reach_mask(final, 3, (50.0, 50.0), accepts)
    assert reach.tolist() == [[True, False, False], [False, False, True], [True, True, True]]
    # The last tier that can take a request answers it even below its threshold.
    short_last = context_ok(np.array([9000]), np.ones((1, 3), dtype=np.int64), [163840, 163840, 8192])
    assert final_tiers(np.zeros((1, 3)), (50.0, 50.0), short_last).tolist() == [1]


def test_unknown_context_policy_is_refused():
    from sim.common.errors import ConfigError

    with pytest.raises(ConfigError, match="context_policy"):
        make_problem(context_policy="truncate")
