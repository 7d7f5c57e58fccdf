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
- the rate is not stationary (a real trace drifts: the Azure conversation window's last minute runs 1.4x its
  mean rate). The sample's span is cut into equal windows (RateProfile); a request arriving in window k sees the
  local utilisation in T, W and rho_p (quasi-static): rho times the arrival rate within +-S of it over the mean
  rate, S the mean sojourn time (a decode batch holds the requests of about one sojourn time, so long requests
  see a smoother rate, and the trace's end, after which nothing arrives, drains the batch as in a run),
  capped at max(rho, RHO_LOCAL_MAX), plus the fluid backlog of windows whose local load exceeds capacity:
  s_{k+1} = max(0, s_k + (rho f_k - 1) window_s) seconds of queue, a request waiting (s_k + s_{k+1}) / 2.
  Without this the p95 of a load that peaks near capacity came out 35-40% low against the simulator.
- prefill bursts: on the sample's real arrival times, the tier's prefill work (replicas pooled as one server) is
  queued by Lindley's recursion; a request waits for the prefills ahead of it and its decode stalls until the
  prefill busy period ends (vLLM prefill-first). The Azure code trace (ca2 ~ 200, up to ~140 prompts of ~2k
  tokens in a second) made the stationary terms 3-7x low there (Cascadia planned one TP4 7B replica: SLO scale 27
  against 12.6 for CascadeServe); with this term the estimated SLO scale is within 10% of the simulator's.
With PP, each of the pp virtual engines holds up to max_num_seqs sequences (vLLM V0), so b_max caps at
pp * max_num_seqs. The mean rho >= 1 is saturated: the estimate there is SATURATED_S * rho (finite, so search
still prefers less overload). A load with no requests costs 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.perf.batch import BatchShape

SATURATED_S = 1.0e5  # latency reported for an overloaded deployment, times its utilisation
# Highest local utilisation the stationary terms are evaluated at inside a busy window; the excess is queued by
# the fluid backlog instead (a window is too short for the stationary 1/(1 - rho) wait to build up).
RHO_LOCAL_MAX = 0.98
MIN_REQUESTS_PER_WINDOW = 150  # sample requests per rate window: a rate estimate within about 8%
MAX_WINDOWS = 16
_RHO_GRID = np.concatenate([np.linspace(0.0, 0.9, 31), 1.0 - np.geomspace(0.1, 1e-4, 30)])
_T_GRID_POINTS = 24
BURST_GRID_STEP = 6  # rho grid points per evaluation of the prefill-burst term


@dataclass(frozen=True)
class RateProfile:
    """How the arrival rate moves over the sample: window_factor[k] = rate in window k / mean rate, for equal
    windows of window_s seconds. Routing does not depend on arrival time, so every tier shares the profile."""

    window_factor: np.ndarray
    window_s: float
    bandwidth_s: np.ndarray = field(default_factory=lambda: np.ones(1))  # (J,) half-widths of the local-rate kernel
    # grid_backlog_s's answers by utilisation grid: every model of a plan reads the same few rows
    backlogs: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_windows(self) -> int:
        return int(self.window_factor.shape[0])


STATIONARY = RateProfile(np.ones(1), 0.0)
BANDWIDTHS = 10  # kernel half-widths tried, geometric from the shortest meaningful one to the whole span


def rate_profile(arrival_s: np.ndarray, min_per_window: int = MIN_REQUESTS_PER_WINDOW,
                 max_windows: int = MAX_WINDOWS) -> tuple[RateProfile, np.ndarray, np.ndarray]:
    """(profile, window index of each request, (J, m) local rate factor of each request per kernel half-width)
    for arrival times sorted ascending. The local rate at a request counts the sample's arrivals within +-h of
    it (none outside the sample: the workload is the whole period planned for); h is at least the time that
    holds min_per_window requests, so that slow drift is kept and Poisson noise (which the stationary queue
    already models through ca2) is not counted twice."""
    t = np.asarray(arrival_s, dtype=np.float64)
    m = t.size
    k = int(np.clip(m // max(min_per_window, 1), 1, max_windows))
    span = float(t[-1] - t[0]) if m > 1 else 0.0
    if k == 1 or span <= 0:
        return STATIONARY, np.zeros(m, dtype=np.int64), np.ones((1, m))
    idx = np.minimum(((t - t[0]) / span * k).astype(np.int64), k - 1)
    counts = np.bincount(idx, minlength=k).astype(np.float64)
    h = np.geomspace(span / k / 2, span, BANDWIDTHS)
    mean_rate = (m - 1) / span
    lo = np.searchsorted(t, t[None, :] - h[:, None], side="left")
    hi = np.searchsorted(t, t[None, :] + h[:, None], side="right")
    factors = (hi - lo) / (2 * h[:, None] * mean_rate)
    return RateProfile(counts / counts.mean(), span / k, h), idx, factors


@dataclass(frozen=True)
class TierLoad:
    """The requests that reach one tier: their rate and lengths (a sample with the real rate)."""

    rate_rps: float
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_ca2: float = 1.0  # squared CV of inter-arrival times (1 = Poisson)
    key: tuple = ()
    window: np.ndarray | None = None  # (m,) rate window each request arrives in; None = stationary
    profile: RateProfile = STATIONARY
    local_factor: np.ndarray | None = None  # (J, m) local rate / mean rate per profile.bandwidth_s
    arrival_s: np.ndarray | None = None  # (m,) sorted arrival times of the sample; None = no prefill-burst term

    @property
    def num_requests(self) -> int:
        return int(self.input_tokens.shape[0])


def arrival_ca2(arrival_s: np.ndarray) -> float:
    gaps = np.diff(np.asarray(arrival_s, dtype=np.float64))
    if gaps.size < 2 or gaps.mean() <= 0:
        return 1.0
    return float(gaps.var() / gaps.mean() ** 2)


def rows_to_fill(grid: np.ndarray, filled: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Indices of the rows of a table on `grid` that np.interp reads for the utilisations rho below 1 (the grid
    points on either side of each) and that are not computed yet (NaN in `filled`): a table filled on demand."""
    x = np.asarray(rho, dtype=np.float64)
    x = x[x < 1.0]
    if not x.size:
        return np.zeros(0, dtype=np.int64)
    j = np.searchsorted(grid, np.minimum(x, grid[-1]), side="right") - 1
    rows = np.zeros(grid.size + 1, dtype=bool)
    rows[j] = True
    rows[j + 1] = True
    return np.flatnonzero(rows[:grid.size] & np.isnan(filled))


@dataclass(frozen=True)
class ReplicaModel:
    """One replica configuration fitted to one tier load: p95 latency as a function of utilisation.

    The p95 at a grid point costs a pass over every sampled request (their latencies, then a partition), and a
    table reads only the grid points around the utilisations its GPU counts give (about 18 of 61 on 32 GPUs), so
    p95_s is filled lazily, row by row, on the first p95_at that needs a row: the same floats as filling every
    row up front (each row depends on its own rho alone), for a third of the work."""

    tp: int
    pp: int
    max_rps: float  # per-replica throughput at saturation
    b_max: float
    rho_grid: np.ndarray
    token_s: np.ndarray  # per-token decode time seen by a request, per (stationary) rho
    wait_s: np.ndarray  # queueing before admission, per (stationary) rho
    p95_s: np.ndarray  # p95 request latency at this replica, per mean rho (rate profile included); NaN: not yet
    prefill_s: np.ndarray  # (m,) prefill time of each sampled request
    window: np.ndarray  # (m,) rate window of each sampled request
    profile: RateProfile
    local_factor: np.ndarray  # (J, m) local rate factor of each request per kernel half-width
    arrival_s: np.ndarray | None = None  # (m,) sample arrivals for the prefill-burst term (None: none)
    prefill_work_s: np.ndarray | None = None  # (m,) replica prefill work per sampled request at rho = 1
    steps: np.ndarray | None = None  # (m,) decode steps of each sampled request (output tokens - 1)
    quantile: float = 0.95
    burst_s: np.ndarray | None = None  # (S, m) prefill-burst delay at _burst_grid's S grid points; NaN: not yet

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp

    def p95_at(self, rho: np.ndarray, used: np.ndarray | None = None) -> np.ndarray:
        """p95 at mean utilisations rho (SATURATED_S * rho from 1 on); used: a mask of the entries the caller reads
        (the others may come back NaN), so that no p95 row is computed for them."""
        rho = np.asarray(rho, dtype=np.float64)
        self.prepare(rho if used is None else rho[used])
        return self.p95_prepared(rho)

    def p95_prepared(self, rho: np.ndarray) -> np.ndarray:
        """p95_at(rho, used) once prepare has filled the rows of the entries read (planners.strategy prepares all
        the utilisations a table reads in one call first)."""
        inside = np.interp(np.minimum(rho, self.rho_grid[-1]), self.rho_grid, self.p95_s)  # NaN where not asked
        return np.where(rho < 1.0, inside, SATURATED_S * np.maximum(rho, 1.0))

    def prepare(self, rho: np.ndarray) -> None:
        """Compute the p95 rows np.interp reads for the utilisations rho (the grid points on either side)."""
        rows = rows_to_fill(self.rho_grid, self.p95_s, rho)
        if rows.size:
            self.p95_s[rows] = quantile_rows(self._body(rows), self.quantile)

    def _body(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), m) latency of each sampled request at the mean utilisations rho_grid[rows]."""
        rho = self.rho_grid[rows]
        body = _latencies(rho, self.rho_grid, self.token_s, self.wait_s, self.prefill_s, self.steps, self.window,
                          self.profile, self.local_factor, backlog=grid_backlog_s(self.profile, self.rho_grid)[rows])
        if self.burst_s is None:
            return body
        # The burst delay is smooth in rho: evaluated on every BURST_GRID_STEP-th grid point and interpolated
        # (the full grid made it a quarter of the planning time).
        sub, j, frac = _burst_grid(self.rho_grid.size)
        j, frac = j[rows], frac[rows][:, None]
        need = np.zeros(self.burst_s.shape[0], dtype=bool)
        need[j] = True
        need[j + 1] = True
        need = np.flatnonzero(need & np.isnan(self.burst_s[:, 0]))
        if need.size:
            self.burst_s[need] = prefill_burst_s(self.rho_grid[sub[need]], self.arrival_s, self.prefill_work_s)
        return body + self.burst_s[j] * (1 - frac) + self.burst_s[j + 1] * frac

    def request_latencies_s(self, rho: float, output_tokens: np.ndarray) -> np.ndarray:
        """(m,) latency of each sampled request at mean utilisation rho (its window's local load included)."""
        if rho >= 1.0:
            return np.full(self.prefill_s.shape, SATURATED_S * rho)
        rho_a = np.array([rho])
        lat = _latencies(rho_a, self.rho_grid, self.token_s, self.wait_s, self.prefill_s,
                         np.maximum(output_tokens - 1, 0).astype(np.float64), self.window, self.profile,
                         self.local_factor)[0]
        if self.arrival_s is not None:
            lat = lat + prefill_burst_s(rho_a, self.arrival_s, self.prefill_work_s)[0]
        return lat


def _burst_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sub, j, frac): the grid points the prefill-burst term is evaluated at (every BURST_GRID_STEP-th and the
    last), and for each of the size grid points the sub-grid interval j and weight frac it is interpolated with."""
    if size not in _BURST_GRIDS:
        sub = np.unique(np.r_[np.arange(0, size, BURST_GRID_STEP), size - 1])
        pos = np.interp(np.arange(size), sub, np.arange(sub.size))
        j = np.minimum(pos.astype(np.int64), sub.size - 2)
        _BURST_GRIDS[size] = (sub, j, pos - j)
    return _BURST_GRIDS[size]


_BURST_GRIDS: dict[int, tuple] = {}


def quantile_rows(x: np.ndarray, q: float) -> np.ndarray:
    """np.quantile(x, q, axis=1) (its default "linear" method) for a 2-D array, the same floats: the two order
    statistics around the virtual index (n - 1) q of each row from one partition along the rows, then numpy's own
    lerp. numpy's general path partitions a transposed copy at four ranks (the extremes for its NaN check) and
    cost twice as much; rows holding a NaN take numpy's path."""
    n = x.shape[1]
    v = (n - 1) * q
    if n < 2 or v >= n - 1 or v < 0 or np.isnan(x.sum()):
        return np.quantile(x, q, axis=1)
    lo = int(np.floor(v))
    part = np.partition(x, (lo, lo + 1), axis=1)
    a, b = part[:, lo], part[:, lo + 1]
    t = v - lo
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def alone_latency_s(cost, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """(m,) latency of each request served alone on a replica: exactly the benchmark's ref(r)
    (sim.metrics.reference_latency_s), so the planner's predicted SLO scale divides by the same reference."""
    from sim.metrics import reference_latency_s

    return reference_latency_s(input_tokens, output_tokens, cost)


def _prefill_times(cost, input_tokens: np.ndarray, memo: dict | None = None) -> np.ndarray:
    """memo: the same configuration's earlier cost-model answers (search builds hundreds of models per config)."""
    memo = {} if memo is None else memo
    span = (max(int(input_tokens.min()), 1), max(int(input_tokens.max()), 2))
    if ("prefill_grid",) + span not in memo:  # the lattice and its answers, kept per range of prompt lengths
        grid = _lattice(*span)
        t = []
        for n in grid.tolist():
            if ("prefill", n) not in memo:
                memo[("prefill", n)] = cost.iteration_time_s(BatchShape(prefill_tokens=n,
                                                                        prefill_attn_pairs=n * (n + 1) / 2,
                                                                        num_prefill_seqs=1))
            t.append(memo[("prefill", n)])
        memo[("prefill_grid",) + span] = (grid, np.array(t))
    grid, t = memo[("prefill_grid",) + span]
    return np.interp(input_tokens, grid, t)


def _lattice(lo: int, hi: int, per_octave: int = 4) -> np.ndarray:
    """Integers round(2^(k / per_octave)) covering [lo, hi]: a grid fixed across loads, so a configuration's
    cost-model answers are reused from the memo (a grid fitted to each load's range would never repeat)."""
    k_lo = int(np.floor(np.log2(lo) * per_octave))
    k_hi = int(np.ceil(np.log2(hi) * per_octave))
    return np.unique(np.round(2.0 ** (np.arange(k_lo, k_hi + 1) / per_octave)).astype(np.int64))


def _decode_times(cost, pp: int, batch: np.ndarray, ctx_mean: float, memo: dict | None = None) -> np.ndarray:
    """Decode iteration time for B sequences in flight: pp micro-batches of B/pp, each at ctx_mean."""
    memo = {} if memo is None else memo
    micro = np.maximum(batch / pp, 1.0)
    hi = max(int(np.ceil(micro.max())), 1)
    if ("decode_grid", hi) not in memo:  # the lattice and its affine answers, kept per largest micro-batch
        grid = _lattice(1, hi)
        for b in grid.astype(np.int64).tolist():
            if ("decode", b) not in memo:
                memo[("decode", b)] = cost.decode_affine(b)
        ab = np.array([memo[("decode", b)] for b in grid.astype(np.int64).tolist()], dtype=np.float64).reshape(-1, 2)
        memo[("decode_grid", hi)] = (grid, ab[:, 0], ab[:, 1], grid.astype(np.float64))
    grid, a_s, b_s, b = memo[("decode_grid", hi)]
    # a_s + b_s * b * ctx_mean per grid point, the same IEEE operations in the same order as one point at a time
    return np.interp(micro, grid, a_s + b_s * b * ctx_mean)


def build_replica_model(cost, load: TierLoad, max_num_seqs: int = 256, quantile: float = 0.95,
                        memo: dict | None = None) -> ReplicaModel | None:
    """Fit the queueing approximation of one replica configuration to a non-empty load; None when not even
    one request's KV fits. memo: a dict kept per configuration that remembers its cost-model answers."""
    tp, pp = int(cost.tp), int(cost.pp)
    inp = load.input_tokens.astype(np.float64)
    out = load.output_tokens.astype(np.float64)
    prefill = _prefill_times(cost, load.input_tokens, memo)
    mean_out = float(out.mean())
    # Context a decoding sequence holds, averaged over its decode steps and weighted by their count.
    ctx_mean = float((out * (inp + out / 2)).sum() / max(out.sum(), 1.0))
    kv_tokens = float(cost.kv_capacity_blocks * cost.kv_block_size)
    b_max = min(float(max_num_seqs * pp), np.floor(kv_tokens / max(ctx_mean, 1.0)))
    if b_max < 1:
        return None
    b_grid = np.linspace(0.0, b_max, 129)
    t_b = _decode_times(cost, pp, np.maximum(b_grid, 1.0), ctx_mean, memo)
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
    window = load.window if load.window is not None else np.zeros(out.shape[0], dtype=np.int64)
    local = load.local_factor if load.local_factor is not None else np.ones((1, out.shape[0]))
    work = burst = None
    if load.arrival_s is not None and load.num_requests > 1 and load.arrival_s[-1] > load.arrival_s[0]:
        # One sampled request stands for gap_s * rate real ones; at utilisation rho this replica takes the share
        # rho * max_rps / rate of them, so its prefill work per sampled request is P / pp * rho * max_rps * gap_s.
        gap_s = float(load.arrival_s[-1] - load.arrival_s[0]) / (load.num_requests - 1)
        work = prefill / pp * max_rps * gap_s
        burst = np.full((_burst_grid(rho.size)[0].size, out.shape[0]), np.nan)
    return ReplicaModel(tp, pp, float(max_rps), float(b_max), rho, token_s, wait, np.full(rho.size, np.nan), prefill,
                        window, load.profile, local, load.arrival_s if work is not None else None, work,
                        np.maximum(out - 1, 0), quantile, burst)


def prefill_burst_s(rho: np.ndarray, arrival_s: np.ndarray, work_s: np.ndarray) -> np.ndarray:
    """(len(rho), m) delay from the prefill queue on the sample's real arrival times (bursts included): vLLM
    runs every admissible prompt's prefill before any decode step, so a request waits for the prefill work ahead
    of it (Lindley's recursion, the tier's replicas pooled as one server) and, after its own prefill, its decode
    stalls until that prefill busy period ends. The stationary terms cannot see this: the Azure code trace
    delivers up to ~140 prompts of ~2k tokens within one second (inter-arrival ca2 ~ 200)."""
    t = np.asarray(arrival_s, dtype=np.float64)
    s = rho[:, None] * work_s[None, :]  # (G, m) seconds of pooled prefill work each request brings
    gaps = np.diff(t)
    x = np.zeros_like(s)
    x[:, 1:] = np.cumsum(s[:, :-1] - gaps[None, :], axis=1)
    wait = x - np.minimum.accumulate(x, axis=1)  # Lindley: W_n = X_n - min_{j<=n} X_j
    done = t[None, :] + wait + s  # when each request's share of the queue is through
    # The busy period holding request n ends at done[j - 1], j the first later request that finds the queue empty.
    m = t.shape[0]
    idle = wait <= 1e-12
    idle[:, 0] = True
    nxt = np.where(idle, np.arange(m)[None, :], m)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]  # first idle index >= n
    nxt = np.concatenate([nxt[:, 1:], np.full((s.shape[0], 1), m)], axis=1)  # first idle index > n
    end = done.ravel()[nxt - 1 + (np.arange(s.shape[0]) * m)[:, None]]  # take_along_axis, at a third of its cost
    return wait + np.maximum(end - done, 0.0)


def fluid_backlog_s(rho: np.ndarray, profile: RateProfile) -> np.ndarray:
    """(len(rho), K) mean queue (seconds of work) a request of window k meets when the local load rho * f_k
    exceeds capacity in some windows: the backlog grows by (rho f_k - 1) window_s and drains when below 1."""
    f = profile.window_factor
    out = np.zeros((rho.shape[0], f.shape[0]))
    if profile.num_windows == 1 or not np.any(rho[:, None] * f[None, :] > 1.0):
        return out
    s = np.zeros(rho.shape[0])
    for k in range(f.shape[0]):
        nxt = np.maximum(0.0, s + (rho * f[k] - 1.0) * profile.window_s)
        out[:, k] = (s + nxt) / 2
        s = nxt
    return out


def grid_backlog_s(profile: RateProfile, grid: np.ndarray) -> np.ndarray:
    """fluid_backlog_s(grid, profile), kept on the profile: each row depends on its own utilisation alone (a row
    whose load never exceeds capacity is 0 either way), so a row taken from it is that row's floats."""
    key = grid.tobytes()
    if key not in profile.backlogs:
        profile.backlogs[key] = fluid_backlog_s(grid, profile)
    return profile.backlogs[key]


def _latencies(rho: np.ndarray, grid: np.ndarray, token_s: np.ndarray, wait_s: np.ndarray, prefill: np.ndarray,
               steps: np.ndarray, window: np.ndarray, profile: RateProfile, local_factor: np.ndarray,
               means: tuple[float, float] | None = None, backlog: np.ndarray | None = None) -> np.ndarray:
    """(len(rho), m) request latencies at mean utilisations rho, each request at its own local load: the
    arrival rate around it within one mean sojourn time S (its decode batch holds the requests that arrived
    within about S of it), so long requests see a smoother rate than short ones. Every entry depends on its own
    row's rho and its own request alone, but for S, which reads the means of prefill and steps over the whole
    load: means = (those two means) lets a caller pass a subset of the requests and get those columns' floats.
    backlog: fluid_backlog_s(rho, profile) when the caller has it (grid_backlog_s)."""
    if local_factor.shape[0] == 1:
        factor = np.broadcast_to(local_factor, (rho.shape[0], local_factor.shape[1]))
    else:
        t_mean = np.interp(np.minimum(rho, grid[-1]), grid, token_s)
        prefill_mean, steps_mean = (float(prefill.mean()), float(steps.mean())) if means is None else means
        sojourn = prefill_mean + steps_mean * t_mean
        pos = np.interp(np.log(np.maximum(sojourn, 1e-9)), np.log(profile.bandwidth_s),
                        np.arange(profile.bandwidth_s.shape[0], dtype=np.float64))
        j = np.minimum(pos.astype(np.int64), local_factor.shape[0] - 2)
        frac = (pos - j)[:, None]
        factor = local_factor[j] * (1 - frac) + local_factor[j + 1] * frac  # (G, m)
    local = rho[:, None] * factor
    local = np.minimum(local, np.maximum(rho, RHO_LOCAL_MAX)[:, None])
    local = np.minimum(local, grid[-1])
    t = np.interp(local, grid, token_s)
    w = np.interp(local, grid, wait_s)
    backlog = (fluid_backlog_s(rho, profile) if backlog is None else backlog)[:, window]
    return w + backlog + t / 2 + prefill[None, :] + steps[None, :] * t

