"""The paged KV cache's block arithmetic against vLLM's block manager rules worked by hand: ceil-division into
blocks, the admission watermark (1% of the blocks, at least one), NEVER when even an empty cache cannot admit,
free/used/peak accounting of take/give/release, and bad sizes refused."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from sim.common.errors import ConfigError
from sim.runtime.kv_cache import KVCache

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("tokens,blocks", [(0, 0), (1, 1), (15, 1), (16, 1), (17, 2), (32, 2), (33, 3)])
def test_blocks_for_is_the_ceiling_of_tokens_over_the_block_size(tokens, blocks):
    got = KVCache(100, 16).blocks_for(tokens)
    assert got == blocks and isinstance(got, int)


@pytest.mark.parametrize("capacity,watermark_blocks", [(1, 1), (100, 1), (199, 1), (200, 2), (1000, 10),
                                                       (12345, 123)])
def test_watermark_is_one_percent_of_the_blocks_at_least_one(capacity, watermark_blocks):
    kv = KVCache(capacity, 16)
    assert kv.watermark_blocks == watermark_blocks
    assert kv.free_blocks == kv.capacity_blocks == capacity and isinstance(kv.capacity_blocks, int)
    assert kv.used_blocks == kv.peak_used_blocks == kv.evictable_blocks == 0 and kv.prefix is None
    assert KVCache(capacity, 16, watermark=0.1).watermark_blocks == max(1, capacity // 10)


def test_never_fits_and_can_admit_at_their_boundaries():
    """100 blocks, watermark 1: an empty cache admits 99 blocks and never 100; with 10 taken, 89 and not 90."""
    kv = KVCache(100, 16)
    assert not kv.never_fits(99) and kv.never_fits(100) and kv.never_fits(101)
    assert kv.can_admit(99) and not kv.can_admit(100)
    kv.take(10)
    assert kv.can_admit(89) and not kv.can_admit(90)
    assert not kv.never_fits(99)  # NEVER is about an empty cache, not the current fill
    big = KVCache(1000, 16)  # watermark 10
    assert not big.never_fits(990) and big.never_fits(991) and big.can_admit(990) and not big.can_admit(991)


def test_take_give_release_keep_free_used_and_peak():
    kv = KVCache(50, 16)
    kv.take(20)
    assert (kv.free_blocks, kv.used_blocks, kv.peak_used_blocks) == (30, 20, 20)
    kv.take(5)
    assert (kv.free_blocks, kv.peak_used_blocks) == (25, 25)
    kv.give(10)
    assert (kv.free_blocks, kv.used_blocks, kv.peak_used_blocks) == (35, 15, 25)  # the peak stays
    kv.release(SimpleNamespace(cached_units=None, blocks=15))
    assert (kv.free_blocks, kv.used_blocks, kv.peak_used_blocks) == (50, 0, 25)
    kv.take(50)  # every block, no prefix cache: nothing to evict, no error
    assert (kv.free_blocks, kv.peak_used_blocks) == (0, 50)


@pytest.mark.parametrize("capacity,block_size", [(0, 16), (-3, 16), (10, 0), (10, -16)])
def test_bad_sizes_are_refused(capacity, block_size):
    with pytest.raises(ConfigError, match=r"(at least one KV block, got -?\d+|kv_block_size must be positive, got)"):
        KVCache(capacity, block_size)


def test_one_block_and_one_token_blocks_are_valid():
    kv = KVCache(1, 1)
    assert kv.blocks_for(7) == 7 and kv.watermark_blocks == 1 and kv.never_fits(1) and not kv.never_fits(0)


def test_prefix_cache_is_made_once():
    kv = KVCache(64, 16)
    pc = kv.prefix_cache(16)
    assert pc is kv.prefix and kv.prefix_cache(16) is pc and pc.kv is kv
