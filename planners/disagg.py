"""Estimator for a disaggregated tier (the simulator's sim.runtime.disagg): a prefill pool, the KV transfer and a
decode pool, as one search unit of P prefill and D decode instances whose p95 is a function of utilisation.

- Prefill instance (TP_p x PP_p): serves prompts only; capacity cap_p = pp_p / mean(P(L)) requests/s. Its queue is
  Lindley's recursion on the sample's real arrival times (the pool's instances pooled as one server, as in the
  colocated estimator's prefill-burst term), so bursts and the rate's drift are seen; a request's prefill latency
  is its wait plus its own prefill P(L).
- KV transfer of L tokens: one InfiniBand latency plus L x KV bytes per token over min(GPUs of either side) NICs
  of ib_bw / gpus_per_node each. Placement may put both sides in one node (NVLink, ~16x faster); the planner
  assumes the slower link, so a plan never relies on a placement it does not control.
- Decode instance (TP_d x PP_d): no prefill interrupts its batch, so the colocated estimator's decode model with
  rho_p = 0: the batch B solves Little's law B = lam * (out - 1) * T(B), capacity when B reaches
  b_max = min(pp * max_num_seqs, KV tokens / mean context), Sakasegawa's M/G/c wait for a batch slot, the local
  rate profile and fluid backlog as in planners.estimator; latency = wait + T/2 + (out - 1) T.
- A unit of P prefill and D decode instances carries min(P cap_p, D cap_d) requests/s; at unit utilisation rho
  the prefill instances run at rho * unit / (P cap_p) and the decode instances at rho * unit / (D cap_d). Its p95
  is taken (nearest rank) over at most P95_SAMPLE requests of the tier's sample (evenly spaced), on a 15-point rho grid,
  each row computed only when a table first reads it: the search evaluates thousands of units, and the colocated
  tables' 61 points over every request would triple the planning time.
Search space (per tier): prefill and decode configurations with PP 1 (PP adds pipeline bubbles and no KV room a
decode pool cannot get from another instance) among the tier's fitting TPs, and P:D splits SPLITS.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planners.estimator import (SATURATED_S, RateProfile, TierLoad, _decode_times, _latencies, _prefill_times,
                                grid_backlog_s, rows_to_fill)

SPLITS = ((1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 3), (3, 1))  # (prefill instances, decode instances) per unit
U_GRID = np.r_[np.linspace(0.0, 0.9, 10), 1.0 - np.geomspace(0.1, 1e-3, 6)[1:]]  # 15 points in [0, 0.999]
P95_SAMPLE = 384
# A disaggregated unit replaces the colocated deployment of a tier only where it is robustly better
# (planners.strategy.latency_table): by more than the estimator's error on disaggregated tiers at the planned rate
# (0.1-4.1% in planners.bench, docs/planners.md: 5% rounds the worst up), and still no worse at the load of the
# planning sample's hotter windows: the 90th percentile of its per-window rates over their mean (1.18-1.19 on the
# conversation trace at x2.5 and x5, where the held-out half then ran 16-20% hotter than the planning half).
DISAGG_MARGIN = 0.05
DISAGG_MAX_UTILISATION = 0.8
DISAGG_LOAD_QUANTILE = 0.9


def disagg_load_factor(window_factor: np.ndarray) -> float:
    """The rate, over the mean, at which a disaggregated unit must still hold: the DISAGG_LOAD_QUANTILE of the
    planning sample's window rates (1 for a stationary sample)."""
    w = np.asarray(window_factor, dtype=np.float64)
    return max(1.0, float(np.quantile(w, DISAGG_LOAD_QUANTILE))) if w.size > 1 else 1.0


@dataclass(frozen=True)
class PrefillSide:
    tp: int
    pp: int
    cap_rps: float  # one instance's prefill throughput
    prefill_s: np.ndarray  # (m,)
    wait_s: np.ndarray  # (U, m) queue before the prefill at instance utilisation U_GRID


@dataclass(frozen=True)
class DecodeSide:
    """A decode instance on one load. Its latency table (wait + T/2 + (out - 1) T of each request at instance
    utilisation U_GRID) is filled row by row when first read, over the p95 sample's columns for the units' p95 rows
    (sub_s) and over every request for the end-to-end estimate (full_s): the search reads a few rows of a few
    sides, and each entry depends on its own row and request alone (planners.estimator._latencies), so the floats
    are those of the whole table."""

    tp: int
    pp: int
    cap_rps: float  # one instance's decode throughput (requests/s)
    token_s: np.ndarray  # (U,) per-token decode time at instance utilisation U_GRID
    wait_s: np.ndarray  # (U,) wait for a batch slot
    steps: np.ndarray  # (m,) decode steps of each request
    steps_mean: float  # over the whole load (the sojourn time of _latencies)
    window: np.ndarray  # (m,) the load's rate window of each request
    profile: RateProfile
    local_factor: np.ndarray  # (J, m)
    columns: "P95Columns"
    sub_s: np.ndarray  # (U, k) the p95 sample's columns; NaN: not computed yet
    full: dict = field(default_factory=dict, compare=False, repr=False)  # "s": (U, m), made when first read

    @property
    def full_s(self) -> np.ndarray:
        """(U, m) every request's latency; NaN: not computed yet."""
        if "s" not in self.full:
            self.full["s"] = np.full((U_GRID.size, self.steps.shape[0]), np.nan)
        return self.full["s"]

    def sub_rows(self, u: np.ndarray) -> np.ndarray:
        """(len(u), k) the p95 sample's latencies at instance utilisations u (linear in U_GRID, as _rows)."""
        c = self.columns
        return self._read(self.sub_s, u, c.steps, c.window, c.local_factor)

    def full_rows(self, u: np.ndarray) -> np.ndarray:
        """(len(u), m) every request's latency at instance utilisations u."""
        return self._read(self.full_s, u, self.steps, self.window, self.local_factor)

    def _read(self, table: np.ndarray, u: np.ndarray, steps, window, local) -> np.ndarray:
        j, frac = _interval(u)
        need = np.zeros(U_GRID.size, dtype=bool)
        need[j] = True
        need[j + 1] = True
        need = np.flatnonzero(need & np.isnan(table[:, 0]))
        if need.size:
            table[need] = _latencies(U_GRID[need], U_GRID, self.token_s, self.wait_s, np.zeros(steps.shape[0]), steps,
                                     window, self.profile, local, means=(0.0, self.steps_mean),
                                     backlog=grid_backlog_s(self.profile, U_GRID)[need])
        return table[j] * (1 - frac) + table[j + 1] * frac


@dataclass(frozen=True)
class P95Columns:
    """The requests a unit's p95 is taken over (evenly spaced, at most P95_SAMPLE; cols None: all of them), with the
    load's per-request inputs of the decode latencies at those columns, taken once per load."""

    cols: np.ndarray | None
    steps: np.ndarray
    window: np.ndarray
    local_factor: np.ndarray

    @staticmethod
    def of(load: TierLoad) -> "P95Columns":
        m = load.num_requests
        cols = None if m <= P95_SAMPLE else np.unique(np.linspace(0, m - 1, P95_SAMPLE).round().astype(np.int64))
        steps = np.maximum(load.output_tokens.astype(np.float64) - 1, 0)
        window = load.window if load.window is not None else np.zeros(m, dtype=np.int64)
        local = load.local_factor if load.local_factor is not None else np.ones((1, m))
        if cols is None:
            return P95Columns(None, steps, window, local)
        return P95Columns(cols, steps[cols], window[cols], local[:, cols])

    @property
    def size(self) -> int:
        return int(self.steps.shape[0])


def lindley_wait_s(u: np.ndarray, arrival_s: np.ndarray, work_s: np.ndarray) -> np.ndarray:
    """(len(u), m) wait of each request in a FCFS queue with the given arrivals and work work_s * u (Lindley)."""
    s = u[:, None] * work_s[None, :]
    x = np.zeros_like(s)
    x[:, 1:] = np.cumsum(s[:, :-1] - np.diff(arrival_s)[None, :], axis=1)
    return x - np.minimum.accumulate(x, axis=1)


def prefill_side(cost, load: TierLoad, memo: dict | None = None) -> PrefillSide:
    pp = int(cost.pp)
    prefill = _prefill_times(cost, load.input_tokens, memo)
    occupancy = prefill / pp
    cap = 1.0 / max(float(occupancy.mean()), 1e-12)
    m = prefill.shape[0]
    if load.arrival_s is not None and m > 1 and load.arrival_s[-1] > load.arrival_s[0]:
        # One sampled request stands for gap_s * rate real ones (the colocated estimator's prefill-burst scaling).
        gap_s = float(load.arrival_s[-1] - load.arrival_s[0]) / (m - 1)
        wait = lindley_wait_s(U_GRID, np.asarray(load.arrival_s, dtype=np.float64), occupancy * cap * gap_s)
    else:  # Kingman's M/G/1 wait with the sample's service variability
        cs2 = float(occupancy.var() / max(occupancy.mean(), 1e-12) ** 2)
        w = U_GRID / np.maximum(1.0 - U_GRID, 1e-9) * (load.arrival_ca2 + cs2) / 2 * float(occupancy.mean())
        wait = np.repeat(w[:, None], m, axis=1)
    return PrefillSide(int(cost.tp), pp, float(cap), prefill, wait)


def decode_side(cost, load: TierLoad, max_num_seqs: int, memo: dict | None = None,
                columns: P95Columns | None = None) -> DecodeSide | None:
    """None when not even one request's context fits the instance's KV. columns: the load's P95Columns, shared by
    its decode sides (made here when not given)."""
    pp = int(cost.pp)
    inp = load.input_tokens.astype(np.float64)
    out = load.output_tokens.astype(np.float64)
    steps = np.maximum(out - 1, 0)
    ctx_mean = float((steps * (inp + out / 2)).sum() / max(steps.sum(), 1.0))
    b_max = min(float(max_num_seqs * pp), np.floor(cost.kv_capacity_blocks * cost.kv_block_size / max(ctx_mean, 1.0)))
    if b_max < 1:
        return None
    b_grid = np.linspace(0.0, b_max, 129)
    t_b = _decode_times(cost, pp, np.maximum(b_grid, 1.0), ctx_mean, memo)
    mean_steps = max(float(steps.mean()), 1e-9)
    cap = b_max / (mean_steps * t_b[-1])
    lam = U_GRID * cap
    below = (lam * mean_steps)[:, None] * t_b[None, :] <= b_grid[None, :] + 1e-12
    below[:, -1] = True
    token_s = t_b[below.argmax(axis=1)]
    service = steps[None, :] * token_s[:, None]
    s_mean = service.mean(axis=1)
    cs2 = service.var(axis=1) / np.maximum(s_mean, 1e-12) ** 2
    c = b_max
    wait = (s_mean / c) * U_GRID ** (np.sqrt(2 * (c + 1)) - 1) / np.maximum(1.0 - U_GRID, 1e-9) \
        * (load.arrival_ca2 + cs2) / 2
    columns = P95Columns.of(load) if columns is None else columns
    m = out.shape[0]
    window = load.window if load.window is not None else np.zeros(m, dtype=np.int64)
    local = load.local_factor if load.local_factor is not None else np.ones((1, m))
    return DecodeSide(int(cost.tp), pp, float(cap), token_s, wait, steps, float(steps.mean()), window, load.profile,
                      local, columns, np.full((U_GRID.size, columns.size), np.nan))


def _interval(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(j, frac): utilisations u lie frac of the way from U_GRID[j] to U_GRID[j + 1] (u capped at the last point)."""
    pos = np.interp(np.minimum(u, U_GRID[-1]), U_GRID, np.arange(U_GRID.size, dtype=np.float64))
    j = np.minimum(pos.astype(np.int64), U_GRID.size - 2)
    return j, (pos - j)[:, None]


def _rows(table: np.ndarray, u: np.ndarray) -> np.ndarray:
    """table (U, k) at utilisations u (linear in U_GRID)."""
    j, frac = _interval(u)
    return table[j] * (1 - frac) + table[j + 1] * frac


@dataclass(frozen=True)
class Pairing:
    """One prefill configuration with one decode configuration on one load: what its units (one per P:D split) share.
    A unit's request latency = wait_sub at its prefill utilisation + the decode side's at its decode utilisation +
    base_sub (prefill and KV transfer), over the p95 sample's columns; rank: the nearest-rank index of the quantile
    among them."""

    prefill: PrefillSide
    decode: DecodeSide
    transfer_s: np.ndarray  # (m,)
    wait_sub: np.ndarray  # (U, k) the prefill side's wait at the p95 sample's columns
    base_sub: np.ndarray  # (k,)
    rank: int


@dataclass(frozen=True)
class DisaggModel:
    """A search unit: num_prefill prefill instances and num_decode decode instances; the interface of
    planners.estimator.ReplicaModel (num_gpus, max_rps, p95_at, request_latencies_s) so tables can hold it."""

    pairing: Pairing
    num_prefill: int
    num_decode: int
    max_rps: float
    num_gpus: int
    p95_s: np.ndarray  # (U,) p95 at unit utilisation U_GRID; NaN: not computed yet (filled by prepare)
    disaggregated: bool = True

    rho_grid = U_GRID

    @property
    def prefill(self) -> PrefillSide:
        return self.pairing.prefill

    @property
    def decode(self) -> DecodeSide:
        return self.pairing.decode

    @property
    def transfer_s(self) -> np.ndarray:
        return self.pairing.transfer_s

    @property
    def tp(self) -> int:  # for descriptions only; placement reads the sides
        return self.decode.tp

    @property
    def pp(self) -> int:
        return self.decode.pp

    @property
    def u_p(self) -> np.ndarray:
        """(U,) the prefill instances' utilisation at each unit utilisation of U_GRID."""
        return self._utilisations(U_GRID)[0]

    @property
    def u_d(self) -> np.ndarray:
        return self._utilisations(U_GRID)[1]

    def replica_configs(self, units: int) -> list[tuple[int, int, int, str]]:
        """[(tp, pp, count, role)] of `units` copies of this unit, for placement."""
        return [(self.prefill.tp, self.prefill.pp, units * self.num_prefill, "prefill"),
                (self.decode.tp, self.decode.pp, units * self.num_decode, "decode")]

    def _utilisations(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (rho * self.max_rps / (self.num_prefill * self.prefill.cap_rps),
                rho * self.max_rps / (self.num_decode * self.decode.cap_rps))

    def prepare(self, rho: np.ndarray) -> None:
        """Compute the p95 rows np.interp reads for the unit utilisations rho (the grid points on either side): a
        table reads a unit at a few utilisations only, and each row depends on its own utilisation alone, so the
        floats are those of filling every row (planners.estimator.ReplicaModel.prepare does the same)."""
        prepare_units([self], [np.asarray(rho, dtype=np.float64)])

    def p95_at(self, rho: np.ndarray) -> np.ndarray:
        rho = np.asarray(rho, dtype=np.float64)
        self.prepare(rho)
        return self._p95_prepared(rho)

    def _p95_prepared(self, rho: np.ndarray) -> np.ndarray:
        """p95_at(rho) once the rows it reads are filled."""
        inside = np.interp(np.minimum(rho, U_GRID[-1]), U_GRID, self.p95_s)
        return np.where(rho < 1.0, inside, SATURATED_S * np.maximum(rho, 1.0))

    def request_latencies_s(self, rho: float, output_tokens: np.ndarray | None = None) -> np.ndarray:
        if rho >= 1.0:
            return np.full(self.transfer_s.shape, SATURATED_S * rho)
        u_p, u_d = self._utilisations(np.array([rho]))
        return (_rows(self.prefill.wait_s, u_p)[0] + self.prefill.prefill_s + self.transfer_s
                + self.decode.full_rows(u_d)[0])


def transfer_s(load: TierLoad, kv_bytes_per_token: float, prefill_gpus: int, decode_gpus: int, cluster) -> np.ndarray:
    """(m,) KV transfer of each request's prompt over InfiniBand (see the module docstring)."""
    bw = cluster.ib_bw_gbps * 1e9 / cluster.gpus_per_node * min(prefill_gpus, decode_gpus)
    return cluster.ib_latency_us * 1e-6 + load.input_tokens.astype(np.float64) * kv_bytes_per_token / bw


def disagg_models(prefills: list[PrefillSide], decodes: list[DecodeSide], load: TierLoad, kv_bytes_per_token: float,
                  cluster, quantile: float = 0.95) -> list[DisaggModel]:
    """Every (prefill config, decode config, split) unit for one load (the decode sides share one P95Columns)."""
    if not prefills or not decodes:
        return []
    cols = decodes[0].columns.cols
    k = int(round(quantile * (decodes[0].columns.size - 1)))
    out = []
    for ps in prefills:
        wait_sub = ps.wait_s if cols is None else ps.wait_s[:, cols]  # taken once, not once per pairing and split
        for ds in decodes:
            xfer = transfer_s(load, kv_bytes_per_token, ps.tp * ps.pp, ds.tp * ds.pp, cluster)
            base = ps.prefill_s + xfer
            pair = Pairing(ps, ds, xfer, wait_sub, base if cols is None else base[cols], k)
            g_p, g_d = ps.tp * ps.pp, ds.tp * ds.pp
            for n_p, n_d in SPLITS:
                unit = min(n_p * ps.cap_rps, n_d * ds.cap_rps)
                # p95 rows filled on demand (DisaggModel.prepare): the search reads a unit at a few utilisations.
                out.append(DisaggModel(pair, n_p, n_d, float(unit), n_p * g_p + n_d * g_d, np.full(U_GRID.size, np.nan)))
    return out


def prepare_units(units: list[DisaggModel], rhos: list[np.ndarray]) -> None:
    """units[t].prepare(rhos[t]) for every t, the missing p95 rows of the units of one pairing computed in one pass
    (one interpolation of each side's table, one partition): the same rows and floats as one unit at a time, for
    a fraction of the calls (a table reads hundreds of units)."""
    groups: dict[int, list] = {}
    for unit, rho in zip(units, rhos):
        x = rho[rho < 1.0]
        if x.size:
            groups.setdefault(id(unit.pairing), []).append((unit, x))
    size = U_GRID.size
    for items in groups.values():
        pair = items[0][0].pairing
        k = len(items)
        owner = np.repeat(np.arange(k), [x.size for _, x in items])
        x = np.concatenate([x for _, x in items]) if k > 1 else items[0][1]
        j = np.searchsorted(U_GRID, np.minimum(x, U_GRID[-1]), side="right") - 1  # planners.estimator.rows_to_fill
        read = np.zeros((k, size + 1), dtype=bool)
        read[owner, j] = True
        read[owner, j + 1] = True
        filled = np.stack([u.p95_s for u, _ in items]) if k > 1 else items[0][0].p95_s[None, :]
        who, rows = np.nonzero(read[:, :size] & np.isnan(filled))
        if not who.size:
            continue
        max_rps = np.array([u.max_rps for u, _ in items])[who]
        rho = U_GRID[rows]
        u_p = rho * max_rps / (np.array([u.num_prefill for u, _ in items])[who] * pair.prefill.cap_rps)
        u_d = rho * max_rps / (np.array([u.num_decode for u, _ in items])[who] * pair.decode.cap_rps)
        lat = _rows(pair.wait_sub, u_p) + pair.decode.sub_rows(u_d) + pair.base_sub[None, :]
        p95 = np.partition(lat, pair.rank, axis=1)[:, pair.rank]  # nearest rank (np.quantile costs 2,600x)
        for t in np.unique(who).tolist():
            at = who == t
            items[t][0].p95_s[rows[at]] = p95[at]


def unit_latencies(units: list[DisaggModel], rate_rps: float, n: int, where: np.ndarray) -> np.ndarray:
    """(len(units), n): row t the p95 of f // g copies of units[t] on f = 0..n-1 GPUs at rate_rps (inf where none fits
    and outside its mask where[t]), the missing p95 rows of all of them computed by prepare_units."""
    out = np.full((len(units), n), np.inf)
    if not units:
        return out
    d = np.arange(n)[None, :] // np.array([u.num_gpus for u in units])[:, None]
    fits = (d > 0) & where
    rho = rate_rps / np.maximum(d * np.array([u.max_rps for u in units])[:, None], 1e-300)
    rhos = [r[k] for r, k in zip(rho, fits)]
    prepare_units(units, rhos)
    for t, unit in enumerate(units):
        if rhos[t].size:
            out[t, fits[t]] = unit._p95_prepared(rhos[t])
    return out
