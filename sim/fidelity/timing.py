"""Operator-level timings over a replica's cost model (a batch's prefill, one decode step, KV room): the
quantities the measurement corpus and a measured validation CSV report, shared by validation and the corpus."""
from __future__ import annotations

from sim.perf.batch import BatchShape
from sim.perf.cost_model import ReplicaCostModel


def batch_prefill_time_s(cost: ReplicaCostModel, batch_size: int, prompt_tokens: int) -> float:
    """Full iterations of per_iter prompts, then one with the rest: constant time in batch_size."""
    budget = max(cost.engine.max_num_batched_tokens, prompt_tokens)
    per_iter = max(1, budget // prompt_tokens)

    def iteration(n: int) -> float:
        return cost.iteration_time_s(BatchShape(
            prefill_tokens=n * prompt_tokens, prefill_attn_pairs=n * prompt_tokens * (prompt_tokens + 1) / 2.0,
            num_prefill_seqs=n))

    full, rest = divmod(batch_size, per_iter)
    return full * iteration(per_iter) + (iteration(rest) if rest else 0.0)


def kv_shortfall(cost: ReplicaCostModel, batch_size: int, tokens_per_seq: int) -> str:
    """Why a batch cannot hold its KV on this replica, or '' when it can."""
    blocks = batch_size * -(-tokens_per_seq // cost.kv_block_size)
    if blocks <= cost.kv_capacity_blocks:
        return ""
    return (f"KV does not fit: {batch_size} x {tokens_per_seq} tokens need {blocks * cost.kv_block_size} KV tokens, "
            f"TP{cost.tp} x PP{cost.pp} holds {cost.kv_capacity_tokens}")


def decode_step_time_s(cost: ReplicaCostModel, batch_size: int, mean_ctx_tokens: float) -> float:
    return cost.iteration_time_s(BatchShape(decode_seqs=batch_size,
                                            decode_ctx_tokens=int(round(batch_size * mean_ctx_tokens))))
