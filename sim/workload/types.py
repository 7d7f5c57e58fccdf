"""The Workload table every planner and the simulator consume: arrivals, lengths and per-tier real scores."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Workload:
    """n requests, C cascade tiers. Arrays are read-only numpy arrays, rows sorted by arrival_s.

    arrival_s: (n,) float64 seconds from the start of the run.
    input_tokens: (n,) int64 prompt tokens (from the trace).
    output_tokens: (n, C) int64 answer tokens each tier would generate (from the quality dataset's
        answers where it has them, scaled to the trace's length distribution; else the trace's length).
    scores: (n, C) float64 real judge score of each tier's answer, 0-100.
    question_ids: (n,) str id of the bound question in the quality dataset.
    prefix: the prompts' KV block hash ids (sim.workload.prefix.PrefixHashes) when the trace has them, else None.
    """

    name: str
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    scores: np.ndarray
    question_ids: np.ndarray
    tier_models: tuple[str, ...]  # dataset model standing in for each tier
    meta: dict = field(default_factory=dict, compare=False)
    prefix: object = field(default=None, compare=False)  # PrefixHashes | None

    def __post_init__(self) -> None:
        for arr in (self.arrival_s, self.input_tokens, self.output_tokens, self.scores, self.question_ids):
            arr.flags.writeable = False

    @property
    def num_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def num_tiers(self) -> int:
        return len(self.tier_models)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if self.num_requests > 1 else 0.0

    @property
    def rate_rps(self) -> float:
        return (self.num_requests - 1) / self.duration_s if self.duration_s > 0 else 0.0

    def quality_bounds(self) -> tuple[float, float]:
        """(smallest, largest): mean real score when every request stops at the first tier, and when every
        request is answered by the last (the paper's z2* and z1*)."""
        return float(self.scores[:, 0].mean()), float(self.scores[:, -1].mean())

    def quality_at_level(self, level: float) -> float:
        """The quality requirement `level` of the way from the smallest model's quality (0) to the largest's (1)."""
        lo, hi = self.quality_bounds()
        return lo + level * (hi - lo)

    def take(self, idx: np.ndarray, name: str | None = None) -> "Workload":
        """Rows idx (kept in arrival order)."""
        idx = np.sort(np.asarray(idx))
        return Workload(
            name=name or self.name,
            arrival_s=self.arrival_s[idx].copy(),
            input_tokens=self.input_tokens[idx].copy(),
            output_tokens=self.output_tokens[idx].copy(),
            scores=self.scores[idx].copy(),
            question_ids=self.question_ids[idx].copy(),
            tier_models=self.tier_models,
            meta=dict(self.meta),
            prefix=None if self.prefix is None else self.prefix.take(idx),
        )

    def window(self, start_s: float, end_s: float) -> "Workload":
        """Requests arriving in [start_s, end_s), re-timed to start at 0."""
        idx = np.nonzero((self.arrival_s >= start_s) & (self.arrival_s < end_s))[0]
        w = self.take(idx)
        return w.with_arrivals(w.arrival_s - start_s)

    def scale_rate(self, factor: float) -> "Workload":
        """Same requests, arrival times divided by factor (factor 2 = twice the rate, same shape)."""
        if factor <= 0:
            from sim.common.errors import ConfigError

            raise ConfigError(f"rate scale factor must be positive, got {factor}")
        w = self.with_arrivals(self.arrival_s / factor)
        if w.meta.get("phases"):  # drift phases keep matching their requests' arrival times
            w.meta["phases"] = [{**p, "start_s": p["start_s"] / factor, "end_s": p["end_s"] / factor,
                                 "rate_rps": p.get("rate_rps", 0.0) * factor} for p in w.meta["phases"]]
        return w

    def with_arrivals(self, arrival_s: np.ndarray) -> "Workload":
        return Workload(self.name, np.asarray(arrival_s, dtype=np.float64).copy(), self.input_tokens.copy(),
                        self.output_tokens.copy(), self.scores.copy(), self.question_ids.copy(),
                        self.tier_models, dict(self.meta), self.prefix)
