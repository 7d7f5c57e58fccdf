"""sim.fidelity.timing on a fake cost model whose iteration time is known in closed form: a batch's prefill equals
the brute-force sum over the iterations a token budget allows, a decode step sees the batch's total context, and
kv_shortfall counts whole blocks."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from sim.fidelity.timing import batch_prefill_time_s, decode_step_time_s, kv_shortfall


@dataclass
class FakeCost:
    budget: int = 1000
    kv_block_size: int = 16
    kv_capacity_blocks: int = 100
    tp: int = 2
    pp: int = 1

    @property
    def engine(self):
        return SimpleNamespace(max_num_batched_tokens=self.budget)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_capacity_blocks * self.kv_block_size

    def iteration_time_s(self, b) -> float:  # 1 ms per iteration + 1 us per prompt token + 2 us per decode context
        return 1e-3 + 1e-6 * b.prefill_tokens + 2e-6 * b.decode_ctx_tokens + 1e-4 * b.decode_seqs


def _brute_force_prefill(cost: FakeCost, batch_size: int, prompt_tokens: int) -> float:
    left, total = batch_size, 0.0
    while left:
        n = min(left, max(1, max(cost.budget, prompt_tokens) // prompt_tokens))
        total += 1e-3 + 1e-6 * n * prompt_tokens
        left -= n
    return total


@pytest.mark.parametrize("batch_size,prompt_tokens", [(1, 10), (7, 300), (64, 128), (3, 5000), (10, 1000)])
def test_prefill_equals_the_sum_over_budgeted_iterations(batch_size, prompt_tokens):
    cost = FakeCost()
    assert batch_prefill_time_s(cost, batch_size, prompt_tokens) == pytest.approx(
        _brute_force_prefill(cost, batch_size, prompt_tokens), rel=1e-12)


def test_decode_step_sees_the_batch_total_context():
    assert decode_step_time_s(FakeCost(), 8, 100.5) == pytest.approx(1e-3 + 2e-6 * 804 + 8e-4)


def test_kv_shortfall_counts_whole_blocks():
    cost = FakeCost(kv_capacity_blocks=100)
    assert kv_shortfall(cost, 50, 32) == ""  # 50 x 2 blocks = 100: fits exactly
    msg = kv_shortfall(cost, 50, 33)  # 33 tokens take 3 blocks: 150 > 100
    assert "2400 KV tokens" in msg and "TP2 x PP1 holds 1600" in msg
