"""Fast mode's decode jump arithmetic: how many decode iterations an engine may skip, and when each of them ends.

A decode-only batch of n sequences with C context tokens costs a + b * (C + j * n) at iteration j, exactly, with
(a, b) = cost.decode_affine(n) (the ReplicaCost contract). An engine's consecutive decode-only iterations with the
same n, (a, b) and slowdown f form a *decode segment*; the j-th iteration (j = 1, 2, ...) of a segment that
starts at s0 with C0 context tokens ends at

    segment_end(j) = s0 + (j * a + b * (j * C0 + n * j * (j - 1) / 2)) * f

one closed-form evaluation, not a running sum, in both modes (reference mode steps j by one per event; fast mode
jumps to any j), so both record identical times and a jump's end, or its cut at an arrival, costs O(1) whatever
its length. The integer inside is exact (far below 2**53), and every float operation rounds monotonically, so the
ends never decrease in j. A jump lasts until the first sequence finishes or the free KV blocks run out, whichever
comes first; the engine's event loop (sim.runtime.replica) holds a DecodeRun until its boundary event fires.
"""
from __future__ import annotations

from math import sqrt
from typing import NamedTuple


class DecodeRun(NamedTuple):
    """Decode-only iterations in flight from start_s: `iterations` of them over `seqs` (reference mode: the
    decoding sequences; fast mode: None, the batch is kept as aggregates), n sequences with ctx_tokens context
    at the first, the last ending at end_s; `jump`: planned as more than one iteration (meta["jumps"] counts these).
    Their ends are those of the engine's current decode segment (Engine._seg)."""

    seqs: list | None
    start_s: float
    n: int
    ctx_tokens: int
    iterations: int
    end_s: float
    jump: bool


def segment_end(s0: float, a: float, b: float, f: float, n: int, c0: int, j: int) -> float:
    """The end of the j-th iteration (j >= 1) of a decode segment (the module docstring's formula)."""
    return s0 + (j * a + b * (j * c0 + n * (j * (j - 1) >> 1))) * f


def segment_count_le(s0: float, a: float, b: float, f: float, n: int, c0: int, j0: int, k: int, t: float) -> int:
    """How many of the segment's iterations j0+1..j0+k end at or before t: the quadratic's root, then stepped by
    one to the exact boundary with segment_end itself (the ends never decrease in j, so the count is exact)."""
    beta = 0.5 * b * n  # segment_end(j) - s0 = f * (alpha * j + beta * j**2), alpha = a + b * C0 - beta
    alpha = a + b * c0 - beta
    x = (t - s0) / f if f > 0.0 else 0.0
    disc = alpha * alpha + 4.0 * beta * x
    den = alpha + sqrt(disc) if disc > 0.0 else 0.0
    hi = j0 + k
    if x <= 0.0:
        j = j0
    elif den > 0.0:
        j = int(2.0 * x / den)  # the stable form of the root, clamped to j0..hi (without min/max calls)
        if j < j0:
            j = j0
        elif j > hi:
            j = hi
    else:
        j = hi  # iterations of no cost (a degenerate cost model): stepped down below
    # segment_end, inline (a cut costs these two or three evaluations)
    while j < hi and s0 + ((j + 1) * a + b * ((j + 1) * c0 + n * ((j + 1) * j >> 1))) * f <= t:
        j += 1
    while j > j0 and s0 + (j * a + b * (j * c0 + n * (j * (j - 1) >> 1))) * f > t:
        j -= 1
    return j - j0


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
