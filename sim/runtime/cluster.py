"""The simulated cluster: replicas of every tier on concrete GPUs, their costs, tier routers, and the hooks a
controller uses to change the deployment during a run (take a replica down, add one, slow one down, fail GPUs)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from sim.common.errors import ConfigError
from sim.common.memo import frozen_object_memo
from sim.runtime.disagg import DisaggTierRouter
from sim.runtime.replica import Replica
from sim.runtime.router import TierRouter


# Prefill-batch time memos that outlive a run, one per cost object. A frozen cost (the calibrated model, which
# replica_cost_for caches across runs) is a pure function of the batch shape, so the runs of a sweep or a benchmark
# share its memo. Each holds its cost, so an id is never reused while its entry lives; bounded in count (each memo
# is bounded in size by replica.STEP_TIMES_MAX).
SHARED_STEP_TIMES_MAX = 16
_shared_step_times: dict[int, tuple[object, dict]] = {}


def _shared_memo(registry: dict, cost) -> dict:
    """The memo in registry shared by every run with this cost object, or a new one for this run (a cost that is not
    a frozen dataclass may change between runs)."""
    memo = frozen_object_memo(registry, cost, SHARED_STEP_TIMES_MAX)
    return {} if memo is None else memo


def step_times_for(cost) -> dict:
    """The memo of prefill-batch times by BatchShape fields (Replica.step_times)."""
    return _shared_memo(_shared_step_times, cost)


# cost.decode_affine(n) by batch size n, shared the same way (an engine looks it up at every decode jump it plans;
# a run of the named case met about a hundred batch sizes anew).
_shared_decode_affine: dict[int, tuple[object, dict]] = {}


def decode_affine_for(cost) -> dict:
    """The memo of cost.decode_affine by batch size (Replica.decode_affine)."""
    return _shared_memo(_shared_decode_affine, cost)


# The one-prompt prefill times with their shapes by prompt tokens (Replica.prompt_times), shared the same way.
_shared_prompt_times: dict[int, tuple[object, dict]] = {}


def prompt_times_for(cost) -> dict:
    """The memo of one-prompt prefill (time, shape key) by prompt tokens (Replica.prompt_times)."""
    return _shared_memo(_shared_prompt_times, cost)


def validate_plan(plan, cascade, cluster) -> None:
    """The checks the simulator needs before it can run a plan (the planners' checker does the full audit)."""
    if len(plan.tiers) != cascade.num_tiers:
        raise ConfigError(f"plan {plan.planner!r} has {len(plan.tiers)} tiers but cascade {cascade.name!r} has "
                          f"{cascade.num_tiers}")
    for i, (tp, ts) in enumerate(zip(plan.tiers, cascade.tiers)):
        if tp.model != ts.model.name:
            raise ConfigError(f"plan tier {i} serves {tp.model!r} but cascade tier {i} is {ts.model.name!r}")
    if plan.routing not in ("cascade", "direct"):
        raise ConfigError(f"plan routing {plan.routing!r} is not valid; choose 'cascade' or 'direct'")
    if len(plan.thresholds) != cascade.num_tiers - 1:
        raise ConfigError(f"plan has {len(plan.thresholds)} thresholds; a {cascade.num_tiers}-tier cascade needs "
                          f"{cascade.num_tiers - 1}")
    if not 0.0 <= plan.router_error_rate <= 1.0:
        raise ConfigError(f"plan router_error_rate must be within 0-1, got {plan.router_error_rate}")
    seen: dict = {}
    for i, tier in enumerate(plan.tiers):
        roles = {getattr(r, "role", "colocated") for r in tier.replicas}
        if roles - {"colocated", "prefill", "decode"}:
            raise ConfigError(f"plan tier {i} ({tier.model}): replica role(s) {sorted(roles - {'colocated', 'prefill', 'decode'})} "
                              "are not valid; choose colocated, prefill or decode")
        if roles & {"prefill", "decode"} and roles != {"prefill", "decode"}:
            raise ConfigError(f"plan tier {i} ({tier.model}) is disaggregated: it needs at least one prefill and one "
                              f"decode instance and no colocated replica, got roles {sorted(roles)}")
        for j, rep in enumerate(tier.replicas):
            where = f"plan tier {i} ({tier.model}) replica {j}"
            if rep.tp < 1 or rep.pp < 1:
                raise ConfigError(f"{where}: tp and pp must be >= 1, got TP{rep.tp} x PP{rep.pp}")
            if len(rep.gpus) != rep.tp * rep.pp:
                raise ConfigError(f"{where}: lists {len(rep.gpus)} GPUs but TP{rep.tp} x PP{rep.pp} needs "
                                  f"{rep.tp * rep.pp}")
            for node, g in rep.gpus:
                if not (0 <= node < cluster.num_nodes and 0 <= g < cluster.gpus_per_node):
                    raise ConfigError(f"{where}: GPU ({node}, {g}) is outside cluster {cluster.name!r} "
                                      f"({cluster.num_nodes} nodes x {cluster.gpus_per_node} GPUs)")
                if (node, g) in seen:
                    raise ConfigError(f"{where}: GPU ({node}, {g}) is already used by {seen[(node, g)]}")
                seen[(node, g)] = where


@dataclass
class PendingReplica:
    """A replica loading its weights; it joins its tier at ready_s unless cancelled (its GPUs failed, or a newer
    plan dropped it) before then."""

    tier: int
    plan: object  # ReplicaPlan
    started_s: float
    ready_s: float
    cancelled: bool = False


class Cluster:
    """Builds one Replica per ReplicaPlan (cost from cost_factory) and one TierRouter per tier."""

    def __init__(self, env, plan, cascade, cluster_spec, cfg, cost_factory, iteration_log=None) -> None:
        self.env = env
        self.plan = plan
        self.cascade = cascade
        self.spec = cluster_spec
        self.cfg = cfg
        self.flow = None  # set by attach_flow: the flow needs the routers, the routers need the replicas
        self.cost_factory = cost_factory
        self.iteration_log = iteration_log
        self.replicas: list[Replica] = []  # every replica ever started (ids are indices)
        self.retired: list[tuple[Replica, float]] = []
        self.pending: list[PendingReplica] = []
        self.retired_loads: list[tuple[PendingReplica, float]] = []  # loads that never started, and when they ended  # replicas loading weights (add_replica with load_s > 0)
        self.dead_gpus: set = set()  # (node, gpu) currently failed
        self.gpu_slowdown: dict = {}  # (node, gpu) -> straggler factor (> 1 = slower)
        self.link_factor: dict = {}  # node -> bandwidth factor of its NVLink and IB links (< 1 = degraded)
        self._step_times: dict[int, tuple] = {}  # id(cost) -> (cost, Replica's step_times, decode_affine, prompt_times)
        self.routers = []
        for t, tier in enumerate(plan.tiers):
            reps = [self._build(t, rp) for rp in tier.replicas]
            if tier.disaggregated:  # prefill and decode pools with KV transfer (sim.runtime.disagg)
                spec = cascade.tiers[t]
                self.routers.append(DisaggTierRouter(env, t, reps, cfg.load_balancer, cfg,
                                                     spec.model.kv_bytes_per_token(spec.kv), cluster_spec,
                                                     spec.model.num_layers))
            else:
                self.routers.append(TierRouter(t, reps, cfg.load_balancer))

    def _build(self, tier: int, replica_plan) -> Replica:
        cost = self._cost(tier, replica_plan)
        # One memo of prefill-batch times per cost object (held here with it, so its id is never reused in the run).
        entry = self._step_times.get(id(cost))
        if entry is None:
            entry = self._step_times[id(cost)] = (cost, step_times_for(cost), decode_affine_for(cost),
                                                  prompt_times_for(cost))
        rep = Replica(self.env, len(self.replicas), tier, replica_plan, cost, self.cfg, self.flow, self.iteration_log,
                      *entry[1:])
        rep.slowdown = self._slowdown(replica_plan)
        self.replicas.append(rep)
        return rep

    def _cost(self, tier: int, replica_plan):
        return self.cost_factory(self.cascade.tiers[tier], replica_plan, self.spec_for(replica_plan),
                                 engine=self.cfg.engine)

    def spec_for(self, replica_plan):
        """The cluster as this replica sees it: a replica with a GPU on a node whose links are degraded runs its
        all-reduces and PP sends on NVLink and InfiniBand scaled by the worst such node's factor."""
        f = min((self.link_factor.get(node, 1.0) for node, _ in replica_plan.gpus), default=1.0)
        if f == 1.0:
            return self.spec
        gpu = replace(self.spec.gpu, nvlink_bw_gbps=self.spec.gpu.nvlink_bw_gbps * f)
        return replace(self.spec, gpu=gpu, ib_bw_gbps=self.spec.ib_bw_gbps * f)

    def _slowdown(self, replica_plan) -> float:
        # TP and PP run in lock-step, so the slowest GPU sets the replica's pace.
        return max((self.gpu_slowdown.get(g, 1.0) for g in replica_plan.gpus), default=1.0)

    def attach_flow(self, flow) -> None:
        self.flow = flow
        for r in self.replicas:
            r.flow = flow
        if any(isinstance(r, DisaggTierRouter) for r in self.routers):
            flow.book.track_disaggregation()
            for router in self.routers:
                if isinstance(router, DisaggTierRouter):
                    router.attach(flow)  # its instances report to it; it reports to the flow

    # ---- controller hooks -----------------------------------------------------------------------
    def take_down(self, replica: Replica) -> int:
        """Remove a replica now: its running and queued visits go back to the tier (none is lost). Returns
        how many visits were re-queued."""
        router = self.routers[replica.tier]
        if replica not in router.replicas:
            raise ConfigError(f"replica {replica.replica_id} of tier {replica.tier} is not live")
        router.remove(replica)
        seqs = []
        for eng in replica.engines:
            seqs.extend(eng.stop())
        replica.outstanding_work = 0.0
        self.retired.append((replica, self.env.now))
        for seq in seqs:
            self.flow.requeue(seq)
        return len(seqs)

    def add_replica(self, tier: int, replica_plan, load_s: float = 0.0):
        """Start a replica after a load downtime of load_s seconds; returns the SimPy process. Its GPUs count as
        provisioned from now (they hold the loading weights); it never starts if cancelled or a GPU fails first."""
        if (replica_plan.role != "colocated") != isinstance(self.routers[tier], DisaggTierRouter):
            kind = "disaggregated" if isinstance(self.routers[tier], DisaggTierRouter) else "colocated"
            raise ConfigError(f"tier {tier} is {kind}: a {replica_plan.role} replica cannot join it (a run cannot "
                              "switch a tier between colocated and disaggregated)")
        pend = PendingReplica(tier, replica_plan, self.env.now, self.env.now + load_s)
        self.pending.append(pend)

        def _start():
            if load_s > 0:
                yield self.env.timeout(load_s)
            self.pending.remove(pend)
            if pend.cancelled or self.dead_gpus.intersection(replica_plan.gpus):
                self.retired_loads.append((pend, self.env.now))
                return
            rep = self._build(tier, replica_plan)
            rep.start_s = pend.started_s
            self.routers[tier].planned = True
            self.routers[tier].add(rep)

        return self.env.process(_start())

    def slow_down(self, replica: Replica, factor: float) -> None:
        if factor <= 0:
            raise ConfigError(f"a slowdown factor must be positive, got {factor}")
        replica.change_speed(slowdown=factor)

    # ---- faults ---------------------------------------------------------------------------------
    def fail_gpus(self, gpus) -> tuple[list[Replica], list[PendingReplica]]:
        """GPUs fail now: every live replica on one of them goes down (its visits re-queued to the tier) and
        loading replicas on them are cancelled. Returns both. A later repair_gpus heals them, whichever fault
        (of several overlapping ones) it belongs to."""
        gpus = set(gpus)
        self.dead_gpus |= gpus
        down = [r for r in self.live_replicas() if gpus.intersection(r.plan.gpus)]
        for r in down:
            self.take_down(r)
        cancelled = [p for p in self.pending if not p.cancelled and gpus.intersection(p.plan.gpus)]
        for p in cancelled:
            p.cancelled = True
        return down, cancelled

    def repair_gpus(self, gpus) -> None:
        self.dead_gpus -= set(gpus)

    def set_gpu_slowdown(self, gpu, factor: float) -> list[Replica]:
        """A straggler GPU (factor > 1 slower, 1 = healthy again); returns the live replicas it slows."""
        if factor == 1.0:
            self.gpu_slowdown.pop(gpu, None)
        else:
            self.gpu_slowdown[gpu] = float(factor)
        hit = [r for r in self.live_replicas() if gpu in r.plan.gpus]
        for r in hit:
            r.change_speed(slowdown=self._slowdown(r.plan))
        return hit

    def set_link_factor(self, node: int, factor: float) -> list[Replica]:
        """A node's links carry factor of their bandwidth (1 = healthy); live replicas on it get a rebuilt cost."""
        if factor == 1.0:
            self.link_factor.pop(node, None)
        else:
            self.link_factor[node] = float(factor)
        hit = [r for r in self.live_replicas() if any(n == node for n, _ in r.plan.gpus)]
        for r in hit:
            r.change_speed(cost=self._cost(r.tier, r.plan))
        return hit

    def used_gpus(self) -> set:
        """GPUs held by live or loading replicas."""
        used = {g for r in self.live_replicas() for g in r.plan.gpus}
        used.update(g for p in self.pending if not p.cancelled for g in p.plan.gpus)
        return used

    def live_replicas(self) -> list[Replica]:
        return [r for router in self.routers for r in router.replicas]

    def gpu_seconds(self, end_s: float) -> float:
        """GPUs x time provisioned (busy or idle), the cost a cluster operator pays."""
        stopped = {id(r): t for r, t in self.retired}
        loads = sum(p.plan.tp * p.plan.pp * (t - p.started_s) for p, t in self.retired_loads)
        loads += sum(p.plan.tp * p.plan.pp * (end_s - p.started_s) for p in self.pending)
        return loads + sum(r.num_gpus * (stopped.get(id(r), end_s) - r.start_s) for r in self.replicas)
