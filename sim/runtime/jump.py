"""Fast mode's decode jump arithmetic: how many decode iterations an engine may skip, and when each of them ends.

A decode-only batch of n sequences with C context tokens costs a + b * (C + j * n) at iteration j, exactly, with
(a, b) = cost.decode_affine(n) (the ReplicaCost contract). A jump lasts until the first sequence finishes or the
free KV blocks run out, whichever comes first; its iteration ends are the same left-to-right float sums as the
reference mode's one-event-per-iteration loop (np.add.accumulate is sequential), so both modes record identical
times. The engine's event loop (sim.runtime.replica) holds a DecodeRun until its boundary event fires.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

import numpy as np

_accumulate = np.add.accumulate  # sequential, so the running sums equal reference mode's
# Up to this many steps a Python loop is cheaper than numpy's fixed cost per call (measured crossover: 25-35 steps
# on numpy 2.x, whose scalar operands cost more than 0-d arrays; the loop's share grows with k, numpy's does not).
SHORT_JUMP_MAX = 28


class DecodeRun(NamedTuple):
    """Decode-only iterations in flight from start_s: `iterations` of them over `seqs` (reference mode: the
    decoding sequences; fast mode: None, the batch is kept as aggregates), n sequences with ctx_tokens context
    at the first; `ends` is the end time of the one iteration (a float) or the list/array of each one's end."""

    seqs: list | None
    start_s: float
    n: int
    ctx_tokens: int
    iterations: int
    ends: object

    @property
    def end_s(self) -> float:
        ends = self.ends
        return ends if isinstance(ends, float) else float(ends[self.iterations - 1])


def count_le(ends, t: float) -> int:
    """How many iteration ends are <= t (ends: a short list, or a numpy array for long jumps)."""
    return bisect_right(ends, t) if isinstance(ends, list) else int(ends.searchsorted(t, "right"))


def cut_point(run: DecodeRun, t: float) -> int:
    """The iterations of `run` up to the first boundary strictly after t (at least one: the one in flight)."""
    return max(1, min(run.iterations, count_le(run.ends, t) + 1))


def jump_length(batch, free_blocks: int, k_fin: int) -> int:
    """Decode steps until the first sequence finishes (k_fin), cut where steps 1.. would need more KV blocks
    than are free (that step then runs alone, with the reference preemption logic). `batch` is the engine's
    DecodeBatch, whose step 0 (batch.step + 1) is allocated already."""
    if k_fin <= 1:
        return 1
    base = batch.step + 1
    if batch.blocks_between(base, base + k_fin - 1) <= free_blocks:
        return k_fin
    lo, hi = 0, k_fin - 1  # blocks for steps 1..lo fit, for 1..hi they do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if batch.blocks_between(base, base + mid) <= free_blocks:
            lo = mid
        else:
            hi = mid
    return lo + 1


class JumpClock:
    """The end times of k decode iterations from `now`: ends[j] = now + sum_{i<=j} (a + b * (ctx + i * n)) * f,
    summed left to right. Caches n * (0..k-1) per batch size n (one per engine: its batch sizes recur)."""

    __slots__ = ("_steps", "_coef", "_ctx")

    def __init__(self) -> None:
        self._steps: dict[int, np.ndarray] = {}
        # a and b as 0-d arrays by (a, b), and a 0-d array refilled with ctx: numpy 2 converts a Python float
        # operand on every call (about as costly as the arithmetic itself at these sizes); the same float64 values.
        self._coef: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
        self._ctx = np.zeros(())

    def ends(self, now: float, a: float, b: float, f: float, n: int, ctx: int, k: int):
        """A list for short jumps, a numpy array for long ones; k >= 2."""
        if k <= SHORT_JUMP_MAX:
            # The running sum in a comprehension (its loop appends without a method call): the same additions in
            # the same order as one event per iteration, e_j = e_{j-1} + (a + b * x_j) * f with x_j = ctx + j * n.
            e = now
            xs = range(ctx, ctx + k * n, n) if n else (ctx,) * k  # range() refuses a step of 0
            if f == 1.0:  # y * 1.0 == y exactly, so the product is left out
                return [e := e + (a + b * x) for x in xs]
            return [e := e + (a + b * x) * f for x in xs]
        # Integers below 2**53 are exact as floats, so b * x + a is the same float as a + b * x.
        steps = self._steps.get(n)
        if steps is None or steps.size < k:
            steps = self._steps[n] = n * np.arange(max(k, 1024), dtype=np.float64)
        coef = self._coef.get((a, b))
        if coef is None:
            if len(self._coef) > 4096:  # bounded: a run's batch sizes (hence (a, b) pairs) are few, faults add some
                self._coef.clear()
            coef = self._coef[(a, b)] = (np.array(a, dtype=np.float64), np.array(b, dtype=np.float64))
        c = self._ctx
        c[()] = ctx  # exact: ctx < 2**53
        ends = steps[:k] + c
        ends *= coef[1]
        ends += coef[0]
        if f != 1.0:
            ends *= f
        ends[0] += now
        return _accumulate(ends)  # a new array is cheaper than out=ends at these sizes
