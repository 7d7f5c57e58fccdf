"""Online control inside a run: the Controller hook, and the OnlineController that injects faults and re-plans.

simulate(..., controller=c) calls c.start(env, cluster, flow); the base start() runs c.run(env, cluster, flow) as
a SimPy process when a subclass defines it, and simulate puts c.report() into SimResult.meta. The cluster offers
take_down(replica) (its running and queued visits are re-queued to the tier, none lost), add_replica(tier,
replica_plan, load_s), slow_down(replica, factor), fail_gpus / repair_gpus, set_gpu_slowdown, set_link_factor.
"""
from __future__ import annotations

from typing import Any


class Controller:
    """Base class: override run(env, cluster, flow) as a generator of SimPy events."""

    def start(self, env, cluster, flow) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            env.process(run(env, cluster, flow))

    def report(self) -> dict[str, Any]:
        """What the controller did, for SimResult.meta."""
        return {}


class OnlineController(Controller):
    """Injects faults (sim.faults.Fault) at their times and, with a replanner (sim.online.Replanner), re-plans
    after failures and repairs and when the live workload drifts. Without a replanner, a repaired GPU brings back
    the replicas it lost (after their weight-loading time) and visits for a tier with no replica wait for that.

    workload: the simulated workload (the drift monitor samples its arrivals as they happen).
    """

    def __init__(self, faults=(), replanner=None, workload=None, replan_cfg=None) -> None:
        from sim.online import ReplanConfig

        self.faults = tuple(faults)
        self.replanner = replanner
        self.workload = workload
        self.cfg = replan_cfg or (replanner.cfg if replanner is not None else ReplanConfig())
        self.events: list[dict[str, Any]] = []
        self._lost: list = []  # (tier, ReplicaPlan) lost to failures, restored at a repair when nobody re-plans
        self._applied: list[bool] = [False] * len(self.faults)

    def record(self, event: dict) -> None:
        self.events.append(event)

    def start(self, env, cluster, flow) -> None:
        for i, fault in enumerate(self.faults):
            env.process(self._inject(env, cluster, flow, i, fault))
        if self.replanner is not None and self.cfg.drift_detection and self.workload is not None:
            env.process(self.replanner.monitor(env, cluster, flow, self.workload, self.record))

    def _replans_failures(self) -> bool:
        return self.replanner is not None and self.cfg.on_failure

    def _inject(self, env, cluster, flow, index: int, fault):
        if fault.at_s > env.now:
            yield env.timeout(fault.at_s - env.now)
        self._applied[index] = True
        gpus = fault.gpus(cluster.spec.gpus_per_node)
        event = {"time_s": env.now, "event": fault.kind, "fault": fault.describe()}
        if fault.kind in ("gpu_down", "node_down"):
            waiting0 = flow.in_system
            down, cancelled = cluster.fail_gpus(gpus)
            self._lost.extend((r.tier, r.plan) for r in down)
            self._lost.extend((p.tier, p.plan) for p in cancelled)
            tiers_left = [t for t, r in enumerate(cluster.routers) if r.planned and not r.replicas]
            self.record({**event, "replicas_down": [r.replica_id for r in down], "tiers_down": [r.tier for r in down],
                         "loads_cancelled": len(cancelled),
                         "tiers_without_replica": tiers_left, "in_system": waiting0})
            if self._replans_failures():
                self.record(self.replanner.replan(cluster, flow, f"{fault.kind} node {fault.node}"))
            if fault.repair_s is None:
                return
            yield env.timeout(fault.repair_s)
            cluster.repair_gpus(gpus)
            self.record({"time_s": env.now, "event": "repair", "fault": fault.describe()})
            if self._replans_failures():
                self.record(self.replanner.replan(cluster, flow, f"repair node {fault.node}"))
            else:
                self._restore(cluster)
        elif fault.kind == "straggler":
            hit = cluster.set_gpu_slowdown(gpus[0], fault.factor)
            self.record({**event, "replicas_slowed": [r.replica_id for r in hit]})
            if fault.duration_s is not None:
                yield env.timeout(fault.duration_s)
                cluster.set_gpu_slowdown(gpus[0], 1.0)
                self.record({"time_s": env.now, "event": "straggler_end", "fault": fault.describe()})
        else:  # link_degraded
            hit = cluster.set_link_factor(fault.node, fault.factor)
            self.record({**event, "replicas_slowed": [r.replica_id for r in hit]})
            if fault.duration_s is not None:
                yield env.timeout(fault.duration_s)
                cluster.set_link_factor(fault.node, 1.0)
                self.record({"time_s": env.now, "event": "link_restored", "fault": fault.describe()})

    def _restore(self, cluster) -> None:
        """Bring back lost replicas whose GPUs are all healthy and free again, after their load time."""
        from sim.online import load_time_s

        used = cluster.used_gpus()
        still_lost = []
        for tier, rp in self._lost:
            if cluster.dead_gpus.intersection(rp.gpus) or used.intersection(rp.gpus):
                still_lost.append((tier, rp))
                continue
            load = load_time_s(cluster.cascade.tiers[tier], rp, self.cfg)
            cluster.add_replica(tier, rp, load)
            used.update(rp.gpus)
            self.record({"time_s": cluster.env.now, "event": "restore", "tier": tier,
                         "replica": f"TP{rp.tp}xPP{rp.pp} on {sorted(rp.gpus)}", "downtime_s": load})
        self._lost = still_lost

    def report(self) -> dict[str, Any]:
        return {"faults": [{"fault": f.describe(), "applied": a} for f, a in zip(self.faults, self._applied)],
                "controller_events": list(self.events),
                "replans": sum(1 for e in self.events if e.get("event") == "replan" and e.get("applied"))}
