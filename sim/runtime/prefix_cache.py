"""Automatic prefix caching of an engine's KV blocks (vLLM/SGLang style): shared prompt-prefix units, LRU eviction.

The cache works in units of a workload's prompt prefix: unit_tokens = lcm(trace hash block, KV block) tokens,
unit_blocks = unit_tokens / kv_block_size KV blocks (Mooncake's 512-token hashes on 16-token blocks: 32 blocks a
unit). A unit's key is the prefix-chained id of its last hash block (sim.workload.prefix), so a key names the
whole prompt prefix up to the unit's end, as vLLM's block hash includes its parent's.

Accounting, with KVCache.free_blocks counting the blocks an allocation may use (as vLLM's free block count):
- a unit held by running sequences (refs > 0) is allocated once, whatever the number of holders;
- a unit no sequence holds stays cached (evictable) and counts as free; KVCache.take evicts least recently used
  units while the blocks not holding anything would go negative (vLLM V0's evictor: hashless free blocks first,
  then the LRU cached block);
- a sequence holds `blocks` KV blocks in all (decode appends included); `cached_units` of them are shared units,
  the rest are private and go back to the free pool when it leaves.
Admission matches the longest run of leading units in the cache, at most (length - 1) // unit_tokens so that one
token is always computed (vLLM recomputes the last token of a fully cached prompt); the match pins those units,
and the request's own full prompt units become cache entries at once (vLLM V1 caches blocks when it schedules
their computation), so a later request can hit them while the first is still running.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from sim.common.errors import ConfigError


class PrefixCache:
    """One engine's prefix index over its KVCache."""

    __slots__ = ("kv", "unit_tokens", "unit_blocks", "refs", "lru", "evicted_units")

    def __init__(self, kv, unit_tokens: int) -> None:
        if unit_tokens % kv.block_size:
            raise ConfigError(f"a prefix-cache unit of {unit_tokens} tokens is not a whole number of the engine's "
                              f"{kv.block_size}-token KV blocks; set sim.kv_block_size to the cost model's block size")
        self.kv = kv
        self.unit_tokens = unit_tokens
        self.unit_blocks = unit_tokens // kv.block_size
        self.refs: dict = {}  # key -> number of sequences holding the unit (0: cached, evictable)
        self.lru: OrderedDict = OrderedDict()  # the units with refs 0, least recently used first
        self.evicted_units = 0

    def lookup(self, keys: tuple, length: int) -> tuple[int, int]:
        """(hits, blocks) for admitting a sequence of `length` tokens: the leading units found in the cache, and
        the free blocks the admission uses (its new blocks, plus the cached units it pins)."""
        cap = min(len(keys), (length - 1) // self.unit_tokens)
        refs = self.refs
        hits = pinned = 0
        while hits < cap:
            r = refs.get(keys[hits])
            if r is None:
                break
            if r == 0:
                pinned += 1
            hits += 1
        return hits, self.kv.blocks_for(length) - (hits - pinned) * self.unit_blocks

    def admit(self, seq, hits: int, blocks: int) -> None:
        """Allocate for seq what lookup() found: pin the hit units, take `blocks`, register its other full units."""
        kv, refs, lru, ub = self.kv, self.refs, self.lru, self.unit_blocks
        keys = seq.unit_keys
        held = []
        for k in keys[:hits]:
            r = refs[k]
            if r == 0:
                del lru[k]  # pinned before take() below can evict it
                kv.evictable_blocks -= ub
            refs[k] = r + 1
            held.append(k)
        kv.take(blocks)
        for k in keys[hits:]:
            # A unit already cached here beyond the match (a fully cached prompt's last unit, recomputed) stays a
            # private copy of this sequence; vLLM keeps such duplicates out of its hash table too.
            if k not in refs:
                refs[k] = 1
                held.append(k)
        seq.cached_units = held

    def release(self, seq) -> None:
        """seq leaves the engine (finished, preempted, moved): its private blocks are freed and the units it held
        lose a holder; units nobody holds stay cached, the prompt's last unit first in line for eviction (vLLM
        frees a request's blocks tail first, so a shared prefix outlives the suffixes that extend it)."""
        kv, refs, lru, ub = self.kv, self.refs, self.lru, self.unit_blocks
        held = seq.cached_units
        freed = seq.blocks - len(held) * ub
        for k in reversed(held):
            r = refs[k] - 1
            refs[k] = r
            if r == 0:
                lru[k] = None
                kv.evictable_blocks += ub
                freed += ub
        seq.cached_units = None
        kv.give(freed)

    def evict(self) -> None:
        """Drop least recently used units until the blocks holding nothing are no longer negative."""
        kv, refs, lru, ub = self.kv, self.refs, self.lru, self.unit_blocks
        while kv.free_blocks < kv.evictable_blocks:
            k, _ = lru.popitem(last=False)
            del refs[k]
            kv.evictable_blocks -= ub
            self.evicted_units += 1

    def check(self, seqs) -> None:
        """Raise AssertionError unless the accounting holds for the sequences holding KV here (tests; exact
        block counts, i.e. reference mode or after DecodeBatch.materialize)."""
        kv, ub = self.kv, self.unit_blocks
        held: dict = {}
        private = 0
        for s in seqs:
            for k in s.cached_units or ():
                held[k] = held.get(k, 0) + 1
            private += s.blocks - len(s.cached_units or ()) * ub
        live = {k: r for k, r in self.refs.items() if r > 0}
        assert held == live, "unit holders disagree with the reference counts"
        assert set(self.lru) == {k for k, r in self.refs.items() if r == 0}
        assert kv.evictable_blocks == len(self.lru) * ub
        assert 0 <= kv.free_blocks - kv.evictable_blocks, "KV over capacity"
        assert kv.capacity_blocks - kv.free_blocks == private + len(live) * ub, "allocated blocks disagree"


class RequestUnits:
    """Per request, the keys of its prompt's full prefix-cache units; attach() gives them to a tier visit."""

    __slots__ = ("unit_tokens", "keys")

    def __init__(self, unit_tokens: int, keys: list) -> None:
        self.unit_tokens = unit_tokens
        self.keys = keys

    def attach(self, seq, request: int) -> None:
        seq.unit_keys = self.keys[request]
        seq.unit_tokens = self.unit_tokens


def request_units(workload, cfg) -> RequestUnits | None:
    """The run's prefix-cache units, or None (the workload has no block hash ids, or sim.prefix_caching is off):
    then no sequence carries keys and the engines run exactly as without prefix caching."""
    prefix = getattr(workload, "prefix", None)
    if prefix is None or not getattr(cfg, "prefix_caching", True):
        return None
    h, b = prefix.block_tokens, cfg.kv_block_size
    unit = h * b // math.gcd(h, b)
    step = unit // h  # hash blocks per unit
    keys = []
    for chain, tokens in zip(prefix.chained, workload.input_tokens.tolist()):
        n = min(tokens // unit, len(chain) // step)
        keys.append(tuple(chain[(j + 1) * step - 1] for j in range(n)))
    return RequestUnits(unit, keys)


def prefix_hit_rates(requests, num_tiers: int) -> list[float] | None:
    """Per tier, cached prompt tokens / prompt (input) tokens over the visits the tier served (records'
    cached_tokens_t, NaN where not served); None when the run had no prefix caching."""
    if "cached_tokens_t0" not in requests:
        return None
    inp = requests["input_tokens"].to_numpy(dtype=np.float64)
    rates = []
    for t in range(num_tiers):
        cached = requests[f"cached_tokens_t{t}"].to_numpy()
        served = np.isfinite(cached)
        total = inp[served].sum()
        rates.append(float(cached[served].sum() / total) if total > 0 else float("nan"))
    return rates


# The cache-aware policy of SGLang's router (sgl-router, cache_aware; its defaults): route to the replica holding
# the longest prefix of the prompt when it covers more than CACHE_THRESHOLD of it, unless the tier is imbalanced
# (outstanding visits differ by more than BALANCE_ABS and by a factor above BALANCE_REL), then balance the load.
CACHE_THRESHOLD = 0.5
BALANCE_ABS = 32
BALANCE_REL = 1.0001


def pick_prefix_aware(replicas: list, seq):
    """load_balancer prefix_aware: the replica expected to hold the longest cached prefix of seq's prompt, else
    least_work. Like SGLang's router, it consults its own approximate index of the prefixes it sent to each replica
    (an LRU bounded by the replica's KV capacity), not the engines' caches, which a router cannot see; this also
    keeps routing independent of how far an engine has advanced (fast and reference mode route alike)."""
    least = min(replicas, key=lambda r: r.outstanding_work / r.tokens_per_s)  # the first minimum, as least_work
    keys = seq.unit_keys
    if not keys:
        return least
    loads = [r.outstanding for r in replicas]
    lo, hi = min(loads), max(loads)
    chosen = least
    if not (hi - lo > BALANCE_ABS and hi > BALANCE_REL * lo):
        best, best_units = None, 0
        for r in replicas:
            index = r.routed_units
            m = 0
            if index is not None:
                while m < len(keys) and keys[m] in index:
                    m += 1
            if m > best_units or (m == best_units and m > 0 and
                                  r.outstanding_work / r.tokens_per_s < best.outstanding_work / best.tokens_per_s):
                best, best_units = r, m
        if best is not None and best_units * seq.unit_tokens > CACHE_THRESHOLD * seq.prompt_tokens:
            chosen = best
    _remember(chosen, keys, seq.unit_tokens)
    return chosen


def _remember(replica, keys: tuple, unit_tokens: int) -> None:
    index = replica.routed_units
    if index is None:
        eng = replica.engines[0]
        blocks = sum(e.kv.capacity_blocks for e in replica.engines)
        index = replica.routed_units = OrderedDict()
        replica.routed_capacity_units = max(1, blocks * eng.kv.block_size // unit_tokens)
    for k in keys:
        index[k] = None
        index.move_to_end(k)
    while len(index) > replica.routed_capacity_units:
        index.popitem(last=False)
