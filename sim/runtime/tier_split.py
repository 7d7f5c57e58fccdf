"""Tier split: a cascade run on two cores, the first tier's engines in a forked process, its visits replayed in order.

A cascade is feed-forward: the first tier's engines see only the workload's arrivals (its router, its replicas,
their queues and KV caches), never what happens at a later tier. So a forked child can simulate the first tier alone
while the parent simulates everything else, and the parent learns each of the first tier's finished visits (and
drops) as an entry of its own event loop at the event-loop time at which that visit's engine boundary fired. The
parent's flow then does exactly what it would have done at that boundary (records, the judge's verdict entry,
forwarding, completion), so every later event is pushed at the same point of the same order as in one process.

Exactness. Events of one process keep their order (the same pushes in the same order, so the same event ids), and
the parent merges the child's boundaries by event-loop time. The only order the merge cannot know is between a
child boundary and a parent entry at the very same float time (the one-process order would then follow event ids
drawn across both tiers); the parent refuses to guess: it raises TierSplitTie, and simulate() runs the whole case
again in one process (sim.simulator). With continuous arrival times and judge latencies such ties are float
coincidences; the records of a split run equal those of a one-process run (tests/sim/runtime/test_tier_split.py).

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
import struct
import sys
import threading
from array import array
from heapq import heappop

from sim.runtime.router import TierRouter

AUTO_MIN_REQUESTS = 200_000
CHUNK_VISITS = 8192  # visits per message from the child
_FIELDS = 9  # kind, request, loop time, end (or drop time), first scheduling, first token, replica, preemptions, cached
_DONE, _DROP, _DROP_AT_SUBMIT = 0.0, 1.0, 2.0  # _DROP_AT_SUBMIT: dropped inside its own routing (an idle engine)
_HEADER = struct.Struct("<Q")
_INF = float("inf")


class TierSplitTie(Exception):
    """A first-tier boundary and a parent entry at the same event-loop time: their one-process order is not known."""


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
    """The child's stand-in for the flow at the first tier's replicas: it writes each finished or dropped visit to the
    parent, with the event-loop time of the boundary that finished it."""

    def __init__(self, env, fd: int) -> None:
        self.env = env
        self.fd = fd
        self.buf = array("d")
        self.reasons: list[str] = []
        self.routing = False  # inside the first tier's route(): a drop there happens within the routing event

    def router(self, route):
        """The first tier's route, marking what happens inside it."""
        def marked(seq) -> None:
            self.routing = True
            try:
                route(seq)
            finally:
                self.routing = False

        return marked

    def on_tier_done(self, seq, end: float, replica_id: int = -1) -> None:
        self.buf.extend((_DONE, seq.req, self.env._now, end, seq.first_sched_s, seq.first_token_s, replica_id,
                         seq.preemptions, seq.cached_tokens))
        if len(self.buf) >= CHUNK_VISITS * _FIELDS:
            self.flush()

    def on_drop(self, seq, reason: str, now: float) -> None:
        self.buf.extend((_DROP_AT_SUBMIT if self.routing else _DROP, seq.req, self.env._now, now, -1.0, -1.0, -1,
                         seq.preemptions, -1))
        self.reasons.append(reason)
        if len(self.buf) >= CHUNK_VISITS * _FIELDS:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            send(self.fd, ("visits", self.buf.tobytes(), self.reasons))
            self.buf = array("d")
            self.reasons = []


def send(fd: int, message) -> None:
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
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, n))


def _engine_stats(replicas) -> list:
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
    """Simulate the first tier alone and stream its visits' ends; never returns (os._exit)."""
    code = 1
    try:
        routers = flow.routers
        for router in routers[1:]:
            router.route = _swallow
        emitter = _Emitter(env, fd)
        routers[0].route = emitter.router(routers[0].route)
        for rep in routers[0].replicas:
            rep.flow = emitter
        env.run()
        emitter.flush()
        send(fd, ("end", env._now, _engine_stats(routers[0].replicas), _private_mb()))
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
    """The parent's view of the child's stream: the next first-tier visit end, applied to the flow on demand."""

    def __init__(self, fd: int, flow) -> None:
        self.fd = fd
        self.flow = flow
        self.rec = array("d")
        self.reasons: list[str] = []
        self.pos = 0
        self.drops = 0
        self.applied = 0  # visit ends applied so far
        self.end = None  # ("end", child's last loop time, engine stats, peak RSS MB) once received

        class _Visit:  # what the flow reads of a finished visit (one object, refilled per visit)
            __slots__ = ("req", "tier", "first_sched_s", "first_token_s", "preemptions", "cached_tokens")

        self.visit = _Visit()
        self.visit.tier = 0

    def next_time(self) -> float:
        """Event-loop time of the next visit end (inf once the child has none left)."""
        if self.pos >= len(self.rec):
            if self.end is not None:
                return _INF
            self._read()
            if self.pos >= len(self.rec):
                return _INF
        return self.rec[self.pos + 2]

    def at_submit(self) -> bool:
        """Whether the next visit end is a drop inside its own routing (next_time() called before)."""
        return self.pos < len(self.rec) and self.rec[self.pos] == _DROP_AT_SUBMIT

    def route(self, seq) -> None:
        """The parent's first-tier route(): what the child's engine did inside this routing (a drop) happens here."""
        if self.next_time() < _INF and self.at_submit() and self.rec[self.pos + 1] == seq.req:
            self.apply()

    def _read(self) -> None:
        while True:
            msg = receive(self.fd)
            if msg[0] == "visits":
                self.rec = array("d")
                self.rec.frombytes(msg[1])
                self.reasons = msg[2]
                self.pos = self.drops = 0
                return
            if msg[0] == "end":
                self.end = msg
                return
            raise msg[1]

    def apply(self) -> None:
        """The visit end at next_time(), as the flow hears it from an engine at that boundary."""
        p = self.pos
        kind, i, _, end, first_sched, first_token, replica, preemptions, cached = self.rec[p:p + _FIELDS]
        self.pos = p + _FIELDS
        self.applied += 1
        v = self.visit
        v.req = int(i)
        v.preemptions = int(preemptions)
        if kind == _DONE:
            v.first_sched_s = first_sched
            v.first_token_s = first_token
            v.cached_tokens = int(cached)
            self.flow.on_tier_done(v, end, int(replica))
        else:
            reason = self.reasons[self.drops]
            self.drops += 1
            self.flow.on_drop(v, reason, end)


def run_split(env, flow) -> dict:
    """Run env's simulation with the first tier's engines in a forked child. Returns what the run's meta reports of
    the split (tier_split_child_private_mb: the child's own memory at its end, pages it no longer shares with this
    process; what the split adds to the run's footprint). Raises TierSplitTie where the merge cannot know an order (the caller runs the case in one process)."""
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
        _, child_now, stats, child_private_mb = replay.end
        for rep, engines in zip(first.replicas, stats):
            for e, (busy_s, iterations, jumps, peak, free, evictable) in zip(rep.engines, engines):
                e.busy_s, e.iterations, e.jumps = busy_s, iterations, jumps
                e.kv.peak_used_blocks, e.kv.free_blocks, e.kv.evictable_blocks = peak, free, evictable
        if child_now > env._now:
            env._now = child_now  # the last entry of the run was the child's
        ok = True
        return {"tier_split": True, "tier_split_child_private_mb": child_private_mb}
    finally:
        os.close(r)
        if not ok:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)


def _merge(env, replay: _Replay) -> None:
    """EventLoop.run with the child's visit ends merged in by event-loop time; a tie raises TierSplitTie."""
    queue = env._queue
    tc = replay.next_time()
    while True:
        while queue and queue[0][0] < tc:
            env._now, _, _, fn, arg = heappop(queue)
            fn(arg)
        if tc == _INF:
            return
        if replay.at_submit():
            # A drop inside the routing of an arrival (or verdict) at tc: the parent's own entries up to tc run, and
            # that routing applies it (_Replay.route), as the one-process run drops it inside the same event.
            applied = replay.applied
            while replay.applied == applied and queue and queue[0][0] <= tc:
                env._now, _, _, fn, arg = heappop(queue)
                fn(arg)
            if replay.applied == applied:
                raise RuntimeError(f"tier split: a first-tier drop at t={tc!r} s found no routing of its request "
                                   "(a simulator bug)")
        else:
            if queue and queue[0][0] == tc:
                raise TierSplitTie(f"a first-tier boundary and another entry both at t={tc!r} s")
            env._now = tc
            replay.apply()
        tc = replay.next_time()
