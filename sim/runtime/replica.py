"""A model replica (TP x PP on concrete GPUs) and its engines: the iteration loop, in fast (jumping) or reference mode.

Pipeline parallelism follows vLLM V0's virtual engines: a replica with pp stages runs pp engines, each with its
own scheduler, 1/pp of the KV blocks and up to max_num_seqs sequences. Each engine's iteration takes
cost.iteration_time_s (all stages plus send/recv); with pp engines busy, pp micro-batches are in flight and
a new one enters the first stage about every stage_time_s. Bubbles from unequal micro-batches are ignored.

Fast mode: between batch-changing events a decode-only batch of B sequences evolves predictably; iteration j
costs a + b * (S + j * B) with (a, b) = cost.decode_affine(B). The engine computes how many iterations k
remain until the first sequence finishes or the free KV blocks run out, and waits once for all k. An arrival
that could be admitted interrupts the wait; the engine stops at the first iteration boundary after the
arrival. The batch itself is kept as aggregates (sim.runtime.decode_batch), so planning and ending a jump cost
O(log n), not passes over its sequences; the jump's arithmetic (its length, and its iteration ends in the closed
form of a decode segment, which reference mode evaluates too) is sim.runtime.jump's. Every time an engine records
is its own logical clock (those closed forms), never env.now, which SimPy can only approach within an ulp; so both
modes produce bit-identical records. Batching and preemption are the scheduler's (sim.runtime.batching).
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
from heapq import heappush
from math import sqrt
from typing import NamedTuple

from sim.common.errors import SimulationStuck
from sim.perf.batch import BatchShape
from sim.runtime.batching import (SCHEDULERS, DecodeStep, Seq, Step, _shape, admit, allocate_decode_step,
                                  schedule_vllm)
from sim.runtime.decode_batch import DecodeBatch
from sim.runtime.jump import DecodeRun, jump_length, segment_count_le, segment_end
from sim.runtime.kv_cache import KVCache
from sim.runtime.loop import NORMAL, EventLoop

STEP_TIMES_MAX = 1 << 16  # prefill-batch shapes memoized per cost model (Replica.step_times)
_new = tuple.__new__  # builds a NamedTuple from a tuple at half the cost of its constructor (once per event)
# An engine schedules nothing at most twice in a row (a preemption empties the batch, then the queue is admitted or
# dropped); far more means no iteration will ever run again, e.g. a KV block leaked so the head never fits.
IDLE_SCHEDULES_MAX = 1000


class PrefillIteration(NamedTuple):
    """One iteration with prefill work in flight: the scheduler's step, its start and its cost-model time."""

    step: Step
    start_s: float
    duration_s: float


class Engine:
    """One scheduler with its own queues and KV blocks; runs iterations on the event loop's bare callbacks."""

    def __init__(self, env: EventLoop, replica: "Replica", index: int, kv_blocks: int) -> None:
        self.env = env
        self.replica = replica
        self.index = index
        self.cfg = replica.cfg
        self.cost = replica.cost
        self.kv = KVCache(kv_blocks, self.cost.kv_block_size, self.cfg.kv_watermark)
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []  # admission order: the last is preempted first
        self.schedule = SCHEDULERS[self.cfg.batching]
        self.fast = self.cfg.mode == "fast"
        # _next_decode's inline step is vLLM's policy with nothing waiting. A disaggregated decode instance wraps
        # that policy (sim.runtime.disagg.schedule_decode_instance), and the wrapper is the policy itself while
        # nothing waits, so the flag follows the configured policy, not the `schedule` attribute.
        self._inline_decode = self.fast and self.schedule is schedule_vllm
        # Arrivals can change a running batch only under continuous batching.
        self._arrivals_interrupt = self.fast and self.cfg.batching != "static"
        self.busy_s = 0.0
        self.iterations = 0
        self.jumps = 0
        self.outstanding = 0  # sequences assigned here and not finished
        self.preempted_now = False  # allocate_decode_step preempted at this boundary (set there, read by _plan_decode)
        self._idle = True
        self._jumping = False
        self._pending: PrefillIteration | DecodeRun | None = None  # in flight until the next boundary
        self._affine: dict[int, tuple[float, float]] = replica.decode_affine  # cost.decode_affine by batch n
        # The current decode segment (sim.runtime.jump), as of the end of the last decode run planned:
        # (s0, a, b, f, n, C0, j, end of its j-th iteration); None before the first decode iteration.
        self._seg: tuple | None = None
        # KV blocks that steps 1..k-1 of the planned jump take at its end, where _next_decode counted them already
        # (the jump was planned to the first finish); -1 where they must be counted at the end (a cut, the general path).
        self._jump_blocks = -1
        # The live boundary's number: a boundary entry that fires with another number is stale (a jump cut short,
        # or the engine stopped). Boundaries are bare callbacks of the event loop (sim.runtime.loop), not Events.
        self._gen = 0
        self._call_at = env.call_at
        # _at pushes EventLoop.call_at's entry itself (the same key: SimPy's now + (t - now), NORMAL, the loop's next
        # event id): a boundary is the commonest entry, and a call frame less per entry is measurable.
        self._queue = env._queue
        self._eid = env._eid
        self._on_boundary = self._boundary  # one bound method for every boundary
        self._log = replica.iteration_log  # fixed for the run (the simulator's record_iterations)
        # Pre-cut jumps (_precut): the flow, where it has armed this engine as the only one that its arrivals reach
        # (CascadeFlow.arm_precut); _precut_s: the arrival time the jump in flight was planned to be cut at, else -1.
        self._precut = None
        self._precut_s = -1.0
        # Fast mode keeps the decode batch as aggregates (sim.runtime.decode_batch), so a jump or a finish costs
        # O(log n) rather than passes over the batch.
        self.batch = DecodeBatch(self.kv.block_size) if self.fast else None
        self.clock = env.now  # logical time of the engine's last iteration boundary
        self.alive = True

    # ---- entry points ---------------------------------------------------------------------------
    def submit(self, seq: Seq) -> None:
        was_empty = not self.waiting
        self.waiting.append(seq)
        self.outstanding += 1
        if self._idle:
            self._idle = False
            if seq.enqueue_s > self.clock:
                self.clock = seq.enqueue_s
            self._next()
        elif self._jumping and was_empty and self._arrivals_interrupt:
            # A non-empty waiting queue at a jump means its head is blocked (memory or max_num_seqs) for the
            # whole jump, and FCFS keeps newcomers behind it; only the first newcomer can change the batch.
            self._jumping = False
            if seq.enqueue_s == self._precut_s:
                self._precut_s = -1.0  # the jump was planned to end where this arrival cuts it (_precut)
                return
            # _cut_jump, inline (once per arrival that finds its engine in a jump)
            run = self._pending
            k = run.iterations
            if k > 1:
                shorter = self._cut_segment(k, seq.enqueue_s)
                if shorter is not None:
                    cut, self._seg = shorter
                    end = self._seg[7]
                    self._jump_blocks = -1
                    self._pending = _new(DecodeRun, (None, run.start_s, run.n, run.ctx_tokens, cut, end, True))
                    self._gen = gen = self._gen + 1
                    now = self.env._now
                    d = end - now
                    heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), self._on_boundary,
                                           gen))

    def set_cost(self, cost) -> None:
        """A new cost model from now on (a degraded link); the iterations in flight keep their times."""
        self.cost = cost
        self._affine = {}

    def interrupt_jump(self) -> None:
        """End a decode jump at the next iteration boundary (a speed change applies from there, as in reference
        mode, where every boundary is an event)."""
        if self._jumping:
            self._jumping = False
            self._cut_jump(self.env.now)

    def drop(self, seq: Seq, reason: str) -> None:
        self.outstanding -= 1
        self.replica.on_drop(seq, reason, self.clock)

    def stop(self) -> list:
        """Take the engine down now: every running and waiting visit is returned (KV freed) for re-queueing."""
        self.alive = False
        self._settle_jump()
        seqs = list(self.running) + list(self.waiting)
        for s in self.running:
            self.kv.release(s)
        for s in seqs:
            s.reset_for_requeue()
            s.cached_tokens = -1  # the record's hit is the one at the replica that serves the visit in the end
        self.running, self.waiting = [], deque()
        self.outstanding = 0
        self._gen += 1  # the boundary in flight, if any, is stale from now on
        self._pending = None
        self._jumping = False
        self._idle = False  # never wakes again
        return seqs

    def _settle_jump(self) -> None:
        """Fast mode, stopped inside a decode jump: the iterations that ended by now count (their tokens were
        generated, as reference mode's events for them have fired); the one in flight is lost in both modes."""
        run = self._pending
        if isinstance(run, DecodeRun) and run.iterations > 1:
            # the last iteration would end the jump (it is at most the first finish)
            s0, a, b, f, n, c0, j, _ = self._seg
            j0 = j - run.iterations
            done = min(segment_count_le(s0, a, b, f, n, c0, j0, run.iterations, self.env.now), run.iterations - 1)
            if done > 0:
                end = segment_end(s0, a, b, f, n, c0, j0 + done)
                self.busy_s += end - run.start_s
                self.iterations += done
                self._record(run.start_s, end - run.start_s, done, None, run.n, run.ctx_tokens)
                self.clock = end
                self._advance(run.seqs, done, end)
        if self.batch is not None:
            self.batch.materialize()  # the engine's sequences go back to a queue with exact token counts

    # ---- the iteration loop ---------------------------------------------------------------------
    # The engine is driven by bare callbacks of the event loop (sim.runtime.loop) rather than a generator
    # process: a jump cut short by an arrival then costs one new entry (the old one fires stale and is ignored)
    # instead of an Interruption, a process resumption and a new timeout, and a boundary makes no Event.
    def _at(self, t: float) -> None:
        self._gen = gen = self._gen + 1
        now = self.env._now
        d = t - now
        heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), self._on_boundary, gen))

    def _next(self) -> None:
        """At an iteration boundary (self.clock): schedule the next iteration(s), or go idle."""
        idle_schedules = 0
        while True:
            if not self.running and not self.waiting:
                self._idle = True
                return
            now = self.clock
            self.preempted_now = False
            t = None  # the prefill's cost-model time, where the prompt memo below knows it
            if self.schedule is schedule_vllm:
                # schedule_vllm, inline (once per prefill), with _shape's arithmetic for the commonest batch, one prompt
                chunks = admit(self, now, self.cfg.max_batched_tokens, False)
                if chunks:
                    seq, c = chunks[0]
                    if len(chunks) > 1:
                        key = _shape(chunks, ())
                    elif seq.prefilled:
                        key = (c, 0.0 + c * (seq.prefilled + (c + 1) / 2), 1, 0, 0)
                    else:
                        # One prompt with nothing cached, the commonest prefill: its time and shape memoized by its
                        # length (an int key costs a fraction of building and hashing the shape's tuple)
                        prompts = self.replica.prompt_times
                        hit = prompts.get(c)
                        if hit is None:
                            key = (c, 0.0 + c * (0 + (c + 1) / 2), 1, 0, 0)
                            hit = (self._prefill_time(key), key)
                            if len(prompts) < STEP_TIMES_MAX:
                                prompts[c] = hit
                        t, key = hit
                    step = _new(Step, (tuple(chunks), (), key))
                elif not self.running:
                    step = None
                else:
                    step = allocate_decode_step(self)
                    if not self.running:
                        step = None
            else:
                step = self.schedule(self, now)
            if step is None:
                # Preemption emptied the batch (or every waiting prompt was dropped): schedule again now.
                idle_schedules += 1
                if idle_schedules > IDLE_SCHEDULES_MAX:
                    raise SimulationStuck(
                        f"simulation stuck: engine {self.index} of replica {self.replica.replica_id} at t={now:.6g} s "
                        f"scheduled nothing {idle_schedules} times in a row with {len(self.waiting)} waiting, "
                        f"{len(self.running)} running and {self.kv.free_blocks} of {self.kv.capacity_blocks} KV "
                        f"blocks free (were KV blocks leaked?)")
                continue
            if type(step) is not DecodeStep:
                # A batch with prefill work: its cost-model time, memoized by shape for the run (a prompt
                # length recurs across the replicas of a tier; decode-only batches never come here). The memo
                # stops growing at STEP_TIMES_MAX shapes, so a run of millions of requests stays in bounded memory.
                # Keyed by the shape's fields as a plain tuple (Step.key): hashing one is C, a dataclass's __hash__
                # is Python, and the BatchShape is built only on a miss.
                if t is None:
                    t = self._prefill_time(step.key)
                t *= self.replica.slowdown
                if self._log is not None:
                    self._record(now, t, 1, step.shape)
                self._pending = _new(PrefillIteration, (step, now, t))
                self._gen = gen = self._gen + 1
                end = now + t
                now = self.env._now  # _at's push, inline (once per prefill)
                d = end - now
                heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), self._on_boundary, gen))
                return
            self._jump_blocks = -1
            run = self._pending = self._plan_decode(step, now)
            if run.iterations > 1:
                self._jumping = True
            self._at(run.end_s)
            return

    def _prefill_time(self, key: tuple) -> float:
        """The cost model's time of a batch with prefill work (its BatchShape's fields), through the memo by shape."""
        times = self.replica.step_times
        t = times.get(key)
        if t is None:
            t = self.cost.iteration_time_s(BatchShape(*key))
            if len(times) < STEP_TIMES_MAX:
                times[key] = t
        return t

    def _cut_jump(self, arrival_s: float) -> None:
        """An arrival during a jump: stop at the first boundary strictly after it; it joins the batch there."""
        run = self._pending
        k = run.iterations
        if k == 1:
            return
        shorter = self._cut_segment(k, arrival_s)
        if shorter is not None:
            cut, self._seg = shorter
            end = self._seg[7]
            self._jump_blocks = -1
            self._pending = _new(DecodeRun, (run.seqs, run.start_s, run.n, run.ctx_tokens, cut, end, True))
            self._gen = gen = self._gen + 1
            now = self.env._now  # _at's push, inline
            d = end - now
            heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), self._on_boundary, gen))

    def _cut_segment(self, k: int, t: float) -> tuple[int, tuple] | None:
        """The jump in flight (its k iterations end the current decode segment) cut at the first boundary strictly
        after t: (the iterations it keeps, the decode segment as of their end), or None where that boundary is the
        jump's own end. segment_count_le and segment_end inline (the same arithmetic, once per arrival), counting
        only up to k - 1 iterations: a count of k - 1 or more means no cut either way, so the clamp changes nothing."""
        s0, a, b, f, n, c0, j, _ = self._seg
        j0 = j - k
        hi = j - 1
        beta = 0.5 * b * n
        alpha = a + b * c0 - beta
        x = (t - s0) / f if f > 0.0 else 0.0
        disc = alpha * alpha + 4.0 * beta * x
        den = alpha + sqrt(disc) if disc > 0.0 else 0.0
        if x <= 0.0:
            j = j0
        elif den > 0.0:
            j = int(2.0 * x / den)
            if j < j0:
                j = j0
            elif j > hi:
                j = hi
        else:
            j = hi
        # Stepped to the exact boundary; `after` keeps the end of iteration j + 1 once evaluated (the cut's end)
        after = None
        while j < hi:
            e = s0 + ((j + 1) * a + b * ((j + 1) * c0 + n * ((j + 1) * j >> 1))) * f
            if e > t:
                after = e
                break
            j += 1
        while j > j0:
            e = s0 + (j * a + b * (j * c0 + n * (j * (j - 1) >> 1))) * f
            if e <= t:
                break
            after = e
            j -= 1
        if j == hi:  # k - 1 or more of the k iterations end by t: the jump's own end is the boundary
            return None
        return j + 1 - j0, (s0, a, b, f, n, c0, j + 1, after)

    def _boundary(self, gen: int) -> None:
        if gen != self._gen:
            return  # stale: the jump was cut short, or the engine was stopped
        run, self._pending = self._pending, None  # consumed: a later stop() must not settle it again
        if type(run) is PrefillIteration:
            step, start, duration = run
            end = start + duration
            self.clock = end
            self.busy_s += duration
            self.iterations += 1
            # the iteration's prefill chunks and decodes advance
            if step.decodes is None:  # the decode batch, as aggregates (fast mode)
                self.batch.step += 1
                finished = self.batch.finish_due()
            else:
                finished = []
                for seq in step.decodes:
                    seq.generated += 1
                    if seq.generated >= seq.out_tokens:
                        finished.append(seq)
            for seq, c in step.chunks:
                seq.prefilled += c
                if seq.prefilled >= seq.prefill_target:
                    seq.generated += 1
                    seq.decoding = True
                    if seq.first_token_s < 0:
                        seq.first_token_s = end
                    if seq.generated >= seq.out_tokens:
                        finished.append(seq)
                    elif self.batch is not None:
                        self.batch.join(seq)
            if finished:
                self._complete(finished, end)
        else:
            seqs, now, n, ctx, k, end, jump = run
            if jump:
                self.jumps += 1
            self._jumping = False
            self.busy_s += end - now
            self.iterations += k
            if self._log is not None:
                self._record(now, end - now, k, None, n, ctx)
            self.clock = end
            batch = self.batch
            if batch is None:
                self._advance(seqs, k, end)
            else:  # _advance's fast-mode half, inline (the hot path)
                if k > 1:
                    blocks = self._jump_blocks
                    if blocks < 0:  # batch.blocks_between(step + 1, step + k), inline
                        lo = batch.step + 1
                        hi = batch.step + k
                        bs, res = batch.block_size, batch.residues
                        blocks = (batch.n * (hi // bs - lo // bs) + bisect_left(res, bs - lo % bs)
                                  - bisect_left(res, bs - hi % bs))
                    kv = self.kv  # KVCache.take, inline
                    kv.free_blocks = free = kv.free_blocks - blocks
                    if kv.capacity_blocks - free > kv.peak_used_blocks:
                        kv.peak_used_blocks = kv.capacity_blocks - free
                    if free < kv.evictable_blocks:
                        kv.prefix.evict()
                batch.step += k
                heap = batch.heap
                if heap and heap[0][0] == batch.step:
                    self._complete(batch.finish_due(), end)
        if self.waiting or not self._inline_decode:
            self._next()
        else:
            self._next_decode()

    def _next_decode(self) -> None:
        """_next in the commonest case, inline: fast mode, vLLM's scheduler, nothing waiting, so the step is the
        decode batch's (schedule_vllm, allocate_decode_step and _plan_decode's same arithmetic); anything else
        (an empty engine, a preemption, a batch that is not the whole running list) takes _next."""
        batch, kv = self.batch, self.kv
        n = batch.n
        step = batch.step + 1
        bs = batch.block_size
        new = batch.counts[-step % bs]
        if n == 0 or n != len(self.running) or new > kv.free_blocks:
            self._next()
            return
        if new:  # kv.take(new), inline
            kv.free_blocks = free = kv.free_blocks - new
            if kv.capacity_blocks - free > kv.peak_used_blocks:
                kv.peak_used_blocks = kv.capacity_blocks - free
            if free < kv.evictable_blocks:
                kv.prefix.evict()
        step -= 1
        ctx = batch.ctx_base + n * step
        k_fin = batch.heap[0][0] - step
        now = self.clock
        f = self.replica.slowdown
        ab = self._affine.get(n)
        if ab is None:
            ab = self._affine[n] = self.cost.decode_affine(n)
        a, b = ab
        if k_fin <= 1:
            k = 1
        else:
            lo = step + 1  # batch.blocks_between(step + 1, step + k_fin), inline
            hi = step + k_fin
            res = batch.residues
            blocks = n * (hi // bs - lo // bs) + bisect_left(res, bs - lo % bs) - bisect_left(res, bs - hi % bs)
            if blocks <= kv.free_blocks:
                k = k_fin  # jump_length's common case: the blocks until the first finish are free
                self._jump_blocks = blocks  # what the jump's end takes, unless it is cut
            else:
                k = jump_length(batch, kv.free_blocks, k_fin)
                self._jump_blocks = -1
        # self._segment(now, n, ctx, a, b, f, k), inline with segment_end
        seg = self._seg
        if (seg is not None and seg[7] == now and seg[4] == n and seg[5] + n * seg[6] == ctx and seg[3] == f
                and seg[1] == a and seg[2] == b):
            s0, c0 = seg[0], seg[5]
            j = seg[6] + k
        else:
            s0, c0, j = now, ctx, k
        end = s0 + (j * a + b * (j * c0 + n * (j * (j - 1) >> 1))) * f
        self._seg = (s0, a, b, f, n, c0, j, end)
        if k == 1:
            self._pending = _new(DecodeRun, (None, now, n, ctx, 1, end, False))
        else:
            if self._precut is not None:
                k, end = self._precut_jump(k, end)
            self._pending = _new(DecodeRun, (None, now, n, ctx, k, end, True))
            self._jumping = True
        self._gen = gen = self._gen + 1
        now = self.env._now  # _at's push, inline
        d = end - now
        heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), self._on_boundary, gen))

    def _precut_jump(self, k: int, end: float) -> tuple[int, float]:
        """A jump of k iterations ending at end, planned where the next arrival of the workload is known to reach
        this engine with nothing waiting (CascadeFlow.arm_precut): end it at the boundary its cut would make
        (the first iteration end strictly after the arrival, _cut_segment, as _cut_jump), so that no cut and no stale
        boundary entry are needed. The arrival then finds the jump ending there (submit). Where the new end lies
        within 1e-12 (relative) of an arrival, or the arrival within that of it, the event loop's clock sums (exact
        only to an ulp) could order them otherwise than the cut would, so the jump is planned whole instead."""
        flow = self._precut
        i = flow.next_arrival
        if i >= flow.num_requests:
            return k, end
        if not flow.fits_everywhere[i]:
            while i < flow.num_requests and not flow.fits_everywhere[i] and not flow.precut_reaches(i):
                i += 1  # a request that does not fit the tier is dropped at its arrival, before any engine sees it
            if i >= flow.num_requests:
                return k, end
        arrival_s = flow.arrival_s
        t = arrival_s[i]
        if t >= end:
            return k, end
        shorter = self._cut_segment(k, t)
        if shorter is None:
            return k, end
        cut, seg = shorter
        cut_end = seg[7]
        margin = 1e-12 * cut_end
        if cut_end - t <= margin:
            return k, end
        # the arrivals after i (sorted; those before it have come), none within the margin of the new end
        last = flow.num_requests - 1
        while i < last and arrival_s[i + 1] < cut_end - margin:
            i += 1
        if i < last and arrival_s[i + 1] <= cut_end + margin:
            return k, end
        self._seg = seg
        self._jump_blocks = -1  # counted at the jump's end, as after a cut
        self._precut_s = t
        return cut, cut_end

    def _complete(self, finished: list, end: float) -> None:
        if len(finished) <= 4:
            for seq in finished:
                self.running.remove(seq)  # identity (Seq has no __eq__), in C
        else:
            done = set(map(id, finished))
            self.running = [s for s in self.running if id(s) not in done]
        rep = self.replica
        kv = self.kv
        for seq in finished:
            kv.release(seq)  # a call, not inline: tests/sim/test_stuck_guard.py leaks a block through it
            seq.blocks = 0
            self.outstanding -= 1
            rep.outstanding_work -= seq.work_tokens  # Replica.on_done, inline (once per visit)
            rep.flow.on_tier_done(seq, end, rep.replica_id)

    def _plan_decode(self, step: DecodeStep, now: float) -> DecodeRun:
        """The next decode-only iterations of the allocated step: one, its time from the cost model (reference
        mode), or as many as fast mode can jump over, with each one's end (sim.runtime.jump)."""
        dec, n, ctx, k_fin = step
        f = self.replica.slowdown
        ab = self._affine.get(n)
        if ab is None:
            ab = self._affine[n] = self.cost.decode_affine(n)
        a, b = ab
        if not self.fast:
            # The reference: one event per iteration, its time the segment's closed form. The cost model's own
            # time for the iteration must be a + b * S bit for bit (the ReplicaCost contract fast mode relies on).
            t = self.cost.iteration_time_s(BatchShape(decode_seqs=n, decode_ctx_tokens=ctx))
            if t != a + b * ctx:
                raise RuntimeError(f"the cost model of replica {self.replica.replica_id} breaks the ReplicaCost "
                                   f"contract: a decode batch of {n} sequences and {ctx} context tokens takes {t!r} s, "
                                   f"but decode_affine gives {a + b * ctx!r} s (a simulator bug)")
            return _new(DecodeRun, (dec, now, n, ctx, 1, self._segment(now, n, ctx, a, b, f, 1), False))
        k = jump_length(self.batch, self.kv.free_blocks, k_fin)
        waiting = self.waiting
        if k > 1 and waiting and self._arrivals_interrupt and (waiting[0].enqueue_s >= now or self.preempted_now):
            # The head arrived exactly at this boundary: admission makes it wait for the next one only
            # (batching.admit), so it may join there; a jump planned past that boundary would keep it out. Likewise
            # a sequence preempted by this very step was never offered admission: with prefix caching its blocks
            # stay cached, so it may fit again at the next boundary, as reference mode finds.
            k = 1
        return _new(DecodeRun, (dec, now, n, ctx, k, self._segment(now, n, ctx, a, b, f, k), k > 1))

    def _segment(self, now: float, n: int, ctx: int, a: float, b: float, f: float, k: int) -> float:
        """The end of the next k decode iterations from now, and the decode segment (sim.runtime.jump) updated to
        them: the current one continues where its last iteration ended now with the same n, (a, b) and f and the
        context it predicts; otherwise a new one starts now. Both modes decide this from the same state."""
        seg = self._seg
        if (seg is not None and seg[7] == now and seg[4] == n and seg[5] + n * seg[6] == ctx and seg[3] == f
                and seg[1] == a and seg[2] == b):
            s0, c0 = seg[0], seg[5]
            j = seg[6] + k
        else:
            s0, c0, j = now, ctx, k
        end = segment_end(s0, a, b, f, n, c0, j)
        self._seg = (s0, a, b, f, n, c0, j, end)
        return end

    def _advance(self, dec: list, k: int, end: float) -> None:
        """Apply k decode steps: in fast mode to the aggregate batch (steps 1..k-1 take their blocks at once, step
        0 was allocated by allocate_decode_step); in reference mode (k is always 1) sequence by sequence. Then
        the sequences that reached their output length finish."""
        batch = self.batch
        if batch is not None:
            if k > 1:
                self.kv.take(batch.blocks_between(batch.step + 1, batch.step + k))
            batch.step += k
            finished = batch.finish_due()
        else:
            finished = []
            for s in dec:
                s.generated += 1
                if s.generated >= s.out_tokens:
                    finished.append(s)
        if finished:
            self._complete(finished, end)

    # ---- records --------------------------------------------------------------------------------
    def _record(self, start: float, dur: float, iters: int, shape: BatchShape | None, n: int = 0, ctx: int = 0):
        log = self.replica.iteration_log
        if log is None:
            return
        if shape is None:
            log.append((self.replica.replica_id, self.index, start, dur, iters, 0, 0, n, ctx,
                        self.kv.used_blocks, len(self.waiting)))
        else:
            log.append((self.replica.replica_id, self.index, start, dur, iters, shape.prefill_tokens,
                        shape.num_prefill_seqs, shape.decode_seqs, shape.decode_ctx_tokens,
                        self.kv.used_blocks, len(self.waiting)))


ITERATION_COLUMNS = ["replica_id", "engine", "start_s", "duration_s", "iterations", "prefill_tokens",
                     "prefill_seqs", "decode_seqs", "decode_ctx_tokens", "kv_used_blocks", "waiting"]


class Replica:
    """A model replica on concrete GPUs; holds pp engines and routes each submitted visit to the least loaded."""

    def __init__(self, env, replica_id: int, tier: int, plan, cost, cfg, flow, iteration_log=None,
                 step_times: dict | None = None, decode_affine: dict | None = None,
                 prompt_times: dict | None = None) -> None:
        self.env = env
        self.replica_id = replica_id
        self.tier = tier
        self.plan = plan
        self.cost = cost
        self.cfg = cfg
        self.flow = flow
        self.iteration_log = iteration_log
        # cost.iteration_time_s of batches with prefill work by the BatchShape's fields (a tuple), for this run;
        # shared by the replicas of one cost model (Cluster), as the cost is a pure function of the shape.
        self.step_times = {} if step_times is None else step_times
        # The same times of one-prompt prefills with nothing cached, with their shapes, by prompt tokens (Engine._next)
        self.prompt_times = {} if prompt_times is None else prompt_times
        # cost.decode_affine by batch size, for this run or shared the same way (its engines read it at every jump)
        self.decode_affine = {} if decode_affine is None else decode_affine
        self.slowdown = 1.0  # a controller may slow a straggler down by a factor
        self.num_gpus = plan.tp * plan.pp
        self.start_s = env.now
        self.outstanding_work = 0.0  # load balancer's estimate, in tokens
        self.routed_units = None  # load_balancer prefix_aware: the prompt prefixes sent here (sim.runtime.prefix_cache)
        self.routed_capacity_units = 0
        per_engine = max(1, cost.kv_capacity_blocks // plan.pp)
        self.engines = [Engine(env, self, i, per_engine) for i in range(plan.pp)]
        kv = self.engines[0].kv  # KVCache.never_fits, solved for the token count once
        self.max_tokens_held = (kv.capacity_blocks - kv.watermark_blocks) * kv.block_size
        # Nominal decode throughput (tokens/s at 32 sequences of 1k context) turns outstanding tokens into time.
        a, b = cost.decode_affine(32)
        self.tokens_per_s = plan.pp * 32 / (a + b * 32 * 1024)

    @property
    def outstanding(self) -> int:
        return sum(e.outstanding for e in self.engines)

    def change_speed(self, cost=None, slowdown: float | None = None) -> None:
        """A fault changes this replica's speed: a straggler GPU (slowdown factor) or a degraded link (a cost
        rebuilt on the slower link). Iterations in flight finish at the old speed; a decode jump is cut at the
        next iteration boundary, so fast mode applies the change where reference mode does."""
        if cost is not None:
            self.cost = cost
            self.step_times = {}
            self.decode_affine = {}
            self.prompt_times = {}
            a, b = cost.decode_affine(32)
            self.tokens_per_s = self.plan.pp * 32 / (a + b * 32 * 1024)
        if slowdown is not None:
            self.slowdown = float(slowdown)
        for eng in self.engines:
            if cost is not None:
                eng.set_cost(cost)
            eng.interrupt_jump()

    @property
    def busy_s(self) -> float:
        return sum(e.busy_s for e in self.engines) / len(self.engines)

    def can_ever_hold(self, tokens: int) -> bool:
        """Whether an empty engine of this replica could admit a sequence of this many tokens (its KV capacity)."""
        return tokens <= self.max_tokens_held

    def submit(self, seq: Seq) -> None:
        eng = self.engines[0] if len(self.engines) == 1 else min(self.engines, key=lambda e: e.outstanding)
        self.outstanding_work += seq.work_tokens
        eng.submit(seq)

    def on_done(self, seq: Seq, end: float) -> None:
        self.outstanding_work -= seq.work_tokens
        self.flow.on_tier_done(seq, end, self.replica_id)

    def on_drop(self, seq: Seq, reason: str, now: float) -> None:
        self.outstanding_work -= seq.work_tokens
        self.flow.on_drop(seq, reason, now)
