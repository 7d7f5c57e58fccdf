"""Parallel strategy search: per model and GPU count f, the best DP x TP x PP deployment and its p95 (table l_i(f)).

Tractability choice (the paper allows arbitrary mixes): a deployment on f GPUs is d1 replicas of one
configuration, as many as fit, plus d2 replicas of one smaller configuration filling the remainder; at most
two distinct configurations per model. Replicas share load in proportion to their saturation throughput
(what a least-work balancer converges to), so all run at the same utilisation rho = rate / capacity. The
deployment's p95 is taken as the worst p95 among configurations carrying more than 1 - q of the load (a
component with less cannot move the mixture's q-quantile much). With disaggregation on, the candidates also include
units of P prefill and D decode instances (planners.disagg), each deployed alone (d1 units, never mixed with a
colocated configuration, as a simulated tier is one or the other), taken only where they are robustly better than
the colocated deployment (latency_table's gate). The table is made non-increasing in f
(a deployment may leave GPUs idle), which also makes the MILP's "sum f = N" and "sum f <= N" equivalent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.common.errors import ConfigError, DeploymentDoesNotFit

from planners.disagg import P95Columns, decode_side, disagg_models, prefill_side, unit_latencies
from planners.estimator import ReplicaModel, TierLoad, build_replica_model

TP_DEGREES = (1, 2, 4, 8)
PP_DEGREES = (1, 2, 4, 8, 16)
MAX_REPLICA_GROWTH = 4  # consider replicas up to 4x the GPUs of the smallest one that fits


def parallel_configs(problem, tier_index: int, search: bool = True) -> list[tuple[int, int]]:
    """(tp, pp) pairs that fit the model's weights. search=False: only the smallest fitting TP inside one
    node (PP only when no single node holds the model), as a system without parallelism search would do."""
    model = problem.cascade.tiers[tier_index].model
    per_node = problem.cluster.gpus_per_node
    fitting = []
    for tp in (t for t in TP_DEGREES if t <= per_node):
        for pp in (p for p in PP_DEGREES if p <= model.num_layers and tp * p <= problem.cluster.num_gpus):
            try:
                problem.replica_cost(tier_index, tp, pp)
            except (DeploymentDoesNotFit, ConfigError):  # too big, or TP does not divide the heads
                continue
            fitting.append((tp, pp))
    if not fitting:
        return []
    smallest = min(tp * pp for tp, pp in fitting)
    if not search:
        single = [(tp, pp) for tp, pp in fitting if pp == 1]
        if single:
            return [min(single)]
        return [min(fitting, key=lambda c: (c[0] * c[1], -c[0]))]
    return sorted(c for c in fitting if c[0] * c[1] <= MAX_REPLICA_GROWTH * smallest)


def replica_models(problem, tier_index: int, load: TierLoad, configs, memo: dict | None = None) -> list[ReplicaModel]:
    """memo: {(tier, tp, pp): cost-model answers} kept across loads by the caller (SearchContext)."""
    quantile = problem.slo_attainment
    models = []
    for tp, pp in configs:
        cfg_memo = None if memo is None else memo.setdefault((tier_index, tp, pp), {})
        rm = build_replica_model(problem.replica_cost(tier_index, tp, pp), load, problem.max_num_seqs, quantile,
                                 cfg_memo)
        if rm is not None:
            models.append(rm)
    return models


def disaggregated_models(problem, tier_index: int, load: TierLoad, configs, memo: dict | None = None) -> list:
    """Disaggregated units (planners.disagg) for a tier's load, every pairing and split of: prefill instances from the
    configurations with the fewest PP stages that fit (PP 1 whenever the model fits a node: PP only pipelines a
    prompt's layers, it does not shorten its prefill), decode instances from those up to twice the smallest
    fitting size (PP gives a decode instance pp batches of max_num_seqs and more KV room)."""
    if not configs:
        return []
    pp_min = min(pp for _, pp in configs)
    smallest = min(tp * pp for tp, pp in configs)
    sides_p, sides_d = [], []
    columns = P95Columns.of(load)  # the p95 sample's columns, shared by the load's decode sides
    for tp, pp in configs:
        if pp != pp_min and tp * pp > 2 * smallest:
            continue
        cost = problem.replica_cost(tier_index, tp, pp)
        cfg_memo = None if memo is None else memo.setdefault((tier_index, tp, pp), {})
        if pp == pp_min:
            sides_p.append(prefill_side(cost, load, cfg_memo))
        dec = decode_side(cost, load, problem.max_num_seqs, cfg_memo, columns) if tp * pp <= 2 * smallest else None
        if dec is not None:
            sides_d.append(dec)
    tier = problem.cascade.tiers[tier_index]
    return disagg_models(sides_p, sides_d, load, tier.model.kv_bytes_per_token(tier.kv), problem.cluster,
                         problem.slo_attainment)


@dataclass(frozen=True)
class TierTable:
    """l(f) for f = 0..N and the deployment achieving it: d1 x models[c1] + d2 x models[c2] (c2 = -1: none)."""

    latency_s: np.ndarray
    c1: np.ndarray
    d1: np.ndarray
    c2: np.ndarray
    d2: np.ndarray
    models: tuple[ReplicaModel, ...]
    rate_rps: float

    def deployment(self, f: int) -> list[tuple[ReplicaModel, int]]:
        """[(config, replica count)] of the best deployment on at most f GPUs."""
        out = []
        if self.d1[f] > 0:
            out.append((self.models[self.c1[f]], int(self.d1[f])))
        if self.c2[f] >= 0 and self.d2[f] > 0:
            out.append((self.models[self.c2[f]], int(self.d2[f])))
        return out

    def utilisation(self, f: int) -> float:
        cap = sum(m.max_rps * d for m, d in self.deployment(f))
        return self.rate_rps / cap if cap > 0 else float("inf")


def _best_deployments(models, idx: list[int], rate_rps: float, n: int, quantile: float,
                      f: np.ndarray | None = None):
    """Per f = 0..n-1 (or per entry of the GPU counts f) the best deployment on exactly f GPUs among models[idx] (d1
    of one, plus d2 of one smaller colocated configuration): (latency, c1, d1, c2, d2). Disaggregated units never mix
    (the simulator's rule). Every entry depends on its own f alone, so a subset of f gives those entries' floats.
    The combinations (c1, c2) are rows of one array, each model's p95 read once for all the rows it takes part in,
    and the first combination with the lowest latency is kept (what a loop over them keeping strictly lower ones
    keeps; a NaN never wins)."""
    f = np.arange(n) if f is None else np.asarray(f, dtype=np.int64)
    n = f.size
    minor = 1.0 - quantile
    gpus = [m.num_gpus for m in models]
    mixable = [j for j, m in enumerate(models) if not _disaggregated(m)]
    first, second = [], []  # the combinations' configurations, in the order a loop over them would meet them
    for i in idx:
        mixes = [] if _disaggregated(models[i]) else [j for j in mixable if gpus[j] < gpus[i]]
        first.extend([i] * (1 + len(mixes)))
        second.extend([-1] + mixes)
    if not first:
        z = np.zeros(n, int)
        return np.full(n, np.inf), np.full(n, -1), z, np.full(n, -1), z.copy()
    c1, c2 = np.array(first), np.array(second)
    mixed = c2 >= 0
    g = np.array(gpus + [1])  # index -1: no second configuration
    max_rps = np.array([m.max_rps for m in models])
    d1 = f[None, :] // g[c1][:, None]
    rest = f[None, :] - d1 * g[c1][:, None]
    d2 = np.where(mixed[:, None], rest // g[c2][:, None], 0)
    cap2 = np.where(mixed[:, None], d2 * max_rps[c2][:, None], 0.0)
    cap = d1 * max_rps[c1][:, None] + cap2
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(cap > 0, rate_rps / cap, np.inf)
        share2 = np.where(cap > 0, cap2 / cap, 0.0)
    finite = np.isfinite(rho)
    at = np.where(finite, rho, 0.0)
    read1 = finite & (d1 > 0)
    read2 = finite & (share2 > minor) & mixed[:, None]
    rows1 = {k: np.flatnonzero(c1 == k) for k in np.unique(c1).tolist()}
    rows2 = {k: np.flatnonzero(c2 == k) for k in np.unique(c2[mixed]).tolist()}
    # The p95 rows each colocated model is read at, computed in one pass per model (ReplicaModel fills them lazily).
    for k in set(rows1) | set(rows2):
        if isinstance(models[k], ReplicaModel):
            parts = [at[rows1[k]][read1[rows1[k]]]] if k in rows1 else []
            if k in rows2:
                parts.append(at[rows2[k]][read2[rows2[k]]])
            models[k].prepare(np.concatenate(parts))
    lat = np.full(rho.shape, np.inf)
    for k, r in rows1.items():
        lat[r] = np.where(d1[r] > 0, _p95_at(models[k], at[r], read1[r]), np.inf)
    lat = np.where(finite, lat, np.inf)
    for k, r in rows2.items():
        lat2 = _p95_at(models[k], at[r], read2[r])
        lat[r] = np.where(share2[r] > minor, np.maximum(lat[r], lat2), lat[r])
    lat = np.where(np.isnan(lat), np.inf, lat)
    win = np.argmin(lat, axis=0)
    cols = np.arange(n)
    best = lat[win, cols]
    taken = best < np.inf
    return (np.where(taken, best, np.inf), np.where(taken, c1[win], -1), np.where(taken, d1[win, cols], 0),
            np.where(taken, c2[win], -1), np.where(taken, d2[win, cols], 0))


def latency_table(models: list[ReplicaModel], rate_rps: float, num_gpus: int, quantile: float = 0.95,
                  empty: bool = False, idle_ok: bool = True, disagg_load_factor: float = 1.0,
                  disagg_margin: float = 0.0, disagg_max_utilisation: float = 1.0) -> TierTable:
    """idle_ok (default): l(f) is the best deployment on at most f GPUs (non-increasing in f). False: on exactly f
    GPUs, each configuration's replicas filling them (a deployment told to use every GPU; at light load the best on
    at most f often leaves some idle, its estimate no better with them).

    Disaggregated units enter the table at f only where they are robustly better than the best colocated
    deployment on those f GPUs (the defaults 1.0, 0.0 and 1.0: wherever lower, the plain pointwise minimum): their p95
    at the planned rate at most (1 - disagg_margin) x the incumbent's at f (the colocated deployment, or a unit taken
    before it in the models' order; a gain beyond the estimator's error), and
    their p95 at disagg_load_factor x the rate no higher than the colocated one's at that rate (a fixed P:D split
    saturates its bottleneck pool sooner than a colocated replica, which moves its time between prefill and decode
    as the mix requires, so a split that wins only at the planned rate loses when the load runs hotter), with its
    bottleneck pool at most disagg_max_utilisation busy at that hotter rate (near saturation the estimator's
    disaggregated queue is too optimistic: planners.disagg)."""
    n = num_gpus + 1
    if empty:  # no request reaches this tier: it needs no GPU
        z = np.zeros(n, int)
        return TierTable(np.zeros(n), np.full(n, -1), z, np.full(n, -1), z.copy(), tuple(models), rate_rps)
    colocated = [i for i, m in enumerate(models) if not _disaggregated(m)]
    disagg = [i for i, m in enumerate(models) if _disaggregated(m)]
    gated = bool(colocated and disagg and (disagg_load_factor > 1.0 or disagg_margin > 0.0
                                           or disagg_max_utilisation < 1.0))
    if not gated:
        best, c1b, d1b, c2b, d2b = _best_deployments(models, list(range(len(models))), rate_rps, n, quantile)
    else:
        best, c1b, d1b, c2b, d2b = _best_deployments(models, colocated, rate_rps, n, quantile)
        hot_rps = rate_rps * max(disagg_load_factor, 1.0)
        # A unit can enter only at f where its bottleneck pool is at most disagg_max_utilisation busy at the hotter
        # rate, and there only where it beats the colocated incumbent by the margin (the incumbent only falls as
        # units are taken): its p95 is computed at those f alone, and the colocated p95 at the hotter rate only
        # where some unit passes both (each f's entry depends on its own f, so the floats are those of computing
        # every f; about half a gated table's time saved).
        # All units' rows are computed together (planners.disagg.prepare_units), and the p95 at the hotter rate only
        # for the units that pass at some f against the colocated deployment (`first` below can only be smaller).
        units = np.arange(n)[None, :] // np.array([models[i].num_gpus for i in disagg])[:, None]  # (units, n)
        room = hot_rps <= disagg_max_utilisation * units * np.array([models[i].max_rps for i in disagg])[:, None]
        asked = np.flatnonzero(room.any(axis=1))
        lats = unit_latencies([models[disagg[a]] for a in asked], rate_rps, n, room[asked])
        passing = room[asked] & (lats <= (1.0 - disagg_margin) * best)
        maybe = passing.any(axis=0)
        best_hot = np.full(n, np.inf)
        if maybe.any():
            at = np.flatnonzero(maybe)
            best_hot[at] = _best_deployments(models, colocated, hot_rps, n, quantile, f=at)[0]
        contenders = np.flatnonzero(passing.any(axis=1))
        hot = unit_latencies([models[disagg[asked[c]]] for c in contenders], hot_rps, n, passing[contenders])
        for c, lat_hot in zip(contenders.tolist(), hot):
            a = asked[c]
            i, lat, u = disagg[a], lats[c], units[a]
            first = room[a] & (lat <= (1.0 - disagg_margin) * best)
            ok = first & (lat_hot <= best_hot)
            better = ok & (lat < best)
            best = np.where(better, lat, best)
            c1b = np.where(better, i, c1b)
            d1b = np.where(better, u, d1b)
            c2b = np.where(better, -1, c2b)
            d2b = np.where(better, 0, d2b)
    if not idle_ok:
        return TierTable(best, c1b, d1b, c2b, d2b, tuple(models), rate_rps)
    # Non-increasing in f: the best deployment on at most f GPUs.
    idx = np.arange(n)
    improves = best < np.r_[np.inf, np.minimum.accumulate(best)[:-1]]
    keep = np.maximum.accumulate(np.where(improves, idx, 0))
    return TierTable(best[keep], c1b[keep], d1b[keep], c2b[keep], d2b[keep], tuple(models), rate_rps)


def _p95_at(model, rho: np.ndarray, used: np.ndarray) -> np.ndarray:
    """model.p95_at(rho), of which only the entries `used` are read (a colocated model computes no other rows)."""
    return model.p95_at(rho, used) if isinstance(model, ReplicaModel) else model.p95_at(rho)


def _disaggregated(model) -> bool:
    return getattr(model, "disaggregated", False)
