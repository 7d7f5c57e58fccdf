"""CascadeFlow's context fallback under direct routing (sim.runtime.flow): a request routed to a tier whose
context cannot hold it goes, under skip, to the next tier up that can, else to the highest tier below that can;
under drop it is dropped with reason context_exceeded."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, plan

from sim.simulator import SimConfig, simulate
from sim.spec.cascade import cascade_from_dict
from sim.workload.types import Workload

# deepseek_r1_distill_qwen_7b takes 32768 tokens, llama3_70b 8192: a 10000-token prompt fits tier 0 only.
MODELS = ("deepseek_r1_distill_qwen_7b", "llama3_70b")


def _run(policy: str, mode: str):
    prompts = [10000, 100, 40000]
    n = len(prompts)
    w = Workload("ctx", np.arange(n, dtype=np.float64), np.array(prompts, dtype=np.int64),
                 np.full((n, 2), 10, dtype=np.int64), np.zeros((n, 2)), np.array([str(i) for i in range(n)]), ("a", "b"))
    cas = cascade_from_dict({"name": "c", "tiers": [{"model": m} for m in MODELS]})
    p = plan((1, 1), thresholds=(50.0,), routing="direct", models=MODELS)  # scores 0 < 50: every request to tier 1
    return simulate(p, cas, cluster(), w, SimConfig(mode=mode, context_policy=policy), cost_factory=fake_factory(),
                    judge=OracleJudge(0.1))


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_direct_routing_falls_back_to_the_highest_lower_tier_that_fits(mode):
    r = _run("skip", mode)
    df = r.requests
    assert df.final_tier.tolist()[:2] == [0, 1] and (df.status[:2] == "completed").all()
    assert df.tiers_visited.tolist()[:2] == [1, 1] and np.isnan(df.enter_s_t1[0])
    assert df.status[2] == "dropped" and df.drop_reason[2] == "context_exceeded"  # 40000 tokens fit no tier
    assert r.meta["context_skipped"] == 1


def test_direct_routing_under_drop_drops_what_its_tier_cannot_hold():
    df = _run("drop", "fast").requests
    assert df.drop_reason[0] == "context_exceeded" and df.status[1] == "completed" and df.final_tier[1] == 1


def test_visits_of_a_tier_that_leaves_the_deployment_move_to_the_highest_planned_tier_below():
    """At 5 s the top tier leaves the plan and its only replica is taken down: its visits (running and queued) go
    to the next planned tier up (none) or else the highest below (tier 0, whose answer is then final), none lost."""
    from sim.control.controller import Controller
    from sim_fakes import llama_cascade, poisson_workload

    class DropTopTier(Controller):
        def run(self, env, cluster, flow):
            yield env.timeout(5.0)
            cluster.routers[1].planned = False
            self.requeued = cluster.take_down(cluster.routers[1].replicas[0])

    w = poisson_workload(400, 40.0, 3)
    ctl = DropTopTier()
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge(0.27), controller=ctl)
    df = r.requests
    assert ctl.requeued > 0 and len(df) == 400
    assert set(df.status) <= {"completed", "dropped"} and df[df.status == "dropped"].drop_reason.notna().all()
    moved = df[(df.enter_s_t1 < 5.0) & (df.final_tier == 0)]
    assert len(moved) >= ctl.requeued and (moved.status == "completed").all()
    assert (df[df.arrival_s > 5.0].final_tier == 0).all()  # nothing reaches the tier that left


def test_reroute_unplanned_moves_only_the_visits_parked_at_tiers_that_left():
    """Tier 1 loses its only replica at 5 s while still planned: its visits park there (waiting for a repair), and
    rerouting moves none of them. Once tier 1 leaves the plan, rerouting moves every parked visit, counted."""
    from sim.control.controller import Controller
    from sim_fakes import llama_cascade, poisson_workload

    class Leave(Controller):
        def run(self, env, cluster, flow):
            yield env.timeout(5.0)
            cluster.take_down(cluster.routers[1].replicas[0])
            yield env.timeout(1.0)
            self.parked = len(cluster.routers[1].parked)
            self.moved_while_planned = flow.reroute_unplanned()
            cluster.routers[1].planned = False
            self.moved = flow.reroute_unplanned()
            self.left = len(cluster.routers[1].parked)

    ctl = Leave()
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), poisson_workload(400, 40.0, 3), SimConfig(),
                 cost_factory=fake_factory(), judge=OracleJudge(0.27), controller=ctl)
    assert ctl.parked > 0 and ctl.moved_while_planned == 0 and ctl.moved == ctl.parked and ctl.left == 0
    assert set(r.requests.status) <= {"completed", "dropped"}


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_a_replica_taken_down_inside_its_first_iteration_ignores_that_iterations_end(mode):
    """The first prefill (1,000 prompt tokens: 24 ms) is in flight when the replica goes down at 10 ms: its end
    event is stale. The visits go to the tier's other replica and complete there; the dead one served nothing."""
    from sim.control.controller import Controller
    from sim_fakes import llama_cascade

    class Early(Controller):
        def run(self, env, cluster, flow):
            yield env.timeout(0.01)
            self.dead = cluster.routers[0].replicas[0]
            self.requeued = cluster.take_down(self.dead)

    n = 4
    w = Workload("w", np.zeros(n), np.full(n, 250, dtype=np.int64), np.full((n, 2), 5, dtype=np.int64),
                 np.full((n, 2), 90.0), np.array([str(i) for i in range(n)]), ("a", "b"))
    ctl = Early()
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(mode=mode), cost_factory=fake_factory(),
                 judge=OracleJudge(0.0), controller=ctl)
    df = r.requests
    assert ctl.requeued > 0 and (df.status == "completed").all()
    assert (df.replica_t0 != 0).all()  # replica ids: 0 is the one taken down
