"""Iteration-level batching policies (vLLM prefill-first, Sarathi-Serve chunked prefill, static batches) over an engine's queues.

Each policy looks at an engine at an iteration boundary and returns the next iteration: a Step with the
prefill chunks and decode sequences it runs, or a DecodeStep (every running sequence decodes one token; the
engine may then jump over many such iterations), or None (nothing to run). Preemption is the scheduler's: when a
decode step finds no free KV block, allocate_decode_step preempts the most recently admitted sequence.

Token accounting (as vLLM V0): a (re)prefill of a sequence processes prompt + generated tokens (less the
leading ones found in the engine's prefix cache, sim.runtime.prefix_cache) and samples one token; a decode step of a
sequence with g generated tokens writes the KV of its last token, so it needs prompt + g KV slots and attends
to that many tokens. Preemption is by recompute: the victim frees its blocks and later re-prefills prompt +
generated tokens.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from sim.perf.batch import BatchShape

POLICIES = ("vllm", "sarathi", "static")


class Seq:
    """One request's visit to one tier while it is at an engine (mutable: it lives in simulated time)."""

    __slots__ = ("req", "tier", "prompt_tokens", "out_tokens", "generated", "prefill_target", "prefilled",
                 "decoding", "blocks", "enqueue_s", "first_sched_s", "first_token_s", "preemptions", "work_tokens",
                 "mark", "unit_keys", "unit_tokens", "cached_units", "cached_tokens")

    def __init__(self, req: int, tier: int, prompt_tokens: int, out_tokens: int, enqueue_s: float,
                 work_tokens: float = 0.0) -> None:
        self.req = req
        self.tier = tier
        self.prompt_tokens = prompt_tokens
        self.out_tokens = out_tokens
        self.generated = 0
        self.prefill_target = 0
        self.prefilled = 0
        self.decoding = False
        self.blocks = 0
        self.enqueue_s = enqueue_s  # arrival at this engine (kept through preemptions and re-queues)
        self.first_sched_s = -1.0
        self.first_token_s = -1.0
        self.preemptions = 0
        self.work_tokens = work_tokens  # the load balancer's estimate of this visit's work
        self.mark = 0  # fast mode: the engine's decode step at which generated and blocks were last exact
        # Prefix caching (sim.runtime.prefix_cache): the prompt's unit keys (None: no caching), the prefix units held
        # while on an engine, and the prompt tokens found cached at the first admission.
        self.unit_keys = None
        self.unit_tokens = 0
        self.cached_units = None
        self.cached_tokens = -1

    def reset_for_requeue(self) -> None:
        """Back to the waiting queue without KV (preempted or moved off a replica); generated tokens are kept."""
        self.blocks = 0
        self.prefilled = 0
        self.prefill_target = 0
        self.decoding = False


class DecodeStep(NamedTuple):
    """A decode-only iteration, allocated: the decoding sequences (None in fast mode, where the engine keeps them
    as aggregates), how many, their context tokens, and the fewest output tokens any of them still has to make."""

    seqs: list | None
    n: int
    ctx_tokens: int
    steps_to_finish: int


class Step(NamedTuple):
    """One iteration that has prefill work: chunks (seq, tokens) and the sequences that decode alongside, or
    None for the engine's whole decode batch, which fast mode keeps as aggregates (sim.runtime.decode_batch). A
    NamedTuple: immutable like a frozen dataclass, and several times cheaper to build, once per prefill.
    key: the batch's BatchShape fields as a plain tuple, in the dataclass's field order (the engine's memo of
    iteration times is keyed by it; the BatchShape itself is built only where the cost model or the log needs it)."""

    chunks: tuple
    decodes: tuple | None
    key: tuple

    @property
    def shape(self) -> BatchShape:
        return BatchShape(*self.key)


def admit(eng, now: float, token_budget: int, chunked: bool) -> list:
    """Admit waiting sequences FCFS while max_num_seqs, the token budget and free KV blocks allow; returns
    [(seq, chunk_tokens)]. Admitted sequences join eng.running (prefilling). A request that arrived exactly
    at this boundary waits for the next one unless the engine is idle, so that jumping and stepping agree."""
    waiting = eng.waiting
    if not waiting:
        return []
    kv, running, cfg = eng.kv, eng.running, eng.cfg
    limit = now if running else math.inf
    out = []
    used = 0
    while waiting:
        seq = waiting[0]
        if seq.enqueue_s >= limit:
            break
        length = seq.prompt_tokens + seq.generated
        need = -(-length // kv.block_size)  # KVCache.blocks_for, inline
        if need + kv.watermark_blocks > kv.capacity_blocks:  # KVCache.never_fits, inline
            waiting.popleft()
            eng.drop(seq, "prompt_exceeds_kv_capacity" if seq.generated == 0 else "kv_capacity_exceeded")
            continue
        if len(running) >= cfg.max_num_seqs:
            break
        keys = seq.unit_keys
        if keys is None:
            cached, take = 0, need
        else:  # prefix caching: prefill and the token budget count only the tokens not cached here
            hits, take = kv.prefix_cache(seq.unit_tokens).lookup(keys, length)
            cached = hits * seq.unit_tokens
        if chunked:
            chunk = min(length - cached, token_budget - used)
            if chunk <= 0:
                break
        else:
            # The first prompt of an iteration is admitted even when longer than the budget (no prompt is refused).
            if out and used + length - cached > token_budget:
                break
            chunk = length - cached
        if kv.free_blocks - take < kv.watermark_blocks:  # not KVCache.can_admit, inline
            break
        waiting.popleft()
        if keys is None:  # kv.take(need), inline (once per admission)
            kv.free_blocks = free = kv.free_blocks - need
            if kv.capacity_blocks - free > kv.peak_used_blocks:
                kv.peak_used_blocks = kv.capacity_blocks - free
            if free < kv.evictable_blocks:
                kv.prefix.evict()
        else:
            kv.prefix.admit(seq, hits, take)
            if seq.cached_tokens < 0:
                seq.cached_tokens = cached
        seq.blocks = need
        seq.prefill_target = length
        seq.prefilled = cached
        seq.decoding = False
        if seq.first_sched_s < 0:
            seq.first_sched_s = now
        running.append(seq)
        out.append((seq, chunk))
        used += chunk
    return out


def _shape(chunks, decodes, decode_seqs: int = 0, decode_ctx_tokens: int = 0) -> tuple:
    """The batch of prefill chunks plus decodes (a list of sequences, or None with the decode batch's size and
    context given), as Step.key: BatchShape's fields in order."""
    tokens = 0
    pairs = 0.0
    for seq, c in chunks:
        tokens += c
        pairs += c * (seq.prefilled + (c + 1) / 2)
    if decodes is not None:
        decode_seqs = len(decodes)
        for seq in decodes:
            decode_ctx_tokens += seq.prompt_tokens + seq.generated
    return (tokens, pairs, len(chunks), decode_seqs, decode_ctx_tokens)


_new = tuple.__new__  # builds a NamedTuple from a tuple at half the cost of its constructor (once per iteration)


def schedule_vllm(eng, now: float):
    """vLLM V0 default scheduler: if any waiting prompt can be admitted, run a prefill-only iteration;
    otherwise every running sequence decodes (preempting the most recently admitted when blocks run out)."""
    chunks = admit(eng, now, eng.cfg.max_batched_tokens, chunked=False)
    if chunks:
        return _new(Step, (tuple(chunks), (), _shape(chunks, ())))
    if not eng.running:
        return None
    dec = allocate_decode_step(eng)
    return dec if eng.running else None


def schedule_sarathi(eng, now: float):
    """Sarathi-Serve: every iteration runs all decodes plus prefill chunks (ongoing first, then new
    admissions) up to the token budget chunk_tokens; decodes always run even if they exceed it."""
    dec = allocate_decode_step(eng) if eng.running else None
    budget = eng.cfg.chunk_tokens
    batch = eng.batch
    if batch is None:
        decodes = [s for s in eng.running if s.decoding]
        prefilling = eng.running  # the decoding ones are skipped below
        n_dec = len(decodes)
    else:
        # Chunks go to running prompts in admission order, so prompts finish in that order and the ones
        # still prefilling are the tail of the running list, after the decode batch.
        decodes = None
        n_dec = batch.n
        prefilling = eng.running[n_dec:]
    left = budget - n_dec
    chunks = []
    for seq in prefilling:
        if left <= 0:
            break
        if seq.decoding:
            continue
        c = min(seq.prefill_target - seq.prefilled, left)
        chunks.append((seq, c))
        left -= c
    if left > 0:
        chunks.extend(admit(eng, now, left, chunked=True))
    if chunks:
        if decodes is None:
            return _new(Step, (tuple(chunks), None, _shape(chunks, None, n_dec, batch.context_tokens())))
        return _new(Step, (tuple(chunks), tuple(decodes), _shape(chunks, decodes)))
    return dec if eng.running else None


def schedule_static(eng, now: float):
    """Static batching: when the engine is empty, form a batch (FCFS, budget and memory permitting), prefill it
    in one iteration, then decode until every member has finished; arrivals wait for the next batch."""
    if not eng.running:
        chunks = admit(eng, now, eng.cfg.max_batched_tokens, chunked=False)
        return _new(Step, (tuple(chunks), (), _shape(chunks, ()))) if chunks else None
    dec = allocate_decode_step(eng)
    return dec if eng.running else None


def allocate_decode_step(eng) -> DecodeStep:
    """Give every decoding sequence of the engine the KV slot of this step, in admission order; when no block is
    free, preempt the most recently admitted sequence by recompute (vLLM V0 _schedule_running): it frees its
    blocks and goes back to the head of the waiting queue, to re-prefill prompt + generated tokens later."""
    batch = eng.batch
    kv = eng.kv
    if batch is not None:
        # Fast mode: the step's new blocks in one take when they need no preemption; else the plain pass.
        new = batch.new_blocks(batch.step + 1)
        if new <= kv.free_blocks:
            if new:
                kv.take(new)
            return _new(DecodeStep, (None, *batch.stats()))
        batch.materialize()
    run = eng.running
    bs = kv.block_size
    preempted = []
    # The decode batch's aggregates are gathered in the same pass (victims are popped from the end, so a
    # sequence counted here is never preempted later in the pass): the decoding sequences, their context
    # tokens and the fewest output tokens any of them still has to generate.
    dec = []
    ctx = 0
    k_fin = 1 << 62
    i = 0
    while i < len(run):
        seq = run[i]
        i += 1
        if not seq.decoding:
            continue
        slots = seq.prompt_tokens + seq.generated
        if slots > seq.blocks * bs:
            while kv.free_blocks == 0:
                victim = run.pop()
                kv.release(victim)
                victim.reset_for_requeue()
                victim.preemptions += 1
                preempted.append(victim)
                if victim is seq:
                    break
            else:
                kv.take(1)
                seq.blocks += 1
            if not seq.decoding:
                continue  # it preempted itself
        dec.append(seq)
        ctx += slots
        left = seq.out_tokens - seq.generated
        if left < k_fin:
            k_fin = left
    if preempted:
        # Oldest victim first at the head of the queue, as vLLM's waiting.extendleft(preempted).
        eng.waiting.extendleft(preempted)
        eng.preempted_now = True  # the victims were not offered admission at this boundary (the engine's jump)
    if batch is not None:
        for seq in dec:  # exact again, and allocated for the next step: back into the aggregates
            batch.join(seq)
    return DecodeStep(dec, len(dec), ctx, k_fin)


SCHEDULERS = {"vllm": schedule_vllm, "sarathi": schedule_sarathi, "static": schedule_static}
