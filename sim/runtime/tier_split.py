"""Tier split: a cascade on two cores, the first tier in a forked process, what follows its visits replayed here.

A cascade is feed-forward: the first tier's engines see only the workload's arrivals (its router, its replicas,
their queues and KV caches), never what happens at a later tier. So a forked child can simulate the first tier alone
while the parent simulates everything else. The child also takes the judge's verdict entries of the first tier's
answers; what each one decides (or a final answer, or a drop) reaches the parent as an item stamped with the
event-loop time at which it happened in the child. The parent's flow does it at that time (CascadeFlow._verdict_due,
_judged, _complete, on_drop), so every later event is pushed at the same point of the same order as in one process.
The first tier's visit records, which no event of the parent reads, come once at the end, as columns.

Exactness. Events of one process keep their order (the same pushes in the same order, so the same event ids), and
the parent merges the child's items by event-loop time. The only order the merge cannot know is between a child's
event and a parent entry at the very same float time (the one-process order would then follow event ids
drawn across both tiers); the parent refuses to guess: it raises TierSplitTie, and simulate() runs the whole case
again in one process (sim.simulator). With continuous arrival times and judge latencies such ties are float
coincidences; the records of a split run equal those of a one-process run (tests/sim/runtime/test_tier_split.py).
A drop inside the routing of a request (an idle engine that can never hold its prompt) happens within the arrival's
own event: the parent applies it in its own routing of that request (_Replay.route).

Eligible runs (split_reason): no controller, arrivals object, SLO stop or iteration log (each couples the tiers or
needs one event order), a first tier with replicas behind a plain router (no disaggregation), a later tier with
replicas, and os.fork (Linux). sim.tier_split: auto (runs of at least AUTO_MIN_REQUESTS requests, with two CPUs or
more and no other thread running) | on (also with other threads: the child runs only the simulator's own code, which
takes no lock another thread could hold at the fork; os.fork resets the interpreter's own) | off. The
records never depend on it.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
from array import array
from heapq import heappop

import numpy as np

from sim.runtime.router import TierRouter

# auto's size: sweeps run many smaller runs side by side and fill the cores themselves (make results' lanes), so by
# default only a run that is a job by itself splits (the scaling benchmark's 1M; its 10k and 100k stay in one process)
AUTO_MIN_REQUESTS = 200_000
CHUNK_VISITS = 8192  # items per message from the child
# An item: kind, request, event-loop time, the logical time of what happens. The first tier's visit records (no event
# of the parent reads them) come once, as columns, with the child's last message (_visit_columns).
_FIELDS = 4
_ITEM = struct.Struct("<4d")
_VERDICT, _JUDGED, _COMPLETE, _DROP, _DROP_AT_SUBMIT = 0.0, 1.0, 2.0, 3.0, 4.0
_HEADER = struct.Struct("<Q")
_INF = float("inf")


class TierSplitTie(Exception):
    """A child's event and a parent entry at the same event-loop time: their one-process order is not known."""


def split_reason(cfg, routers, num_requests: int, controller, arrivals, slo_stop) -> str:
    """Why this run cannot or should not split ("" where it splits)."""
    mode = cfg.tier_split
    if mode == "off":
        return "off"
    if mode == "auto":
        if num_requests < AUTO_MIN_REQUESTS:
            return f"fewer than {AUTO_MIN_REQUESTS:,} requests"
        if len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) < 2:
            return "one CPU"
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return "no os.fork on this platform"
    if mode == "auto" and threading.active_count() > 1:  # a forked child holds other threads' locks as they were
        return "other threads are running (a notebook kernel, a thread pool; sim.tier_split=on splits anyway)"
    if controller is not None or arrivals is not None or slo_stop is not None:
        return "a controller, arrivals object or SLO stop couples the tiers"
    if cfg.record_iterations:
        return "record_iterations keeps one iteration log in event order"
    first = routers[0]
    if type(first) is not TierRouter or not first.replicas:
        return "the first tier has no replicas or is disaggregated"
    if not any(r.replicas for r in routers[1:]):
        return "no later tier has replicas"
    return ""


def _swallow(seq) -> None:
    """A router's route() on the side of the split that does not simulate its tier."""


class _Emitter:
    """The child's link to the parent. The first tier's visits end in the child's own flow (its records, the judge's
    verdict entry); what happens to the request from there on, the parent does, at the same event-loop time: a
    verdict (VERDICT), a verdict without judge latency (JUDGED: inside the boundary), a final answer at the first tier
    (COMPLETE), or a drop (DROP, DROP_AT_SUBMIT: inside the request's own routing, at an idle engine)."""

    def __init__(self, env, flow, fd: int) -> None:
        self.env = env
        self.flow = flow
        self.fd = fd
        self.buf = array("d")
        self.reasons: list[str] = []
        self.routing = False  # inside the first tier's route()

    def attach(self) -> None:
        """Take the flow's exits from the first tier: its verdict entries, inline verdicts and final answers, and
        the first tier's drops (the later tiers' routers swallow what reaches them)."""
        flow = self.flow
        for router in flow.routers[1:]:
            router.route = _swallow
        route = flow.routers[0].route

        def marked(seq) -> None:
            self.routing = True
            try:
                route(seq)
            finally:
                self.routing = False

        flow.routers[0].route = marked
        flow._on_verdict = self.verdict
        flow._judged = self.judged
        flow._complete = self.complete
        for rep in flow.routers[0].replicas:
            rep.flow = self

    def on_tier_done(self, seq, end: float, replica_id: int = -1) -> None:
        self.flow.on_tier_done(seq, end, replica_id)

    def _emit(self, kind: float, i: int, now: float) -> None:
        self.buf.extend((kind, i, self.env._now, now))
        if len(self.buf) >= CHUNK_VISITS * _FIELDS:
            self.flush()

    def verdict(self, args) -> None:
        i, _, now = args
        self._emit(_VERDICT, i, now)

    def judged(self, i: int, t: int, now: float) -> None:
        self._emit(_JUDGED, i, now)

    def complete(self, i: int, t: int, now: float) -> None:
        self._emit(_COMPLETE, i, now)

    def on_drop(self, seq, reason: str, now: float) -> None:
        self.flow.book.preemptions[seq.req] += seq.preemptions  # counted in the columns, as on_tier_done's are
        self.reasons.append(reason)  # before _emit, which may send the chunk this drop ends
        self._emit(_DROP_AT_SUBMIT if self.routing else _DROP, seq.req, now)

    def flush(self) -> None:
        if self.buf:
            send(self.fd, ("visits", self.buf.tobytes(), self.reasons))
            self.buf = array("d")
            self.reasons = []


def send(fd: int, message) -> None:
    """One message to the pipe: its pickle's length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            raise RuntimeError("the tier-split child ended without its result (killed, or out of memory?)")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def receive(fd: int):
    """The next message from the pipe (blocks until the child has written it)."""
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, n))


def _visit_columns(book) -> dict:
    """The first tier's visit records as the child's flow wrote them (CascadeFlow.on_tier_done), column bytes."""
    cols = {name: getattr(book, name)[0].tobytes() for name in ("first_sched_s", "first_token_s", "done_s", "replica")}
    if book.cached_tokens is not None:
        cols["cached_tokens"] = book.cached_tokens[0].tobytes()
    cols["preemptions"] = book.preemptions.tobytes()  # the first tier's only: no later tier runs here
    return cols


def _take_visit_columns(book, cols: dict) -> None:
    """The child's first-tier visit records into the parent's book; its preemptions added to the later tiers'."""
    for name, raw in cols.items():
        if name == "preemptions":
            total = np.frombuffer(book.preemptions, dtype=np.int64) + np.frombuffer(raw, dtype=np.int64)
            book.preemptions = array("q", total.tobytes())
        else:
            column = array(getattr(book, name)[0].typecode)
            column.frombytes(raw)
            getattr(book, name)[0] = column


def _engine_stats(replicas) -> list:
    """What the run's meta reads of the first tier's engines, per replica and engine."""
    return [[(e.busy_s, e.iterations, e.jumps, e.kv.peak_used_blocks, e.kv.free_blocks, e.kv.evictable_blocks)
             for e in r.engines] for r in replicas]


def _private_mb() -> float:
    """This process's own memory (pages not shared with the parent since the fork), MB; NaN where unknown."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            kb = sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
        return kb / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")


def _child(env, flow, fd: int) -> None:
    """Simulate the first tier alone and stream what follows its visits; never returns (os._exit)."""
    code = 1
    cpu0 = time.process_time()
    try:
        routers = flow.routers
        emitter = _Emitter(env, flow, fd)
        emitter.attach()
        env.run()
        emitter.flush()
        send(fd, ("end", env._now, _engine_stats(routers[0].replicas), _private_mb(), time.process_time() - cpu0,
                  _visit_columns(flow.book)))
        code = 0
    except BaseException as exc:  # the parent re-raises it: the same error a one-process run would raise
        try:
            try:
                send(fd, ("error", exc))
            except Exception:
                send(fd, ("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        except BaseException:
            pass
    finally:
        os._exit(code)


class _Replay:
    """The parent's side of the stream: the next item, applied to the flow as the child's event did it."""

    def __init__(self, fd: int, flow) -> None:
        self.fd = fd
        self.flow = flow
        self.items: list[tuple] = []
        self.reasons: list[str] = []
        self.pos = 0
        self.drops = 0
        self.applied = 0  # items applied so far
        self.end = None  # ("end", child's last loop time, engine stats, private MB, CPU s, visit columns) once received

        class _Visit:  # what the flow reads of a dropped visit (one object, refilled per drop)
            __slots__ = ("req", "tier", "preemptions")

        self.visit = _Visit()
        self.visit.tier = 0
        self.visit.preemptions = 0  # the child's columns count them (_visit_columns)

    def head(self) -> tuple | None:
        """The next item (None once the child has none left)."""
        if self.pos < len(self.items):
            return self.items[self.pos]
        while self.end is None:
            msg = receive(self.fd)
            if msg[0] == "visits":
                self.items = list(_ITEM.iter_unpack(msg[1]))
                self.reasons = msg[2]
                self.pos = self.drops = 0
                if self.items:
                    return self.items[0]
            elif msg[0] == "end":
                self.end = msg
            else:
                raise msg[1]
        return None

    def route(self, seq) -> None:
        """The parent's first-tier route(): a drop the child's engine made inside this routing happens here."""
        item = self.head()
        if item is not None and item[0] == _DROP_AT_SUBMIT and item[1] == seq.req:
            self.apply(item)

    def apply(self, item: tuple) -> None:
        """The item at the head, done to the flow."""
        self.pos += 1
        self.applied += 1
        kind, i, _, now = item
        i = int(i)
        flow = self.flow
        if kind >= _DROP:
            v = self.visit
            v.req = i
            reason = self.reasons[self.drops]
            self.drops += 1
            flow.on_drop(v, reason, now)
            return
        if kind == _VERDICT:
            flow._verdict_due((i, 0, now))
        elif kind == _JUDGED:
            flow._judged(i, 0, now)
        else:
            flow._complete(i, 0, now)


def run_split(env, flow) -> dict:
    """Run env's simulation with the first tier in a forked child. Returns what the run's meta reports of the split
    (tier_split_child_private_mb: the child's own memory at its end, pages it no longer shares with this process, what
    the split adds to the run's footprint; tier_split_child_cpu_s: the child's CPU seconds). Raises TierSplitTie where
    the merge cannot know an order (the caller runs the case in one process)."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)  # fewer wake-ups per message
    except (ImportError, OSError):
        pass
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(env, flow, w)
    os.close(w)
    ok = False
    try:
        first = flow.routers[0]
        replay = _Replay(r, flow)
        first.route = replay.route
        _merge(env, replay)
        _, child_now, stats, child_private_mb, child_cpu_s, columns = replay.end
        _take_visit_columns(flow.book, columns)
        for rep, engines in zip(first.replicas, stats):
            for e, (busy_s, iterations, jumps, peak, free, evictable) in zip(rep.engines, engines):
                e.busy_s, e.iterations, e.jumps = busy_s, iterations, jumps
                e.kv.peak_used_blocks, e.kv.free_blocks, e.kv.evictable_blocks = peak, free, evictable
        if child_now > env._now:
            env._now = child_now  # the last entry of the run was the child's
        ok = True
        return {"tier_split": True, "tier_split_child_private_mb": child_private_mb,
                "tier_split_child_cpu_s": child_cpu_s}
    finally:
        os.close(r)
        if not ok:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)


def _merge(env, replay: _Replay) -> None:
    """EventLoop.run with the child's items merged in by event-loop time; a tie raises TierSplitTie."""
    queue = env._queue
    item = replay.head()
    while item is not None:
        tc = item[2]
        while queue and queue[0][0] < tc:
            env._now, _, _, fn, arg = heappop(queue)
            fn(arg)
        if item[0] == _DROP_AT_SUBMIT:
            # A drop inside the first-tier routing of an arrival at tc: the parent's own entries up to tc run, and its
            # routing of that arrival applies it (_Replay.route), as the one-process run drops it inside that event.
            applied = replay.applied
            while replay.applied == applied and queue and queue[0][0] <= tc:
                env._now, _, _, fn, arg = heappop(queue)
                fn(arg)
            if replay.applied == applied:
                raise RuntimeError(f"tier split: a first-tier drop at t={tc!r} s found no routing of its request "
                                   "(a simulator bug)")
        else:
            if queue and queue[0][0] == tc:
                raise TierSplitTie(f"a first-tier event and another entry both at t={tc!r} s")
            env._now = tc
            replay.apply(item)
        item = replay.head()
    while queue:  # the child is done: the parent's own entries to the end
        env._now, _, _, fn, arg = heappop(queue)
        fn(arg)
