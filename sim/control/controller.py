"""Online control inside a run: the Controller hook, and the OnlineController that injects faults and applies the
plan changes of a ControlPolicy (sim.control.policy) through the transition rules of sim.control.transition.

simulate(..., controller=c) calls c.start(env, cluster, flow); the base start() runs c.run(env, cluster, flow) as
a SimPy process when a subclass defines it, and simulate puts c.report() into SimResult.meta. The cluster offers
take_down(replica) (its running and queued visits are re-queued to the tier, none lost), add_replica(tier,
replica_plan, load_s), slow_down(replica, factor), fail_gpus / repair_gpus, set_gpu_slowdown, set_link_factor.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from sim.control.policy import LiveView, PlanChange
from sim.control.transition import TransitionConfig, apply_plan, load_time_s


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
    """Injects faults (sim.spec.faults.Fault) at their times and, with a policy (sim.control.policy.ControlPolicy), polls it
    every policy.interval_s and tells it of failures and repairs, applying the changes it returns. Without a
    policy, a repaired GPU brings back the replicas it lost (after their weight-loading time) and visits for a
    tier with no replica wait for that.

    workload: the simulated workload (the policy sees its arrivals as they happen, never a future one).
    """

    def __init__(self, faults=(), policy=None, workload=None, transition: TransitionConfig | None = None) -> None:
        self.faults = tuple(faults)
        self.policy = policy
        self.workload = workload
        self.transition = transition or TransitionConfig()
        self.events: list[dict[str, Any]] = []
        self._view: LiveView | None = None
        self._lost: list = []  # (tier, ReplicaPlan) lost to failures, restored at a repair when nobody re-plans
        self._applied: list[bool] = [False] * len(self.faults)
        # How many failures still hold each (node, gpu): overlapping faults on one GPU (a GPU fault inside a node
        # fault) bring it back only at the last one's repair, never at the first.
        self._holds: Counter = Counter()

    def record(self, event: dict) -> None:
        self.events.append(event)

    def start(self, env, cluster, flow) -> None:
        self._view = LiveView(env, cluster, flow, self.workload, self.record)
        for i, fault in enumerate(self.faults):
            env.process(self._inject(env, cluster, flow, i, fault))
        if self.policy is not None and self.policy.interval_s is not None and self.workload is not None:
            env.process(self._poll(env))

    def _poll(self, env):
        """Poll the policy every interval_s while arrivals remain; skip to the next arrival's poll when nothing
        has arrived since the last one (so the work is bounded by the arrivals whatever interval_s is)."""
        w = self.workload
        if not w.num_requests:
            return
        step = float(self.policy.interval_s)
        first, last = float(w.arrival_s[0]), float(w.arrival_s[-1])
        t = first + step
        seen = -1
        while t < last:  # polls after the last arrival would only stretch the run
            yield env.timeout(max(0.0, t - env.now))
            k = self._view.arrived
            if k == seen and k < w.num_requests:  # nothing new: jump to the first poll after the next arrival
                nxt = float(w.arrival_s[k])
                t = t + step * max(1.0, float(-(-(nxt - t) // step)))
                continue
            seen = k
            t += step
            change = self.policy.observe(self._view)
            if change is not None:
                yield from self._apply(env, change)

    def _apply(self, env, change: PlanChange):
        """Wait the decision's own time, then move the deployment to change.plan."""
        if change.delay_s > 0:
            yield env.timeout(change.delay_s)
        cl = self._view.cluster
        if cl.dead_gpus.intersection(g for t in change.plan.tiers for r in t.replicas for g in r.gpus):
            self.record({"time_s": env.now, "event": "replan", "reason": change.reason, "applied": False,
                         "why": "a GPU of the new plan failed while it was being made", **change.info})
            return
        done = apply_plan(cl, self._view.flow, change.plan, self.transition, self.record)
        self.record({"time_s": env.now, "event": "replan", "reason": change.reason, "applied": True,
                     "decided_s": env.now - change.delay_s, "plan": change.plan.describe(),
                     "gpus_per_tier": list(change.plan.gpus_per_tier()),
                     "thresholds": list(change.plan.thresholds), **change.info, **done})
        if change.on_applied is not None:
            change.on_applied(change)

    def _react(self, env, reason: str):
        change = self.policy.on_cluster_change(self._view, reason)
        if change is not None:
            yield from self._apply(env, change)

    def _inject(self, env, cluster, flow, index: int, fault):
        if fault.at_s > env.now:
            yield env.timeout(fault.at_s - env.now)
        self._applied[index] = True
        gpus = fault.gpus(cluster.spec.gpus_per_node)
        event = {"time_s": env.now, "event": fault.kind, "fault": fault.describe()}
        if fault.kind in ("gpu_down", "node_down"):
            waiting0 = flow.in_system
            self._holds.update(gpus)
            down, cancelled = cluster.fail_gpus(gpus)
            self._lost.extend((r.tier, r.plan) for r in down)
            self._lost.extend((p.tier, p.plan) for p in cancelled)
            tiers_left = [t for t, r in enumerate(cluster.routers) if r.planned and not r.replicas]
            self.record({**event, "replicas_down": [r.replica_id for r in down], "tiers_down": [r.tier for r in down],
                         "loads_cancelled": len(cancelled),
                         "tiers_without_replica": tiers_left, "in_system": waiting0})
            if self.policy is not None:
                env.process(self._react(env, f"{fault.kind} node {fault.node}"))
            if fault.repair_s is None:
                return
            yield env.timeout(fault.repair_s)
            self._holds.subtract(gpus)
            healed = [g for g in gpus if self._holds[g] <= 0]
            cluster.repair_gpus(healed)
            still = len(gpus) - len(healed)
            self.record({"time_s": env.now, "event": "repair", "fault": fault.describe(),
                         **({"gpus_still_down": still} if still else {})})
            if self.policy is not None:
                env.process(self._react(env, f"repair node {fault.node}"))
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
        used = cluster.used_gpus()
        still_lost = []
        for tier, rp in self._lost:
            if cluster.dead_gpus.intersection(rp.gpus) or used.intersection(rp.gpus):
                still_lost.append((tier, rp))
                continue
            load = load_time_s(cluster.cascade.tiers[tier], rp, self.transition)
            cluster.add_replica(tier, rp, load)
            used.update(rp.gpus)
            self.record({"time_s": cluster.env.now, "event": "restore", "tier": tier,
                         "replica": f"TP{rp.tp}xPP{rp.pp} on {sorted(rp.gpus)}", "downtime_s": load})
        self._lost = still_lost

    def report(self) -> dict[str, Any]:
        return {"policy": type(self.policy).__name__ if self.policy is not None else None,
                "faults": [{"fault": f.describe(), "applied": a} for f, a in zip(self.faults, self._applied)],
                "controller_events": list(self.events),
                "replans": sum(1 for e in self.events if e.get("event") == "replan" and e.get("applied")
                               and "gear" not in e),
                "gear_switches": sum(1 for e in self.events if e.get("event") == "replan" and e.get("applied")
                                     and "gear" in e)}
