"""DecodeBatch's closed forms (fast mode's decode batch as aggregates) against a sequence-by-sequence count."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.runtime.batching import Seq
from sim.runtime.decode_batch import DecodeBatch


def held(seqs, step: int, bs: int) -> int:
    """Blocks held at boundary `step`: every token's KV but the last sampled one, sequence by sequence."""
    return sum(-(-(s.prompt_tokens + s.generated + (step - s.mark) - 1) // bs) for s in seqs)


@st.composite
def batches(draw):
    bs = draw(st.sampled_from([1, 2, 16, 32]))
    batch = DecodeBatch(bs)
    batch.step = draw(st.integers(0, 2_000))
    seqs = []
    for _ in range(draw(st.integers(0, 12))):
        s = Seq(len(seqs), 0, draw(st.integers(1, 4_000)), 0, 0.0)
        s.generated = draw(st.integers(1, 200))
        s.out_tokens = s.generated + draw(st.integers(1, 300))
        batch.join(s)
        seqs.append(s)
    return batch, seqs, bs


@settings(max_examples=200, deadline=None)
@given(batches(), st.integers(0, 300), st.integers(0, 300))
def test_block_counts_match_a_count_per_sequence(b, ahead, span):
    batch, seqs, bs = b
    lo = batch.step + ahead
    hi = lo + span
    assert batch.blocks_between(lo, hi) == held(seqs, hi, bs) - held(seqs, lo, bs)
    assert batch.new_blocks(lo + 1) == held(seqs, lo + 1, bs) - held(seqs, lo, bs)
    assert batch.context_tokens() == sum(s.prompt_tokens + s.generated for s in seqs)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_finishes_come_in_order_with_exact_counts(b):
    batch, seqs, bs = b
    start = batch.step
    left = {id(s): s.out_tokens - s.generated for s in seqs}
    order = {id(s): i for i, s in enumerate(seqs)}
    finished = []
    while batch.n:
        k = batch.steps_to_finish()
        assert k == min(left[id(s)] - (batch.step - start) for s in seqs if s not in finished)
        batch.step += k
        due = batch.finish_due()
        assert due and [order[id(s)] for s in due] == sorted(order[id(s)] for s in due)  # join order on ties
        for s in due:
            assert s.generated == s.out_tokens
            assert s.blocks == -(-(s.prompt_tokens + s.out_tokens - 1) // bs)
        finished += due
    assert len(finished) == len(seqs)


@given(batches(), st.integers(0, 500))
def test_materialize_writes_exact_counts_and_empties(b, steps):
    batch, seqs, bs = b
    first = {id(s): s.generated for s in seqs}
    batch.step += min(steps, min((s.out_tokens - s.generated for s in seqs), default=0))
    ran = batch.step - (seqs[0].mark if seqs else 0)
    batch.materialize()
    assert batch.n == 0 and batch.blocks_between(batch.step, batch.step + 100) == 0 and not batch.heap
    for s in seqs:
        assert s.generated == first[id(s)] + ran
        assert s.blocks == -(-(s.prompt_tokens + s.generated - 1) // bs)
