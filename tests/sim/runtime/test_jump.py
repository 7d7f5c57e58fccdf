"""sim.runtime.jump against brute force: a jump's iteration ends are the same left-to-right float sums as stepping one
iteration at a time (short list and long numpy paths alike), jump_length is the longest run whose KV fits (found by
linear search here), and cut_point / count_le count boundaries as bisection over the ends would."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sim.runtime.jump import SHORT_JUMP_MAX, DecodeRun, JumpClock, count_le, cut_point, jump_length


def _stepwise(now, a, b, f, n, ctx, k):
    ends, e = [], now
    for j in range(k):
        e = e + (a + b * (ctx + j * n)) * f
        ends.append(e)
    return ends


@pytest.mark.parametrize("k", [2, SHORT_JUMP_MAX, SHORT_JUMP_MAX + 1, 3000])
@pytest.mark.parametrize("f", [1.0, 1.7])
@pytest.mark.parametrize("n", [37, 0])
def test_ends_equal_one_iteration_at_a_time_bit_for_bit(k, f, n):
    now, a, b, ctx = 12.345, 0.0071, 3.1e-7, 52_113
    clock = JumpClock()
    for _ in range(2):  # the second call reads the cached steps and 0-d coefficients
        got = clock.ends(now, a, b, f, n, ctx, k)
        assert [float(x) for x in got] == _stepwise(now, a, b, f, n, ctx, k)  # both paths, float for float
    if k <= SHORT_JUMP_MAX:
        assert type(got) is list
    assert clock.ends(now, a, b, f, n, ctx + 1, k)[0] == now + (a + b * (ctx + 1)) * f  # the 0-d ctx is refilled


def test_the_step_cache_grows_for_a_longer_jump_and_stays_right():
    clock = JumpClock()
    clock.ends(0.0, 1.0, 0.0, 1.0, 4, 0, 2000)
    long = clock.ends(0.0, 0.0, 1.0, 1.0, 4, 0, 5000)  # beyond the first cache
    assert float(long[-1]) == sum(4 * i for i in range(5000))


@dataclass
class FakeBatch:
    step: int
    blocks_per_step: list  # blocks newly needed at each future step index

    def blocks_between(self, lo: int, hi: int) -> int:
        return sum(self.blocks_per_step[lo:hi + 1])


@pytest.mark.parametrize("seed", range(20))
def test_jump_length_is_the_longest_run_that_fits_by_linear_search(seed):
    rng = np.random.default_rng(seed)
    batch = FakeBatch(step=int(rng.integers(0, 5)), blocks_per_step=rng.integers(0, 3, 200).tolist())
    free, k_fin = int(rng.integers(0, 40)), int(rng.integers(1, 150))
    base = batch.step + 1
    want = 1
    for m in range(1, k_fin):  # steps 1..m fit?
        if batch.blocks_between(base, base + m) <= free:
            want = m + 1
        else:
            break
    assert jump_length(batch, free, k_fin) == want


def test_count_le_and_cut_point_on_lists_and_arrays():
    ends = [1.0, 2.0, 3.0, 4.0]
    for e in (ends, np.array(ends)):
        assert [count_le(e, t) for t in (0.5, 1.0, 2.5, 4.0, 9.0)] == [0, 1, 2, 4, 4]
        run = DecodeRun(None, 0.0, 2, 10, 4, e)
        assert [cut_point(run, t) for t in (0.0, 1.0, 2.5, 4.0, 9.0)] == [1, 2, 3, 4, 4]
        assert run.end_s == 4.0
    assert DecodeRun(None, 0.0, 1, 1, 1, 0.25).end_s == 0.25
