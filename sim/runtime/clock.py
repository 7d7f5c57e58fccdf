"""The simulated clock's one helper: the SimPy delay that wakes a process at an exact logical time (within an ulp).

SimPy adds a delay to env.now, and not every float is reachable that way; entities therefore keep exact logical
times of their own and ask SimPy only to wake them at about that time.
"""
from __future__ import annotations


def delay_to(now: float, target: float) -> float:
    """The SimPy delay from `now` to `target` (0 when `target` is not ahead)."""
    d = target - now
    return d if d > 0.0 else 0.0
