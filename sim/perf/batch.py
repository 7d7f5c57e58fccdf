"""The shape of one engine iteration's batch, and the contract every replica cost model satisfies."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class BatchShape:
    """Aggregates of one iteration's batch that determine its cost.

    prefill_tokens: new prompt tokens processed this iteration (sum of chunk lengths).
    prefill_attn_pairs: query-key pairs the prefill chunks attend to: sum over chunks of
        c * (ctx_before + (c + 1) / 2) for a chunk of c tokens after ctx_before cached tokens (causal).
    num_prefill_seqs: sequences with a prefill chunk this iteration.
    decode_seqs: sequences generating one token this iteration.
    decode_ctx_tokens: sum over decode sequences of their context length (KV tokens read).
    """

    prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    num_prefill_seqs: int = 0
    decode_seqs: int = 0
    decode_ctx_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    @property
    def num_seqs(self) -> int:
        return self.num_prefill_seqs + self.decode_seqs


class ReplicaCost(Protocol):
    """Cost of one replica (model, hardware, TP x PP, precision, placement), built by sim.perf.cost_model."""

    tp: int
    pp: int
    kv_block_size: int
    kv_capacity_blocks: int  # paged KV blocks available per replica (whole replica, all stages)

    def stage_time_s(self, batch: BatchShape) -> float:
        """Time of one pipeline stage for one micro-batch: its layers' GEMMs, attention, MoE, TP
        all-reduces, plus the stage's share of fixed per-iteration overheads (the first stage also pays
        the embedding, the last the LM head)."""

    def iteration_time_s(self, batch: BatchShape) -> float:
        """Latency of one iteration end to end: all PP stages, PP send/recv, CPU scheduling/sampling."""

    def decode_affine(self, decode_seqs: int) -> tuple[float, float]:
        """(a_s, b_s) such that iteration_time_s(decode-only batch) == a_s + b_s * decode_ctx_tokens exactly."""
