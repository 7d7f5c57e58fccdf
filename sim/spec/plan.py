"""The cascade plan the simulator runs: replicas with TP/PP (and a prefill/decode role) on concrete GPUs, routing
policy, planner statistics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GPU = tuple[int, int]  # (node index, GPU index inside the node)
# A replica either serves whole visits (colocated prefill and decode, the default) or is one instance of a
# disaggregated tier: a prefill instance (computes the prompt's KV and the first token) or a decode instance
# (receives that KV and generates the rest). A tier is disaggregated when its replicas have these roles.
ROLES = ("colocated", "prefill", "decode")


@dataclass(frozen=True)
class ReplicaPlan:
    """One model replica. gpus lists tp*pp GPUs stage by stage: gpus[s*tp:(s+1)*tp] form PP stage s."""

    tp: int
    pp: int
    gpus: tuple[GPU, ...]
    role: str = "colocated"  # colocated | prefill | decode (ROLES)
    # MoE deployment options (issue 18); None: the tier's (sim.spec.cascade.TierSpec), which defaults to plain TP.
    ep: int | None = None
    dp_attention: bool | None = None
    mtp_draft_tokens: int | None = None

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp

    def describe(self) -> str:
        cfg = f"TP{self.tp}xPP{self.pp}"
        return cfg if self.role == "colocated" else f"{self.role[0].upper()}:{cfg}"

    def stage_gpus(self, stage: int) -> tuple[GPU, ...]:
        return self.gpus[stage * self.tp:(stage + 1) * self.tp]


@dataclass(frozen=True)
class TierPlan:
    model: str  # ModelSpec.name
    replicas: tuple[ReplicaPlan, ...]

    @property
    def num_gpus(self) -> int:
        return sum(r.num_gpus for r in self.replicas)

    @property
    def disaggregated(self) -> bool:
        """Prefill and decode run on separate instances (sim.runtime.disagg)."""
        return any(r.role != "colocated" for r in self.replicas)

    def deployment(self) -> str:
        """colocated, or disaggregated with its split: 'P2:D3' (two prefill instances, three decode)."""
        if not self.disaggregated:
            return "colocated" if self.replicas else "none"
        p = sum(r.role == "prefill" for r in self.replicas)
        return f"P{p}:D{len(self.replicas) - p}"


@dataclass(frozen=True)
class CascadePlan:
    """routing == "cascade": every request starts at tier 0 and is forwarded while its gate score is
    below thresholds[i]. routing == "direct" (RouteLLM-style): each request is sent to one tier only:
    the tier routes gives its question id (a learned router's decisions, made from the prompt text), or,
    without routes, a noisy oracle's: the smallest tier whose score reaches the thresholds, wrong with
    probability router_error_rate. A tier with no replicas is skipped (its threshold is ignored)."""

    planner: str
    tiers: tuple[TierPlan, ...]
    thresholds: tuple[float, ...]  # len == num tiers - 1, on the 0-100 judge scale
    routing: str = "cascade"
    router_error_rate: float = 0.0
    estimates: dict[str, Any] = field(default_factory=dict, compare=False)  # planner's own predictions
    solver_stats: dict[str, Any] = field(default_factory=dict, compare=False)
    # (question_id, tier) pairs: the direct route of every question a learned router may see; empty = none
    routes: tuple[tuple[str, int], ...] = field(default=(), compare=False, repr=False)

    @property
    def num_gpus(self) -> int:
        return sum(t.num_gpus for t in self.tiers)

    def gpus_per_tier(self) -> tuple[int, ...]:
        return tuple(t.num_gpus for t in self.tiers)

    def describe(self) -> str:
        parts = []
        for t in self.tiers:
            cfgs = ", ".join(r.describe() for r in t.replicas) or "none"
            parts.append(f"{t.model}: {t.num_gpus} GPUs [{cfgs}]")
        th = ", ".join(f"{h:.1f}" for h in self.thresholds)
        return f"{self.planner}: " + "; ".join(parts) + f"; thresholds [{th}] ({self.routing})"
