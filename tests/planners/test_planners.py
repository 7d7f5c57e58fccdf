"""Every planner: feasible plans (independent checker), determinism, quality, settings that matter as documented."""
import numpy as np
import pytest

from planners.base import PLANNERS, get_planner
from planners.bruteforce import brute_force_objective, gap_pct
from planners.cascadia import CascadiaPlanner
from planners.checker import check_plan
from planners.problem import UnattainableQuality
from sim.errors import ConfigError

from conftest import make_problem


@pytest.fixture(scope="module")
def problem3():
    return make_problem(num_tiers=3, num_nodes=4, rate_rps=10.0, n=800)


@pytest.mark.parametrize("name", PLANNERS)
def test_every_planner_plan_passes_checker(problem3, name):
    plan = get_planner(name).plan(problem3)
    assert check_plan(plan, problem3.cascade, problem3.cluster) == []
    assert plan.num_gpus <= problem3.cluster.num_gpus
    assert {"p95_tier_s", "quality", "tier_share", "gpus_per_tier"} <= set(plan.estimates)
    assert "solver" in plan.solver_stats


@pytest.mark.parametrize("name", ["cascadia", "cascadeserve", "routellm"])
def test_quality_requirement_met(problem3, name):
    plan = get_planner(name).plan(problem3)
    assert plan.estimates["quality"] >= problem3.q_min - 1e-9


def test_deterministic(problem3):
    a = get_planner("cascadia").plan(problem3)
    b = get_planner("cascadia").plan(problem3)
    assert a == b
    assert a.estimates["J"] == b.estimates["J"]


@pytest.mark.parametrize("backend", ["cbc", "highs"])
def test_backends_agree(problem3, backend):
    ref = get_planner("cascadia", backend="cbc").plan(problem3)
    plan = get_planner("cascadia", backend=backend).plan(problem3)
    assert plan.solver_stats["solver"] == backend
    assert plan.estimates["J"] == pytest.approx(ref.estimates["J"])


@pytest.mark.parametrize("num_tiers, nodes_gpus, rate", [(2, (1, 8), 6.0), ("small3", (1, 8), 3.0),
                                                          ("small3", (1, 8), 8.0), (2, (1, 4), 3.0)])
def test_cascadia_within_5pct_of_brute_force(num_tiers, nodes_gpus, rate):
    problem = make_problem(num_tiers=num_tiers, num_nodes=nodes_gpus[0], gpus_per_node=nodes_gpus[1],
                           rate_rps=rate, n=400)
    planner = CascadiaPlanner()
    plan = planner.plan(problem)
    j_bf, _, _ = brute_force_objective(problem, planner)
    assert gap_pct(plan.estimates["J"], j_bf) <= 5.0


def test_unattainable_q_min_names_best_quality():
    with pytest.raises(UnattainableQuality, match=r"q_min 99 is not attainable .* best attainable quality is \d+\.\d"):
        make_problem(q_min=99.0)


def test_q_min_out_of_range():
    with pytest.raises(ConfigError, match="0-100"):
        make_problem(q_min=140.0)


def test_unknown_planner_and_setting():
    with pytest.raises(ConfigError, match="valid names"):
        get_planner("oracle")
    with pytest.raises(ConfigError, match="unknown setting"):
        get_planner("cascadia", muu=3)


def test_mu_makes_quality_a_constraint(problem3):
    strict = get_planner("cascadia").plan(problem3)
    loose = get_planner("cascadia", mu=0.0).plan(problem3)
    assert strict.estimates["quality"] >= problem3.q_min
    # Without the quality term the search buys latency with quality.
    assert loose.estimates["quality"] < problem3.q_min
    assert loose.estimates["latency_objective_s"] <= strict.estimates["latency_objective_s"]


def test_theta0_starts_feasible(problem3):
    planner = CascadiaPlanner()
    from planners.routing import candidate_thresholds
    from planners.search import SearchContext

    ctx = SearchContext(problem3)
    cands = [candidate_thresholds(problem3.workload.scores[:, i]) for i in range(2)]
    theta = planner.initial_thresholds(ctx, cands)
    assert ctx.quality(theta) >= problem3.q_min
    assert len(set(theta)) == 1
    # the alternative start is infeasible here, so it relies on the search to recover quality
    alt = CascadiaPlanner(theta0="all_accept").initial_thresholds(ctx, cands)
    assert ctx.quality(alt) < problem3.q_min


def test_k_and_tol_control_rounds(problem3):
    k1 = get_planner("cascadia", rounds_stable=1).plan(problem3).solver_stats
    k3 = get_planner("cascadia", rounds_stable=3).plan(problem3).solver_stats
    assert k3["rounds"] == k1["rounds"] + 2
    hist = k3["J_history"]
    assert all(b <= a + 1e-9 for a, b in zip(hist, hist[1:]))  # each round keeps or improves J
    loose = get_planner("cascadia", tol=10.0, rounds_stable=1).plan(problem3).solver_stats
    assert loose["rounds"] == 2  # any change counts as stable


def test_ablations_are_no_better_than_cascadia(problem3):
    full = get_planner("cascadia").plan(problem3).estimates["J"]
    for name in ("cascadia_no_parallelism", "cascadia_no_allocation"):
        assert get_planner(name).plan(problem3).estimates["J"] >= full - 1e-9


def test_cascadeserve_gears_and_sarathi_override(problem3):
    plan = get_planner("cascadeserve").plan(problem3)
    gears = plan.estimates["gears"]
    assert [g["rate_rps"] for g in gears] == sorted(g["rate_rps"] for g in gears)
    assert all(sum(g["gpus_per_tier"]) <= 32 for g in gears)
    sar = get_planner("sarathi").plan(problem3)
    assert sar.estimates["sim_overrides"] == {"batching": "sarathi"}
    assert get_planner("routellm", router_error_rate=0.2).plan(problem3).router_error_rate == 0.2


def test_single_model_smallest_meeting():
    problem = make_problem(num_tiers=2, q_min=20.0)
    plan = get_planner("single_model", model="smallest_meeting").plan(problem)
    assert plan.tiers[0].replicas and not plan.tiers[1].replicas
    assert plan.thresholds == (0.0,)
