"""Placement: turn per-tier replica configurations into concrete GPUs (TP groups inside a node)."""
from __future__ import annotations

from sim.errors import UserError
from sim.hardware import ClusterSpec

from planners.plan import ReplicaPlan, TierPlan


class PlacementError(UserError):
    """The replicas cannot be packed onto the cluster's nodes."""


def place(models: tuple[str, ...], configs: list[list[tuple[int, int, int]]], cluster: ClusterSpec) -> tuple[TierPlan, ...]:
    """configs[i] = [(tp, pp, count)] for tier i. First-fit decreasing: the largest replicas first; a replica
    that fits a node stays inside one node (TP and PP on NVLink); a larger one places each PP stage (a TP
    group) in its own node's free GPUs. Sizes are powers of two no larger than a node, so FFD never strands
    GPUs when the total fits."""
    free = [list(range(cluster.gpus_per_node)) for _ in range(cluster.num_nodes)]
    order = []
    for i, tier_cfgs in enumerate(configs):
        for tp, pp, count in tier_cfgs:
            order.extend((i, tp, pp) for _ in range(count))
    # Largest replica first, then largest TP group; the tier index keeps the order deterministic.
    order.sort(key=lambda r: (-r[1] * r[2], -r[1], r[0]))
    placed: list[list[ReplicaPlan]] = [[] for _ in configs]
    for tier, tp, pp in order:
        size = tp * pp
        gpus: list[tuple[int, int]] = []
        if size <= cluster.gpus_per_node:
            node = next((n for n, f in enumerate(free) if len(f) >= size), None)
            if node is None:
                raise PlacementError(_full(models[tier], tp, pp, cluster))
            gpus = [(node, free[node].pop(0)) for _ in range(size)]
        else:
            for _stage in range(pp):
                node = next((n for n, f in enumerate(free) if len(f) >= tp), None)
                if node is None:
                    raise PlacementError(_full(models[tier], tp, pp, cluster))
                gpus.extend((node, free[node].pop(0)) for _ in range(tp))
        placed[tier].append(ReplicaPlan(tp, pp, tuple(gpus)))
    return tuple(TierPlan(models[i], tuple(reps)) for i, reps in enumerate(placed))


def _full(model: str, tp: int, pp: int, cluster: ClusterSpec) -> str:
    return (f"cannot place a TP{tp}xPP{pp} replica of {model}: no node of cluster {cluster.name!r} has {tp} free GPUs "
            f"left; reduce the replica count or the GPUs per tier")
