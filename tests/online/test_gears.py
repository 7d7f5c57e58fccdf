"""CascadeServe's gears online: the gear follows the measured arrival rate (a switch when the rate doubles), a
fresh switcher per simulated rate, and the count of switches in the run's metadata."""
from __future__ import annotations

import numpy as np
import pytest

from online.gears import GearPolicy
from planners.base import get_planner
from planners.problem import PlanningProblem
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload
from sim_fakes import OracleJudge, cluster, llama_cascade, poisson_workload

CL = cluster()


def two_rates():
    calm = poisson_workload(600, 5.0, 1, mean_in=600, mean_out=200)
    busy = poisson_workload(2400, 20.0, 2, mean_in=600, mean_out=200)
    t0 = float(calm.arrival_s[-1])
    w = Workload("steps", np.concatenate([calm.arrival_s, t0 + busy.arrival_s]),
                 np.concatenate([calm.input_tokens, busy.input_tokens]),
                 np.concatenate([calm.output_tokens, busy.output_tokens]), np.concatenate([calm.scores, busy.scores]),
                 np.concatenate([calm.question_ids, busy.question_ids]), calm.tier_models)
    return calm, w, t0


def test_gear_pick_is_the_ceiling_of_the_measured_rate():
    gears = [{"rate_rps": r, "plan": {"tiers": [{"model": "m", "replicas": []}]}} for r in (10.0, 5.0, 20.0)]
    pol = GearPolicy(gears, 0)
    assert [pol.pick(x) for x in (1.0, 5.0, 5.1, 19.0, 50.0)] == [0, 0, 1, 2, 2]


@pytest.mark.integration  # CascadeServe's planner and a simulated run through its gears
def test_cascadeserve_switches_gears_when_the_rate_quadruples():
    from experiments.online import gear_controller

    calm, w, t0 = two_rates()
    q = float(calm.scores[:, 0].mean() + 0.5 * (calm.scores[:, 1].mean() - calm.scores[:, 0].mean()))
    plan = get_planner("cascadeserve", gear_interval_s=20.0, gear_min_dwell_s=0.0).plan(
        PlanningProblem(llama_cascade(), CL, calm, q))
    gears = plan.estimates["gears"]
    assert len(gears) == 4 and all("plan" in g for g in gears)
    ctl = gear_controller(plan, w)
    assert ctl is not gear_controller(plan, w)  # a fresh switcher for every simulated rate (the bisection)
    r = simulate(plan, llama_cascade(), CL, w, SimConfig(), controller=ctl, judge=OracleJudge(0.27))
    switches = [e for e in r.meta["controller_events"] if e["event"] == "replan" and e.get("applied")]
    assert r.meta["gear_switches"] == len(switches) >= 1 and r.meta["replans"] == 0
    assert any(e["time_s"] > t0 and e["gear"] == 3 for e in switches)  # the top gear once the rate is 4x
    assert (r.requests.status == "completed").all()
    off = get_planner("cascadeserve", switch_gears=False).plan(PlanningProblem(llama_cascade(), CL, calm, q))
    assert gear_controller(off, w) is None
