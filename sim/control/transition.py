"""Mechanics of changing the deployment during a run: placing a new plan onto the live GPUs, the weight-loading
time of a new replica, and a staged make-before-break transition that never lets a tier go dark needlessly.

Transition rules (chosen so a re-plan never takes a tier offline that could keep serving), in the order apply_plan follows them:
- Per tier, a live or loading replica whose TP x PP the new plan also asks for keeps its GPUs and keeps serving.
- New replicas are placed on GPUs that no current replica holds whenever they fit there (make-before-break);
  only what does not fit is placed on GPUs of replicas that leave.
- A leaving replica whose GPUs no new replica needs serves until every new replica of its tier is up.
- A leaving replica whose GPUs a new replica needs (a staged step) is taken down only once its tier keeps another
  serving replica (one that stays, or a new one that is up), or its tier leaves the deployment; the new replica
  starts loading when all its GPUs are free. If no loading replica is left to wait for and a step is still
  blocked (the only way to re-shape a tier is in place), the step is forced and recorded (`forced_steps`).
- In-flight policy "requeue": the running and queued visits of a replica taken down go back to their tier's
  router (or the next planned tier) and prefill again there (their KV is lost); none is dropped. Thresholds
  switch at once.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sim.common.config_checks import NON_NEGATIVE, POSITIVE, check_fields, setting
from sim.spec.plan import ReplicaPlan, TierPlan


@dataclass(frozen=True)
class TransitionConfig:
    """How fast a new replica comes up. reload_bandwidth_gbps: weight bytes per second and GPU from host memory
    or local NVMe into HBM. 5 GB/s per GPU is a PCIe Gen4 x16 NVMe read (~7 GB/s sequential, e.g. Samsung PM9A3
    datasheet) less file-system and safetensors overhead, and about what vLLM reports for loading 70B
    checkpoints from local disk (~140 GB in ~30 s over 8 GPUs, vLLM model-loader logs). startup_s: engine start
    and CUDA-graph capture, ~20 s in vLLM 0.6 start-up logs."""

    reload_bandwidth_gbps: float = setting(5.0, valid=POSITIVE)
    startup_s: float = setting(20.0, valid=NON_NEGATIVE)
    # the only policy: visits of a removed replica are re-queued (KV lost)
    inflight_policy: str = setting("requeue", valid=("requeue",))

    def __post_init__(self) -> None:
        check_fields(self, "replan")  # the keys are set under replan (online.replan.ReplanConfig)


TRANSITION_KEYS = tuple(f.name for f in fields(TransitionConfig))


def load_time_s(tier_spec, replica_plan, cfg: TransitionConfig) -> float:
    """Downtime of a new replica: its weight shard per GPU over the reload bandwidth, plus engine start-up."""
    per_gpu = tier_spec.model.weight_bytes(tier_spec.weights) / replica_plan.num_gpus
    return per_gpu / (cfg.reload_bandwidth_gbps * 1e9) + cfg.startup_s


# ---- placement onto live GPUs ------------------------------------------------------------------------
def healthy_nodes(spec, dead_gpus) -> list[int]:
    dead_nodes = {n for n, _ in dead_gpus}
    return [n for n in range(spec.num_nodes) if n not in dead_nodes]


def remap_nodes(plan, nodes: list[int]):
    """A plan made on a cluster of len(nodes) nodes, moved onto those real nodes."""
    # replace() keeps every other field of a replica (its role, its MoE options)
    tiers = tuple(TierPlan(t.model, tuple(replace(r, gpus=tuple((nodes[n], g) for n, g in r.gpus))
                                          for r in t.replicas)) for t in plan.tiers)
    return replace(plan, tiers=tiers)


def _first_fit(todo: list, free: dict, gpus_per_node: int) -> dict | None:
    """todo = [(tier, tp, pp)], free = {node: [gpu, ...]}; largest replicas first, each TP group in one node
    (a replica that fits a node stays in one). Returns {index in todo: gpus} or None when they do not fit."""
    free = {n: list(g) for n, g in free.items()}
    order = sorted(range(len(todo)), key=lambda i: (-todo[i][1] * todo[i][2], -todo[i][1], todo[i][0], i))
    placed = {}
    for i in order:
        _, tp, pp = todo[i]
        groups = [tp * pp] if tp * pp <= gpus_per_node else [tp] * pp
        gpus = []
        for size in groups:
            node = next((n for n in sorted(free) if len(free[n]) >= size), None)
            if node is None:
                return None
            gpus.extend((node, free[node].pop(0)) for _ in range(size))
        placed[i] = tuple(gpus)
    return placed


def _by_node(gpus) -> dict:
    free: dict = {}
    for node, g in sorted(gpus):
        free.setdefault(node, []).append(g)
    return free


def reconcile(new_plan, current: list[list], usable: set, gpus_per_node: int, busy: set = frozenset()):
    """Keep current replicas (lists of ReplicaPlan per tier) that the new plan's TP x PP counts allow, and place
    the rest first-fit: on usable GPUs no current replica holds (busy) when they all fit there, else on any usable
    GPU the kept replicas leave; the planner's own placement when even that does not fit."""
    kept: list[list] = [[] for _ in new_plan.tiers]
    todo = []
    for t, tier in enumerate(new_plan.tiers):
        want = [(r.tp, r.pp) for r in tier.replicas]
        for rp in current[t]:
            if (rp.tp, rp.pp) in want and usable.issuperset(rp.gpus):
                want.remove((rp.tp, rp.pp))
                kept[t].append(rp)
        todo.extend((t, tp, pp) for tp, pp in want)
    taken = {g for reps in kept for r in reps for g in r.gpus}
    placed = _first_fit(todo, _by_node(usable - taken - set(busy)), gpus_per_node)
    if placed is None:
        placed = _first_fit(todo, _by_node(usable - taken), gpus_per_node)
    if placed is None:
        return new_plan
    for i, (t, tp, pp) in enumerate(todo):
        kept[t].append(ReplicaPlan(tp, pp, placed[i]))
    return replace(new_plan, tiers=tuple(TierPlan(tier.model, tuple(kept[t])) for t, tier in enumerate(new_plan.tiers)))


# ---- what a transition will do ---------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One new replica: its tier, plan, load time, and the leaving replicas whose GPUs it needs (staged)."""

    tier: int
    plan: Any  # ReplicaPlan
    load_s: float
    blockers: tuple  # live Replica objects that must go first


def diff(cluster, new_plan, cfg: TransitionConfig) -> tuple[list, list, list, list]:
    """(stay, go, cancel, steps) of moving the cluster to new_plan: live or loading replicas that stay, live
    replicas that leave, loads cancelled, and the new replicas to load."""
    stay, go, cancel, steps = [], [], [], []
    for t, tier in enumerate(new_plan.tiers):
        want = list(tier.replicas)
        for r in cluster.routers[t].replicas:
            if r.plan in want:
                want.remove(r.plan)
                stay.append(r)
            else:
                go.append(r)
        for p in cluster.pending:
            if p.tier == t and not p.cancelled:
                if p.plan in want:
                    want.remove(p.plan)
                    stay.append(p)
                else:
                    cancel.append(p)
        for rp in want:
            steps.append((t, rp))
    out = []
    for t, rp in steps:
        blockers = tuple(r for r in go if set(r.plan.gpus).intersection(rp.gpus))
        out.append(Step(t, rp, load_time_s(cluster.cascade.tiers[t], rp, cfg), blockers))
    return stay, go, cancel, out


def estimate(cluster, new_plan, cfg: TransitionConfig) -> dict[str, Any]:
    """What moving to new_plan costs, before doing it: the longest load, GPU-seconds spent loading weights, the
    visits whose KV is lost (running or queued on replicas that leave), and per tier the GPUs missing while staged
    steps load (a blocker goes before its replacement is up) with how long."""
    stay, go, cancel, steps = diff(cluster, new_plan, cfg)
    missing = [0.0] * len(new_plan.tiers)  # GPU-seconds of serving capacity missing per tier
    gap: dict = {}  # a blocker is missing until the slowest replacement that needs its GPUs is up
    for s in steps:
        for r in s.blockers:
            gap[id(r)] = (r, max(s.load_s, gap.get(id(r), (r, 0.0))[1]))
    for r, load_s in gap.values():
        missing[r.tier] += r.num_gpus * load_s
    lost = sum(r.outstanding for r in go)
    return {"load_s": max((s.load_s for s in steps), default=0.0),
            "loading_gpu_s": sum(s.plan.num_gpus * s.load_s for s in steps),
            "kv_lost_visits": lost, "missing_gpu_s_per_tier": missing,
            "staged_steps": sum(1 for s in steps if s.blockers), "added": len(steps),
            "removed": len(go) + len(cancel), "kept": len(stay),
            "gpus_per_tier_now": [sum(r.num_gpus for r in cluster.routers[t].replicas)
                                  for t in range(len(new_plan.tiers))]}


# ---- doing it ----------------------------------------------------------------------------------------
def apply_plan(cluster, flow, new_plan, cfg: TransitionConfig, record=None) -> dict[str, Any]:
    """Move the running deployment to new_plan (replicas on real GPUs) by the module's rules; no request lost.
    record(event) receives the staged and forced steps as they happen."""
    env = cluster.env
    stay, go, cancel, steps = diff(cluster, new_plan, cfg)
    for t, tier in enumerate(new_plan.tiers):  # first, so visits handed back skip tiers leaving the deployment
        cluster.routers[t].planned = bool(tier.replicas)
    for p in cancel:
        p.cancelled = True
    procs = {t: [] for t in range(len(new_plan.tiers))}
    blocked = []
    for s in steps:
        if s.blockers:
            blocked.append(s)
        else:
            procs[s.tier].append(cluster.add_replica(s.tier, s.plan, s.load_s))
    blocking = {id(r) for s in blocked for r in s.blockers}
    for r in go:  # leaving replicas nobody waits for: serve until their tier's new replicas are up
        if id(r) in blocking:
            continue
        if procs[r.tier]:
            env.all_of(procs[r.tier]).callbacks.append(lambda _ev, rep=r: _retire(cluster, rep))
        elif _safe_to_remove(cluster, r, go):
            _retire(cluster, r)
        else:  # its tier's replacements are all staged: retire it once they are up
            blocked.append(Step(r.tier, None, 0.0, (r,)))
    if blocked:
        env.process(_staged(cluster, blocked, procs, go, record))
    flow.set_thresholds(new_plan.thresholds)
    flow.reroute_unplanned()
    cluster.plan = new_plan
    return {"kept": len(stay), "removed": len(go) + len(cancel), "added": len(steps),
            "staged": sum(1 for s in steps if s.blockers),
            "downtime_s": max((s.load_s for s in steps), default=0.0)}


def _serving_others(cluster, replica, go) -> bool:
    leaving = {id(r) for r in go}
    return any(r is not replica and id(r) not in leaving for r in cluster.routers[replica.tier].replicas)


def _safe_to_remove(cluster, replica, go) -> bool:
    """A replica may go now when its tier keeps another serving replica, or its tier leaves the deployment."""
    return not cluster.routers[replica.tier].planned or _serving_others(cluster, replica, go)


def _staged(cluster, blocked: list, procs: dict, go: list, record):
    """SimPy process: take blockers down as soon as it is safe, start each staged replica when its GPUs are
    free; when nothing is loading and a step is still blocked, force it."""
    env = cluster.env
    active = [p for ps in procs.values() for p in ps]
    while blocked:
        progressed = False
        for s in list(blocked):
            for r in s.blockers:
                if r in cluster.routers[r.tier].replicas and _safe_to_remove(cluster, r, go):
                    _retire(cluster, r)
                    progressed = True
            if all(r not in cluster.routers[r.tier].replicas for r in s.blockers):
                blocked.remove(s)
                if s.plan is not None:
                    p = cluster.add_replica(s.tier, s.plan, s.load_s)
                    procs[s.tier].append(p)
                    active.append(p)
                progressed = True
        if not blocked:
            return
        active = [p for p in active if p.is_alive]
        if active:
            yield env.any_of(active)
        elif not progressed:
            s = blocked[0]
            for r in s.blockers:
                if r in cluster.routers[r.tier].replicas:
                    _retire(cluster, r)
            if record is not None:
                record({"time_s": env.now, "event": "forced_step", "tier": s.tier,
                        "why": "no free GPUs and nothing loading: the tier is re-shaped in place"})


def _retire(cluster, replica) -> None:
    if replica in cluster.routers[replica.tier].replicas:
        cluster.take_down(replica)
