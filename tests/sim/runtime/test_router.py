"""TierRouter's load balancers against brute force on fake replicas: least_work is the first replica of least
outstanding work per nominal token rate, jsq the first of fewest visits, round_robin cyclic; a visit that the
chosen replica can never hold goes to one that can; visits park while a planned tier has no replica and go out
when one is added. question_routes looks each request's tier up and names a question it has no route for."""
from __future__ import annotations

import numpy as np
import pytest

from sim.common.errors import ConfigError
from sim.runtime.router import LOAD_BALANCERS, TierRouter, question_routes

pytestmark = pytest.mark.unit


class FakeReplica:
    def __init__(self, name, work=0.0, rate=1.0, outstanding=0, max_tokens=10**9):
        self.name, self.outstanding_work, self.tokens_per_s = name, work, rate
        self.outstanding, self.max_tokens_held = outstanding, max_tokens
        self.got: list = []

    def can_ever_hold(self, tokens):
        return tokens <= self.max_tokens_held

    def submit(self, seq):
        self.got.append(seq)


class FakeSeq:
    def __init__(self, prompt=100, generated=0):
        self.prompt_tokens, self.generated, self.unit_keys = prompt, generated, ()


def _first_min(reps, key):
    best = None
    for r in reps:
        if best is None or key(r) < key(best):
            best = r
    return best


@pytest.mark.parametrize("seed", range(20))
def test_least_work_and_jsq_pick_the_first_minimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    # Few distinct values, so ties are common; work / rate ranks differently from work alone.
    # Rates below 1 token/s too: the ranking must not depend on the rate's unit (work * rate agrees with
    # work / rate whenever every rate is 1).
    reps = [FakeReplica(i, work=float(rng.integers(0, 4)), rate=float(rng.choice([0.25, 0.5, 1.0, 2.0, 4.0])),
                        outstanding=int(rng.integers(0, 3))) for i in range(n)]
    lw = TierRouter(0, reps, "least_work")
    assert lw.pick() is _first_min(reps, lambda r: r.outstanding_work / r.tokens_per_s)
    assert TierRouter(0, reps, "jsq").pick() is _first_min(reps, lambda r: r.outstanding)
    sub = reps[1:]
    assert lw.pick(sub) is _first_min(sub, lambda r: r.outstanding_work / r.tokens_per_s)


def test_least_work_divides_by_the_token_rate():
    slow_idle, fast_busy = FakeReplica("a", work=10.0, rate=1.0), FakeReplica("b", work=30.0, rate=10.0)
    assert TierRouter(0, [slow_idle, fast_busy]).pick() is fast_busy  # 3 s of work beats 10 s
    assert TierRouter(0, [fast_busy, slow_idle], "jsq").pick() is fast_busy  # equal visits: the first


def test_least_work_ranks_the_first_replica_by_the_same_ratio_as_the_others():
    # The first replica's 20 s of work (10 tokens at 0.5 tokens/s) loses to the second's 15 s.
    first, second = FakeReplica("a", work=10.0, rate=0.5), FakeReplica("b", work=15.0, rate=1.0)
    assert TierRouter(0, [first, second]).pick() is second


def test_round_robin_keeps_a_visit_of_exactly_the_capacity_on_its_turn():
    # A visit that fits exactly (tokens == max_tokens_held) is not re-routed: re-picking would skip a turn.
    reps = [FakeReplica(i, max_tokens=500) for i in range(3)]
    rr = TierRouter(0, reps, "round_robin")
    edge, nxt = FakeSeq(prompt=450, generated=50), FakeSeq(prompt=10)
    rr.route(edge)
    rr.route(nxt)
    assert reps[0].got == [edge] and reps[1].got == [nxt] and not reps[2].got


def test_round_robin_cycles_in_order():
    reps = [FakeReplica(i) for i in range(3)]
    rr = TierRouter(0, reps, "round_robin")
    assert [rr.pick().name for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_single_replica_is_always_picked():
    only = FakeReplica("x", work=99.0)
    for policy in LOAD_BALANCERS:
        assert TierRouter(0, [only], policy).pick() is only


def test_route_sends_a_visit_too_long_for_the_pick_to_a_replica_that_can_hold_it():
    small, big1, big2 = (FakeReplica("s", 0.0, max_tokens=500), FakeReplica("b1", 5.0, max_tokens=4000),
                         FakeReplica("b2", 1.0, max_tokens=4000))
    r = TierRouter(1, [small, big1, big2])
    r.route(FakeSeq(prompt=100))
    assert small.got and not big1.got  # fits the least loaded
    seq = FakeSeq(prompt=450, generated=60)  # 510 tokens (prompt + generated) > 500
    r.route(seq)
    assert big2.got == [seq]  # least work among those able to hold it
    edge = FakeSeq(prompt=500)
    r.route(edge)
    assert small.got[-1] is edge  # exactly its capacity fits
    huge = FakeSeq(prompt=5000)  # nobody can hold it: the least loaded takes it and drops it
    r.route(huge)
    assert small.got[-1] is huge


def test_visits_park_while_a_planned_tier_has_no_replica():
    a = FakeReplica("a")
    r = TierRouter(0, [a], "round_robin")
    assert r.planned and r.live and r.tier == 0 and r.policy == "round_robin"
    r.remove(a)
    assert not r.live and r.planned
    s1, s2 = FakeSeq(), FakeSeq()
    r.route(s1)
    r.route(s2)
    assert r.parked == [s1, s2] and not a.got
    b = FakeReplica("b")
    r.add(b)
    assert b.got == [s1, s2] and r.parked == [] and r.replicas == [b]
    r.remove(b)
    s3 = FakeSeq()
    r.route(s3)
    assert r.unpark() == [s3] and r.parked == [] and r.unpark() == []
    empty = TierRouter(2, [])
    assert not empty.planned and not empty.live


def test_router_copies_the_replica_list():
    reps = [FakeReplica(0), FakeReplica(1)]
    r = TierRouter(0, reps)
    r.remove(reps[0])
    assert len(reps) == 2 and len(r.replicas) == 1


def test_unknown_policy_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"sim.load_balancer 'fastest' is not valid; choose one of \['least_work'"):
        TierRouter(0, [], "fastest")


def test_question_routes_looks_up_every_request():
    routes = [("q1", 0), ("q2", 1), ("q3", 1)]
    got = question_routes(routes, np.array(["q2", "q1", "q3", "q2"]))
    assert got.tolist() == [1, 0, 1, 1] and got.dtype == np.int64
    with pytest.raises(ConfigError, match=r"no route for question 'q9' \(2 of 3 requests\)"):
        question_routes(routes, np.array(["q9", "q1", "q8"]))


def test_round_robin_over_a_subset_keeps_one_counter():
    reps = [FakeReplica(i) for i in range(4)]
    rr = TierRouter(0, reps, "round_robin")
    picks = [rr.pick(reps[:2]).name for _ in range(3)] + [rr.pick().name]
    assert picks == [0, 1, 0, 3]
    assert [rr.pick().name for _ in range(2)] == [0, 1]
