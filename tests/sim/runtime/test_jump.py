"""sim.runtime.jump against independent oracles: a decode segment's closed-form ends agree with exact rational
arithmetic to a few ulps and never decrease; segment_count_le counts them as a linear scan over segment_end does
(so a cut or a settle lands on the exact boundary); jump_length is the longest run whose KV fits (linear search)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest

from sim.runtime.jump import DecodeRun, jump_length, segment_count_le, segment_end


def _exact(s0, a, b, f, n, c0, j) -> Fraction:
    """s0 + f * sum_{i<j} (a + b * (c0 + i * n)), summed in rationals (no rounding at all)."""
    a, b, f, s0 = Fraction(a), Fraction(b), Fraction(f), Fraction(s0)
    return s0 + f * sum(a + b * (c0 + i * n) for i in range(j))


@pytest.mark.parametrize("seed", range(12))
def test_segment_ends_are_the_exact_sums_within_a_few_ulps_and_never_decrease(seed):
    rng = np.random.default_rng(seed)
    s0 = float(rng.uniform(0, 2e5))
    a, b = float(rng.uniform(1e-3, 5e-2)), float(rng.uniform(0, 1e-6))
    f = 1.0 if seed % 2 else float(rng.uniform(1.0, 3.0))
    n, c0 = int(rng.integers(0, 256)), int(rng.integers(0, 500_000))
    ends = [segment_end(s0, a, b, f, n, c0, j) for j in range(1, 400)]
    assert all(x <= y for x, y in zip(ends, ends[1:]))  # monotone rounding: a cut's count is well defined
    for j in (1, 2, 7, 100, 399):
        exact = _exact(s0, a, b, f, n, c0, j)
        assert abs(Fraction(ends[j - 1]) - exact) <= 8 * np.spacing(float(exact))


def test_the_first_iteration_of_a_segment_is_one_cost_model_step():
    # j = 1: s0 + (a + b * C0) * f, the float a one-step simulator computes from the cost model's a + b * C0
    s0, a, b, f, n, c0 = 12.345, 0.0071, 3.1e-7, 1.7, 37, 52_113
    assert segment_end(s0, a, b, f, n, c0, 1) == s0 + (a + b * c0) * f


def _count_by_scan(s0, a, b, f, n, c0, j0, k, t):
    return sum(segment_end(s0, a, b, f, n, c0, j) <= t for j in range(j0 + 1, j0 + k + 1))


@pytest.mark.parametrize("seed", range(30))
def test_count_le_equals_a_linear_scan_including_exact_boundaries(seed):
    rng = np.random.default_rng(seed)
    s0 = float(rng.uniform(0, 1e5))
    a, b = float(rng.uniform(1e-3, 5e-2)), (0.0 if seed % 5 == 0 else float(rng.uniform(0, 1e-6)))
    f = 1.0 if seed % 2 else float(rng.uniform(1.0, 3.0))
    n = 0 if seed % 7 == 0 else int(rng.integers(1, 256))
    c0, j0, k = int(rng.integers(0, 500_000)), int(rng.integers(0, 300)), int(rng.integers(1, 600))
    ends = [segment_end(s0, a, b, f, n, c0, j) for j in range(j0 + 1, j0 + k + 1)]
    ts = [s0 - 1.0, s0, ends[0], ends[-1], ends[-1] + 1.0, *rng.choice(ends, 5)]
    ts += [np.nextafter(e, -np.inf) for e in ends[:3]] + [float(rng.uniform(s0, ends[-1])) for _ in range(5)]
    for t in ts:
        assert segment_count_le(s0, a, b, f, n, c0, j0, k, float(t)) == _count_by_scan(s0, a, b, f, n, c0, j0, k, t)


def test_count_le_with_iterations_of_no_cost():
    assert segment_count_le(1.0, 0.0, 0.0, 1.0, 4, 10, 0, 5, 1.0) == 5
    assert segment_count_le(1.0, 0.0, 0.0, 1.0, 4, 10, 0, 5, 0.5) == 0


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


def test_decode_run_fields():
    run = DecodeRun(None, 0.0, 2, 10, 4, 4.0, True)
    assert (run.end_s, run.iterations, run.jump) == (4.0, 4, True)


def test_count_le_deep_into_a_long_segment_late_in_a_long_run():
    # j0 of 200,000 iterations at s0 = 1e6 s: the integer part stays exact and the root lands within a step or two
    s0, a, b, f, n, c0, j0, k = 1.0e6, 0.013, 2.7e-7, 1.3, 211, 3_100_000, 200_000, 3000
    ends = [segment_end(s0, a, b, f, n, c0, j) for j in range(j0 + 1, j0 + k + 1)]
    for t in (ends[0], ends[1234], float(np.nextafter(ends[1234], 0.0)), ends[-1], (ends[10] + ends[11]) / 2):
        assert segment_count_le(s0, a, b, f, n, c0, j0, k, t) == _count_by_scan(s0, a, b, f, n, c0, j0, k, t)
