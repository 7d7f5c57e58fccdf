"""The simulated cluster: replicas of every tier on concrete GPUs, their costs, tier routers, and the hooks a
controller uses to change the deployment during a run (take a replica down, add one, slow one down)."""
from __future__ import annotations

from sim.errors import ConfigError
from sim.replica import Replica
from sim.router import TierRouter


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
        self.routers = []
        for t, tier in enumerate(plan.tiers):
            reps = [self._build(t, rp) for rp in tier.replicas]
            self.routers.append(TierRouter(t, reps, cfg.load_balancer))

    def _build(self, tier: int, replica_plan) -> Replica:
        cost = self.cost_factory(self.cascade.tiers[tier], replica_plan, self.spec, engine=self.cfg.engine)
        rep = Replica(self.env, len(self.replicas), tier, replica_plan, cost, self.cfg, self.flow,
                      self.iteration_log)
        self.replicas.append(rep)
        return rep

    def attach_flow(self, flow) -> None:
        self.flow = flow
        for r in self.replicas:
            r.flow = flow

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
        """Start a replica after a load downtime of load_s seconds; returns the SimPy process."""
        def _start():
            if load_s > 0:
                yield self.env.timeout(load_s)
            self.routers[tier].add(self._build(tier, replica_plan))

        return self.env.process(_start())

    def slow_down(self, replica: Replica, factor: float) -> None:
        if factor <= 0:
            raise ConfigError(f"a slowdown factor must be positive, got {factor}")
        replica.slowdown = float(factor)

    def live_replicas(self) -> list[Replica]:
        return [r for router in self.routers for r in router.replicas]

    def gpu_seconds(self, end_s: float) -> float:
        """GPUs x time provisioned (busy or idle), the cost a cluster operator pays."""
        stopped = {id(r): t for r, t in self.retired}
        return sum(r.num_gpus * (stopped.get(id(r), end_s) - r.start_s) for r in self.replicas)
