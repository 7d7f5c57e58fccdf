"""The controller hook: a ControlPolicy sees measurements of the running system and returns plan changes; the
simulator applies them (sim.control.transition) and knows nothing of how they were decided (planners live above it).

A policy is polled every policy.interval_s of simulated time while arrivals remain (a poll with no arrival since
the previous one is skipped to the next arrival: nothing new can be seen, and a tiny interval then costs time in
proportion to the arrivals, not to 1/interval_s), and told of every fault and repair. A PlanChange waits
delay_s of simulated time (the planner's own run time) before the simulator applies it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class PlanChange:
    """A new plan on real GPUs, why, and the simulated seconds the decision took before it can apply."""

    plan: Any  # sim.spec.plan.CascadePlan
    reason: str
    delay_s: float = 0.0
    info: dict = field(default_factory=dict)  # recorded with the applied event (estimates, gear, ...)
    on_applied: Callable | None = None  # called with the PlanChange once applied (a policy's bookkeeping)


class LiveView:
    """What a policy may measure at env.now: the arrivals so far (never a future one), the live deployment, and
    the cluster's health. record(event) adds an event to the run's controller_events."""

    def __init__(self, env, cluster, flow, workload, record: Callable) -> None:
        self.env = env
        self.cluster = cluster
        self.flow = flow
        self.workload = workload
        self.record = record

    @property
    def now_s(self) -> float:
        return float(self.env.now)

    @property
    def arrived(self) -> int:
        return int(self.flow.arrived)

    def recent(self, count: int):
        """The last count arrivals so far (a Workload)."""
        k = self.arrived
        return self.workload.take(np.arange(max(0, k - count), k))

    def since(self, start_s: float) -> np.ndarray:
        """Indices of the arrivals in [start_s, now]."""
        k = self.arrived
        lo = int(np.searchsorted(self.workload.arrival_s[:k], start_s, side="left"))
        return np.arange(lo, k)

    def rate_rps(self, window_s: float) -> float:
        """Arrivals per second over the last window_s seconds."""
        return self.since(self.now_s - window_s).size / window_s

    def current_replicas(self) -> list[list]:
        """Per tier, the ReplicaPlans live or loading now."""
        cl = self.cluster
        cur = [[r.plan for r in router.replicas] for router in cl.routers]
        for p in cl.pending:
            if not p.cancelled:
                cur[p.tier].append(p.plan)
        return cur


class ControlPolicy(Protocol):
    """What the simulator calls; re-planning policies (online.replan, online.gears) implement it."""

    interval_s: float | None  # None: never polled (only faults and repairs reach it)

    def observe(self, view: LiveView) -> PlanChange | None:
        """A poll: measure, decide, return a change or None."""

    def on_cluster_change(self, view: LiveView, reason: str) -> PlanChange | None:
        """GPUs failed or came back (reason says which); return a change or None."""
