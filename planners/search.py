"""Search context shared by Cascadia and the baselines: per-tier loads from thresholds, cached tables, plans."""
from __future__ import annotations

import numpy as np

from planners.estimator import SATURATED_S, TierLoad, arrival_ca2
from planners.milp import spread_spare
from planners.placement import place
from planners.plan import CascadePlan
from planners.routing import final_tiers, quality, reach_mask
from planners.strategy import TierTable, latency_table, parallel_configs, replica_models


class SearchContext:
    """Caches for one planning call (tables keyed on the exact set of requests reaching a tier); created per
    plan() so planners stay pure functions of the problem."""

    def __init__(self, problem, parallelism_search: bool = True):
        self.problem = problem
        self.sample = problem.sample
        self.num_tiers = problem.cascade.num_tiers
        self.num_gpus = problem.cluster.num_gpus
        self.ca2 = arrival_ca2(problem.workload.arrival_s)
        self.configs = [parallel_configs(problem, i, parallelism_search) for i in range(self.num_tiers)]
        self._tables: dict[tuple, TierTable] = {}
        self._models: dict[tuple, list] = {}
        self.tables_built = 0

    # ---- loads -----------------------------------------------------------------------------------
    def loads_from_mask(self, mask: np.ndarray) -> list[TierLoad]:
        """mask (n_sample, C): which sampled requests each tier serves; rates scale the real rate."""
        rate = self.problem.rate_rps
        n = mask.shape[0]
        loads = []
        for i in range(self.num_tiers):
            m = mask[:, i]
            loads.append(TierLoad(rate * m.sum() / n, self.sample.input_tokens[m],
                                  self.sample.output_tokens[m, i], self.ca2, (i, m.tobytes())))
        return loads

    def cascade_loads(self, thresholds) -> list[TierLoad]:
        final = final_tiers(self.sample.scores, thresholds)
        return self.loads_from_mask(reach_mask(final, self.num_tiers))

    def quality(self, thresholds) -> float:
        w = self.problem.workload
        return quality(w.scores, final_tiers(w.scores, thresholds))

    # ---- tables ----------------------------------------------------------------------------------
    def replica_models(self, load: TierLoad):
        i = load.key[0]
        if load.key not in self._models:
            self._models[load.key] = replica_models(self.problem, i, load, self.configs[i]) if load.num_requests else []
        return self._models[load.key]

    def table(self, load: TierLoad) -> TierTable:
        if load.key not in self._tables:
            self.tables_built += 1
            models = self.replica_models(load)
            self._tables[load.key] = latency_table(models, load.rate_rps, self.num_gpus,
                                                   self.problem.slo_attainment, empty=load.num_requests == 0)
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
            cfgs.append([(m.tp, m.pp, d) for m, d in t.deployment(f)])
        cascade = self.problem.cascade
        tiers = place(cascade.model_names, cfgs, self.problem.cluster)
        thresholds = list(float(h) for h in thresholds)
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
            "p95_end_to_end_s": self.end_to_end_p95(tables, gpus, loads),
        }
        est.update({k: v for k, v in estimates.items() if k not in est or est[k] is None})
        return CascadePlan(planner, tiers, tuple(thresholds), routing, router_error_rate, est, solver_stats)

    def end_to_end_p95(self, tables, gpus, loads) -> float:
        """p95 over sampled requests of the sum of their per-tier latencies plus a judge call per tier left."""
        n = self.sample.num_requests
        total = np.zeros(n)
        for i, (t, f, ld) in enumerate(zip(tables, gpus, loads)):
            if not ld.num_requests:
                continue
            mask = np.frombuffer(ld.key[1], dtype=bool)
            dep = t.deployment(f)
            rho = t.utilisation(f)
            if not dep:
                total[mask] += np.inf
                continue
            caps = np.array([m.max_rps * d for m, d in dep])
            lat = sum(w * m.request_latencies_s(rho, ld.output_tokens) for (m, _), w in zip(dep, caps / caps.sum()))
            total[mask] += lat
            if i < self.num_tiers - 1:
                forwarded_or_judged = mask
                total[forwarded_or_judged] += self.problem.judge_latency_s
        return float(np.quantile(total, self.problem.slo_attainment))


def allocate_spare(tables: list[TierTable], gpus, num_gpus: int) -> tuple[int, ...]:
    return spread_spare([t.latency_s for t in tables], tuple(gpus), num_gpus)
