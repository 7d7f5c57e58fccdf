"""Fast p95-latency estimator for search: a batched-service queueing approximation per replica, vectorised.

Per replica of a configuration (model, TP, PP) serving a tier's load at per-replica rate lam:
- prefill of a prompt of L tokens costs P(L) (one prefill-only iteration of the cost model); prefills
  pre-empt decoding (vLLM prefill-first), so decode progresses only a fraction 1 - rho_p of the time,
  rho_p = lam * mean(P) / pp (PP pipelines prefills too);
- the decode batch size B follows Little's law, B = lam * mean(out) * T(B) / (1 - rho_p), with T(B) the
  decode iteration time of a micro-batch of B/pp sequences at the time-weighted mean context (cost model's
  exact decode_affine); the per-token time seen by a request is T = T(B*) / (1 - rho_p);
- capacity is reached when B* hits b_max = min(max_num_seqs, KV capacity / mean context); lam_max solves
  B*(lam_max) = b_max; utilisation rho = lam / lam_max;
- queueing before admission: M/G/c with c = b_max batch slots, Sakasegawa's approximation
  W = (S/c) rho^(sqrt(2(c+1)) - 1) / (1 - rho) (ca2 + cs2) / 2, with ca2 the squared coefficient of
  variation of the sample's inter-arrival times and cs2 that of the service times;
- request latency = W + T/2 (wait for the running iteration) + P(L) + (out - 1) T; its p95 over the sample.
rho >= 1 is saturated: the estimate there is SATURATED_S * rho (finite, so search still prefers less
overload). A load with no requests costs 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.perf.batch import BatchShape

SATURATED_S = 1.0e5  # latency reported for an overloaded deployment, times its utilisation
_RHO_GRID = np.concatenate([np.linspace(0.0, 0.9, 46), 1.0 - np.geomspace(0.1, 1e-4, 40)])
_T_GRID_POINTS = 24


@dataclass(frozen=True)
class TierLoad:
    """The requests that reach one tier: their rate and lengths (a sample with the real rate)."""

    rate_rps: float
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_ca2: float = 1.0  # squared CV of inter-arrival times (1 = Poisson)
    key: tuple = ()

    @property
    def num_requests(self) -> int:
        return int(self.input_tokens.shape[0])


def arrival_ca2(arrival_s: np.ndarray) -> float:
    gaps = np.diff(np.asarray(arrival_s, dtype=np.float64))
    if gaps.size < 2 or gaps.mean() <= 0:
        return 1.0
    return float(gaps.var() / gaps.mean() ** 2)


@dataclass(frozen=True)
class ReplicaModel:
    """One replica configuration fitted to one tier load: p95 latency as a function of utilisation."""

    tp: int
    pp: int
    max_rps: float  # per-replica throughput at saturation
    b_max: float
    rho_grid: np.ndarray
    token_s: np.ndarray  # per-token decode time seen by a request, per rho
    wait_s: np.ndarray  # queueing before admission, per rho
    p95_s: np.ndarray  # p95 request latency at this replica, per rho
    prefill_s: np.ndarray  # (m,) prefill time of each sampled request

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp

    def p95_at(self, rho: np.ndarray) -> np.ndarray:
        rho = np.asarray(rho, dtype=np.float64)
        inside = np.interp(np.minimum(rho, self.rho_grid[-1]), self.rho_grid, self.p95_s)
        return np.where(rho < 1.0, inside, SATURATED_S * np.maximum(rho, 1.0))

    def request_latencies_s(self, rho: float, output_tokens: np.ndarray) -> np.ndarray:
        if rho >= 1.0:
            return np.full(self.prefill_s.shape, SATURATED_S * rho)
        t = float(np.interp(rho, self.rho_grid, self.token_s))
        w = float(np.interp(rho, self.rho_grid, self.wait_s))
        return w + t / 2 + self.prefill_s + np.maximum(output_tokens - 1, 0) * t


def _prefill_times(cost, input_tokens: np.ndarray) -> np.ndarray:
    lo, hi = max(int(input_tokens.min()), 1), max(int(input_tokens.max()), 2)
    grid = np.unique(np.geomspace(lo, hi, 24).round().astype(np.int64))
    t = np.array([cost.iteration_time_s(BatchShape(prefill_tokens=int(n), prefill_attn_pairs=n * (n + 1) / 2,
                                                   num_prefill_seqs=1)) for n in grid])
    return np.interp(input_tokens, grid, t)


def _decode_times(cost, pp: int, batch: np.ndarray, ctx_mean: float) -> np.ndarray:
    """Decode iteration time for B sequences in flight: pp micro-batches of B/pp, each at ctx_mean."""
    micro = np.maximum(batch / pp, 1.0)
    grid = np.unique(np.concatenate([np.geomspace(1, max(micro.max(), 1.0), 16).round(), [1.0]]))
    t = []
    for b in grid.astype(np.int64):
        a_s, b_s = cost.decode_affine(int(b))
        t.append(a_s + b_s * b * ctx_mean)
    return np.interp(micro, grid, np.array(t))


def build_replica_model(cost, load: TierLoad, max_num_seqs: int = 256, quantile: float = 0.95) -> ReplicaModel | None:
    """Fit the queueing approximation of one replica configuration to a non-empty load; None when not even
    one request's KV fits."""
    tp, pp = int(cost.tp), int(cost.pp)
    inp = load.input_tokens.astype(np.float64)
    out = load.output_tokens.astype(np.float64)
    prefill = _prefill_times(cost, load.input_tokens)
    mean_out = float(out.mean())
    # Context a decoding sequence holds, averaged over its decode steps and weighted by their count.
    ctx_mean = float((out * (inp + out / 2)).sum() / max(out.sum(), 1.0))
    kv_tokens = float(cost.kv_capacity_blocks * cost.kv_block_size)
    b_max = min(float(max_num_seqs), np.floor(kv_tokens / max(ctx_mean, 1.0)))
    if b_max < 1:
        return None
    b_grid = np.linspace(0.0, b_max, 129)
    t_b = _decode_times(cost, pp, np.maximum(b_grid, 1.0), ctx_mean)
    prefill_occupancy = float(prefill.mean()) / pp  # seconds of replica time per request
    decode_steps = max(mean_out - 1.0, 1e-9)
    max_rps = 1.0 / (decode_steps * t_b[-1] / b_max + prefill_occupancy)

    rho = _RHO_GRID
    lam = rho * max_rps
    rho_p = np.minimum(lam * prefill_occupancy, 0.999999)
    # Fixed point B = lam * steps * T(B) / (1 - rho_p): first grid B where the right side falls below B.
    rhs = (lam * decode_steps)[:, None] * t_b[None, :] / (1.0 - rho_p)[:, None]
    below = rhs <= b_grid[None, :] + 1e-12
    below[:, -1] = True
    first = below.argmax(axis=1)
    t_dec = t_b[first]
    token_s = t_dec / (1.0 - rho_p)
    service = prefill[None, :] + np.maximum(out - 1, 0)[None, :] * token_s[:, None]  # (rho, m) at most 86 x m
    s_mean = service.mean(axis=1)
    cs2 = service.var(axis=1) / np.maximum(s_mean, 1e-12) ** 2
    c = b_max
    with np.errstate(divide="ignore"):
        wait = (s_mean / c) * rho ** (np.sqrt(2 * (c + 1)) - 1) / np.maximum(1.0 - rho, 1e-9) \
            * (load.arrival_ca2 + cs2) / 2
    body = wait[:, None] + token_s[:, None] / 2 + service
    p95 = np.quantile(body, quantile, axis=1)
    return ReplicaModel(tp, pp, float(max_rps), float(b_max), rho, token_s, wait, p95, prefill)


def mixture_quantile(latencies: list[np.ndarray], weights: list[float], quantile: float) -> float:
    """Quantile of a mixture of per-request latency samples, component j carrying share weights[j]."""
    vals = np.concatenate(latencies)
    w = np.concatenate([np.full(l.shape, wt / max(l.size, 1)) for l, wt in zip(latencies, weights)])
    order = np.argsort(vals, kind="stable")
    cdf = np.cumsum(w[order]) / w.sum()
    return float(vals[order][min(np.searchsorted(cdf, quantile), vals.size - 1)])
