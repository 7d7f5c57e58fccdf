"""A measured table as the cost model: iteration times a user profiled on their own engine, interpolated per
model / GPU / TP x PP (sim.cost_model: table, sim.cost_table: PATH), in place of the analytical model.

The table is a CSV with one row per measured iteration shape:

    model, gpu, tp, pp, batch_size, prefill_tokens, context_tokens, iteration_ms   (pp, weights, kv optional)

- a prefill row (prefill_tokens > 0, context_tokens 0): one iteration that prefills batch_size prompts of
  prefill_tokens tokens in total (vLLM V0's prefill-only step);
- a decode row (prefill_tokens 0): one iteration in which batch_size sequences each generate a token with
  context_tokens tokens of context each (the mean over the batch).

Prefill time is piecewise linear in the iteration's prompt tokens. Decode time is, per measured batch size, a
straight line in the context (the least-squares line through that batch size's points: the simulator's fast
mode needs a decode time affine in the context, sim.perf.batch.ReplicaCost.decode_affine), and piecewise
linear in the batch size between measured batch sizes. A mixed iteration (chunked prefill) is charged its
prefill part plus its decode part, which counts the fixed per-iteration time twice: a conservative bound.
Outside the measured prompt-token, batch-size and context ranges a run stops with one line naming the range,
unless sim.cost_table_extrapolate is true (the end segments are then extended, never below 1 microsecond).
Below the smallest measured context the decode line is always extended: a batch's mean context is not known
before the run, but every sequence's largest context (prompt + output) is, and is checked up front.
KV capacity comes from the analytical memory model (weights, reserve, gpu_memory_utilization).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from sim.common.errors import DataError, UserError
from sim.perf.batch import BatchShape

REQUIRED = ("model", "gpu", "tp", "batch_size", "prefill_tokens", "context_tokens", "iteration_ms")
OPTIONAL = {"pp": "1", "weights": "bf16", "kv": "bf16"}
MIN_TIME_S = 1e-6


class OutsideMeasuredRange(UserError):
    """An iteration shape the measured table does not cover, and extrapolation was not asked for."""


def _lerp(xs: np.ndarray, ys: np.ndarray, x: float) -> float:
    """Piecewise-linear through (xs, ys), xs sorted and distinct; outside, the end segments extended."""
    j = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    w = (x - xs[j]) / (xs[j + 1] - xs[j])
    return float(ys[j] + w * (ys[j + 1] - ys[j]))


@dataclass(frozen=True)
class MeasuredDeployment:
    """One deployment's measurements: prefill (tokens -> s) and decode lines per batch size."""

    where: str  # "FILE: MODEL on GPU TPx PPy (weights/kv)" for messages
    prefill_tokens: np.ndarray
    prefill_s: np.ndarray
    batch_sizes: np.ndarray
    decode_base_s: np.ndarray  # per batch size: time at zero context
    decode_s_per_ctx: np.ndarray  # per batch size: seconds per token of context per sequence
    context_min: float
    context_max: float
    decode_fit_max_error_pct: float  # worst relative residual of the per-batch-size lines at the table's points


def _deployment(where: str, prefill: list, decode: list) -> MeasuredDeployment:
    if len({p for p, _ in prefill}) < 2:
        raise DataError(f"{where}: needs prefill rows at two or more prefill_tokens values, has {len(prefill)}")
    by_batch: dict[int, list] = {}
    for b, c, t in decode:
        by_batch.setdefault(b, []).append((c, t))
    if len(by_batch) < 2:
        raise DataError(f"{where}: needs decode rows at two or more batch sizes, has {sorted(by_batch)}")
    prefill.sort()
    ptok = np.array([p for p, _ in prefill], dtype=np.float64)
    if np.any(np.diff(ptok) == 0):
        raise DataError(f"{where}: two prefill rows with the same prefill_tokens; keep one per value")
    sizes = np.array(sorted(by_batch), dtype=np.float64)
    base, slope, worst = [], [], 0.0
    lo, hi = -np.inf, np.inf
    for b in sorted(by_batch):
        pts = sorted(by_batch[b])
        ctx = np.array([c for c, _ in pts], dtype=np.float64)
        ts = np.array([t for _, t in pts], dtype=np.float64)
        if np.any(np.diff(ctx) == 0):
            raise DataError(f"{where}: two decode rows with batch_size {b} and the same context_tokens; keep one")
        if len(pts) == 1:
            a, s = ts[0], 0.0
        else:
            s, a = np.polyfit(ctx, ts, 1)
        worst = max(worst, float(np.max(np.abs(a + s * ctx - ts) / ts)) * 100)
        base.append(a)
        slope.append(s)
        # The context range is the one every batch size covers, so interpolating between two is covered too.
        lo, hi = max(lo, ctx[0]), min(hi, ctx[-1])
    if lo > hi:
        raise DataError(f"{where}: the decode rows' context ranges of different batch sizes do not overlap")
    return MeasuredDeployment(where, ptok, np.array([t for _, t in prefill]), sizes, np.array(base),
                              np.array(slope), float(lo), float(hi), worst)


def load_table(path: str) -> dict[tuple, MeasuredDeployment]:
    """The CSV at path, by (model, gpu, tp, pp, weights, kv); rows checked with file:line errors."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"sim.cost_table {path!r}: no such file")
    stat = p.stat()
    return _read_table(str(path), stat.st_mtime_ns, stat.st_size)  # re-read when the file changes


@lru_cache(maxsize=8)
def _read_table(path: str, _mtime_ns: int, _size: int) -> dict[tuple, MeasuredDeployment]:
    p = Path(path)
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; a measured table needs {list(REQUIRED)} "
                            f"(optional {list(OPTIONAL)})")
        groups: dict[tuple, tuple[list, list]] = {}
        for line, row in enumerate(reader, 2):
            def num(key, kind=int, minimum=0):
                raw = (row.get(key) or "").strip() or OPTIONAL.get(key, "")
                try:
                    v = kind(float(raw)) if kind is int else float(raw)
                    if kind is int and v != float(raw):
                        raise ValueError
                except ValueError:
                    raise DataError(f"{path}:{line}: {key} must be a{'n integer' if kind is int else ' number'}, "
                                    f"got {raw!r}") from None
                if not v >= minimum:
                    raise DataError(f"{path}:{line}: {key} must be >= {minimum}, got {raw!r}")
                return v
            tp, pp = num("tp", minimum=1), num("pp", minimum=1)
            batch, ptok, ctx = num("batch_size", minimum=1), num("prefill_tokens"), num("context_tokens", float)
            t_s = num("iteration_ms", float, minimum=1e-9) / 1e3
            key = (row["model"].strip(), row["gpu"].strip(), tp, pp,
                   (row.get("weights") or "").strip() or OPTIONAL["weights"], (row.get("kv") or "").strip() or OPTIONAL["kv"])
            prefill, decode = groups.setdefault(key, ([], []))
            if ptok > 0:
                if ctx != 0:
                    raise DataError(f"{path}:{line}: a row is a prefill iteration (prefill_tokens > 0, "
                                    "context_tokens 0) or a decode iteration (prefill_tokens 0, context_tokens > 0)")
                prefill.append((ptok, t_s))
            else:
                if ctx <= 0:
                    raise DataError(f"{path}:{line}: a decode row (prefill_tokens 0) needs context_tokens > 0")
                decode.append((batch, ctx, t_s))
    if not groups:
        raise DataError(f"{path}: no rows")
    return {k: _deployment(f"{path}: {k[0]} on {k[1]} TP{k[2]} PP{k[3]} ({k[4]}/{k[5]})", *v)
            for k, v in groups.items()}


@dataclass
class MeasuredTableCost:
    """ReplicaCost from a measured table (sim.perf.batch.ReplicaCost); memory from the analytical model."""

    table: MeasuredDeployment
    tp: int
    pp: int
    kv_block_size: int
    kv_capacity_blocks: int
    extrapolate: bool = False
    _affine: dict = field(default_factory=dict, repr=False)

    def _outside(self, what: str, lo: float, hi: float, value: float) -> None:
        if not self.extrapolate:
            raise OutsideMeasuredRange(
                f"{self.table.where} was measured for {what} {lo:g}-{hi:g} but the run needs {value:g}; measure "
                "that range or set sim.cost_table_extrapolate: true")

    def prefill_s(self, tokens: int) -> float:
        xs = self.table.prefill_tokens
        if not xs[0] <= tokens <= xs[-1]:
            self._outside("prefill_tokens", xs[0], xs[-1], tokens)
        return max(_lerp(xs, self.table.prefill_s, tokens), MIN_TIME_S)

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        ab = self._affine.get(decode_seqs)
        if ab is None:
            t = self.table
            if not t.batch_sizes[0] <= decode_seqs <= t.batch_sizes[-1]:
                self._outside("decode batch_size", t.batch_sizes[0], t.batch_sizes[-1], decode_seqs)
            a = _lerp(t.batch_sizes, t.decode_base_s, decode_seqs)
            s = _lerp(t.batch_sizes, t.decode_s_per_ctx, decode_seqs)
            # time = a + s * (context per sequence) = a + (s / n) * (context tokens of the whole batch)
            ab = self._affine[decode_seqs] = (max(a, MIN_TIME_S), s / decode_seqs)
        return ab

    def iteration_time_s(self, batch: BatchShape) -> float:
        t = 0.0
        if batch.prefill_tokens:
            t += self.prefill_s(batch.prefill_tokens)
        if batch.decode_seqs:
            a, b = self.decode_affine(batch.decode_seqs)
            t += a + b * batch.decode_ctx_tokens
        return t

    def stage_time_s(self, batch: BatchShape) -> float:
        # The table times whole iterations; stages are taken as equal shares (the analytical model splits them).
        return self.iteration_time_s(batch) / self.pp

    def check_context(self, max_context_tokens: int) -> None:
        """Every sequence's largest context must be within the measured decode context range."""
        if max_context_tokens > self.table.context_max:
            self._outside("context_tokens", self.table.context_min, self.table.context_max, max_context_tokens)


class TableCostFactory:
    """cost_factory for sim.simulator.simulate: the table's deployment for the tier's model on the replica."""

    def __init__(self, path: str, extrapolate: bool, gpu_memory_utilization: float, kv_block_size: int) -> None:
        self.path = str(path)
        self.table = load_table(self.path)
        self.extrapolate = bool(extrapolate)
        self.gpu_memory_utilization = gpu_memory_utilization
        self.kv_block_size = kv_block_size
        self.built: list[MeasuredTableCost] = []
        self.max_context: int | None = None  # set by check_workload

    def __call__(self, tier, replica, cluster, engine="vllm") -> MeasuredTableCost:
        from sim.perf.cost_model import replica_cost_for

        key = (tier.model.name, cluster.gpu.name, replica.tp, replica.pp, tier.weights, tier.kv)
        dep = self.table.get(key)
        if dep is None:
            have = sorted(f"{m} on {g} TP{t} PP{p} ({w}/{k})" for m, g, t, p, w, k in self.table)
            raise DataError(f"{self.path}: no rows for {key[0]} on {key[1]} TP{key[2]} PP{key[3]} ({key[4]}/{key[5]}); "
                            f"the table has {have}")
        memory = replica_cost_for(tier, replica, cluster, engine=engine,
                                  gpu_memory_utilization=self.gpu_memory_utilization, kv_block_size=self.kv_block_size)
        cost = MeasuredTableCost(dep, replica.tp, replica.pp, self.kv_block_size, memory.kv_capacity_blocks,
                                 self.extrapolate)
        self.built.append(cost)
        if self.max_context is not None:  # a replica added during the run
            cost.check_context(self.max_context)
        return cost

    def check_workload(self, workload) -> None:
        """Called by simulate once the replicas are built: the longest context any request reaches (prompt +
        output, of any tier) must be measured, so that fast and reference mode stop, or not, alike."""
        self.max_context = int((workload.input_tokens[:, None] + workload.output_tokens).max(initial=0))
        for cost in self.built:
            cost.check_context(self.max_context)


def table_cost_factory(cfg) -> TableCostFactory:
    """The factory for a SimConfig with cost_model 'table'."""
    return TableCostFactory(cfg.cost_table, cfg.cost_table_extrapolate, cfg.gpu_memory_utilization,
                            cfg.kv_block_size)
