"""sim.runtime.router on fake replicas: each load balancer's choice against its definition (computed here by brute
force), parking while a planned tier has no replica, oversized visits sent to a replica that can hold them, and a
learned router's routes looked up by question id."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.runtime.router import TierRouter, question_routes


@dataclass(eq=False)  # replicas are told apart by identity, as in the simulator
class FakeReplica:
    outstanding: int = 0
    outstanding_work: float = 0.0
    tokens_per_s: float = 1.0
    max_tokens_held: int = 10_000
    got: list = field(default_factory=list)

    def can_ever_hold(self, tokens: int) -> bool:
        return tokens <= self.max_tokens_held

    def submit(self, seq) -> None:
        self.got.append(seq)


@dataclass
class Seq:
    prompt_tokens: int = 10
    generated: int = 0


def test_round_robin_cycles_through_the_replicas():
    reps = [FakeReplica() for _ in range(3)]
    router = TierRouter(0, reps, "round_robin")
    assert [reps.index(router.pick()) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_jsq_and_least_work_pick_the_brute_force_minimum_first_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(50):
        reps = [FakeReplica(int(rng.integers(0, 4)), float(rng.integers(0, 5)), float(rng.choice([1.0, 2.0])))
                for _ in range(4)]
        jsq = min(range(4), key=lambda i: (reps[i].outstanding, i))
        lw = min(range(4), key=lambda i: (reps[i].outstanding_work / reps[i].tokens_per_s, i))
        assert TierRouter(0, reps, "jsq").pick() is reps[jsq]
        assert TierRouter(0, reps, "least_work").pick() is reps[lw]


def test_a_planned_tier_without_replicas_parks_visits_until_one_is_added():
    router = TierRouter(1, [], "least_work")
    seqs = [Seq(), Seq()]
    for s in seqs:
        router.route(s)
    assert router.parked == seqs and not router.live
    rep = FakeReplica()
    router.add(rep)
    assert rep.got == seqs and router.parked == [] and router.live
    router.route(Seq())
    assert router.unpark() == [] and len(rep.got) == 3


def test_a_visit_too_long_for_the_chosen_replica_goes_to_one_that_can_hold_it():
    small, big = FakeReplica(max_tokens_held=100), FakeReplica(outstanding_work=50.0, max_tokens_held=1000)
    router = TierRouter(0, [small, big], "least_work")
    router.route(Seq(prompt_tokens=90, generated=20))  # 110 tokens: only `big` can hold it
    router.route(Seq(prompt_tokens=50))
    assert len(big.got) == 1 and len(small.got) == 1
    router.route(Seq(prompt_tokens=5000))  # nobody can: it goes to the pick, which drops it with a reason
    assert len(small.got) == 2


def test_an_unknown_policy_is_a_config_error_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="least_work"):
        TierRouter(0, [], "random")


def test_question_routes_look_up_every_question_and_refuse_an_unseen_one():
    routes = [("a", 0), ("b", 2)]
    assert question_routes(routes, np.array(["b", "a", "b"])).tolist() == [2, 0, 2]
    with pytest.raises(ConfigError, match="no route for question 'c'"):
        question_routes(routes, np.array(["a", "c"]))
