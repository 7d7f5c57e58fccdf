"""Placement: turn per-tier replica configurations into concrete GPUs (TP groups inside a node)."""
from __future__ import annotations

from sim.common.errors import UserError
from sim.spec.hardware import ClusterSpec

from planners.plan import ReplicaPlan, TierPlan


class PlacementError(UserError):
    """The replicas cannot be packed onto the cluster's nodes."""


def place(models: tuple[str, ...], configs: list[list[tuple]], cluster: ClusterSpec) -> tuple[TierPlan, ...]:
    """configs[i] = [(tp, pp, count)] or [(tp, pp, count, role)] for tier i (role: colocated by default; prefill and
    decode for a disaggregated tier). First-fit decreasing: the largest replicas first; a replica
    that fits a node stays inside one node (TP and PP on NVLink); a larger one places each PP stage (a TP
    group) in its own node's free GPUs. Sizes are powers of two no larger than a node, so FFD never strands
    GPUs when the total fits."""
    nodes = _FirstFit(cluster)
    order = []
    for i, tier_cfgs in enumerate(configs):
        for tp, pp, count, *role in tier_cfgs:
            order.extend((i, tp, pp, role[0] if role else "colocated") for _ in range(count))
    # Largest replica first, then largest TP group; the tier index (then the role) keeps the order deterministic.
    order.sort(key=lambda r: (-r[1] * r[2], -r[1], r[0], r[3] != "prefill"))
    placed: list[list[ReplicaPlan]] = [[] for _ in configs]
    for tier, tp, pp, role in order:
        size = tp * pp
        groups = [size] if size <= cluster.gpus_per_node else [tp] * pp  # one node, or one node per PP stage
        gpus: list[tuple[int, int]] = []
        for group in groups:
            node = nodes.first_with(group)
            if node is None:
                raise PlacementError(_full(models[tier], tp, pp, cluster))
            gpus.extend(nodes.take(node, group))
        placed[tier].append(ReplicaPlan(tp, pp, tuple(gpus), role))
    return tuple(TierPlan(models[i], tuple(reps)) for i, reps in enumerate(placed))


class _FirstFit:
    """The free GPUs of each node, for first-fit in time proportional to the replicas placed, not the cluster size.

    Nodes are opened lazily (an untouched node is entirely free), and per group size a cursor remembers the first
    node that may still hold that many free GPUs: free counts only fall, so no node before the cursor can fit
    again. The result is exactly first-fit's (lowest node index that fits, lowest free GPU ids first)."""

    def __init__(self, cluster: ClusterSpec) -> None:
        self.num_nodes = cluster.num_nodes
        self.gpus_per_node = cluster.gpus_per_node
        self.free: list[list[int]] = []
        self.cursor: dict[int, int] = {}

    def first_with(self, size: int) -> int | None:
        n = self.cursor.get(size, 0)
        while n < len(self.free) and len(self.free[n]) < size:
            n += 1
        self.cursor[size] = n
        if n < len(self.free):
            return n
        if n >= self.num_nodes or size > self.gpus_per_node:
            return None
        self.free.append(list(range(self.gpus_per_node)))
        return n

    def take(self, node: int, size: int) -> list[tuple[int, int]]:
        taken, self.free[node] = self.free[node][:size], self.free[node][size:]
        return [(node, g) for g in taken]


def _full(model: str, tp: int, pp: int, cluster: ClusterSpec) -> str:
    return (f"cannot place a TP{tp}xPP{pp} replica of {model}: no node of cluster {cluster.name!r} has {tp} free GPUs "
            f"left; reduce the replica count or the GPUs per tier")
