"""Early stop of a run whose only question is whether it meets an SLO scale: it ends with SloMissed as soon as enough
requests have certainly missed their deadline that the attainment quantile must exceed the target, and with SloMet as
soon as enough requests have finished within it that the quantile must be within the target whatever the rest do.

Request i misses when latency_i / ref_i > target (the ratio sim.metrics.slo_scale ranks). It is certain to miss when
it finished that late, was dropped, or is still unfinished at a time t with (t - arrival_i) / ref_i > target: it
cannot finish before t, and float subtraction and division are monotone, so its ratio will be at least that. Open
requests are checked at the run's own events (arrivals and finishes), never by timers of their own, so the run's
events, and hence its records up to the stop, are exactly those of the run without the stop.

Request i is certain to be attained once it completed with latency_i / ref_i <= target: its ratio is final. The
attainment quantile (inverted CDF over n ratios) is the (j+1)-th smallest ratio, within the target exactly when
j + 1 = n - fail_at_misses + 1 ratios are; so the run passes as soon as that many requests are attained.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# An engine's logical clock and SimPy's clock agree within an ulp, not exactly; a request still open at `now` is
# judged at now - CLOCK_MARGIN_S, so its finish time, whatever clock wrote it, is not earlier.
CLOCK_MARGIN_S = 1e-6


@dataclass(frozen=True)
class SloStop:
    """Stop a run once `fail_at_misses` requests have a latency ratio (latency / ref_s, per request) above
    target_scale or were dropped: with that many misses the attainment quantile is above the target
    (sim.metrics.slo_stop computes the count from the quantile's definition)."""

    ref_s: np.ndarray
    target_scale: float
    fail_at_misses: int


class SloMissed(Exception):
    """The run was stopped by its SloStop: its SLO scale exceeds the target (the run has no records)."""

    def __init__(self, misses: int = 0, at_s: float = 0.0) -> None:
        super().__init__(misses, at_s)
        self.misses, self.at_s = misses, at_s


class SloMet(Exception):
    """The run was stopped by its SloStop: enough requests finished within the target that its SLO scale is within
    it whatever the others do (the run has no records)."""

    def __init__(self, attained: int = 0, at_s: float = 0.0) -> None:
        super().__init__(attained, at_s)
        self.attained, self.at_s = attained, at_s


class SloWatch:
    """Counts certain misses and certain passes for one run (CascadeFlow calls it at completions, drops, arrivals and
    finishes)."""

    def __init__(self, stop: SloStop, arrival_s: list[float], status: list) -> None:
        self.stop = stop
        self.target = float(stop.target_scale)
        self.left = int(stop.fail_at_misses)
        # attained requests that make the verdict "met": n - fail_at_misses + 1; to_pass counts down to it
        self.pass_at = len(arrival_s) - int(stop.fail_at_misses) + 1
        self.to_pass = self.pass_at
        self.arrival_s = arrival_s  # the flow's own list (arrival times as the records keep them)
        self.status = status  # the record book's per-request status (0 while open)
        self.ref_s = np.asarray(stop.ref_s, dtype=np.float64).tolist()
        self.counted = [False] * len(self.ref_s)
        # Open requests in order of their (approximate) deadlines; each is decided exactly when reached.
        deadline = np.asarray(arrival_s, dtype=np.float64) + self.target * np.asarray(stop.ref_s, dtype=np.float64)
        self.order = np.argsort(deadline, kind="stable").tolist()
        self.deadline = deadline[self.order].tolist()
        self.next = 0
        # deadline[next] (inf once every one is decided): check_open does nothing at `now` unless
        # now - CLOCK_MARGIN_S > due_s, the test its loop starts with, which the flow makes before calling it
        self.due_s = self.deadline[0] if self.deadline else float("inf")

    def finished(self, i: int, latency_s: float) -> None:
        """Request i completed with this latency."""
        if self.counted[i]:
            return
        if latency_s / self.ref_s[i] > self.target:  # the ratio slo_scale ranks, float for float
            self._miss(i, latency_s)
            return
        self.counted[i] = True
        self.to_pass -= 1
        if self.to_pass <= 0:
            raise SloMet(self.pass_at, self.arrival_s[i] + latency_s)

    def dropped(self, i: int, now: float) -> None:
        if not self.counted[i]:
            self._miss(i, now)

    def check_open(self, now: float) -> None:
        """Count the open requests whose deadline has certainly passed by `now`."""
        t = now - CLOCK_MARGIN_S
        order, deadline, status, n = self.order, self.deadline, self.status, len(self.order)
        try:
            while self.next < n and deadline[self.next] < t:
                i = order[self.next]
                if not status[i] and not self.counted[i]:
                    if not (t - self.arrival_s[i]) / self.ref_s[i] > self.target:
                        return  # the approximate deadline ran ahead of the exact test: decide it at a later event
                    self._miss(i, now)
                self.next += 1
        finally:
            self.due_s = deadline[self.next] if self.next < n else float("inf")

    def _miss(self, i: int, now: float) -> None:
        self.counted[i] = True
        self.left -= 1
        if self.left <= 0:
            raise SloMissed(int(self.stop.fail_at_misses), now)
