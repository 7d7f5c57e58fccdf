"""The hook for online control: a Controller process that can change the deployment during a run.

simulate(..., controller=c) calls c.start(env, cluster, flow); the default start() runs c.run(env, cluster, flow)
as a SimPy process when a subclass defines it. The cluster offers take_down(replica) (its running and queued
visits are re-queued to the tier, none lost), add_replica(tier, replica_plan, load_s) and
slow_down(replica, factor); fault injection and online re-planning build on these.
"""
from __future__ import annotations


class Controller:
    """Base class: override run(env, cluster, flow) as a generator of SimPy events."""

    def start(self, env, cluster, flow) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            env.process(run(env, cluster, flow))
