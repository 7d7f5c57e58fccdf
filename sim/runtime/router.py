"""Tier load balancers: pick a replica of a tier for each arriving visit (least outstanding work, round-robin, JSQ);
and a learned router's per-question direct routes, looked up by question id."""
from __future__ import annotations

import numpy as np

from sim.common.errors import ConfigError
from sim.runtime.prefix_cache import pick_prefix_aware

LOAD_BALANCERS = ("least_work", "round_robin", "jsq", "prefix_aware")


class TierRouter:
    """Routes visits to the live replicas of one tier.

    least_work: the replica whose outstanding work (estimated tokens of its unfinished visits divided by its
    nominal decode throughput) is smallest; the estimate uses the prompt and a fixed output guess, never the
    real output length, which a real router does not know. jsq: fewest unfinished visits. round_robin: cyclic.
    prefix_aware: SGLang's cache-aware routing (sim.runtime.prefix_cache.pick_prefix_aware).
    Ties go to the lowest replica index.
    """

    def __init__(self, tier: int, replicas: list, policy: str = "least_work") -> None:
        if policy not in LOAD_BALANCERS:
            raise ConfigError(f"sim.load_balancer {policy!r} is not valid; choose one of {list(LOAD_BALANCERS)}")
        self.tier = tier
        self.replicas = list(replicas)
        self.policy = policy
        self._next = 0
        # planned: the tier is part of the current deployment. While a planned tier has no live replica (all lost
        # to faults, or its new replicas still loading) its visits wait here and go out when a replica is added.
        self.planned = bool(self.replicas)
        self.parked: list = []

    @property
    def live(self) -> bool:
        return bool(self.replicas)

    def pick(self, reps=None):
        reps = self.replicas if reps is None else reps
        if len(reps) == 1:
            return reps[0]
        if self.policy == "round_robin":
            r = reps[self._next % len(reps)]
            self._next += 1
            return r
        if self.policy == "jsq":
            return min(reps, key=lambda r: r.outstanding)
        best = reps[0]
        best_s = best.outstanding_work / best.tokens_per_s
        for r in reps:  # the first minimum, as min() would pick
            s = r.outstanding_work / r.tokens_per_s
            if s < best_s:
                best, best_s = r, s
        return best

    def route(self, seq) -> None:
        if not self.replicas:
            self.parked.append(seq)
            return
        # prefix_aware (sim.runtime.prefix_cache): the replica likely to hold the prompt's prefix, else least_work
        reps = self.replicas
        if len(reps) == 1:
            target = reps[0] if self.policy != "prefix_aware" else pick_prefix_aware(reps, seq)
        elif self.policy == "least_work":  # pick's least_work, inline (once per visit)
            target = reps[0]
            best_s = target.outstanding_work / target.tokens_per_s
            for r in reps:  # the first minimum, as min() would pick
                s = r.outstanding_work / r.tokens_per_s
                if s < best_s:
                    target, best_s = r, s
        elif self.policy == "prefix_aware":
            target = pick_prefix_aware(reps, seq)
        else:
            target = self.pick()
        tokens = seq.prompt_tokens + seq.generated
        if tokens > target.max_tokens_held:
            # Replicas of one tier may differ in KV memory (TP degree): a visit goes to one that can hold it, and is
            # dropped (prompt_exceeds_kv_capacity) only when none of them can.
            able = [r for r in self.replicas if r.can_ever_hold(tokens)]
            if able:
                target = self.pick(able)
        target.submit(seq)

    def add(self, replica) -> None:
        self.replicas.append(replica)
        parked, self.parked = self.parked, []
        for seq in parked:
            self.route(seq)

    def unpark(self) -> list:
        """Hand back the waiting visits (the tier left the deployment, or the run ended)."""
        parked, self.parked = self.parked, []
        return parked

    def remove(self, replica) -> None:
        self.replicas.remove(replica)


def question_routes(routes, question_ids: np.ndarray) -> np.ndarray:
    """(n,) tier of each request from a plan's (question_id, tier) routes; a request whose question the router
    never saw is a planning mistake, reported rather than sent to a default tier."""
    tier_of = dict(routes)
    missing = [q for q in question_ids.tolist() if q not in tier_of]
    if missing:
        raise ConfigError(f"the plan's router has no route for question {missing[0]!r} ({len(missing)} of "
                          f"{len(question_ids)} requests); route with a plan trained on the workload's datasets")
    return np.array([tier_of[q] for q in question_ids.tolist()], dtype=np.int64)
