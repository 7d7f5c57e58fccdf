"""Closed-loop benchmark clients (`vllm bench serve --max-concurrency N [--request-rate R]`, genai-perf) driving
one model replica through the full simulator, and the serving metrics those tools report.

How vLLM's benchmark client issues requests, and so how this one does: request i is released at
r_i (all at 0 without a rate; with a rate R, r_0 = 0 and the gaps are exponential with mean 1/R, Poisson);
a released request then waits for one of N concurrency slots, in release order, and its clock (TTFT, E2E)
starts when it holds a slot. A slot frees the moment its request's last token is out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.spec.plan import CascadePlan, ReplicaPlan, TierPlan
from sim.spec.cascade import CascadeSpec, TierSpec
from sim.common.errors import ConfigError
from sim.runtime.clock import delay_to
from sim.workload.types import Workload


@dataclass(frozen=True)
class ClientSpec:
    """What the benchmark sends: per-request prompt and output lengths, the concurrency cap (None = no cap) and
    the request rate (None = every request released at once)."""

    input_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    concurrency: int | None = None
    request_rate: float | None = None

    def __post_init__(self) -> None:
        n = len(self.input_tokens)
        if n < 1 or len(self.output_tokens) != n:
            raise ConfigError(f"a benchmark client needs one or more requests with as many output lengths as "
                              f"prompts, got {n} prompts and {len(self.output_tokens)} output lengths")
        if min(self.input_tokens) < 1 or min(self.output_tokens) < 1:
            raise ConfigError("benchmark input and output lengths must be positive integers")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be a positive integer or None, got {self.concurrency}")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ConfigError(f"request_rate must be positive (or None for all at once), got {self.request_rate}")

    @property
    def num_prompts(self) -> int:
        return len(self.input_tokens)


def release_times_s(num_prompts: int, request_rate: float | None, rng: np.random.Generator) -> np.ndarray:
    """When each request becomes ready to send: all at 0 without a rate, else a Poisson process from 0."""
    if request_rate is None or np.isinf(request_rate):
        return np.zeros(num_prompts)
    gaps = rng.exponential(1.0 / request_rate, num_prompts - 1)
    return np.concatenate(([0.0], np.cumsum(gaps)))


def sampled_lengths(mean_tokens: int, range_ratio: float, n: int, rng: np.random.Generator) -> tuple[int, ...]:
    """n lengths drawn uniformly from the integers in [mean (1 - r), mean (1 + r)] (at least 1), as the random
    dataset of vllm bench serve with --random-range-ratio r; r = 0 gives the mean every time."""
    if not 0.0 <= range_ratio < 1.0:
        raise ConfigError(f"range_ratio must be in [0, 1), got {range_ratio}")
    lo = max(1, int(np.floor(mean_tokens * (1.0 - range_ratio))))
    hi = max(lo, int(np.ceil(mean_tokens * (1.0 + range_ratio))))
    return tuple(int(x) for x in rng.integers(lo, hi + 1, n))


class BenchmarkClient:
    """Admits requests into a CascadeFlow (its `arrivals` hook) under a concurrency cap and release times."""

    def __init__(self, release_s: np.ndarray, concurrency: int | None) -> None:
        self.release_s = [float(r) for r in release_s]
        self.slots = concurrency if concurrency is not None else len(self.release_s)
        self.in_flight = 0
        self.released = 0  # requests whose release time has come
        self.next = 0  # the next request to admit (admission is in release order)
        self.flow = None
        self.env = None

    def start(self, env, flow):
        self.env, self.flow = env, flow
        return env.process(self._releases(env))

    def _releases(self, env):
        # Release timers live in their own process, so they depend only on release times: never on when a
        # finish happened to wake the client (which fast and reference mode reach within an ulp, not exactly).
        for i, r in enumerate(self.release_s):
            if r > env.now:
                yield env.timeout(delay_to(env.now, r))
            self.released = i + 1
            self._admit(r)

    def on_finish(self, i: int, now: float) -> None:
        self.in_flight -= 1
        if self.next < self.released:
            # The next request is sent from a zero-delay event, not from inside the engine's boundary: the
            # engine first plans its next iteration(s), then hears of the newcomer as of any other arrival, and
            # both modes agree that it joins at the following boundary (as a real request arrives mid-step).
            self.env.timeout(0).callbacks.append(lambda _ev: self._admit(now))

    def _admit(self, now: float) -> None:
        """At logical time now: admit released requests while a slot is free."""
        while self.next < self.released and self.in_flight < self.slots:
            i = self.next
            self.next += 1
            self.in_flight += 1
            self.flow.admit(i, now)


def single_replica_deployment(tier: TierSpec, tp: int, pp: int, cluster) -> tuple[CascadeSpec, CascadePlan]:
    """A one-model 'cascade' with one TP x PP replica on the cluster's first GPUs (node-major)."""
    k = tp * pp
    if k > cluster.num_gpus:
        raise ConfigError(f"TP{tp} x PP{pp} needs {k} GPUs but cluster {cluster.name!r} has {cluster.num_gpus}")
    gpus = tuple((g // cluster.gpus_per_node, g % cluster.gpus_per_node) for g in range(k))
    cascade = CascadeSpec(f"serve_{tier.model.name}", (tier,), single_model=True)
    plan = CascadePlan("serving_benchmark", (TierPlan(tier.model.name, (ReplicaPlan(tp, pp, gpus),)),), ())
    return cascade, plan


def client_workload(spec: ClientSpec, release_s: np.ndarray, model: str) -> Workload:
    """The requests as a one-tier Workload; arrival_s holds release times (the client sets the real ones)."""
    n = spec.num_prompts
    return Workload(
        name="serving_benchmark", arrival_s=np.asarray(release_s, dtype=np.float64),
        input_tokens=np.asarray(spec.input_tokens, dtype=np.int64),
        output_tokens=np.asarray(spec.output_tokens, dtype=np.int64).reshape(n, 1),
        scores=np.zeros((n, 1)), question_ids=np.array([f"bench:{i}" for i in range(n)]), tier_models=(model,))


def run_client(spec: ClientSpec, tier: TierSpec, tp: int, pp: int, cluster, cfg, *, seed: int = 0,
               cost_factory=None):
    """Run the benchmark through sim.simulator.simulate; returns its SimResult (iterations recorded)."""
    from dataclasses import replace

    from sim.simulator import SimConfig, simulate, sim_config_from_dict

    if not isinstance(cfg, SimConfig):
        cfg = sim_config_from_dict(cfg)
    cascade, plan = single_replica_deployment(tier, tp, pp, cluster)
    release_ss, _lengths_ss = np.random.SeedSequence(seed).spawn(2)  # lengths: sim.fidelity.serving's stream
    release = release_times_s(spec.num_prompts, spec.request_rate, np.random.default_rng(release_ss))
    client = BenchmarkClient(release, spec.concurrency)
    workload = client_workload(spec, release, tier.model.name)
    return simulate(plan, cascade, cluster, workload, replace(cfg, record_iterations=True), seed=seed,
                    cost_factory=cost_factory, arrivals=client)


def token_gaps_s(iterations, cost_for_replica) -> tuple[np.ndarray, np.ndarray]:
    """Inter-token gaps (as vLLM's ITL) from the iteration log: (gap_s, count) pairs, count tokens per gap.

    Every decode sequence in an iteration gets one token at its end, so its gap is that iteration's time; a
    fast-mode jump of k decode iterations is split into its k steps a + b * (ctx + j * n) (rescaled to the
    jump's recorded time, so both modes agree to rounding). Prefill-only iterations (vLLM V0) stall the running
    sequences: their time is added to the next gap of the sequences that were already decoding (not of those
    the stall prefilled, whose first token it produced). An idle gap in an engine's log ends any stall.
    cost_for_replica(replica_id) -> ReplicaCost gives decode_affine for splitting jumps.
    """
    gaps: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    log = iterations.sort_values(["replica_id", "engine", "start_s"], kind="stable")
    cols = ["replica_id", "engine", "start_s", "duration_s", "iterations", "prefill_seqs", "decode_seqs",
            "decode_ctx_tokens"]
    key = None
    chain: list[tuple[float, int]] = []  # prefill-only iterations since the last token: (time, prompts)
    prev_end = -np.inf
    for rid, eng, start, dur, k, pre, n, ctx in log[cols].itertuples(index=False):
        if (rid, eng) != key or start > prev_end + 1e-9:
            key, chain = (rid, eng), []  # idle before this iteration: nothing was decoding
        prev_end = start + dur
        if n == 0:
            chain.append((dur, int(pre)))
            continue
        if k == 1:
            steps = np.array([dur])
        else:
            a, b = cost_for_replica(rid).decode_affine(int(n))
            steps = a + b * (ctx + n * np.arange(k, dtype=np.float64))
            steps *= dur / steps.sum()
        gaps.append(steps)
        counts.append(np.full(k, int(n)))
        if chain:
            # First gaps after a stall: a sequence whose first token came from chain iteration j waited for the
            # iterations after j; one that was decoding before the chain waited for all of it. The latest
            # prompts are taken first (a chunked prompt's last chunk is the one that gave its first token).
            left = int(n)
            later_s = 0.0
            extra_g, extra_c = [], []
            for dur_j, pre_j in reversed(chain):
                m = min(pre_j, left)
                if m and later_s > 0:
                    extra_g.append(steps[0] + later_s)
                    extra_c.append(m)
                left -= m
                later_s += dur_j
            if left:
                extra_g.append(steps[0] + later_s)
                extra_c.append(left)
            if extra_g:
                counts[-1][0] -= sum(extra_c)
                gaps.append(np.array(extra_g))
                counts.append(np.array(extra_c))
            chain = []
    if not gaps:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(gaps), np.concatenate(counts)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of a sample in which values[i] occurs weights[i] times (the lower middle for an even count)."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if values.size == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, (cum[-1] + 1) // 2)])


def serving_metrics(result, cost_for_replica) -> dict:
    """The numbers `vllm bench serve` reports, from a run of run_client: TTFT and E2E from the request
    records; TPOT per request (e2e - ttft) / (output - 1), averaged over requests with more than one token;
    mean ITL over all token gaps (token-weighted, exact from the records); median ITL from the iteration log
    (token_gaps_s); output throughput = output tokens / time until the last request finished."""
    req = result.requests
    done = req[req["status"] == "completed"]
    ttft_ms = done["ttft_s"].to_numpy() * 1e3
    e2e_ms = done["latency_s"].to_numpy() * 1e3
    out = done["output_tokens_final"].to_numpy()
    multi = out > 1
    decode_ms = (e2e_ms - ttft_ms)[multi]
    tpot_ms = decode_ms / (out[multi] - 1)
    gaps_s, counts = token_gaps_s(result.iterations, cost_for_replica)
    nan = float("nan")
    end_s = float(done["completion_s"].max()) if len(done) else nan
    return {
        "ttft_ms_mean": float(ttft_ms.mean()) if len(done) else nan,
        "ttft_ms_median": float(np.median(ttft_ms)) if len(done) else nan,
        "ttft_ms_p99": float(np.percentile(ttft_ms, 99)) if len(done) else nan,
        "itl_ms_mean": float(decode_ms.sum() / (out[multi] - 1).sum()) if multi.any() else nan,
        "itl_ms_median": weighted_median(gaps_s, counts) * 1e3,
        "tpot_ms_mean": float(tpot_ms.mean()) if multi.any() else nan,
        "tpot_ms_median": float(np.median(tpot_ms)) if multi.any() else nan,
        "e2e_ms_mean": float(e2e_ms.mean()) if len(done) else nan,
        "output_tokens_per_s": float(out.sum() / end_s) if len(done) and end_s > 0 else nan,
        "requests": int(len(done)),
    }
