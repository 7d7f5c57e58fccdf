"""Disaggregated prefill/decode for one tier (Splitwise / DistServe style): a prefill pool, the prompt's KV sent over
NVLink or InfiniBand, and a decode pool that admits a visit once its KV has arrived and it has room.

A visit's life on a disaggregated tier:
1. The tier's router (DisaggTierRouter, the same interface as TierRouter) sends it to a prefill instance, picked
   by the tier's load-balancing policy. The prefill instance is an ordinary Replica; the visit runs there as a
   PrefillSeq whose answer is one token long, so the instance computes the prompt's KV (prefix caching and the
   batching policy as on any replica), samples the first token (TTFT) and is done with it.
2. When the prefill finishes, a decode instance is picked (same policy, among those whose KV could ever hold the
   visit) and the KV of prompt + generated - 1 tokens is sent to it: kv_transfer_s. The transfer starts when the
   prefill has finished ("after_prefill", the default: vLLM's disaggregated-prefill KV connector, SGLang's
   disaggregation and NVIDIA Dynamo's NIXL transfers, the engines behind the corpus' disaggregated runs, move a
   request's KV after its prefill forward pass) or overlaps the prefill layer by layer ("layerwise", Splitwise's
   design: only the part of the transfer longer than the prefill, and at least the last layer's share, is
   exposed). A prefill instance's transfers leave one after another (FIFO on its links); the prefill instance
   frees the KV when its prefill finishes (a real engine holds it until the send completes: not modelled).
3. The decode instance (an ordinary Replica whose engines run `schedule_decode_instance`) admits the visit at an
   iteration boundary, FCFS, when max_num_seqs and its free KV blocks allow, straight into the decode batch (no
   prefill); it then decodes the remaining tokens. A visit preempted there is recomputed there (vLLM's
   preemption by recompute), as on any replica.
An escalated request visits the next tier as a new visit, so a disaggregated next tier prefills it again on its
own prefill pool. Fast and reference mode share every step here; only the replicas' decode loop differs.
"""
from __future__ import annotations

import math
from collections import deque
from functools import partial

from sim.common.errors import ConfigError
from sim.runtime.batching import SCHEDULERS, Seq

KV_TRANSFERS = ("after_prefill", "layerwise")


def kv_transfer_s(tokens: int, kv_bytes_per_token: float, src, dst, cluster, mode: str = "after_prefill",
                  prefill_s: float = 0.0, num_layers: int = 1) -> float:
    """Seconds the KV of `tokens` tokens takes from prefill instance src to decode instance dst (ReplicaPlans).

    Every GPU of an instance holds its share of the KV (TP splits heads, PP splits layers), and the shares move
    in parallel, so min(src GPUs, dst GPUs) streams carry it. Inside one node each stream runs on NVLink at the
    GPU's per-direction bandwidth; otherwise on InfiniBand, each GPU's share of its node's IB bandwidth
    (ib_bw_gbps / gpus_per_node, one NIC per GPU as on DGX H100). One link latency per transfer.
    layerwise: the transfer overlaps the prefill's prefill_s; the exposed part is
    max(transfer / num_layers, transfer - prefill_s)."""
    if tokens <= 0:
        return 0.0
    return transfer_time_s(tokens, kv_bytes_per_token, *link_of(src, dst, cluster), mode, prefill_s, num_layers)


def link_of(src, dst, cluster) -> tuple[float, float]:
    """(latency_s, streams x bytes/s) of the link between two instances (kv_transfer_s says which link)."""
    nodes = {n for n, _ in src.gpus} | {n for n, _ in dst.gpus}
    streams = min(len(src.gpus), len(dst.gpus))
    if len(nodes) == 1:
        bw = cluster.gpu.nvlink_bw_gbps * 1e9
        latency = cluster.gpu.nvlink_latency_us * 1e-6
    else:
        bw = cluster.ib_bw_gbps * 1e9 / cluster.gpus_per_node
        latency = cluster.ib_latency_us * 1e-6
    return latency, streams * bw


def transfer_time_s(tokens: int, kv_bytes_per_token: float, latency_s: float, bytes_per_s: float,
                    mode: str = "after_prefill", prefill_s: float = 0.0, num_layers: int = 1) -> float:
    """kv_transfer_s on a known link (link_of), for tokens > 0."""
    wire = tokens * kv_bytes_per_token / bytes_per_s
    if mode == "layerwise":
        wire = max(wire / max(num_layers, 1), wire - prefill_s)
    return latency_s + wire


class PrefillSeq(Seq):
    """A visit's stay on a prefill instance: its prompt (plus any tokens generated before a re-queue) and one
    new token; `visit` is the tier visit it stands for."""

    __slots__ = ("visit",)

    def __init__(self, visit: Seq) -> None:
        super().__init__(visit.req, visit.tier, visit.prompt_tokens, visit.generated + 1, visit.enqueue_s,
                         visit.work_tokens)
        self.visit = visit
        self.generated = visit.generated
        self.first_sched_s = visit.first_sched_s
        self.first_token_s = visit.first_token_s
        self.unit_keys = visit.unit_keys
        self.unit_tokens = visit.unit_tokens


def schedule_decode_instance(eng, now: float, base, ready: set, on_admit=None):
    """A decode instance's scheduler: first admit, FCFS, the visits whose KV has arrived (`ready`, by id) into the
    decode batch, then the engine's own policy (which decodes, and prefills any visit preempted here).
    on_admit(visit, now), if given, hears of each admission."""
    waiting = eng.waiting
    if waiting and id(waiting[0]) in ready:
        kv, running = eng.kv, eng.running
        limit = now if running else math.inf  # admit()'s rule: an arrival at this very boundary waits a step
        while waiting:
            seq = waiting[0]
            if seq.enqueue_s >= limit or id(seq) not in ready:
                break
            held = seq.prompt_tokens + seq.generated - 1  # the KV that arrived (the last token's is written next step)
            if kv.never_fits(kv.blocks_for(held + 1)):
                waiting.popleft()
                ready.discard(id(seq))
                eng.drop(seq, "prompt_exceeds_kv_capacity")
                continue
            need = kv.blocks_for(held)
            if len(running) >= eng.cfg.max_num_seqs or not kv.can_admit(need):
                break
            waiting.popleft()
            ready.discard(id(seq))
            kv.take(need)
            seq.blocks = need
            seq.prefill_target = seq.prefilled = held + 1
            seq.decoding = True
            # Decoding sequences lead the running list, prompts still prefilling trail it (Sarathi's fast path
            # relies on that order); both modes insert at the same place, so they preempt the same victims.
            at = len(running)
            while at and not running[at - 1].decoding:
                at -= 1
            running.insert(at, seq)
            if eng.batch is not None:
                eng.batch.join(seq)
            if on_admit is not None:
                on_admit(seq, now)
    if waiting and ready and id(waiting[-1]) in ready:
        # Visits whose KV has arrived wait at the tail (arrivals append; sequences preempted here go to the front, and
        # the policy recomputes them, as vLLM does). The policy must never prefill such a visit again, also when it
        # preempts in this very call (Sarathi decodes, and so preempts, before it admits): it sees a queue holding
        # only the preempted sequences, and the arrived visits go back behind them afterwards, in order.
        preempted = deque()
        while id(waiting[0]) not in ready:
            preempted.append(waiting.popleft())
        eng.waiting = preempted
        try:
            return base(eng, now)
        finally:
            preempted.extend(waiting)
            eng.waiting = preempted
    return base(eng, now)


class DisaggTierRouter:
    """The router of a disaggregated tier: its prefill and decode instances, and the KV transfers between them.
    Presents TierRouter's interface to the flow and the cluster (route, add, remove, unpark, planned, replicas)."""

    def __init__(self, env, tier: int, replicas: list, policy: str, cfg, kv_bytes_per_token: float, cluster,
                 num_layers: int) -> None:
        from sim.runtime.router import TierRouter  # same folder; TierRouter picks within each pool

        if cfg.batching not in ("vllm", "sarathi"):
            raise ConfigError(f"tier {tier} is disaggregated, which needs sim.batching vllm or sarathi, got "
                              f"{cfg.batching!r}")
        if cfg.kv_transfer not in KV_TRANSFERS:
            raise ConfigError(f"sim.kv_transfer {cfg.kv_transfer!r} is not valid; choose one of {list(KV_TRANSFERS)}")
        self.env = env
        self.tier = tier
        self.cfg = cfg
        self.kv_bytes_per_token = kv_bytes_per_token
        self.cluster = cluster
        self.num_layers = num_layers
        self.prefill = TierRouter(tier, [], policy)
        self.decode = TierRouter(tier, [], policy)
        self.ready: set[int] = set()  # ids of visits whose KV has arrived at their decode instance
        self.link_free_s: dict[int, float] = {}  # prefill replica id -> when its last transfer ends
        self.links: dict[tuple[int, int], tuple[float, float]] = {}  # (prefill id, decode id) -> link_of(...)
        self.flow = None
        self.book = None
        self.parked: list = []  # visits waiting for a prefill instance
        self.decode_parked: list = []  # prefilled visits waiting for a decode instance: (visit, prefill replica)
        for rep in replicas:
            self._adopt(rep)
        self.planned = bool(self.prefill.replicas and self.decode.replicas)

    # ---- TierRouter's interface -----------------------------------------------------------------
    @property
    def replicas(self) -> list:
        return self.prefill.replicas + self.decode.replicas

    @property
    def live(self) -> bool:
        return bool(self.prefill.replicas and self.decode.replicas)

    def attach(self, flow) -> None:
        self.flow = flow
        self.book = flow.book
        for rep in self.replicas:
            rep.flow = self

    def _adopt(self, rep) -> None:
        role = rep.plan.role
        if role == "decode":
            for eng in rep.engines:
                eng.schedule = partial(schedule_decode_instance, base=eng.schedule, ready=self.ready,
                                       on_admit=self._on_decode_admit)
            self.decode.replicas.append(rep)
        elif role == "prefill":
            self.prefill.replicas.append(rep)
        else:
            raise ConfigError(f"tier {self.tier} is disaggregated but replica {rep.replica_id} is {role!r}")
        if self.flow is not None:
            rep.flow = self

    def route(self, seq) -> None:
        visit = seq.visit if isinstance(seq, PrefillSeq) else seq
        if visit is not seq:  # a prefill instance went away: the visit starts over on the prefill pool
            visit.preemptions += seq.preemptions
            visit.enqueue_s = seq.enqueue_s
        self.ready.discard(id(visit))
        if visit.unit_keys is None and self.flow is not None and self.flow.units is not None:
            self.flow.units.attach(visit, visit.req)  # keys dropped on the way to a decode instance, back for prefill
        if not self.prefill.replicas:
            self.parked.append(visit)
            return
        self.prefill.route(PrefillSeq(visit))

    def add(self, replica) -> None:
        self._adopt(replica)
        if replica.plan.role == "prefill":
            parked, self.parked = self.parked, []
            for visit in parked:
                self.route(visit)
        else:
            parked, self.decode_parked = self.decode_parked, []
            for visit, src in parked:
                self._send(visit, src, self.env.now, self.env.now)

    def remove(self, replica) -> None:
        (self.decode if replica.plan.role == "decode" else self.prefill).remove(replica)

    def unpark(self) -> list:
        parked = self.parked + [v for v, _ in self.decode_parked]
        self.parked, self.decode_parked = [], []
        return parked

    def pick(self, reps=None):
        return self.prefill.pick(reps)

    # ---- callbacks from the instances -----------------------------------------------------------
    def on_tier_done(self, seq, end: float, replica_id: int = -1) -> None:
        if not isinstance(seq, PrefillSeq):  # a decode instance finished the visit
            self.flow.on_tier_done(seq, end, replica_id)
            return
        visit = seq.visit
        visit.first_sched_s = seq.first_sched_s
        visit.first_token_s = seq.first_token_s
        visit.preemptions += seq.preemptions
        if visit.cached_tokens < 0:
            visit.cached_tokens = seq.cached_tokens
        visit.generated = seq.generated
        src = self.flow_replica(replica_id)
        if self.book is not None and self.book.prefill_replica is not None:
            self.book.prefill_replica[visit.tier][visit.req] = replica_id
        if visit.generated >= visit.out_tokens:  # a one-token answer needs no decode instance
            if self.book is not None and self.book.kv_transfer_s is not None:
                self.book.kv_transfer_s[visit.tier][visit.req] = 0.0
            self.flow.on_tier_done(visit, end, replica_id)
            return
        # The decode instance receives the KV: it must not look the prompt up in its prefix cache (a hit there would
        # let its policy admit the visit as a prefill); route() gives the keys back if the visit is re-queued.
        visit.unit_keys = None
        self._send(visit, src, end, end - seq.first_sched_s)

    def _on_decode_admit(self, visit, now: float) -> None:
        book = self.book
        if book is not None and book.decode_admit_s is not None:
            row = book.decode_admit_s[visit.tier]
            if row[visit.req] != row[visit.req]:  # NaN: the first admission (a re-queued visit keeps its first)
                row[visit.req] = now

    def on_drop(self, seq, reason: str, now: float) -> None:
        if isinstance(seq, PrefillSeq):
            seq.visit.preemptions += seq.preemptions
            seq = seq.visit
        self.ready.discard(id(seq))
        self.flow.on_drop(seq, reason, now)

    def flow_replica(self, replica_id: int):
        for rep in self.prefill.replicas:
            if rep.replica_id == replica_id:
                return rep
        return None  # taken down in the meantime: its transfers use the link at once

    # ---- the transfer ---------------------------------------------------------------------------
    def _pick_decode(self, tokens: int):
        reps = self.decode.replicas
        if not reps:
            return None
        target = self.decode.pick()
        if tokens > target.max_tokens_held:
            able = [r for r in reps if r.can_ever_hold(tokens)]
            if able:
                target = self.decode.pick(able)
        return target

    def _send(self, visit, src, ready_s: float, prefill_s: float) -> None:
        """Send the visit's KV from prefill instance src (a Replica, or None) to a decode instance from ready_s on."""
        dst = self._pick_decode(visit.prompt_tokens + visit.generated)
        if dst is None:
            self.decode_parked.append((visit, src))
            return
        tokens = visit.prompt_tokens + visit.generated - 1
        start = ready_s
        wire = 0.0
        if src is not None:
            start = max(ready_s, self.link_free_s.get(src.replica_id, ready_s))
            if tokens > 0:
                key = (src.replica_id, dst.replica_id)
                link = self.links.get(key)
                if link is None:  # the replicas' GPUs never change: the link is worked out once per pair
                    link = self.links[key] = link_of(src.plan, dst.plan, self.cluster)
                wire = transfer_time_s(tokens, self.kv_bytes_per_token, link[0], link[1], self.cfg.kv_transfer,
                                       prefill_s, self.num_layers)
            self.link_free_s[src.replica_id] = start + wire
        arrive = start + wire
        if self.book is not None and self.book.kv_transfer_s is not None:
            self.book.kv_transfer_s[visit.tier][visit.req] = arrive - ready_s
        dst.outstanding_work += visit.work_tokens  # on its way: the balancer counts it from now
        if arrive > ready_s:
            # A bare callback of the event loop (sim.runtime.loop.EventLoop.call_at): ordered and timed as
            # env.timeout(delay_to(env.now, arrive)) made now would be, without an Event per transfer.
            self.env.call_at(arrive, self._arrive_due, (visit, dst, arrive))
        else:
            self._arrive(visit, dst, arrive)

    def _arrive_due(self, args) -> None:
        self._arrive(*args)

    def _arrive(self, visit, dst, now: float) -> None:
        dst.outstanding_work -= visit.work_tokens
        if dst not in self.decode.replicas:  # the decode instance went away during the transfer: another one
            dst = self._pick_decode(visit.prompt_tokens + visit.generated)
            if dst is None:
                self.decode_parked.append((visit, None))
                return
        visit.enqueue_s = now
        self.ready.add(id(visit))
        dst.submit(visit)
