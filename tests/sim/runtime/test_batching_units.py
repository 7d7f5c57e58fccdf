"""The batching policies' contract on a hand-built engine (sim.runtime.batching): each returns the next iteration or
None when there is nothing to run, Sarathi's chunks fill its token budget in admission order with no empty chunk,
and a sequence that outgrows the whole KV cache is dropped, not decoded in an empty batch."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest

from sim.runtime.batching import DecodeStep, Seq, Step, schedule_sarathi, schedule_static, schedule_vllm
from sim.runtime.kv_cache import KVCache

pytestmark = pytest.mark.unit


class Engine:
    """The attributes the policies read: queues, KV cache, limits, no fast-mode decode batch; drops recorded."""

    def __init__(self, kv: KVCache, chunk_tokens: int = 100, max_batched_tokens: int = 512, max_num_seqs: int = 8):
        self.kv = kv
        self.cfg = SimpleNamespace(chunk_tokens=chunk_tokens, max_batched_tokens=max_batched_tokens,
                                   max_num_seqs=max_num_seqs)
        self.waiting = deque()
        self.running = []
        self.batch = None
        self.preempted_now = False
        self.dropped = []

    def drop(self, seq, reason: str) -> None:
        self.dropped.append((seq.req, reason))


def _prefilling(eng: Engine, req: int, prompt_tokens: int) -> Seq:
    """A sequence admitted earlier whose prompt is not prefilled yet (its KV blocks held)."""
    s = Seq(req, 0, prompt_tokens, 10, 0.0)
    s.prefill_target = prompt_tokens
    s.blocks = eng.kv.blocks_for(prompt_tokens)
    eng.kv.take(s.blocks)
    eng.running.append(s)
    return s


@pytest.mark.parametrize("policy", [schedule_vllm, schedule_sarathi, schedule_static])
def test_an_idle_engine_with_nothing_waiting_gets_no_iteration(policy):
    assert policy(Engine(KVCache(100, 16)), 0.0) is None


def test_sarathi_fills_its_budget_in_admission_order_and_never_sends_an_empty_chunk():
    """Budget 100: the first prompt (300 tokens left) takes all 100; the second gets nothing this iteration (not a
    0-token chunk, and not an idle engine: the iteration still runs)."""
    eng = Engine(KVCache(100, 16), chunk_tokens=100)
    a = _prefilling(eng, 0, 300)
    _prefilling(eng, 1, 50)
    step = schedule_sarathi(eng, 1.0)
    assert isinstance(step, Step)
    assert [(s.req, c) for s, c in step.chunks] == [(a.req, 100)]
    assert step.shape.prefill_tokens == 100 and step.shape.num_prefill_seqs == 1


def test_sarathi_gives_the_budget_left_to_the_next_prompt():
    """Budget 100: 30 tokens to the first prompt, the remaining 70 to the second; the waiting queue is not offered
    what is not left."""
    eng = Engine(KVCache(100, 16), chunk_tokens=100)
    _prefilling(eng, 0, 30)
    _prefilling(eng, 1, 500)
    eng.waiting.append(Seq(2, 0, 40, 10, 0.0))
    step = schedule_sarathi(eng, 1.0)
    assert [(s.req, c) for s, c in step.chunks] == [(0, 30), (1, 70)]
    assert len(eng.waiting) == 1  # budget spent: no admission


@pytest.mark.parametrize("policy", [schedule_vllm, schedule_sarathi, schedule_static])
def test_a_sequence_that_outgrows_the_whole_cache_is_dropped_not_decoded_in_an_empty_batch(policy):
    """2 blocks of 16 (watermark 1): a lone decoding sequence at 33 context tokens needs a third block, none is
    free, so it preempts itself (the engine then has nothing to run: None, not a decode step of no sequences);
    re-admitting 33 tokens (3 blocks) can never fit, so it is dropped as kv_capacity_exceeded (it has generated
    tokens: not a prompt that never fit) at the next admission, within the same call for Sarathi (admission after
    the decode step) and at the next call for vLLM and static batching (admission first)."""
    kv = KVCache(2, 16)
    eng = Engine(kv, chunk_tokens=100)
    s = Seq(7, 0, 30, 10, 0.0)
    s.generated = 3
    s.prefill_target = s.prefilled = 30
    s.decoding = True
    s.blocks = 2
    kv.take(2)
    eng.running.append(s)
    assert policy(eng, 1.0) is None
    assert s.preemptions == 1
    if not eng.dropped:
        assert list(eng.waiting) == [s] and policy(eng, 1.0) is None
    assert eng.dropped == [(7, "kv_capacity_exceeded")] and not eng.running and not eng.waiting
    assert kv.free_blocks == kv.capacity_blocks  # its blocks came back


def test_sarathi_decodes_every_running_sequence_when_no_prompt_is_left():
    eng = Engine(KVCache(100, 16), chunk_tokens=100)
    s = Seq(3, 0, 20, 10, 0.0)
    s.generated = 2
    s.decoding = True
    s.blocks = 2
    eng.kv.take(2)
    eng.running.append(s)
    step = schedule_sarathi(eng, 1.0)
    assert isinstance(step, DecodeStep) and step.n == 1 and step.ctx_tokens == 22 and step.steps_to_finish == 8


@pytest.mark.parametrize("policy", [schedule_vllm, schedule_sarathi, schedule_static])
def test_a_prompt_that_can_never_fit_is_dropped_and_the_next_one_still_admitted(policy):
    """vLLM's prefill scheduler ignores a prompt larger than the whole cache and goes on to the next waiting one
    in the same pass (its ignored_seq_groups): here 100 blocks of 16, a 2,000-token prompt (125 blocks) and a
    40-token one behind it."""
    eng = Engine(KVCache(100, 16), chunk_tokens=512)
    eng.waiting.extend([Seq(0, 0, 2000, 5, 0.0), Seq(1, 0, 40, 5, 0.0)])
    step = policy(eng, 1.0)
    assert eng.dropped == [(0, "prompt_exceeds_kv_capacity")]
    assert isinstance(step, Step) and [(s.req, c) for s, c in step.chunks] == [(1, 40)]
    assert eng.kv.used_blocks == 3 and not eng.waiting


@pytest.mark.parametrize("policy", [schedule_vllm, schedule_static])
def test_prompts_that_fill_the_token_budget_exactly_are_admitted_together(policy):
    """max_batched_tokens 512: prompts of 300 and 212 tokens fill it exactly and go in one iteration; a third of 1
    token would exceed it and waits. The budget is a bound (<=), as vLLM's num_batched_tokens check."""
    eng = Engine(KVCache(1000, 16), max_batched_tokens=512)
    eng.waiting.extend([Seq(0, 0, 300, 5, 0.0), Seq(1, 0, 212, 5, 0.0), Seq(2, 0, 1, 5, 0.0)])
    step = policy(eng, 1.0)
    assert [(s.req, c) for s, c in step.chunks] == [(0, 300), (1, 212)]
    assert step.shape.prefill_tokens == 512 and [s.req for s in eng.waiting] == [2]
    # Oracle for the attention work: each prompt attends causally to itself, sum over i of (i + 1) pairs.
    assert step.shape.prefill_attn_pairs == 300 * 301 / 2 + 212 * 213 / 2


def test_sarathi_chunks_a_long_prompt_across_iterations_with_the_attention_of_what_came_before():
    """chunk_tokens 100, one 250-token prompt: chunks of 100, 100, 50; chunk k attends to the prefilled tokens
    before it plus itself causally: c * (prefilled + (c + 1) / 2) pairs, summed it is the whole prompt's 250 * 251 / 2."""
    eng = Engine(KVCache(1000, 16), chunk_tokens=100)
    eng.waiting.append(Seq(0, 0, 250, 5, 0.0))
    pairs, sizes = 0.0, []
    for _ in range(3):
        step = schedule_sarathi(eng, 1.0)
        (seq, c), = step.chunks
        sizes.append(c)
        pairs += step.shape.prefill_attn_pairs
        seq.prefilled += c  # what the engine does after the iteration
    assert sizes == [100, 100, 50] and pairs == 250 * 251 / 2


@pytest.mark.parametrize("policy", [schedule_vllm, schedule_sarathi])
def test_cached_tokens_are_those_found_at_the_first_admission_and_a_readmission_reuses_its_own_units(policy):
    """Prefix caching, 16-token units: a 60-token prompt finds nothing at its first admission (cached_tokens 0,
    prefill 60). Preempted, its 3 full units stay cached, so re-admitting prompt + 2 generated tokens prefills only
    62 - 48 = 14 tokens; the recorded cached_tokens stays the first admission's 0 (records.py: the visit's first
    admission), not the re-admission's 48."""
    eng = Engine(KVCache(100, 16), max_batched_tokens=512, chunk_tokens=512)
    s = Seq(0, 0, 60, 5, 0.0)
    s.unit_keys, s.unit_tokens = ("a", "b", "c"), 16
    eng.waiting.append(s)
    step = policy(eng, 1.0)
    assert [(q.req, c) for q, c in step.chunks] == [(0, 60)] and s.cached_tokens == 0
    eng.running.remove(s)  # preempted by recompute after two tokens
    eng.kv.release(s)
    s.reset_for_requeue()
    s.generated = 2
    eng.waiting.append(s)
    step = policy(eng, 2.0)
    assert [(q.req, c) for q, c in step.chunks] == [(0, 14)] and s.prefilled == 48
    assert s.cached_tokens == 0
