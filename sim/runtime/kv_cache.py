"""Paged KV cache of one engine: a pool of fixed-size blocks, admission with a watermark, per-step appends, and
(when the workload has block hashes) shared prompt-prefix blocks kept by sim.runtime.prefix_cache."""
from __future__ import annotations

from sim.common.errors import ConfigError
from sim.runtime.prefix_cache import PrefixCache


class KVCache:
    """Counts free blocks; sequences hold whole blocks (vLLM's block manager).

    Admission keeps `watermark_blocks` free (vLLM's watermark, 1% of the blocks by default, at least one)
    so that running sequences can still grow right after an admission; decode appends use any free block.
    With prefix caching (`prefix`, made on the first sequence that carries block hashes), free_blocks also counts
    `evictable_blocks`, cached blocks no sequence holds, and take() evicts them when the others run out.
    """

    __slots__ = ("block_size", "capacity_blocks", "watermark_blocks", "free_blocks", "peak_used_blocks",
                 "evictable_blocks", "prefix")

    def __init__(self, capacity_blocks: int, block_size: int, watermark: float = 0.01) -> None:
        if capacity_blocks <= 0:
            raise ConfigError(f"a replica engine needs at least one KV block, got {capacity_blocks}")
        if block_size <= 0:
            raise ConfigError(f"kv_block_size must be positive, got {block_size}")
        self.block_size = int(block_size)
        self.capacity_blocks = int(capacity_blocks)
        self.watermark_blocks = max(1, int(watermark * capacity_blocks))
        self.free_blocks = self.capacity_blocks
        self.peak_used_blocks = 0
        self.evictable_blocks = 0
        self.prefix = None

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def never_fits(self, blocks: int) -> bool:
        """True when even an empty cache could not admit this many blocks (vLLM's AllocStatus.NEVER)."""
        return blocks + self.watermark_blocks > self.capacity_blocks

    def can_admit(self, blocks: int) -> bool:
        return self.free_blocks - blocks >= self.watermark_blocks

    def take(self, blocks: int) -> None:
        self.free_blocks -= blocks
        used = self.capacity_blocks - self.free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
        if self.free_blocks < self.evictable_blocks:
            self.prefix.evict()

    def give(self, blocks: int) -> None:
        self.free_blocks += blocks

    def release(self, seq) -> None:
        """Free what a leaving sequence holds (its prefix units stay cached)."""
        if seq.cached_units is None:
            self.free_blocks += seq.blocks
        else:
            self.prefix.release(seq)

    def prefix_cache(self, unit_tokens: int):
        """This engine's prefix cache (made on first use: which workload an engine serves is known only then)."""
        if self.prefix is None:
            self.prefix = PrefixCache(self, unit_tokens)
        return self.prefix

    @property
    def used_blocks(self) -> int:
        return self.capacity_blocks - self.free_blocks
