"""Process-level planning cache: a tier's replica models and latency tables, shared by every SearchContext of a process
(across planners, seeds and quality levels), keyed on the content of every input they read; LRU-bounded in bytes.

A SearchContext lives for one plan() call. In one sweep job its seven planners plan the same sample, and across the
quality levels of a workload the same seed plans the same sample again: 3,129 table builds of which 956 were
distinct on slo_throughput's conversation sweep (9 of its 20 s of planning rebuilt a table some earlier plan had
built). Here an entry holds one tier load's replica models (planners.strategy.replica_models and, with
disaggregation, disaggregated_models) and its latency tables by rate, with the seconds each took to build.

Key. The context part (context_key) covers every input the models and tables read: the cascade, cluster, engine,
gpu_memory_utilization, max_num_seqs, slo_attainment and context policy of the problem, its cost function (a custom
cost_fn is keyed by identity: the entry keeps it alive, so two different functions never share), the sample's
arrival times, prompt and answer lengths, the whole workload's arrival ca2, the rate profile (windows, local rate
factors), the problem's rate, each tier's parallel configurations, the deployment mode and the disaggregation gate.
It is hashed once per context. The load part is the tier, the exact set of sampled requests reaching it (the mask's
bytes, whose hash Python keeps on the bytes object) and, for a table, the load's rate.

Honest timing. A plan that takes an entry another plan built is charged the seconds that build took (the models'
once, each table's once per context) on a process counter (`charged_s()`), which `timed()` reads around a plan:
experiments.scenario.make_plan adds it to plan_s (solver_stats["reused_s"]), so a plan does not look faster than it
would cold (measured in docs/performance.md). Memos of other kinds (RouteLLM's features and fits) charge theirs
the same way through `remember()`. Not
charged: p95 rows of a shared replica model that another plan's table already filled (ReplicaModel fills rows
lazily), when this plan builds a new table (a new rate) on those models; a fraction of a table's build at most.

Memory. Entries are evicted least recently used first once their arrays (counted by array_bytes) exceed
max_bytes: CASCADESIM_PLAN_CACHE_MB (default 512 MB per process; 0 turns the cache and the memos registered with it
off). slo_throughput's conversation sweep (12 jobs of 7 planners, 2,000 sampled requests) made 422 entries holding
251 MB of arrays (about 0.6 MB each) and its process peaked 200 MB above main's: the default keeps a whole sweep run
in one process. Two joblib workers hold a cache each. planners.routellm keeps its own small memos (router features
and fits), charged the same way and emptied by clear().
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass

import numpy as np

from sim.common.errors import ConfigError

CACHE_MB_ENV = "CASCADESIM_PLAN_CACHE_MB"
DEFAULT_MAX_MB = 512.0


@dataclass
class LoadEntry:
    """One tier load's replica models and its latency tables by rate_rps, with their build seconds."""

    models: list
    models_build_s: float
    tables: dict = field(default_factory=dict)  # rate_rps -> (TierTable, build_s)
    nbytes: int = 0


class PlanningCache:
    """An LRU map from load keys to LoadEntry, bounded by the bytes of the arrays its entries hold."""

    def __init__(self, max_bytes: float | None = None):
        self._max_bytes = None if max_bytes is None else float(max_bytes)
        self._entries: OrderedDict[tuple, LoadEntry] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.charged_s = 0.0  # build seconds charged to plans that reused entries (monotonic)

    @property
    def max_bytes(self) -> float:
        """The bound; None at construction: CASCADESIM_PLAN_CACHE_MB, read on first use (so that a bad value is a
        user error of the command that plans, not an import error)."""
        if self._max_bytes is None:
            self._max_bytes = _max_bytes_from_env()
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: float) -> None:
        self._max_bytes = float(value)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> LoadEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: LoadEntry) -> None:
        if not self.enabled:
            return
        entry.nbytes = array_bytes(entry.models)
        self._entries[key] = entry
        self.nbytes += entry.nbytes
        self._evict()

    def add_table(self, key: tuple, entry: LoadEntry, rate_rps: float, table, build_s: float) -> None:
        entry.tables[rate_rps] = (table, build_s)
        grown = sum(a.nbytes for a in (table.latency_s, table.c1, table.d1, table.c2, table.d2))  # models: the entry's
        entry.nbytes += grown
        if self._entries.get(key) is entry:
            self.nbytes += grown
            self._evict()

    def charge(self, seconds: float) -> None:
        self.charged_s += seconds

    def _evict(self) -> None:
        while self.nbytes > self.max_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
            self.evictions += 1

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def stats(self) -> dict:
        return {"entries": len(self._entries), "mb": self.nbytes / 1e6, "max_mb": self.max_bytes / 1e6,
                "hits": self.hits, "misses": self.misses, "evictions": self.evictions, "charged_s": self.charged_s}


def _max_bytes_from_env() -> float:
    raw = os.environ.get(CACHE_MB_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_MB * 1e6
    try:
        mb = float(raw)
    except ValueError:
        raise ConfigError(f"{CACHE_MB_ENV} = {raw!r} must be a number of megabytes (0 turns the cache off)") from None
    if not mb >= 0:
        raise ConfigError(f"{CACHE_MB_ENV} = {raw!r} must be >= 0 megabytes (0 turns the cache off)")
    return mb * 1e6


CACHE = PlanningCache()


_OTHER_CACHES: list = []  # clear() functions of other per-process planning memos (planners.routellm's features)


def register_clear(clear_fn) -> None:
    """Have clear() also empty another planning memo whose reuses are charged through CACHE.charge."""
    _OTHER_CACHES.append(clear_fn)


def clear() -> None:
    """Empty the process cache and the memos registered with it (timings of cold plans call this first; the charge
    counter is kept)."""
    CACHE.clear()
    for clear_fn in _OTHER_CACHES:
        clear_fn()


def charged_s() -> float:
    """Seconds of builds charged so far in this process to plans that reused another plan's entries."""
    return CACHE.charged_s


def timed(plan_fn):
    """(plan_fn(), its wall seconds, the build seconds charged to it for reused entries): a plan's cold time is
    the sum of the two (experiments.scenario.make_plan, online re-plans)."""
    t0, charged0 = time.perf_counter(), CACHE.charged_s
    out = plan_fn()
    return out, time.perf_counter() - t0, CACHE.charged_s - charged0


def remember(memo: OrderedDict, key: tuple, build, max_entries: int):
    """A memo of another planning kind (register_clear it): (build(), 0.0), or (the value memo keeps for key, the
    seconds its build took) with those seconds charged as the cache's reuses are. Nothing is kept with the cache
    off; past max_entries the least recently used go first. memo maps key -> (value, build seconds)."""
    if key in memo:
        memo.move_to_end(key)
        value, build_s = memo[key]
        CACHE.charge(build_s)
        return value, build_s
    t0 = time.perf_counter()
    value = build()
    if CACHE.enabled:
        memo[key] = (value, time.perf_counter() - t0)
        while len(memo) > max_entries:
            memo.popitem(last=False)
    return value, 0.0


def array_bytes(obj) -> int:
    """Bytes of the numpy arrays reachable through obj's dataclass fields, lists, tuples and dicts, each array once
    (views count their base once too). A loop over a stack, numbers and strings passed over first: an entry of the
    disaggregation search holds thousands of small objects."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, _LEAVES) or id(o) in seen:
            continue
        if isinstance(o, np.ndarray):
            base = o if o.base is None or not isinstance(o.base, np.ndarray) else o.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            continue
        if isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif is_dataclass(o) and not isinstance(o, type):
            stack.extend(vars(o).values() if hasattr(o, "__dict__") else (getattr(o, f.name) for f in fields(o)))
    return total


_LEAVES = (int, float, complex, str, bytes, bool, type(None), np.generic)


def _hash_array(h, a) -> None:
    a = np.ascontiguousarray(a)
    h.update(repr((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())


def context_key(problem, sample, ca2: float, profile, window, local_factor, configs, disaggregation: str,
                table_gate: dict) -> tuple:
    """The context part of every key: a digest of the content inputs, and the cost function itself (None: the
    project's cost model) so that a custom one is shared only with itself."""
    h = hashlib.sha256()
    for a in (sample.arrival_s, sample.input_tokens, sample.output_tokens, profile.window_factor, profile.bandwidth_s,
              window, local_factor):
        _hash_array(h, a)
    h.update(repr((
        problem.cascade, problem.cluster, problem.engine, float(problem.gpu_memory_utilization),
        int(problem.max_num_seqs), float(problem.slo_attainment), problem.context_policy,
        float(ca2).hex(), float(profile.window_s).hex(), float(problem.rate_rps).hex(),
        tuple(tuple(tuple(c) for c in cs) for cs in configs), disaggregation,
        tuple(sorted((k, float(v).hex()) for k, v in table_gate.items())),
    )).encode())
    return (h.hexdigest(), problem.cost_fn)
