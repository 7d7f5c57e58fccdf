"""The cascade's judge: the score that gates escalation (oracle or noisy) and the time judging takes.

Quality is always measured on the real score; only the gate's view is noisy. Noise is Gaussian on the 0-100 scale,
clipped to 0-100; `calibrate_noise_std` picks its level so that the gate agrees with the oracle's accept/forward
decision at a given rate (e.g. a judge-human agreement figure), instead of guessing a raw standard deviation.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from sim.common.errors import ConfigError
from sim.workload.config import JudgeConfig, judge_config_from_dict


def _as_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("the judge needs an explicit numpy.random.Generator (spawned from the run's seed)")
    return rng


class Judge:
    """Built from {kind: oracle|noisy, noise_std, latency: {dist, mean_s, cv}} (see JudgeConfig)."""

    def __init__(self, cfg: JudgeConfig | dict | None = None) -> None:
        self.cfg = cfg if isinstance(cfg, JudgeConfig) else judge_config_from_dict(dict(cfg or {}))
        lat = self.cfg.latency
        if lat.dist == "uniform" and lat.cv > 1 / math.sqrt(3):
            raise ConfigError(f"judge.latency.cv {lat.cv} is too large for a uniform latency (max {1 / math.sqrt(3):.3f},"
                              " which already spans 0 to 2 x mean); use lognormal or gamma")

    @property
    def kind(self) -> str:
        return self.cfg.kind

    def gate_scores(self, scores: np.ndarray, tier: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
        """The scores the threshold of `tier` compares against: the real ones (oracle) or real + noise (noisy)."""
        if isinstance(tier, np.random.Generator) and rng is None:
            # Accept gate_scores(scores, rng) too: the noise does not depend on the tier.
            tier, rng = 0, tier
        scores = np.asarray(scores, dtype=np.float64)
        if self.cfg.kind == "oracle" or self.cfg.noise_std == 0:
            return scores.copy()
        noise = _as_rng(rng).normal(0.0, self.cfg.noise_std, size=scores.shape)
        return np.clip(scores + noise, 0.0, 100.0)

    def latency_s(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray | float:
        """n judge latencies (seconds), or one float when n is None."""
        lat = self.cfg.latency
        size = 1 if n is None else int(n)
        if lat.dist == "constant" or lat.cv == 0 or lat.mean_s == 0:
            out = np.full(size, lat.mean_s)
        elif lat.dist == "lognormal":
            sigma2 = math.log1p(lat.cv ** 2)
            out = _as_rng(rng).lognormal(math.log(lat.mean_s) - sigma2 / 2, math.sqrt(sigma2), size)
        elif lat.dist == "gamma":
            out = _as_rng(rng).gamma(1 / lat.cv ** 2, lat.mean_s * lat.cv ** 2, size)
        else:  # uniform with the given mean and cv
            half = math.sqrt(3) * lat.cv * lat.mean_s
            out = _as_rng(rng).uniform(lat.mean_s - half, lat.mean_s + half, size)
        return float(out[0]) if n is None else out

    def __repr__(self) -> str:
        return f"Judge({self.cfg})"


def decision_agreement(scores: np.ndarray, threshold: float, noise_std: float) -> float:
    """Expected share of requests whose noisy accept/forward decision equals the oracle's at `threshold`.

    Clipping to 0-100 never flips a decision for thresholds in (0, 100], so the Gaussian tail is exact.
    """
    s = np.asarray(scores, dtype=np.float64)
    accept = s >= threshold
    if noise_std == 0:
        return 1.0
    p_accept = 1.0 - ndtr((threshold - s) / noise_std)
    return float(np.mean(np.where(accept, p_accept, 1.0 - p_accept)))


def calibrate_noise_std(scores: np.ndarray, threshold: float, agreement: float, max_std: float = 500.0) -> float:
    """The noise_std at which the noisy gate agrees with the oracle on a share `agreement` of `scores`."""
    if not 0.5 < agreement <= 1.0:
        raise ConfigError(f"judge agreement must be in (0.5, 1], got {agreement}")
    if agreement == 1.0:
        return 0.0
    lo, hi = 0.0, max_std
    if decision_agreement(scores, threshold, hi) > agreement:
        raise ConfigError(f"judge agreement {agreement} is unreachable at threshold {threshold} even with noise_std {max_std}")
    for _ in range(60):  # agreement falls monotonically with the noise level
        mid = (lo + hi) / 2
        if decision_agreement(scores, threshold, mid) > agreement:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
