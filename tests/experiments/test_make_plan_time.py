"""make_plan's plan_s is what the plan would take cold: wall seconds plus the build seconds of the tables it took from
the process planning cache (planners.plan_cache), so a plan after an equal one does not look faster than it is."""
from __future__ import annotations

import pytest

from experiments.scenario import Scenario, make_plan


@pytest.mark.integration  # two real Cascadia plans (the project's cost model)
def test_a_plan_that_reuses_tables_is_charged_their_build_seconds():
    from planners import plan_cache
    from planners.bench import LLAMA2, conversation, h100_cluster
    from sim.simulator import SimConfig
    from sim.spec.cascade import cascade_from_dict

    cascade = cascade_from_dict(LLAMA2)
    wl = conversation(cascade, 0.5, 300.0)
    scenario = Scenario(h100_cluster(1), cascade, wl, SimConfig(), wl.quality_at_level(0.5), 0)
    plan_cache.clear()
    first, first_s = make_plan("cascadia", {}, scenario, 300)
    second, second_s = make_plan("cascadia", {}, scenario, 300)
    a, b = first.solver_stats, second.solver_stats
    assert a["reused_s"] == 0.0 and first_s == a["wall_s"]  # it built everything itself
    # Everything the second plan reused was built during the first plan, each entry charged once: the charge is
    # positive and at most the first plan's wall time (a charge counted twice, or never, would break one side).
    assert 0.0 < b["reused_s"] <= a["wall_s"] and second_s == b["wall_s"] + b["reused_s"]
    assert second.tiers == first.tiers and second.estimates["J"] == first.estimates["J"]
    plan_cache.clear()
