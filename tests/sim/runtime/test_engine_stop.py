"""Engine.stop (a replica taken down) leaves a dead engine: the iteration boundary in flight when it stopped fires
stale and records nothing, and a later speed change on the retired replica (cluster.slow_down takes any replica)
cuts no jump. Every request still completes elsewhere, each visit on the stopped engine re-queued once."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan

from sim.control.controller import Controller
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload


class _TakeDownFirst(Controller):
    """At take_s, take down the replica that got the first request, then (optionally) slow it down."""

    def __init__(self, take_s: float, slow_after: bool) -> None:
        self.take_s, self.slow_after, self.seen = take_s, slow_after, {}

    def run(self, env, cl, flow):
        yield env.timeout(self.take_s)
        rep = next(r for r in cl.routers[0].replicas if r.outstanding > 0)
        eng = rep.engines[0]
        # the precondition: the engine's first iteration (its first boundary) is in flight, none has ended
        self.seen = {"iterations": eng.iterations, "in_flight": eng._pending is not None}
        self.seen["requeued"] = cl.take_down(rep)
        self.rep, self.busy_s = rep, eng.busy_s
        if self.slow_after:
            cl.slow_down(rep, 2.0)


@pytest.mark.parametrize("mode", ["fast", "reference"])
@pytest.mark.parametrize("slow_after", [False, True])
def test_a_stopped_engine_records_nothing_after_its_stop(mode, slow_after):
    # one 2000-token prompt at t=0 (its prefill takes far longer than 1 ms on the fake cost), then 3 short ones
    w = Workload("stop", np.array([0.0, 0.5, 0.6, 0.7]), np.array([2000, 50, 60, 70], dtype=np.int64),
                 np.full((4, 2), 20, dtype=np.int64), np.full((4, 2), 99.0), np.array(["0", "1", "2", "3"]),
                 ("a", "b"))
    ctl = _TakeDownFirst(1e-3, slow_after)
    r = simulate(plan((2, 1)), llama_cascade(), cluster(), w, SimConfig(mode=mode, record_iterations=True),
                 cost_factory=fake_factory(), judge=OracleJudge(0.1), controller=ctl)
    assert ctl.seen == {"iterations": 0, "in_flight": True, "requeued": 1}
    assert (r.requests.status == "completed").all()
    eng = ctl.rep.engines[0]
    # the boundary in flight at the stop fired later (the run went on to t > 0.7 s) and was ignored
    assert eng.iterations == 0 and eng.busy_s == ctl.busy_s == 0.0 and not eng.alive
    # a prefill is logged when it is scheduled: the lost one at t=0 is the only row of that replica
    served = r.iterations[r.iterations.replica_id == ctl.rep.replica_id]
    assert (served.start_s < ctl.take_s).all() and len(served) <= 1
    assert r.requests.completion_s.max() > 0.7
