"""Queue entries per request by kind: the event loop's work for a run, counted entry by entry (docs/performance.md).

Runs the simulator with a counting copy of the event loop (sim.runtime.loop.EventLoop.run, the same order and
clock) and sorts every entry it pops: an engine boundary (a prefill iteration's end, a decode jump's end, one
decode iteration's end, or a stale boundary, left behind when an arrival cut a jump short), an arrival, a judge's
verdict, a KV transfer's arrival at a decode instance, or a SimPy event (controllers, faults, loads). The records
are those of an ordinary run (the tool prints their hash).

Usage: python -m tools.queue_entries [--case llama2_70b_tp8_azure2k] [--requests 20000] [--plan deepseek_default]
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import sys
from heapq import heappop

import pandas as pd

import sim.simulator as simulator
from sim.common.cli import exit_on_user_error
from sim.common.errors import ConfigError
from sim.runtime.jump import DecodeRun
from sim.runtime.loop import EventLoop
from sim.runtime.replica import PrefillIteration

KINDS = {"_arrival_due": "arrival", "_arrivals_from": "arrival (the first: the arrivals' urgent start)",
         "_verdict_due": "judge verdict", "_arrive_due": "KV transfer arrival"}


class CountingLoop(EventLoop):
    """EventLoop whose run() (until None only, as simulate() calls it without a controller) counts each entry."""

    counts: collections.Counter

    def run(self, until=None):
        if until is not None:
            raise ValueError("the counting loop runs to the end only (no controller)")
        counts = self.counts = collections.Counter()
        queue = self._queue
        while queue:
            self._now, _, _, fn, arg = heappop(queue)
            if fn == self._fire:
                counts["SimPy event"] += 1
                self._fire(arg)
                continue
            name = getattr(fn, "__name__", "")
            if name == "_boundary":
                eng = fn.__self__
                run = eng._pending
                if arg != eng._gen:
                    counts["engine boundary, stale (its jump was cut short)"] += 1
                elif type(run) is PrefillIteration:
                    counts["engine boundary: prefill iteration end"] += 1
                elif type(run) is DecodeRun and run.jump:  # a jump, as the engine counts them
                    counts["engine boundary: decode jump end"] += 1
                else:
                    counts["engine boundary: one decode iteration end"] += 1
            else:
                counts[KINDS.get(name, name)] += 1
            fn(arg)
        return None


def count(plan, cascade, cluster, workload, cfg, seed: int = 0):
    """(entries by kind, hash of the request table, the SimResult) of one run."""
    loops = []

    def factory():
        loops.append(CountingLoop())
        return loops[-1]

    saved = simulator.EventLoop
    simulator.EventLoop = factory
    try:
        res = simulator.simulate(plan, cascade, cluster, workload, cfg, seed=seed)
    finally:
        simulator.EventLoop = saved
    digest = hashlib.sha256(pd.util.hash_pandas_object(res.requests, index=True).values.tobytes()).hexdigest()[:16]
    return loops[0].counts, digest, res


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.queue_entries", description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("llama2_70b_tp8_azure2k",), help="the named case instead of Poisson requests")
    ap.add_argument("--requests", type=int, default=20000, help="Poisson requests at the trace's rate")
    ap.add_argument("--plan", default="deepseek_default", help="plan of conf/plan for the Poisson run")
    args = ap.parse_args(argv)
    if args.requests < 1:
        raise ConfigError(f"--requests must be a positive request count, got {args.requests}")
    from sim.bench import default_scenario, llama2_70b_tp8_azure2k
    from sim.workload import build_workload

    if args.case:
        plan, cascade, cluster, workload, cfg = llama2_70b_tp8_azure2k(0)
        label = args.case
    else:
        plan, cascade, cluster, _, cfg = default_scenario(0, args.plan)
        workload = build_workload("conversation", cascade, seed=0, arrival_process="poisson",
                                  num_requests=args.requests)
        label = f"{args.requests:,} Poisson requests, plan {args.plan}"
    counts, digest, res = count(plan, cascade, cluster, workload, cfg)
    visits = int(res.requests["tiers_visited"].sum())
    n = workload.num_requests
    print(f"{label}: {n:,} requests, {visits:,} tier visits, request table {digest}")
    for kind, c in counts.most_common():
        print(f"  {kind:50s} {c:>10,d}  {c / n:5.2f} per request")
    total = sum(counts.values())
    print(f"  {'total':50s} {total:>10,d}  {total / n:5.2f} per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
