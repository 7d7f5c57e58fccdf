"""Independent feasibility checker for cascade plans; deliberately shares no code with the planners."""
from __future__ import annotations

from sim.spec.cascade import CascadeSpec
from sim.spec.hardware import ClusterSpec

from planners.plan import CascadePlan

ROUTINGS = ("cascade", "direct")
REPLICA_ROLES = ("colocated", "prefill", "decode")


def check_plan(plan: CascadePlan, cascade: CascadeSpec, cluster: ClusterSpec,
               gpu_memory_utilization: float = 0.9) -> list[str]:
    """Every violation found, as one sentence each; an empty list means the plan is feasible."""
    problems: list[str] = []
    if len(plan.tiers) != cascade.num_tiers:
        problems.append(f"plan has {len(plan.tiers)} tiers but cascade {cascade.name!r} has {cascade.num_tiers}")
    for i, (tier_plan, tier) in enumerate(zip(plan.tiers, cascade.tiers)):
        if tier_plan.model != tier.model.name:
            problems.append(f"tier {i} deploys {tier_plan.model!r} but the cascade's tier {i} is {tier.model.name!r}")
    if sum(t.num_gpus for t in plan.tiers) > cluster.num_gpus:
        problems.append(f"plan uses {plan.num_gpus} GPUs but the cluster has {cluster.num_gpus}")
    seen: dict[tuple[int, int], str] = {}
    for i, tier_plan in enumerate(plan.tiers):
        tier = cascade.tiers[i] if i < cascade.num_tiers else None
        roles = [getattr(rep, "role", "colocated") for rep in tier_plan.replicas]
        for j, role in enumerate(roles):
            if role not in REPLICA_ROLES:
                problems.append(f"tier {i} replica {j}: role {role!r} is not one of {list(REPLICA_ROLES)}")
        split = [r for r in roles if r in ("prefill", "decode")]
        if split:
            # A disaggregated tier needs both pools, and a visit must never land on a colocated replica beside them.
            if "colocated" in roles:
                problems.append(f"tier {i} mixes colocated replicas with prefill/decode instances")
            if "prefill" not in split or "decode" not in split:
                missing = "prefill" if "prefill" not in split else "decode"
                problems.append(f"tier {i} is disaggregated but has no {missing} instance")
        for j, rep in enumerate(tier_plan.replicas):
            where = f"tier {i} replica {j} (TP{rep.tp}xPP{rep.pp})"
            if rep.tp < 1 or rep.pp < 1:
                problems.append(f"{where}: TP and PP must be >= 1")
                continue
            if len(rep.gpus) != rep.tp * rep.pp:
                problems.append(f"{where}: has {len(rep.gpus)} GPUs, needs tp*pp = {rep.tp * rep.pp}")
            for gpu in rep.gpus:
                node, idx = gpu
                if not (0 <= node < cluster.num_nodes and 0 <= idx < cluster.gpus_per_node):
                    problems.append(f"{where}: GPU {gpu} does not exist in a cluster of {cluster.num_nodes} nodes "
                                    f"x {cluster.gpus_per_node} GPUs")
                elif gpu in seen:
                    problems.append(f"{where}: GPU {gpu} is already used by {seen[gpu]}")
                else:
                    seen[gpu] = where
            for s in range(rep.pp):
                nodes = {g[0] for g in rep.gpus[s * rep.tp:(s + 1) * rep.tp]}
                if len(nodes) > 1:
                    problems.append(f"{where}: TP group of PP stage {s} spans nodes {sorted(nodes)}")
            if tier is not None:
                per_gpu = tier.model.weight_bytes(tier.weights) / (rep.tp * rep.pp)
                budget = cluster.gpu.memory_bytes * gpu_memory_utilization
                if per_gpu > budget:
                    problems.append(f"{where}: {tier.model.name} {tier.weights} weights need {per_gpu / 1e9:.1f} GB "
                                    f"per GPU, more than {budget / 1e9:.1f} GB available")
    if len(plan.thresholds) != cascade.num_tiers - 1:
        problems.append(f"plan has {len(plan.thresholds)} thresholds, needs {cascade.num_tiers - 1}")
    for i, h in enumerate(plan.thresholds):
        if not 0.0 <= h <= 100.0:
            problems.append(f"threshold {i} is {h}, outside the 0-100 judge scale")
    if plan.routing not in ROUTINGS:
        problems.append(f"routing {plan.routing!r} is not one of {list(ROUTINGS)}")
    if not 0.0 <= plan.router_error_rate <= 1.0:
        problems.append(f"router_error_rate {plan.router_error_rate} is outside [0, 1]")
    if not any(t.replicas for t in plan.tiers):
        problems.append("plan deploys no replica at all")
    elif plan.routing == "cascade":
        # The last tier with replicas must answer everything that reaches it; requests forwarded past it
        # would have nowhere to go.
        last = max(i for i, t in enumerate(plan.tiers) if t.replicas)
        if last < len(plan.thresholds) and plan.thresholds[last] > 0.0:
            problems.append(f"tier {last} is the last tier with replicas but its threshold "
                            f"{plan.thresholds[last]} forwards answers to tiers with none; it must be 0")
    return problems
