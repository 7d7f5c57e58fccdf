"""Search context shared by Cascadia and the baselines: per-tier loads from thresholds, cached tables, plans."""
from __future__ import annotations

import time

import numpy as np

from sim.common.errors import ConfigError

from planners import plan_cache

from planners.disagg import DISAGG_MARGIN, DISAGG_MAX_UTILISATION, disagg_load_factor
from planners.estimator import SATURATED_S, TierLoad, alone_latency_s, arrival_ca2, rate_profile
from planners.milp import spread_spare
from planners.placement import place
from sim.spec.plan import CascadePlan
from planners.routing import final_tiers, plan_thresholds, quality, reach_mask
from planners.strategy import TierTable, disaggregated_models, latency_table, parallel_configs, replica_models


DEPLOYMENTS = ("colocated", "best", "disaggregated")


def quantile_linear(x: np.ndarray, q: float) -> float:
    """np.quantile(x, q) (its default "linear" method) of a 1-D array of finite values, the same float: the two
    order statistics around the virtual index (n - 1) q from one partition, then numpy's own lerp formula. numpy's
    general path costs several times more per call, and the search evaluates thousands of candidate plans."""
    n = x.size
    v = (n - 1) * q
    lo = min(max(int(np.floor(v)), 0), n - 1)
    hi = min(lo + 1, n - 1)
    part = np.partition(x, (lo, hi)) if hi > lo else np.partition(x, lo)
    a, b = float(part[lo]), float(part[hi])
    t = v - lo if hi > lo else 0.0
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


class SearchContext:
    """Caches for one planning call (tables keyed on the exact set of requests reaching a tier); created per
    plan() so planners stay pure functions of the problem. Replica models and tables also go to the process cache
    (planners.plan_cache), keyed on the content of everything they read, so later plans on equal inputs (the other
    planners of a job, the other quality levels of a seed) take them instead of building them again."""

    def __init__(self, problem, parallelism_search: bool = True, disaggregation: str = "colocated"):
        """disaggregation: colocated (every tier colocated), best (the search may also disaggregate a tier: P prefill
        and D decode instances, planners.disagg) or disaggregated (only disaggregated units, for checks)."""
        if disaggregation not in DEPLOYMENTS:
            raise ConfigError(f"deployment {disaggregation!r} is not valid; choose one of {list(DEPLOYMENTS)}")
        self.disaggregation = disaggregation
        self.problem = problem
        self.sample = problem.sample
        # context_policy skip: which tiers can take each request (None: all can, or the drop policy)
        self.accepts = problem.skip_mask(self.sample)
        self._accepts_all = problem.skip_mask(problem.workload)
        self.num_tiers = problem.cascade.num_tiers
        self.num_gpus = problem.cluster.num_gpus
        self.ca2 = arrival_ca2(problem.workload.arrival_s)
        self.profile, self.window, self.local_factor = rate_profile(self.sample.arrival_s)
        # How disaggregated units must beat colocated ones to enter a table (planners.disagg says why).
        self.table_gate = {"disagg_load_factor": disagg_load_factor(self.profile.window_factor),
                           "disagg_margin": DISAGG_MARGIN, "disagg_max_utilisation": DISAGG_MAX_UTILISATION}
        self.configs = [parallel_configs(problem, i, parallelism_search) for i in range(self.num_tiers)]
        self._ref_s: np.ndarray | None = None
        self._tier_lat: dict[tuple, np.ndarray] = {}
        self._tier_lat_dense: dict[tuple, tuple] = {}  # (load key, f) -> the same, over the whole sample
        self._tables: dict[tuple, TierTable] = {}
        self._models: dict[tuple, list] = {}
        self._cost_memo: dict[tuple, dict] = {}  # per (tier, tp, pp): cost-model answers reused across loads
        # Answers that depend on the tiers' loads alone (and the allocation), by their keys: a threshold search
        # meets the same loads again and again (on 32 GPUs 111 allocation steps see 49 distinct loads, and 2,679
        # objective evaluations 681 distinct allocations), and the answer is a pure function of them.
        self._by_loads: dict[tuple, object] = {}
        self._loads: dict[tuple, TierLoad] = {}  # (tier, requests) -> its load
        self._cascade_loads: dict[tuple, list[TierLoad]] = {}  # thresholds -> the tiers' loads
        self._quality: dict[tuple, float] = {}  # thresholds -> quality
        self.tables_built = 0  # tables this plan needed (built here or taken from the process cache)
        self.tables_reused = 0  # of which taken from the process cache (planners.plan_cache)
        self.reused_s = 0.0  # build seconds of what was taken from the process cache, charged to this plan
        self._cache = plan_cache.CACHE if plan_cache.CACHE.enabled else None
        self._key = None if self._cache is None else plan_cache.context_key(
            problem, self.sample, self.ca2, self.profile, self.window, self.local_factor, self.configs,
            disaggregation, self.table_gate)
        self._entries: dict[tuple, plan_cache.LoadEntry] = {}  # (tier, requests) -> the process cache's entry
        self._built_here: set[tuple] = set()  # ((tier, requests), rate_rps) of the tables this context built

    # ---- loads -----------------------------------------------------------------------------------
    def loads_from_mask(self, mask: np.ndarray) -> list[TierLoad]:
        """mask (n_sample, C): which sampled requests each tier serves; rates scale the real rate. A tier's load is
        made once per set of requests (a threshold search meets the same sets again and again)."""
        rate = self.problem.rate_rps
        n = mask.shape[0]
        loads = []
        for i in range(self.num_tiers):
            m = mask[:, i]
            key = (i, m.tobytes())
            load = self._loads.get(key) if m.dtype == bool else None
            if load is None:
                load = TierLoad(rate * m.sum() / n, self.sample.input_tokens[m], self.sample.output_tokens[m, i],
                                self.ca2, key, self.window[m], self.profile, self.local_factor[:, m],
                                self.sample.arrival_s[m])
                if m.dtype == bool:
                    self._loads[key] = load
            loads.append(load)
        return loads

    def cascade_loads(self, thresholds) -> list[TierLoad]:
        key = tuple(float(h) for h in thresholds)
        if key not in self._cascade_loads:
            final = final_tiers(self.sample.scores, thresholds, self.accepts)
            self._cascade_loads[key] = self.loads_from_mask(reach_mask(final, self.num_tiers, thresholds, self.accepts))
        return list(self._cascade_loads[key])

    def quality(self, thresholds) -> float:
        """Mean real score of the workload's answers under the thresholds (kept per thresholds: the search and its
        repair moves ask again for the same ones)."""
        key = tuple(float(h) for h in thresholds)
        if key not in self._quality:
            w = self.problem.workload
            self._quality[key] = quality(w.scores, final_tiers(w.scores, thresholds, self._accepts_all))
        return self._quality[key]

    # ---- tables ----------------------------------------------------------------------------------
    def replica_models(self, load: TierLoad):
        """The tier's candidate replica models for this load, kept by (tier, requests): a model reads the load's
        requests (lengths, arrival times, rate windows) and not its rate, which only the table divides by capacity,
        so loads that differ in rate alone (CascadeServe's gears) share their models. Taken from the process cache
        (planners.plan_cache) when an earlier plan built them on equal inputs, its build seconds charged here."""
        key = load.key[:2]
        if key not in self._models:
            shared = self._load_key(load)
            entry = None if shared is None else self._cache.get(shared)
            if entry is not None:
                self._charge(entry.models_build_s)
            else:
                t0 = time.perf_counter()
                entry = plan_cache.LoadEntry(self._build_models(load), 0.0)
                entry.models_build_s = time.perf_counter() - t0
                if shared is not None:
                    self._cache.put(shared, entry)
            self._entries[key] = entry
            self._models[key] = entry.models
        return self._models[key]

    def _build_models(self, load: TierLoad) -> list:
        i = load.key[0]
        models = []
        if load.num_requests and self.disaggregation != "disaggregated":
            models = replica_models(self.problem, i, load, self.configs[i], self._cost_memo)
        if load.num_requests and self.disaggregation != "colocated":
            models = models + disaggregated_models(self.problem, i, load, self.configs[i], self._cost_memo)
        return models

    def _load_key(self, load: TierLoad) -> tuple | None:
        """The process cache's key of a load made by loads_from_mask: (tier, the mask's bytes) after the context's
        key; None (not shared) with the cache off or for a load keyed some other way."""
        key = load.key
        if self._cache is None or len(key) < 2 or not isinstance(key[1], bytes) or \
                len(key[1]) != self.sample.num_requests:
            return None
        return self._key + (int(key[0]), key[1])

    def _charge(self, seconds: float) -> None:
        self.reused_s += seconds
        self._cache.charge(seconds)

    def table(self, load: TierLoad) -> TierTable:
        if load.key not in self._tables:
            self.tables_built += 1
            models = self.replica_models(load)
            entry = self._entries[load.key[:2]]
            rate = float(load.rate_rps)
            if rate in entry.tables:  # the entry holds this rate's table (built by an earlier plan unless here)
                table, build_s = entry.tables[rate]
                if (load.key[:2], rate) not in self._built_here:
                    self.tables_reused += 1
                    self._charge(build_s)
            else:
                self._built_here.add((load.key[:2], rate))
                t0 = time.perf_counter()
                table = latency_table(models, load.rate_rps, self.num_gpus, self.problem.slo_attainment,
                                      empty=load.num_requests == 0, **self.table_gate)
                shared = self._load_key(load)
                if shared is not None:
                    self._cache.add_table(shared, entry, rate, table, time.perf_counter() - t0)
            self._tables[load.key] = table
        return self._tables[load.key]

    def tables(self, loads: list[TierLoad]) -> list[TierTable]:
        return [self.table(ld) for ld in loads]

    # ---- plans -----------------------------------------------------------------------------------
    def build_plan(self, planner: str, thresholds, tables: list[TierTable], gpus: tuple[int, ...],
                   loads: list[TierLoad], estimates: dict, solver_stats: dict, routing: str = "cascade",
                   router_error_rate: float = 0.0) -> CascadePlan:
        """Place the deployments the tables chose for gpus, and fill the estimates every plan carries."""
        cfgs = []
        for t, f in zip(tables, gpus):
            tier_cfgs = []
            for m, d in t.deployment(f):
                tier_cfgs.extend(m.replica_configs(d) if getattr(m, "disaggregated", False) else [(m.tp, m.pp, d)])
            cfgs.append(tier_cfgs)
        cascade = self.problem.cascade
        tiers = place(cascade.model_names, cfgs, self.problem.cluster)
        if routing == "cascade":
            assert all(f == 0 for f, h in zip(gpus, thresholds) if h > 100.0), "a skipped tier was given GPUs"
        thresholds = list(plan_thresholds(thresholds))
        deployed = [i for i, t in enumerate(tiers) if t.replicas]
        if routing == "cascade" and deployed and deployed[-1] < len(thresholds):
            thresholds[deployed[-1]] = 0.0  # the last deployed tier answers everything that reaches it
        per_tier = [float(t.latency_s[f]) for t, f in zip(tables, gpus)]
        shares = [ld.num_requests / self.sample.num_requests for ld in loads]
        est = {
            "p95_tier_s": per_tier,
            "latency_objective_s": max(per_tier),
            "saturated": bool(max(per_tier) >= SATURATED_S),
            "quality": self.quality(thresholds) if routing == "cascade" else estimates.get("quality"),
            "tier_share": shares,
            "utilisation": [t.utilisation(f) if ld.num_requests else 0.0 for t, f, ld in zip(tables, gpus, loads)],
            "gpus_per_tier": list(int(f) for f in gpus),
            "deployment_per_tier": [t.deployment() for t in tiers],
            "p95_end_to_end_s": self.end_to_end_p95(tables, gpus, loads, routing),
            "slo_scale": self.slo_scale(tables, gpus, loads, routing),
        }
        est.update({k: v for k, v in estimates.items() if k not in est or est[k] is None})
        if "latency_objective_s" in estimates:  # the planner's own objective (Cascadia's may be end-to-end)
            est["latency_objective_s"] = estimates["latency_objective_s"]
        return CascadePlan(planner, tiers, tuple(thresholds), routing, router_error_rate, est, solver_stats)

    def request_latencies(self, tables, gpus, loads, routing: str = "cascade") -> np.ndarray:
        """(n_sample,) estimated end-to-end latency of each sampled request: the sum of its latencies at every
        tier it visits plus, in a cascade, one judge call after each visited tier but the last deployed one (the
        simulator's flow; direct routing visits one tier and calls no judge). A tier's latency for a request is its replica model's at the tier's utilisation, averaged over
        the deployment's configurations by their share of capacity (a least-work balancer's split)."""
        n = self.sample.num_requests
        total = np.zeros(n)
        deployed = [i for i, f in enumerate(gpus) if f > 0]
        last = deployed[-1] if deployed else -1
        for i, (t, f, ld) in enumerate(zip(tables, gpus, loads)):
            if not ld.num_requests:
                continue
            lat, judge = self._dense_tier_latencies(t, int(f), ld)
            total += lat  # 0.0 outside the tier's requests: total[mask] += its latencies, float for float
            if i < last and routing == "cascade":
                total += judge
        return total

    def _dense_tier_latencies(self, table: TierTable, f: int, load: TierLoad) -> tuple[np.ndarray, np.ndarray]:
        """(n_sample,) tier_latencies at the load's requests and 0.0 elsewhere, and the judge's latency likewise
        (cached: the search sums the same tiers' latencies for thousands of allocations)."""
        key = (load.key, f)
        if key not in self._tier_lat_dense:
            mask = np.frombuffer(load.key[1], dtype=bool)
            lat = np.zeros(self.sample.num_requests)
            lat[mask] = self.tier_latencies(table, f, load)
            judge = np.zeros(self.sample.num_requests)
            judge[mask] = self.problem.judge_latency_s
            self._tier_lat_dense[key] = (lat, judge)
        return self._tier_lat_dense[key]

    def tier_latencies(self, table: TierTable, f: int, load: TierLoad) -> np.ndarray:
        """(m,) latency of each request of a tier's load on the table's deployment for f GPUs (cached)."""
        key = (load.key, f)
        if key not in self._tier_lat:
            dep = table.deployment(f)
            if not dep:
                lat = np.full(load.num_requests, np.inf)
            else:
                rho = table.utilisation(f)
                caps = np.array([m.max_rps * d for m, d in dep])
                lat = sum(w * m.request_latencies_s(rho, load.output_tokens) for (m, _), w in zip(dep, caps / caps.sum()))
            self._tier_lat[key] = lat
        return self._tier_lat[key]

    def remember(self, key: tuple, loads: list[TierLoad], compute):
        """compute(), or its earlier answer for the same key on loads with the same keys (the tables, keyed on
        the loads too, are then the same)."""
        full = (key, tuple(ld.key for ld in loads))
        if full not in self._by_loads:
            self._by_loads[full] = compute()
        return self._by_loads[full]

    def end_to_end_p95(self, tables, gpus, loads, routing: str = "cascade") -> float:
        """The slo_attainment quantile over sampled requests of their end-to-end latency (request_latencies)."""
        def compute():
            lat = self.request_latencies(tables, gpus, loads, routing)
            return quantile_linear(lat, self.problem.slo_attainment) if np.all(np.isfinite(lat)) else np.inf

        return self.remember(("end_to_end_p95", tuple(int(g) for g in gpus), routing), loads, compute)

    @property
    def reference_s(self) -> np.ndarray:
        """(n_sample,) ref(r): each sampled request served alone on the SLO reference deployment."""
        if self._ref_s is None:
            ref = self.problem.reference_cost()
            if ref is None:
                self._ref_s = np.ones(self.sample.num_requests)  # no reference fits: plain latency
            else:
                t, cost = ref
                self._ref_s = alone_latency_s(cost, self.sample.input_tokens, self.sample.output_tokens[:, t])
        return self._ref_s

    def slo_scale(self, tables, gpus, loads, routing: str = "cascade") -> float:
        """The SLO scale the estimates predict: the slo_attainment quantile of end-to-end latency / ref(r)."""
        lat = self.request_latencies(tables, gpus, loads, routing)
        if not np.all(np.isfinite(lat)):
            return np.inf
        return quantile_linear(lat / self.reference_s, self.problem.slo_attainment)

    def latency_objective(self, kind: str, tables, gpus, loads) -> float:
        return self.slo_scale(tables, gpus, loads) if kind == "slo_scale" else self.end_to_end_p95(tables, gpus, loads)

    def refine_allocation(self, tables, loads, gpus, kind: str = "end_to_end") -> tuple[tuple[int, ...], float]:
        """Steepest descent on the end-to-end p95 from an allocation (after its idle GPUs are handed out): a move
        grows one tier to its next table breakpoint with GPUs taken from another tier (shrunk to the largest
        breakpoint that frees enough). Returns (GPUs per tier, end-to-end p95)."""
        lat = [t.latency_s for t in tables]
        alloc = list(spread_spare(lat, tuple(gpus), self.num_gpus))
        best = self.latency_objective(kind, tables, alloc, loads)
        points = [np.nonzero(np.isfinite(l) & (l < np.r_[np.inf, l[:-1]]))[0] for l in lat]
        while True:
            move = None
            spare = self.num_gpus - sum(alloc)
            for b in range(self.num_tiers):
                up = points[b][points[b] > alloc[b]]
                if not up.size:
                    continue
                need = int(up[0]) - alloc[b] - spare
                donors = [-1] if need <= 0 else [a for a in range(self.num_tiers) if a != b]
                for a in donors:
                    trial = alloc.copy()
                    trial[b] = int(up[0])
                    if a >= 0:
                        down = points[a][points[a] <= alloc[a] - need]
                        if loads[a].num_requests and not down.size:
                            continue
                        trial[a] = int(down[-1]) if down.size else 0
                    if sum(trial) > self.num_gpus:  # the donor cannot free enough GPUs
                        continue
                    j = self.latency_objective(kind, tables, trial, loads)
                    if j < best * (1 - 1e-9) and (move is None or j < move[0]):
                        move = (j, trial)
            if move is None:
                return tuple(alloc), best
            best, alloc = move


def allocate_spare(tables: list[TierTable], gpus, num_gpus: int) -> tuple[int, ...]:
    return spread_spare([t.latency_s for t in tables], tuple(gpus), num_gpus)
