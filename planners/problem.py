"""The planning problem: cascade, GPU pool, workload sample with its rate, and the quality requirement."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sim.spec.cascade import CascadeSpec, TierSpec
from sim.common.errors import ConfigError, UserError
from sim.spec.hardware import ClusterSpec
from sim.workload.types import Workload

from planners.routing import best_attainable_quality, context_ok

CONTEXT_POLICIES = ("skip", "drop")  # sim.simulator.SimConfig.context_policy

# cost_fn(tier, tp, pp, pp_spans_nodes) -> ReplicaCost; raises sim.common.errors.DeploymentDoesNotFit.
CostFn = Callable[[TierSpec, int, int, bool], Any]


class UnattainableQuality(UserError):
    """q_min is above the best quality any routing of this workload reaches."""


@dataclass(frozen=True)
class PlanningProblem:
    """Everything a planner needs. workload is a sample whose arrival rate is the rate to plan for.

    q_min: required mean real judge score of the returned answers, 0-100 scale.
    slo_attainment: the latency percentile planners optimise (0.95 = p95).
    max_num_seqs: the engine's cap on sequences in one batch (vLLM default 256).
    reference_tier: the tier whose model, alone on the smallest TP (PP 1) that fits one node, defines ref(r) for
        the SLO-scale objective (the metric's default reference: the largest model).
    cost_fn: builds a replica's cost model; None means sim.perf.cost_model.build_replica_cost.
    """

    cascade: CascadeSpec
    cluster: ClusterSpec
    workload: Workload
    q_min: float
    engine: str = "vllm"
    slo_attainment: float = 0.95
    max_num_seqs: int = 256
    judge_latency_s: float = 0.27
    gpu_memory_utilization: float = 0.9
    max_sample_requests: int = 2000
    reference_tier: int = -1
    context_policy: str = "skip"
    cost_fn: CostFn | None = field(default=None, compare=False, repr=False)
    # Requests of the given workload that no deployment could serve (see _servable), left out of `workload`.
    excluded_requests: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.context_policy not in CONTEXT_POLICIES:
            raise ConfigError(f"context_policy {self.context_policy!r} is not valid; choose one of "
                              f"{list(CONTEXT_POLICIES)}")
        keep = self._servable(self.workload)
        if not keep.all():
            # The simulator drops these whatever the plan (reason context_exceeded); planning for them would let one
            # absurd prompt move every other request's plan. Frozen, so the field is set the one allowed way.
            object.__setattr__(self, "workload", self.workload.take(np.flatnonzero(keep)))
            object.__setattr__(self, "excluded_requests", int((~keep).sum()))
        if not 0.0 <= float(self.q_min) <= 100.0:
            raise ConfigError(f"q_min must be on the 0-100 judge scale, got {self.q_min}")
        if not 0.5 <= self.slo_attainment < 1.0:
            raise ConfigError(f"slo_attainment must be in [0.5, 1), got {self.slo_attainment}")
        if self.workload.num_requests < 2:
            raise ConfigError(f"workload {self.workload.name!r} needs at least 2 requests to plan for, "
                              f"got {self.workload.num_requests}")
        if self.workload.num_tiers != self.cascade.num_tiers:
            raise ConfigError(f"workload {self.workload.name!r} has scores for {self.workload.num_tiers} tiers "
                              f"but cascade {self.cascade.name!r} has {self.cascade.num_tiers}")
        if self.workload.rate_rps <= 0:
            raise ConfigError(f"workload {self.workload.name!r} has no positive arrival rate")
        best_q, _ = best_attainable_quality(self.workload.scores)
        if self.q_min > best_q + 1e-9:
            largest = self.cascade.tiers[-1].model.name
            z1 = float(self.workload.scores[:, -1].mean())
            raise UnattainableQuality(
                f"q_min {self.q_min:g} is not attainable on workload {self.workload.name!r}: the best attainable "
                f"quality is {best_q:.1f} (every request answered by {largest} gives {z1:.1f})")

    def context_mask(self, workload: Workload) -> np.ndarray:
        """(n, C) True where tier i's model can take the request (prompt + its answer within max_context)."""
        return context_ok(workload.input_tokens, workload.output_tokens,
                          [t.model.max_context for t in self.cascade.tiers])

    def skip_mask(self, workload: Workload) -> np.ndarray | None:
        """The mask routing replays under context_policy skip (a request passes over tiers that cannot take it);
        None when every tier takes every request, or under drop."""
        if self.context_policy != "skip":
            return None
        ok = self.context_mask(workload)
        return None if ok.all() else ok

    def _servable(self, workload: Workload) -> np.ndarray:
        """(n,) requests some plan can serve: skip, a tier takes it; drop, the first tier takes it (a cascade
        enters there, and a request the first tier refuses is dropped at once). Under drop, a request a later
        tier refuses is still planned for; it is dropped only if it is forwarded there."""
        ok = self.context_mask(workload)
        return ok.any(axis=1) if self.context_policy == "skip" else ok[:, 0]

    @property
    def rate_rps(self) -> float:
        return self.workload.rate_rps

    @property
    def sample(self) -> Workload:
        """At most max_sample_requests requests, evenly spaced in arrival order (deterministic), so planning
        time does not grow with the trace length."""
        n = self.workload.num_requests
        if n <= self.max_sample_requests:
            return self.workload
        idx = np.unique(np.linspace(0, n - 1, self.max_sample_requests).round().astype(np.int64))
        return self.workload.take(idx)

    @property
    def quality_span(self) -> tuple[float, float]:
        """(z1*, z2*): quality when every request is answered by the largest, and by the smallest model."""
        smallest, largest = self.workload.quality_bounds()
        return largest, smallest

    def reference_cost(self):
        """(tier index, cost) of the SLO reference: the reference tier's model on the smallest TP, PP 1, that fits
        one node; None when it fits none."""
        from sim.common.errors import DeploymentDoesNotFit

        t = self.cascade.tier_index(self.reference_tier)
        tp = 1
        while tp <= self.cluster.gpus_per_node:
            try:
                return t, self.replica_cost(t, tp, 1)
            except (DeploymentDoesNotFit, ConfigError):  # too big, or TP does not divide the heads
                tp *= 2
        return None

    def replica_cost(self, tier_index: int, tp: int, pp: int):
        """Cost model of one replica of a tier; PP stages span nodes when the replica outgrows a node."""
        tier = self.cascade.tiers[tier_index]
        spans = tp * pp > self.cluster.gpus_per_node
        if self.cost_fn is not None:
            return self.cost_fn(tier, tp, pp, spans)
        from sim.perf.cost_model import build_replica_cost  # the simulator's one narrow interface

        return build_replica_cost(tier.model, self.cluster.gpu, tp, pp, tier.weights, tier.kv,
                                  tp_spans_nodes=False, pp_spans_nodes=spans, cluster=self.cluster,
                                  engine=self.engine, gpu_memory_utilization=self.gpu_memory_utilization,
                                  **tier.deployment(tp))
