"""Synthetic arrival processes: Poisson and Gamma renewal processes (Gamma cv > 1 = bursty), first arrival at 0."""
from __future__ import annotations

import numpy as np

from sim.common.errors import ConfigError


def gamma_interarrivals_s(rate_rps: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n inter-arrival gaps with mean 1/rate_rps and coefficient of variation cv (cv = 1 is exponential)."""
    if rate_rps <= 0 or cv <= 0:
        raise ConfigError(f"arrivals need rate_rps > 0 and cv > 0, got rate_rps={rate_rps}, cv={cv}")
    if cv == 1.0:
        return rng.exponential(1.0 / rate_rps, n)
    shape = 1.0 / cv ** 2
    return rng.gamma(shape, 1.0 / (rate_rps * shape), n)


def renewal_arrivals_s(rate_rps: float, cv: float, rng: np.random.Generator, *, n: int | None = None,
                       duration_s: float | None = None) -> np.ndarray:
    """Arrival times of a renewal process: exactly n of them, or all that fall in [0, duration_s)."""
    if n is not None:
        gaps = gamma_interarrivals_s(rate_rps, cv, max(n - 1, 0), rng)
        return np.concatenate([[0.0], np.cumsum(gaps)])
    if duration_s is None or duration_s <= 0:
        raise ConfigError("synthetic arrivals need num_requests or a positive duration (window)")
    # Draw in chunks a little above the expected count; the chunk size depends only on the parameters, so the
    # same generator state gives the same arrivals.
    chunk = int(rate_rps * duration_s * 1.1) + 64
    times: list[np.ndarray] = []
    t = 0.0
    first = True
    while t < duration_s:
        gaps = gamma_interarrivals_s(rate_rps, cv, chunk, rng)
        if first:
            gaps[0] = 0.0  # the first request arrives at 0, as in a replayed trace
            first = False
        block = t + np.cumsum(gaps)
        times.append(block)
        t = float(block[-1])
    out = np.concatenate(times)
    return out[out < duration_s]
