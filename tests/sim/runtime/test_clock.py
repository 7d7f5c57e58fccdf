"""sim.runtime.clock.delay_to: the SimPy delay that lands at a logical time, never negative."""
from __future__ import annotations

import simpy

from sim.runtime.clock import delay_to


def test_delay_is_the_gap_ahead_and_zero_for_a_past_target():
    assert delay_to(1.0, 3.5) == 2.5
    assert delay_to(3.5, 3.5) == 0.0
    assert delay_to(4.0, 3.5) == 0.0


def test_a_process_woken_with_it_is_at_the_target_within_an_ulp():
    env = simpy.Environment(initial_time=0.1)
    seen = []

    def proc():
        for target in (0.3, 0.7, 0.7, 1e6 + 0.1):
            yield env.timeout(delay_to(env.now, target))
            seen.append((env.now, target))

    env.process(proc())
    env.run()
    assert all(abs(now - target) <= 2 * abs(target) * 2.0 ** -52 for now, target in seen)
