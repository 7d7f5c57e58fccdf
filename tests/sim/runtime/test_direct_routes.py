"""Direct routing by a learned router's per-question routes: the simulator follows the plan's routes, never the scores."""
from dataclasses import replace

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.spec.plan_io import plan_from_dict, plan_to_dict
from sim.simulator import SimConfig, simulate

from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload


def _routed(w, routes):
    return replace(plan((2, 1), thresholds=(60.0,), routing="direct"), routes=tuple(routes.items()))


def test_requests_go_to_the_tier_their_question_is_routed_to():
    w = poisson_workload(300, 20.0, 7)
    # Routes that contradict the scores: a score-reading router would send high scores to tier 0.
    routes = {q: int(s >= 60.0) for q, s in zip(w.question_ids.tolist(), w.scores[:, 0])}
    r = simulate(_routed(w, routes), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.27))
    df = r.requests
    assert (df.tiers_visited == 1).all() and df.judge_s_t0.isna().all()
    assert (df.final_tier.to_numpy() == np.array([routes[q] for q in w.question_ids.tolist()])).all()


def test_a_question_without_a_route_is_an_error_not_a_default():
    w = poisson_workload(50, 20.0, 7)
    routes = {q: 0 for q in w.question_ids.tolist()[1:]}
    with pytest.raises(ConfigError, match="no route for question 'q0'"):
        simulate(_routed(w, routes), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.27))


def test_routes_survive_the_plan_file_round_trip():
    p = _routed(None, {"a:1": 0, "a:2": 1})
    back = plan_from_dict(plan_to_dict(p))
    assert dict(back.routes) == {"a:1": 0, "a:2": 1} and back.routing == "direct"


def test_routed_plans_run_identically_in_fast_and_reference_mode():
    import pandas as pd

    w = poisson_workload(200, 30.0, 3)
    routes = {q: i % 2 for i, q in enumerate(w.question_ids.tolist())}
    fast, ref = (simulate(_routed(w, routes), llama_cascade(), cluster(), w, SimConfig(mode=m), seed=5,
                          cost_factory=fake_factory(), judge=OracleJudge(0.27)) for m in ("fast", "reference"))
    pd.testing.assert_frame_equal(fast.requests, ref.requests, check_exact=True)
