"""The simulator's event loop: SimPy's Environment with plain-callback entries in the same queue for the hot path.

An engine boundary, an arrival and a judge's verdict need no SimPy Event: nothing waits on them but one callback.
`call_at(t, fn, arg)` schedules fn(arg) as a bare (time, NORMAL, eid, fn, arg) entry of SimPy's own heap,
with SimPy's own clock arithmetic (now + delay) and its own event ids, so bare entries and SimPy events (processes,
controllers, the KV links of disaggregated tiers) interleave exactly as the same calls to env.timeout would:
the order of a run, its clock values and hence its records are those of plain SimPy. A bare entry cannot be
cancelled either; its owner ignores it when it fires stale. SimPy stays the documented semantics (sim/simulator.py).
Every entry has the same five fields: SimPy's own events are scheduled as (time, priority, eid, _fire, event), so the
loop pops and calls without telling the kinds apart (eids are unique, so no comparison reaches the fourth field).
"""
from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event


class EventLoop(simpy.Environment):
    """simpy.Environment plus call(): a callback at now + delay without an Event object."""

    def call_at(self, t: float, fn, arg) -> None:
        """Run fn(arg) at logical time t (now if t is not ahead), ordered among SimPy's events as
        env.timeout(sim.runtime.clock.delay_to(now, t)) made now would be, at the same float time."""
        now = self._now
        d = t - now
        heappush(self._queue, (now + d if d > 0.0 else now, NORMAL, next(self._eid), fn, arg))

    def call_urgent(self, fn, arg) -> None:
        """Run fn(arg) now, before the normal events of this instant: where SimPy starts a process."""
        heappush(self._queue, (self._now, URGENT, next(self._eid), fn, arg))

    def schedule(self, event: Event, priority=NORMAL, delay: float = 0) -> None:
        """SimPy's schedule, as an entry of this loop's five fields (the event fired by _fire)."""
        heappush(self._queue, (self._now + delay, priority, next(self._eid), self._fire, event))

    def step(self) -> None:
        try:
            self._now, _, _, fn, arg = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        fn(arg)

    def _fire(self, event: Event) -> None:
        """SimPy's processing of one popped Event (simpy.core.Environment.step after its pop)."""
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, simpy.events.EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def run(self, until=None):
        """SimPy's run (until None or an Event; a number goes to SimPy's own) with the step loop inlined."""
        if until is not None:
            if not isinstance(until, Event):
                return super().run(until)
            if until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        try:
            while queue:
                self._now, _, _, fn, arg = heappop(queue)
                fn(arg)
            raise EmptySchedule
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}') from None
        return None

