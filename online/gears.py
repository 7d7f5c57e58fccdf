"""CascadeServe's online half (a sim.control.policy.ControlPolicy): switch between the planner's gears on the measured
arrival rate, as CascadeServe's front end does (ferdiko/ken_submission, code/online/producer.py: poll_gear_switch
measures QPS over each polling interval and every GPU server's switch_gear picks the gear for that QPS, capped at
the highest gear). docs/online.md says where this follows it and where it cannot.

A gear is (rate_rps, thresholds, a placed deployment) from planners.baselines.CascadeServePlanner. Every
interval_s the policy measures the arrival rate over the last interval_s and picks the gear of the smallest rate
>= the measured one (the highest gear above them all): the ceiling, as ken's integer-QPS gear index is. A switch
changes the thresholds at once and moves replicas whose GPU split differs through sim.control.transition (weights to
load: the switching cost). min_dwell_s between switches keeps a rate hovering between two gears from reloading
weights at every poll (ken's switches cost nothing, ours do).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sim.control.policy import LiveView, PlanChange
from sim.spec.plan_io import plan_from_dict
from sim.control.transition import reconcile


@dataclass
class GearPolicy:
    """gears: [{rate_rps, thresholds, plan (sim.spec.plan_io dict)}] sorted by rate; current: the gear running now."""

    gears: list
    current: int
    interval_s: float = 60.0
    min_dwell_s: float = 120.0
    _last_switch_s: float | None = None
    _plans: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gears = sorted(self.gears, key=lambda g: g["rate_rps"])
        self._plans = [plan_from_dict(g["plan"], f"gear {i}") for i, g in enumerate(self.gears)]

    def pick(self, rate_rps: float) -> int:
        """The gear for a measured rate: the smallest gear rate >= it, else the highest gear."""
        for i, g in enumerate(self.gears):
            if g["rate_rps"] >= rate_rps:
                return i
        return len(self.gears) - 1

    def observe(self, view: LiveView) -> PlanChange | None:
        rate = view.rate_rps(self.interval_s)
        want = self.pick(rate)
        if want == self.current:
            return None
        if self._last_switch_s is not None and view.now_s < self._last_switch_s + self.min_dwell_s:
            view.record({"time_s": view.now_s, "event": "gear_hold", "gear": self.current, "wanted": want,
                         "measured_rate_rps": rate})
            return None
        spec = view.cluster.spec
        usable = {(n, g) for n in range(spec.num_nodes) for g in range(spec.gpus_per_node)} - view.cluster.dead_gpus
        current = view.current_replicas()
        busy = {g for reps in current for r in reps for g in r.gpus}
        plan = reconcile(self._plans[want], current, usable, spec.gpus_per_node, busy)
        info = {"gear": want, "from_gear": self.current, "measured_rate_rps": rate,
                "gear_rate_rps": self.gears[want]["rate_rps"]}

        def applied(change, to=want):
            self.current = to
            self._last_switch_s = view.now_s

        return PlanChange(plan, f"gear {self.current}->{want}", 0.0, info, on_applied=applied)

    def on_cluster_change(self, view: LiveView, reason: str) -> PlanChange | None:
        return None  # CascadeServe has no failure handling of its own
