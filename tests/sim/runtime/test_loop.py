"""EventLoop (bare callbacks in SimPy's queue) against plain SimPy: the same schedule fires in the same order at the
same float times, with processes, urgent starts and events interleaved."""
from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.runtime.loop import EventLoop

# A schedule: each action fires at a logical time and then schedules its children at targets relative to its time
# (some in the past or at the same instant, so that ties are ordered by event id alone) or absolute (a target that
# now + (target - now) does not reach exactly: the loop must keep SimPy's float, not the target).
delays = st.sampled_from([0.0, 0.1, 0.3, 1.0 / 3.0, 1e-17, 2.5, -1.0, "0.7", "5.3", "7.7", "123.456", 1.0 / 7.0])


def target(now: float, delay) -> float:
    return float(delay) if isinstance(delay, str) else now + delay
tree = st.recursive(st.just(()), lambda kids: st.lists(st.tuples(delays, kids), max_size=3).map(tuple), max_leaves=40)


def run_plain(schedule, with_process: bool) -> list:
    """The oracle: every callback a SimPy Timeout of delay max(0, target - now), as the simulator scheduled before."""
    env = simpy.Environment()
    fired = []

    def at(target, label, kids):
        d = target - env.now
        env.timeout(d if d > 0.0 else 0.0).callbacks.append(lambda _ev: fire(label, kids))

    def fire(label, kids):
        fired.append((label, env.now))
        for j, (delay, grand) in enumerate(kids):
            at(target(env.now, delay), f"{label}.{j}", grand)

    if with_process:
        def proc():
            fired.append(("process-start", env.now))
            yield env.timeout(0.3)
            fired.append(("process-woke", env.now))
        env.process(proc())
    for j, (delay, kids) in enumerate(schedule):
        at(target(0.0, delay), str(j), kids)
    env.run()
    return fired


def run_loop(schedule, with_process: bool) -> list:
    env = EventLoop()
    fired = []

    def fire(args):
        label, kids = args
        fired.append((label, env.now))
        for j, (delay, grand) in enumerate(kids):
            env.call_at(target(env.now, delay), fire, (f"{label}.{j}", grand))

    if with_process:
        def proc():
            fired.append(("process-start", env.now))
            yield env.timeout(0.3)
            fired.append(("process-woke", env.now))
        env.process(proc())
    for j, (delay, kids) in enumerate(schedule):
        env.call_at(target(0.0, delay), fire, (str(j), kids))
    env.run()
    return fired


@settings(max_examples=150, deadline=None)
@given(schedule=st.lists(st.tuples(delays, tree), max_size=6), with_process=st.booleans())
def test_bare_callbacks_fire_in_simpys_order_at_simpys_times(schedule, with_process):
    assert run_loop(schedule, with_process) == run_plain(schedule, with_process)


def test_call_urgent_runs_before_the_normal_events_of_its_instant_like_a_process_start():
    env, plain = EventLoop(), simpy.Environment()
    order, oracle = [], []
    env.call_at(0.0, order.append, "timeout")
    env.call_urgent(order.append, "start")

    def proc(out):
        out.append("start")
        yield plain.timeout(0)

    plain.timeout(0).callbacks.append(lambda _ev: oracle.append("timeout"))
    plain.process(proc(oracle))
    env.run()
    plain.run()
    assert order == oracle == ["start", "timeout"]


def test_run_until_an_event_stops_there_and_reports_an_untriggered_one_as_simpy_does():
    env = EventLoop()
    done = env.event()
    seen = []
    env.call_at(1.0, lambda _: done.succeed("ok"), None)
    env.call_at(2.0, seen.append, "late")
    assert env.run(until=done) == "ok" and env.now == 1.0 and seen == []
    env2 = EventLoop()
    never = env2.event()
    env2.call_at(1.0, seen.append, "x")
    with pytest.raises(RuntimeError, match="No scheduled events left"):
        env2.run(until=never)
    env3 = EventLoop()
    env3.call_at(5.0, seen.append, "y")
    env3.run(until=3.0)  # a number: SimPy's own run
    assert env3.now == 3.0 and seen == ["x"]


def test_a_failed_event_crashes_the_run_as_in_simpy():
    env = EventLoop()
    env.event().fail(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        env.run()


def test_a_target_simpys_clock_cannot_reach_fires_at_simpys_float_not_the_target():
    now = 0.3 + 1.0 / 3.0
    assert now + (5.3 - now) != 5.3  # the case: SimPy's now + delay misses the target by an ulp
    schedule = ((0.3, ((1.0 / 3.0, (("5.3", ()),)),)),)
    fired = run_loop(schedule, False)
    assert fired == run_plain(schedule, False) and fired[-1][1] == now + (5.3 - now)
