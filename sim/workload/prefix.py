"""Per-request KV block hash ids of a trace (for prefix caching): parsing, prefix-chained ids, and the reuse share.

A trace's hash ids name its prompts' blocks of `block_tokens` tokens (Mooncake's traces: 512). Two requests whose
lists start with the same ids share that prompt prefix. Block identity is made prefix-chained here, as vLLM
hashes a block together with its parent's hash: block j of a request is the same as block j of another only if
blocks 0..j of both carry the same ids. Chained ids are dense integers (0, 1, 2, ... in order of first
appearance), so a trace whose ids are already prefix-unique (Mooncake's) keeps exactly its sharing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from sim.common.errors import ConfigError, DataError

_SEPARATORS = re.compile(r"[,;\s]+")


def parse_hash_ids(col: pd.Series, input_tokens: np.ndarray, block_tokens: int, name: str, shown: str,
                   lines: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """One tuple of ints per row from cells like "[1, 2, 3]" (a JSON list), "1 2 3" or "1;2;3". A row needs
    ceil(input / block_tokens) ids (every block, the last one partial) or floor(input / block_tokens) (full
    blocks only); any other count means trace.hash_block_tokens is not the size the hashes were made with."""
    out = []
    for i, cell in enumerate(col.tolist()):
        text = cell.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1].strip()
        try:
            ids = tuple(int(tok) for tok in _SEPARATORS.split(text)) if text else ()
        except ValueError:
            raise DataError(f"{shown} line {lines[i]}: {name} is {cell.strip()[:60]!r}; expected a list of integer "
                            "block hash ids such as [1, 2, 3] (a JSON list, or integers separated by spaces or "
                            "semicolons)") from None
        tokens = int(input_tokens[i])
        full, every = tokens // block_tokens, -(-tokens // block_tokens)
        if len(ids) not in (full, every):
            need = str(every) if full == every else f"{full} or {every}"
            raise DataError(f"{shown} line {lines[i]}: {len(ids)} {name} for {tokens} input tokens, but blocks of "
                            f"trace.hash_block_tokens = {block_tokens} tokens make {need}; set "
                            "trace.hash_block_tokens to the block size the hashes were computed with")
        out.append(ids)
    return tuple(out)


@dataclass(frozen=True)
class PrefixHashes:
    """hash_ids[i]: the block hash ids of request i's prompt, blocks of block_tokens tokens (rows in the workload's
    order). sources[i] names the id space of request i (its trace): ids of different traces never match."""

    block_tokens: int
    hash_ids: tuple[tuple[int, ...], ...]
    sources: tuple[str, ...] = field(default=(), compare=False)

    def take(self, idx) -> "PrefixHashes":
        idx = np.asarray(idx, dtype=np.int64)
        src = tuple(self.sources[i] for i in idx) if self.sources else ()
        return PrefixHashes(self.block_tokens, tuple(self.hash_ids[i] for i in idx), src)

    @staticmethod
    def concat(parts: list, num_requests: list[int], sources: list[str]) -> "PrefixHashes | None":
        """The hashes of workloads placed back to back (a drift); a part without hashes gets empty lists (never
        cached). None when no part has hashes."""
        if all(p is None for p in parts):
            return None
        sizes = {p.block_tokens for p in parts if p is not None}
        if len(sizes) > 1:
            raise ConfigError(f"drift phases hash their prompts with different trace.hash_block_tokens "
                              f"{sorted(sizes)}; use one block size for every phase")
        ids, src = [], []
        for p, n, s in zip(parts, num_requests, sources):
            ids.extend(p.hash_ids if p is not None else [()] * n)
            src.extend(p.sources if p is not None and p.sources else [s] * n)
        return PrefixHashes(sizes.pop(), tuple(ids), tuple(src))

    @cached_property
    def _chained(self) -> tuple[tuple[tuple[int, ...], ...], int]:
        """(prefix-chained dense ids per request, number of blocks whose id an earlier request already had)."""
        ids: dict = {}
        out = []
        seen = 0
        sources = self.sources or ("",) * len(self.hash_ids)
        for hashes, src in zip(self.hash_ids, sources):
            first_new = len(ids)
            parent = (src,)
            chain = []
            for h in hashes:
                parent = ids.setdefault((parent, h), len(ids))
                chain.append(parent)
                if parent < first_new:
                    seen += 1
            out.append(tuple(chain))
        return tuple(out), seen

    @property
    def chained(self) -> tuple[tuple[int, ...], ...]:
        return self._chained[0]

    def reuse_pct(self) -> float:
        """Share (%) of all prompt blocks already seen, same prefix, in an earlier request: the hit rate of an
        unlimited cache shared by every request."""
        total = sum(len(h) for h in self.hash_ids)
        return 100.0 * self._chained[1] / total if total else 0.0


def prefix_reuse_pct(workload) -> float:
    """PrefixHashes.reuse_pct of the workload; 0 when its trace has no hash ids."""
    prefix = getattr(workload, "prefix", None)
    return prefix.reuse_pct() if prefix is not None else 0.0
