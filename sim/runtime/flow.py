"""The cascade flow: arrivals, tier by tier service, the judge's latency and gate, accept or forward, final records.

routing "cascade": a request starts at the first tier with replicas; after a non-final tier answers, the judge
takes its latency, then the gate score (real score for an oracle judge, real + noise otherwise) is compared
with that tier's threshold: at or above it the answer is returned, below it the request is forwarded to the
next tier with replicas, which prefills the prompt again (plus the draft answer with forward_with_draft).
The last tier with replicas always answers and is not judged.

routing "direct" (RouteLLM-style): a router predicts, per request, the smallest tier whose real score reaches
its threshold (the last tier if none); with probability router_error_rate it instead predicts a tier drawn
uniformly from the others. The request is served there only (no judge, no forwarding); a predicted tier
without replicas is replaced by the next tier up with replicas (or the highest one below if none is above).

Context limits: tier t takes a visit only if its prompt (plus the draft with forward_with_draft) and the answer
tier t would generate fit the tier model's max_context. With cfg.context_policy "skip" a visit passes over the
planned tiers that cannot take it (counted in context_skipped), and a tier with no taker above it answers finally
without judging; with "drop" a visit that reaches a tier that cannot take it is dropped. A request no tier can
take is dropped with reason context_exceeded under either policy.

A run given an SloStop ends early, raising SloMissed, as soon as enough requests have certainly missed their
deadline that its SLO scale must exceed the target whatever the other requests do (sim.runtime.slo_stop): the
throughput bisection needs only that verdict from an overloaded rate. Symmetrically it raises SloMet once enough
requests finished within the target that the SLO scale must be within it (sim.runtime.slo_stop.SloWatch.finished).
"""
from __future__ import annotations

from array import array

import numpy as np

from heapq import heappush

from sim.runtime.batching import Seq
from sim.runtime.loop import NORMAL
from sim.runtime.prefix_cache import request_units
from sim.runtime.records import STATUS_COMPLETED, STATUS_DROPPED, RecordBook
from sim.runtime.router import TierRouter
from sim.runtime.slo_stop import CLOCK_MARGIN_S, SloStop, SloWatch


class CascadeFlow:
    """Owns the per-request state machine; replicas call on_tier_done / on_drop."""

    def __init__(self, env, workload, thresholds, routing: str, routers: list, cfg, gate_scores: np.ndarray,
                 judge_latency_s: np.ndarray, direct_tier: np.ndarray | None, arrivals=None, max_context=None,
                 slo_stop: SloStop | None = None) -> None:
        self.env = env
        self.routers = routers
        self.cfg = cfg
        self.routing = routing
        self.num_tiers = len(routers)
        self.thresholds = [float(h) for h in thresholds]
        # Per-request inputs as array.array columns (per tier: indexed [tier][request]): an item reads as fast as a
        # list's and takes 8 bytes, not a pointer plus a Python number (memory for runs of millions of requests).
        self.arrival_s = _column(workload.arrival_s, "d")
        self.num_requests = len(self.arrival_s)
        self.next_arrival = 0  # the workload's next request not yet arrived (read by a pre-cut engine, arm_precut)
        self.input_tokens = _column(workload.input_tokens, "q")
        output_tokens = np.maximum(workload.output_tokens, 1)
        self.output_tokens = [_column(col, "q") for col in output_tokens.T]
        self.gate_scores = [_column(col, "d") for col in gate_scores.T]
        self.judge_latency_s = [_column(col, "d") for col in judge_latency_s.T]
        self.direct_tier = None if direct_tier is None else _column(direct_tier, "q")
        self.max_context = [float("inf")] * self.num_tiers if max_context is None else list(max_context)
        self.skip_context = getattr(cfg, "context_policy", "skip") == "skip"
        self.context_skipped: set[int] = set()  # requests that passed over a tier for its context limit
        self.forward_with_draft = bool(cfg.forward_with_draft)
        # Per request: whether every visit it could make fits every tier's context (its longest possible prompt,
        # with the longest draft, plus any tier's answer). Checked once here, so the common request skips the
        # per-visit context checks, whose outcome is then known to be "fits".
        longest_prompt = workload.input_tokens + (output_tokens.max(axis=1) if self.forward_with_draft else 0)
        self.fits_everywhere = np.all(longest_prompt[:, None] + output_tokens
                                      <= np.asarray(self.max_context, dtype=np.float64), axis=1).tolist()
        self.book = RecordBook(workload.arrival_s, workload.input_tokens, self.num_tiers, output_tokens,
                               workload.scores)
        self.units = request_units(workload, cfg)  # prefix-cache keys per request; None: no prefix caching
        if self.units is not None:
            self.book.track_cached_tokens()
        self.lb_out = float(cfg.lb_output_tokens_estimate)
        self.lb_prefill = float(cfg.lb_prefill_weight)
        # Number in system, integrated over time: an account of Little's L kept apart from the records.
        self.in_system = 0
        self.area = 0.0
        self._last_change = 0.0
        self.arrived = 0
        self.finished = 0
        self.done = env.event()  # succeeds when every request has completed or been dropped
        # arrivals: an object that admits requests during the run (sim.fidelity.clients' closed-loop client) instead of
        # the workload's fixed arrival times; it hears of every finish through on_finish(i, now).
        self.arrivals = arrivals
        if arrivals is not None:
            self.book.arrival_s = self.book.arrival_s.copy()  # the workload's array is read-only
        # Arrivals and the judge's verdicts are bare callbacks of the event loop (env: sim.runtime.loop.EventLoop).
        self._call_at = env.call_at
        self._on_arrival = self._arrival_due  # one bound method for every arrival entry (and verdict's)
        self._on_verdict = self._verdict_due
        if arrivals is None:  # the arrivals start where a SimPy process would: urgently, now
            env.call_urgent(self._arrivals_from, 0)
        else:
            arrivals.start(env, self)
        self.slo_watch = None
        if slo_stop is not None:
            if arrivals is not None:
                raise ValueError("an SLO stop needs the workload's own arrival times (no arrivals object)")
            self.slo_watch = SloWatch(slo_stop, self.arrival_s, self.book.status)

    def arm_precut(self) -> bool:
        """Let the engine that every arrival reaches plan its decode jumps to end where the next arrival would cut
        them (Engine._precut_jump), when the run has exactly one: one tier with replicas, holding one replica with
        one engine (a plain TierRouter), the workload's own arrival times, cascade routing, and no SLO watch. The
        caller arms it only without a controller, so no fault, re-plan or load changes that while the run lasts.
        Such a run has no other entries in its event loop than that engine's boundaries and the arrivals (the
        last tier answers without a judge), so the pre-cut boundary is ordered among them as the cut's would be.
        Returns whether it armed one."""
        if self.arrivals is not None or self.slo_watch is not None or self.direct_tier is not None:
            return False
        staffed = [r for r in self.routers if r.replicas]
        if len(staffed) != 1 or type(staffed[0]) is not TierRouter or len(staffed[0].replicas) != 1:
            return False
        engines = staffed[0].replicas[0].engines
        if len(engines) != 1 or not engines[0]._inline_decode:
            return False
        engines[0]._precut = self
        self._precut_tier = self.routers.index(staffed[0])
        return True

    def precut_reaches(self, i: int) -> bool:
        """Armed (arm_precut): whether request i, which does not fit every tier, reaches the one engine (_arrive's
        _enter finds that its tier takes the visit; else it is dropped for its context at its arrival)."""
        return self._fits(i, self._precut_tier, self.input_tokens[i])

    # ---- bookkeeping of the number in system ----------------------------------------------------
    def _count(self, delta: int, now: float) -> None:
        self.area += self.in_system * (now - self._last_change)
        self._last_change = now
        self.in_system += delta

    # ---- arrivals -------------------------------------------------------------------------------
    def _arrivals_from(self, i: int) -> None:
        """Admit the workload's requests from i on while they are due; then wait for the next one."""
        env, arrival_s = self.env, self.arrival_s
        for i in range(i, len(arrival_s)):
            t = arrival_s[i]
            if t > env.now:
                self.next_arrival = i
                self._call_at(t, self._on_arrival, i)
                return
            self.next_arrival = i + 1
            self._arrive(i, t)
        self.next_arrival = len(arrival_s)

    def _arrival_due(self, i: int) -> None:
        """Request i's arrival entry: _arrive(i) then _arrivals_from(i + 1), the common case inline (one entry per
        request: no SLO watch, no direct routing, a request that fits every tier's context)."""
        arrival_s = self.arrival_s
        now = arrival_s[i]
        self.next_arrival = i + 1
        if self.direct_tier is not None or not self.fits_everywhere[i]:
            self._arrive(i, now)
        else:
            # _arrive's SLO check, _count(+1, now), _live_tier_from(0) and _enter's fitting path, inline: the same
            # arithmetic in order
            watch = self.slo_watch
            if watch is not None and now - CLOCK_MARGIN_S > watch.due_s:  # check_open's first test
                watch.check_open(now)
            self.area += self.in_system * (now - self._last_change)
            self._last_change = now
            self.in_system += 1
            self.arrived += 1
            routers = self.routers
            tier = 0
            while tier < self.num_tiers and not routers[tier].planned:
                tier += 1
            if tier == self.num_tiers:
                self.on_drop_request(i, "no_live_replica", now)
            else:  # _visit, inline
                book = self.book
                book.enter_s[tier][i] = now
                book.tiers_visited[i] += 1
                prompt = self.input_tokens[i]
                seq = Seq(i, tier, prompt, self.output_tokens[tier][i], now, self.lb_out + self.lb_prefill * prompt)
                if self.units is not None:
                    self.units.attach(seq, i)
                routers[tier].route(seq)
        i += 1
        if i < self.num_requests:
            t = arrival_s[i]
            env = self.env
            if t > env._now:  # EventLoop.call_at's entry, pushed here (once per request)
                d = t - env._now
                heappush(env._queue, (env._now + d, NORMAL, next(env._eid), self._on_arrival, i))
            else:
                self._arrivals_from(i)

    def admit(self, i: int, now: float) -> None:
        """Request i arrives now (an arrivals object decides when instead of the workload's arrival times)."""
        self.arrival_s[i] = now
        self.book.arrival_s[i] = now
        self._arrive(i, now)

    def _arrive(self, i: int, now: float) -> None:
        """Request i enters the system at its first tier: the first planned one, or its direct route's."""
        if self.slo_watch is not None:
            self.slo_watch.check_open(now)
        self._count(+1, now)
        self.arrived += 1
        if self.direct_tier is not None:
            self._enter(i, self._live_tier_direct(self.direct_tier[i]), self.input_tokens[i], now)
        else:
            self._enter(i, self._live_tier_from(0), self.input_tokens[i], now)

    # A tier counts while it is planned, even with no live replica: its visits wait for a repair or re-plan.
    def _live_tier_from(self, t: int) -> int:
        while t < self.num_tiers and not self.routers[t].planned:
            t += 1
        return t if t < self.num_tiers else -1

    def _live_tier_direct(self, t: int) -> int:
        up = self._live_tier_from(t)
        if up >= 0:
            return up
        for d in range(t - 1, -1, -1):
            if self.routers[d].planned:
                return d
        return -1

    def _fits(self, i: int, tier: int, prompt_tokens: int) -> bool:
        return prompt_tokens + self.output_tokens[tier][i] <= self.max_context[tier]

    def _taker_from(self, i: int, t: int, prompt_tokens: int) -> int:
        """The first planned tier from t up that can take the visit (skip policy), else -1."""
        t = self._live_tier_from(t)
        while t >= 0 and not self._fits(i, t, prompt_tokens):
            t = self._live_tier_from(t + 1)
        return t

    def _next_tier(self, i: int, t: int) -> int:
        """Where a request answered at tier t would be forwarded: -1 means tier t's answer is final."""
        if not self.skip_context or self.fits_everywhere[i]:
            return self._live_tier_from(t + 1)
        return self._taker_from(i, t + 1, self._forward_prompt(i, t))

    def _forward_prompt(self, i: int, t: int) -> int:
        return self.input_tokens[i] + (self.output_tokens[t][i] if self.forward_with_draft else 0)

    def _context_fallback(self, i: int, tier: int, prompt_tokens: int) -> int:
        """A tier that cannot take the visit: under skip the next one up that can (for direct routing, else the
        highest below that can); under drop, or when none can, -1."""
        if not self.skip_context:
            return -1
        t = self._taker_from(i, tier + 1, prompt_tokens)
        if t < 0 and self.direct_tier is not None:
            t = next((d for d in range(tier - 1, -1, -1)
                      if self.routers[d].planned and self._fits(i, d, prompt_tokens)), -1)
        if t >= 0:
            self.context_skipped.add(i)
        return t

    def _enter(self, i: int, tier: int, prompt_tokens: int, now: float) -> None:
        """The request arrives at a tier at logical time now (entities keep exact times; env.now is within an ulp)."""
        if tier < 0:
            self.on_drop_request(i, "no_live_replica", now)
            return
        if not self.fits_everywhere[i] and not self._fits(i, tier, prompt_tokens):
            tier = self._context_fallback(i, tier, prompt_tokens)
            if tier < 0:
                self.on_drop_request(i, "context_exceeded", now)
                return
        self._visit(i, tier, prompt_tokens, now)

    def _visit(self, i: int, tier: int, prompt_tokens: int, now: float) -> None:
        """The visit of request i to a tier that can take it, handed to the tier's router."""
        book = self.book
        book.enter_s[tier][i] = now
        book.tiers_visited[i] += 1
        seq = Seq(i, tier, prompt_tokens, self.output_tokens[tier][i], now, self.lb_out + self.lb_prefill * prompt_tokens)
        if self.units is not None:
            self.units.attach(seq, i)
        self.routers[tier].route(seq)

    # ---- callbacks from replicas ----------------------------------------------------------------
    def on_tier_done(self, seq: Seq, end: float, replica_id: int = -1) -> None:
        i, t = seq.req, seq.tier
        book = self.book
        # The visit's times as they happened; its queue, prefill and decode durations are their differences, taken
        # by RecordBook.to_frame (the same float subtractions, done once per column).
        book.first_sched_s[t][i] = seq.first_sched_s
        book.first_token_s[t][i] = seq.first_token_s
        book.done_s[t][i] = end
        if seq.preemptions:
            book.preemptions[i] += seq.preemptions
        book.replica[t][i] = replica_id
        if book.cached_tokens is not None:
            book.cached_tokens[t][i] = seq.cached_tokens
        if self.direct_tier is not None:
            nxt = -1
        elif not self.skip_context or self.fits_everywhere[i]:  # _next_tier's common case, inline
            nxt = t + 1
            routers = self.routers
            while nxt < self.num_tiers and not routers[nxt].planned:
                nxt += 1
            if nxt == self.num_tiers:
                nxt = -1
        else:
            nxt = self._next_tier(i, t)
        if nxt < 0:
            self._complete(i, t, end)
            return
        lat = self.judge_latency_s[t][i]
        if lat > 0:
            env = self.env  # EventLoop.call_at's entry, pushed here (once per judged visit)
            now = env._now
            d = end + lat - now
            heappush(env._queue, (now + d if d > 0.0 else now, NORMAL, next(env._eid), self._on_verdict,
                                  (i, t, end + lat)))
        else:
            self._judged(i, t, end)

    def _verdict_due(self, args) -> None:
        """A judge's verdict entry: _judged(*args), its common case inline (a request that fits every tier's
        context, forwarded to the next planned tier)."""
        i, t, now = args
        if self.skip_context and not self.fits_everywhere[i]:
            self._judged(i, t, now)
            return
        book = self.book
        book.judge_s[t][i] = self.judge_latency_s[t][i]
        gate = self.gate_scores[t][i]
        book.gate_score[t][i] = gate
        if gate >= self.thresholds[t]:
            self._complete(i, t, now)
            return
        nxt = t + 1  # _next_tier (== _live_tier_from(t + 1) here), inline
        routers = self.routers
        while nxt < self.num_tiers and not routers[nxt].planned:
            nxt += 1
        if nxt == self.num_tiers:
            self._complete(i, t, now)
            return
        prompt = self.input_tokens[i] + (self.output_tokens[t][i] if self.forward_with_draft else 0)
        if self.fits_everywhere[i]:
            self._visit(i, nxt, prompt, now)  # _enter's checks pass: a live tier, a visit that fits
        else:
            self._enter(i, nxt, prompt, now)

    def _judged(self, i: int, t: int, now: float) -> None:
        book = self.book
        book.judge_s[t][i] = self.judge_latency_s[t][i]
        gate = self.gate_scores[t][i]
        book.gate_score[t][i] = gate
        if gate >= self.thresholds[t] or self._next_tier(i, t) < 0:
            self._complete(i, t, now)
            return
        self._enter(i, self._live_tier_from(t + 1), self._forward_prompt(i, t), now)

    def _complete(self, i: int, t: int, now: float) -> None:
        book = self.book
        if book.status[i]:
            raise RuntimeError(f"request {i} finished twice (a simulator bug)")
        book.final_tier[i] = t  # final_score, ttft_s and output_tokens_final follow from it (RecordBook.to_frame)
        book.completion_s[i] = now
        book.status[i] = STATUS_COMPLETED
        if self.arrivals is not None:  # (no SLO watch with an arrivals object: __init__ refuses the pair)
            self._finish(i, now)
            return
        # _finish and its _count(-1, now), inline (no arrivals object): once per request
        watch = self.slo_watch
        if watch is not None:  # the latency the records compute (completion_s - arrival_s), float for float
            watch.finished(i, now - book.arrival_s[i])
            if now - CLOCK_MARGIN_S > watch.due_s:  # check_open's first test
                watch.check_open(now)
        self.finished += 1
        self.area += self.in_system * (now - self._last_change)
        self._last_change = now
        self.in_system -= 1
        if self.finished == self.num_requests and not self.done.triggered:
            self.done.succeed()

    def on_drop(self, seq: Seq, reason: str, now: float) -> None:
        self.book.preemptions[seq.req] += seq.preemptions
        self.on_drop_request(seq.req, f"{reason}_t{seq.tier}", now)

    def on_drop_request(self, i: int, reason: str, now: float) -> None:
        book = self.book
        if book.status[i]:
            raise RuntimeError(f"request {i} finished twice (a simulator bug)")
        book.status[i] = STATUS_DROPPED
        book.drop_reason[i] = reason
        book.completion_s[i] = np.nan
        if self.slo_watch is not None:
            self.slo_watch.dropped(i, now)
        self._finish(i, now)

    def _finish(self, i: int, now: float) -> None:
        if self.slo_watch is not None:
            self.slo_watch.check_open(now)
        self.finished += 1
        self._count(-1, now)
        if self.arrivals is not None:
            self.arrivals.on_finish(i, now)
        if self.finished == self.num_requests and not self.done.triggered:
            self.done.succeed()

    def requeue(self, seq: Seq) -> None:
        """A visit whose replica went away goes back to its tier's router (or the next live tier)."""
        now = self.env.now
        # Its tier left the deployment: the next planned tier up, else the highest below (whose answer is final).
        tier = self._live_tier_direct(seq.tier)
        if tier == seq.tier:
            seq.enqueue_s = now
            self.routers[tier].route(seq)
        else:
            self._enter(seq.req, tier, seq.prompt_tokens, now)

    # ---- online control -------------------------------------------------------------------------
    def set_thresholds(self, thresholds) -> None:
        """A new routing policy applies at once to every later gate decision."""
        self.thresholds = [float(h) for h in thresholds]

    def reroute_unplanned(self) -> int:
        """Visits waiting at tiers that left the deployment move on to the next planned tier."""
        moved = 0
        for router in self.routers:
            if not router.planned and router.parked:
                for seq in router.unpark():
                    self.requeue(seq)
                    moved += 1
        return moved

    def drop_parked(self, now: float) -> int:
        """At the end of a run, visits still waiting for a tier that never came back are dropped, with a reason."""
        dropped = 0
        for t, router in enumerate(self.routers):
            for seq in router.unpark():
                self.book.preemptions[seq.req] += seq.preemptions
                self.on_drop_request(seq.req, f"tier_{t}_unavailable", now)
                dropped += 1
        return dropped


def _column(values: np.ndarray, typecode: str) -> array:
    """A 1-D numpy column as an array.array of float64 ("d") or int64 ("q") values."""
    return array(typecode, np.ascontiguousarray(values, dtype=np.float64 if typecode == "d" else np.int64).tobytes())
