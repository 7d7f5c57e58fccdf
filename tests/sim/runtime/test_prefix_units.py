"""Prefix-cache units and routing, against brute force: a request's unit keys are the chained ids at every
lcm(hash block, KV block) boundary its prompt fully covers; hit rates are cached / prompt tokens over the served
visits (numpy on the records); the prefix-aware balancer picks the replica whose routed index holds the longest
run of leading units (more than half the prompt), else least work, and its index is an LRU of bounded size."""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sim.runtime.kv_cache import KVCache
from sim.runtime.prefix_cache import (BALANCE_ABS, CACHE_THRESHOLD, RequestUnits, pick_prefix_aware,
                                      prefix_hit_rates, request_units)
from sim.workload.prefix import PrefixHashes

pytestmark = pytest.mark.unit


def _brute_units(chain, tokens, hash_tokens, kv_block):
    unit = hash_tokens * kv_block // math.gcd(hash_tokens, kv_block)
    keys = []
    for end in range(unit, tokens + 1, unit):  # every unit boundary the prompt covers with its hash blocks
        if end // hash_tokens <= len(chain):
            keys.append(chain[end // hash_tokens - 1])
    return unit, tuple(keys)


@pytest.mark.parametrize("hash_tokens,kv_block", [(16, 16), (8, 16), (32, 16), (12, 16), (512, 16)])
def test_request_units_are_the_chained_ids_at_each_full_unit(hash_tokens, kv_block):
    rng = np.random.default_rng(hash_tokens)
    n = 12
    hashes = tuple(tuple(int(x) for x in rng.integers(0, 3, int(rng.integers(0, 9)))) for _ in range(n))
    tokens = rng.integers(1, 10 * max(hash_tokens, kv_block), n)
    prefix = PrefixHashes(hash_tokens, hashes)
    w = SimpleNamespace(prefix=prefix, input_tokens=np.asarray(tokens, dtype=np.int64))
    units = request_units(w, SimpleNamespace(kv_block_size=kv_block, prefix_caching=True))
    for i in range(n):
        unit, keys = _brute_units(prefix.chained[i], int(tokens[i]), hash_tokens, kv_block)
        assert units.unit_tokens == unit and units.keys[i] == keys, i
    assert any(units.keys[i] for i in range(n))
    seq = SimpleNamespace()
    units.attach(seq, 3)
    assert seq.unit_keys == units.keys[3] and seq.unit_tokens == units.unit_tokens


def test_request_units_none_without_hashes_or_when_caching_is_off():
    w = SimpleNamespace(prefix=PrefixHashes(16, ((1, 2),)), input_tokens=np.array([40]))
    assert request_units(w, SimpleNamespace(kv_block_size=16, prefix_caching=False)) is None
    assert request_units(SimpleNamespace(prefix=None, input_tokens=np.array([40])),
                         SimpleNamespace(kv_block_size=16, prefix_caching=True)) is None
    assert request_units(w, SimpleNamespace(kv_block_size=16)).keys == [(0, 1)]  # on unless turned off


def test_hit_rates_are_cached_over_prompt_tokens_of_served_visits():
    df = pd.DataFrame({"input_tokens": [100, 200, 300, 400],
                       "cached_tokens_t0": [50.0, 0.0, np.nan, 400.0], "cached_tokens_t1": [np.nan] * 4})
    rates = prefix_hit_rates(df, 2)
    assert rates[0] == pytest.approx(450.0 / 700.0) and math.isnan(rates[1])
    assert prefix_hit_rates(pd.DataFrame({"input_tokens": [1]}), 2) is None
    df0 = pd.DataFrame({"input_tokens": [0, 0], "cached_tokens_t0": [0.0, 0.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no prompt tokens served: undefined, NaN without a 0/0 warning
        assert math.isnan(prefix_hit_rates(df0, 1)[0])
    assert prefix_hit_rates(pd.DataFrame({"input_tokens": [1], "cached_tokens_t0": [0.0]}), 1) == [0.0]


class FakeReplica:
    def __init__(self, name, work=1.0, rate=1.0, outstanding=0, capacity_blocks=64, engines=1):
        self.name, self.outstanding_work, self.tokens_per_s, self.outstanding = name, work, rate, outstanding
        self.engines = [SimpleNamespace(kv=KVCache(capacity_blocks, 16)) for _ in range(engines)]
        self.routed_units = None


def _seq(keys, prompt, unit_tokens=16):
    return SimpleNamespace(unit_keys=tuple(keys), prompt_tokens=prompt, unit_tokens=unit_tokens)


def _tier(routed_b, routed_c):
    a, b, c = FakeReplica("a", work=1.0), FakeReplica("b", work=5.0), FakeReplica("c", work=3.0)
    b.routed_units, c.routed_units = OrderedDict.fromkeys(routed_b), OrderedDict.fromkeys(routed_c)
    b.routed_capacity_units = c.routed_capacity_units = 100
    return a, b, c


def test_prefix_aware_routes_to_the_longest_routed_prefix_above_half_the_prompt():
    """Each pick also records the prompt's units in the chosen replica's index (a fresh tier per question)."""
    a, b, c = _tier((), ())
    assert pick_prefix_aware([a, b, c], _seq((1, 2, 3, 4), 64)) is a  # nothing routed yet: least work
    assert list(a.routed_units) == [1, 2, 3, 4]
    a, b, c = _tier((1, 2, 3), (1, 2))
    assert pick_prefix_aware([a, b, c], _seq((1, 2, 3, 4), 64)) is b  # 3 units = 48 of 64 tokens > half
    # 2 units = 32 tokens of a 64-token prompt is not more than half: least work (a) instead.
    a, b, c = _tier((1, 2), (1, 2))
    assert 32 <= CACHE_THRESHOLD * 64
    assert pick_prefix_aware([a, b, c], _seq((1, 2, 9, 9), 64)) is a
    # 2 units of a 63-token prompt are more than half; b and c both hold 2: the less loaded (c, 3 s < 5 s).
    a, b, c = _tier((1, 2), (1, 2))
    assert pick_prefix_aware([a, b, c], _seq((1, 2, 7), 63)) is c
    a, b, c = _tier((1, 2), (1, 2, 7))  # longer match wins over lower load
    assert pick_prefix_aware([a, c, b], _seq((1, 2, 7), 63)) is c
    a, b, c = _tier((1, 2, 3), ())
    assert pick_prefix_aware([a, b, c], _seq((), 64)) is a and a.routed_units is None  # no keys: least work


def test_prefix_aware_balances_an_imbalanced_tier_instead():
    def pick(b_outstanding, a_outstanding=0):
        a = FakeReplica("a", work=1.0, outstanding=a_outstanding)
        b = FakeReplica("b", work=9.0, outstanding=b_outstanding)
        b.routed_units, b.routed_capacity_units = OrderedDict.fromkeys((1, 2, 3, 4)), 100
        return pick_prefix_aware([a, b], _seq((1, 2, 3, 4), 64)).name

    assert pick(BALANCE_ABS + 1) == "a"  # visits differ by more than BALANCE_ABS (and by a factor): balance
    assert pick(BALANCE_ABS) == "b"  # a difference of exactly BALANCE_ABS is not imbalanced: the cache wins
    assert pick(BALANCE_ABS + 1, 1) == "b"  # a difference of BALANCE_ABS, not more


def test_routed_index_is_an_lru_bounded_by_the_replicas_kv():
    r = FakeReplica("a", capacity_blocks=4, engines=2)  # 8 blocks x 16 tokens = 128 tokens = 4 units of 32
    pick_prefix_aware([r], _seq((1, 2, 3), 96, unit_tokens=32))
    assert r.routed_capacity_units == 4 and list(r.routed_units) == [1, 2, 3]
    pick_prefix_aware([r], _seq((1, 5, 6), 96, unit_tokens=32))
    assert list(r.routed_units) == [3, 1, 5, 6]  # 1 used again (most recent); 2 was least recent: evicted
    tiny = FakeReplica("t", capacity_blocks=1)  # less than one unit: still remembers one
    pick_prefix_aware([tiny], _seq((7, 8), 64, unit_tokens=32))
    assert tiny.routed_capacity_units == 1 and list(tiny.routed_units) == [8]


def test_request_units_class_keeps_what_it_is_given():
    u = RequestUnits(32, [(1,), ()])
    seq = SimpleNamespace()
    u.attach(seq, 1)
    assert seq.unit_keys == () and seq.unit_tokens == 32
