"""Metrics of the benchmark: SLO scale against a reference deployment, throughput by rate bisection, quality,
cost (GPU-seconds per request), TTFT/TPOT/end-to-end percentiles overall and per tier, share reaching each tier."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from sim.common.errors import ConfigError, DeploymentDoesNotFit
from sim.common.memo import frozen_object_memo
from sim.perf.batch import BatchShape
from sim.runtime.slo_stop import SloMet, SloMissed, SloStop
from sim.runtime.prefix_cache import prefix_hit_rates
from sim.runtime.records import STATUS_COMPLETED, SimResult


def reference_deployment(cascade, cluster, reference_tier: int = -1, engine: str = "vllm"):
    """(tier index, tp, cost) of the reference: the tier's model on the smallest TP (power of two, PP 1) that
    fits one node of the cluster."""
    from sim.perf.cost_model import build_replica_cost

    t = cascade.tier_index(reference_tier)
    tier = cascade.tiers[t]
    tp = 1
    while tp <= cluster.gpus_per_node:
        try:
            return t, tp, build_replica_cost(tier.model, cluster.gpu, tp, 1, tier.weights, tier.kv, engine=engine,
                                             **tier.deployment(tp))
        except DeploymentDoesNotFit:
            tp *= 2
        except ConfigError:  # a TP degree the architecture does not divide by
            tp *= 2
    raise ConfigError(f"reference model {tier.model.name} ({tier.weights}) does not fit one node of "
                      f"{cluster.gpus_per_node} x {cluster.gpu.name}; choose another sim.reference_tier")


# Prefill times of lone prompts by prompt length, one memo per frozen cost object (the calibrated model, cached across
# runs by build_replica_cost): ref(r) is computed for every run of a bisection and every metric of a sweep, and each
# prompt length costs a full cost-model evaluation (10 % of a sweep job's time before this memo; sim.common.memo).
_REFERENCE_PREFILL_MAX = 16
_reference_prefill: dict[int, tuple[object, dict[int, float]]] = {}


def _lone_prefill_s(cost, x) -> float:
    return cost.iteration_time_s(BatchShape(prefill_tokens=int(x), prefill_attn_pairs=x * (x + 1) / 2.0,
                                            num_prefill_seqs=1))


def reference_latency_s(input_tokens: np.ndarray, output_tokens: np.ndarray, cost) -> np.ndarray:
    """Latency of each request served alone: one prefill of its prompt, then output_tokens - 1 decode
    iterations of batch 1 whose context grows by one token each (closed form of the affine decode cost)."""
    p = np.asarray(input_tokens, dtype=np.int64)
    out = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
    uniq, inv = np.unique(p, return_inverse=True)
    memo = frozen_object_memo(_reference_prefill, cost, _REFERENCE_PREFILL_MAX)
    if memo is None:  # a cost that may change: this call's own memo
        memo = {}
    times = []
    for x in uniq:
        t = memo.get(int(x))
        if t is None:
            t = memo[int(x)] = _lone_prefill_s(cost, x)
        times.append(t)
    prefill = np.array(times, dtype=np.float64)[inv]
    a, b = cost.decode_affine(1)
    steps = (out - 1).astype(np.float64)
    # decode step g (1..out-1) attends to p + g tokens
    return prefill + steps * a + b * (steps * p + steps * (steps + 1) / 2.0)


def slo_scale(latency_s: np.ndarray, ref_s: np.ndarray, attainment: float = 0.95) -> float:
    """Smallest s such that `attainment` of the requests finish within s x ref(r); dropped requests (NaN
    latency) count as never finishing."""
    ratio = np.where(np.isfinite(latency_s), latency_s / ref_s, np.inf)
    if ratio.size == 0:
        return float("nan")
    return float(np.quantile(ratio, attainment, method="inverted_cdf"))


def _pct(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    q = np.percentile(x, [50, 95, 99])
    return {"p50": float(q[0]), "p95": float(q[1]), "p99": float(q[2]), "mean": float(x.mean())}


# ref(r)'s answer length. largest_tier (default): the reference tier's own answer to r, so ref(r) is a property of
# the request alone and every plan of a run is divided by the same denominators; "returned" (the answer the plan
# actually returned) makes ref(r) depend on the routing being judged. docs/evaluation.md shows both.
REFERENCE_LENGTHS = ("largest_tier", "returned")


def request_slo_ratios(result: SimResult, cascade, cluster, engine: str | None = None) -> tuple[np.ndarray, dict]:
    df = result.requests
    cfg = result.meta.get("sim_config", {})
    ref_tier = int(cfg.get("reference_tier", -1))
    t, tp, cost = reference_deployment(cascade, cluster, ref_tier, engine or cfg.get("engine", "vllm"))
    length = cfg.get("reference_length", "largest_tier")
    out_tokens = df[f"output_tokens_t{t}"].to_numpy()
    if length == "returned":  # dropped requests returned nothing: they keep the reference tier's length
        final = df["output_tokens_final"].to_numpy()
        out_tokens = np.where((df["status"] == STATUS_COMPLETED).to_numpy() & (final > 0), final, out_tokens)
    ref = reference_latency_s(df["input_tokens"].to_numpy(), out_tokens, cost)
    info = {"model": cascade.tiers[t].model.name, "weights": cascade.tiers[t].weights, "tp": tp, "tier": t,
            "length": length}
    return ref, info


def summarize(result: SimResult, cascade, plan=None, cluster=None, engine: str | None = None,
              attainment: float | None = None) -> dict:
    """One dict of the run's metrics (every value a plain float/int/list, ready for JSON)."""
    df: pd.DataFrame = result.requests
    meta = result.meta
    att = float(attainment if attainment is not None else meta.get("attainment", 0.95))
    n = len(df)
    done = (df["status"] == STATUS_COMPLETED).to_numpy()
    lat = df["latency_s"].to_numpy()
    out: dict = {"requests": n, "completed": int(done.sum()), "dropped": int(n - done.sum()), "attainment": att}
    out.update(drop_summary(df, meta))
    if cluster is not None:
        ref, info = request_slo_ratios(result, cascade, cluster, engine)
        out["slo_scale"] = slo_scale(lat, ref, att)
        out["reference"] = info
    else:
        out["slo_scale"] = float("nan")
        out["reference"] = None
    span = float(meta.get("makespan_s", 0.0))
    out["completed_rps"] = float(done.sum() / span) if span > 0 else float("nan")
    out["quality"] = float(df.loc[done, "final_score"].mean()) if done.any() else float("nan")
    out["gpu_s"] = float(meta.get("gpu_s", float("nan")))
    out["gpu_s_per_request"] = out["gpu_s"] / max(int(done.sum()), 1)
    out["gpu_s_per_1k_requests"] = 1000.0 * out["gpu_s_per_request"]
    out["busy_gpu_s_per_request"] = float(meta.get("busy_gpu_s", float("nan"))) / max(int(done.sum()), 1)
    for k, v in _pct(lat[done]).items():
        out[f"{k}_latency_s"] = v
    for k, v in _pct(df["ttft_s"].to_numpy()[done]).items():
        out[f"{k}_ttft_s"] = v
    final_out = df["output_tokens_final"].to_numpy()
    c = cascade.num_tiers
    final_decode = np.full(n, np.nan)
    ft = df["final_tier"].to_numpy()
    for t in range(c):
        m = done & (ft == t)
        final_decode[m] = df[f"decode_s_t{t}"].to_numpy()[m]
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(final_out > 1, final_decode / (final_out - 1), np.nan)
    for k, v in _pct(tpot).items():
        out[f"{k}_tpot_s"] = v
    per_tier = []
    for t in range(c):
        entered = np.isfinite(df[f"enter_s_t{t}"].to_numpy())
        served = np.isfinite(df[f"decode_s_t{t}"].to_numpy())
        ttft_t = (df[f"queue_s_t{t}"] + df[f"prefill_s_t{t}"]).to_numpy()[served]
        o = df[f"output_tokens_t{t}"].to_numpy()[served]
        d = df[f"decode_s_t{t}"].to_numpy()[served]
        with np.errstate(divide="ignore", invalid="ignore"):
            tp = np.where(o > 1, d / (o - 1), np.nan)
        e2e = (df[f"queue_s_t{t}"] + df[f"prefill_s_t{t}"] + df[f"decode_s_t{t}"]).to_numpy()[served]
        per_tier.append({"tier": t, "model": cascade.tiers[t].model.name, "share_reaching": float(entered.mean()),
                         "share_answered": float((done & (ft == t)).mean()),
                         "ttft_s": _pct(ttft_t), "tpot_s": _pct(tp), "service_s": _pct(e2e)})
    out["tier_share"] = [p["share_reaching"] for p in per_tier]
    out["final_tier_share"] = [p["share_answered"] for p in per_tier]
    out["per_tier"] = per_tier
    hit_rates = prefix_hit_rates(df, c)  # None unless the workload had block hashes and caching was on
    if hit_rates is not None:
        out["prefix_hit_rate"] = hit_rates
        for p, rate in zip(per_tier, hit_rates):
            p["prefix_hit_rate"] = rate
    out["sim_wall_s"] = float(meta.get("wall_s", float("nan")))
    if plan is not None:
        out["plan"] = plan.describe()
    return out


def drop_summary(requests: pd.DataFrame, meta: dict) -> dict:
    """dropped_by_reason {reason: count} (sorted; empty when none) and context_skipped (requests served by a later
    tier because an earlier one's context was too short, context_policy skip)."""
    reasons = requests.loc[requests["status"] != STATUS_COMPLETED, "drop_reason"].value_counts()
    return {"dropped_by_reason": {str(k): int(v) for k, v in sorted(reasons.items())},
            "context_skipped": int(meta.get("context_skipped", 0))}


def meets_slo(result: SimResult, target_scale: float, cascade, cluster, engine: str | None = None) -> bool:
    ref, _ = request_slo_ratios(result, cascade, cluster, engine)
    att = float(result.meta.get("attainment", 0.95))
    return slo_scale(result.requests["latency_s"].to_numpy(), ref, att) <= target_scale


def slo_stop(workload, target_scale: float, cascade, cluster, cfg, engine: str | None = None):
    """The early-stop rule for a run whose only question is whether it meets target_scale (sim.runtime.slo_stop.SloStop):
    ref(r) from the workload, as request_slo_ratios computes it from the records, and the number of misses at
    which the attainment quantile (inverted CDF, as slo_scale) must exceed the target (SloMissed); the run also ends,
    as passing (SloMet), once n - fail_at_misses + 1 requests finished within it. None where ref(r) depends
    on the run itself (reference_length "returned") or the workload is empty."""
    n = workload.num_requests
    if n == 0 or cfg.reference_length != "largest_tier":
        return None
    t, _, cost = reference_deployment(cascade, cluster, int(cfg.reference_tier), engine or cfg.engine)
    ref = reference_latency_s(workload.input_tokens, np.maximum(workload.output_tokens[:, t], 1), cost)
    # slo_scale takes sorted_ratios[j] with j the index inverted_cdf picks for n values; it exceeds the target
    # exactly when at most j ratios are within it, i.e. when n - j or more requests miss.
    j = int(np.quantile(np.arange(n, dtype=np.float64), float(cfg.attainment), method="inverted_cdf"))
    return SloStop(ref, float(target_scale), n - j)


def rate_grid_factor(k: int, lo: float, hi: float, iters: int) -> float:
    """The k-th point (0 <= k <= 2**iters) of the geometric bisection's grid, lo * (hi/lo)**(k / 2**iters), as the
    bisection's own floats reach it: the mids sqrt(lo*hi) along the path whose verdicts are k's bits (k = 2**iters
    is hi). A search that tests these points and the bisection test the very same rate factors."""
    n = 1 << int(iters)
    if k >= n:
        return hi
    a, b = lo, hi
    for bit in range(int(iters) - 1, -1, -1):
        mid = math.sqrt(a * b)
        if (k >> bit) & 1:
            a = mid
        else:
            b = mid
    return a


def rate_grid_index(factor: float, lo: float, hi: float, iters: int) -> int:
    """The grid point nearest to factor (geometrically), clamped to the grid: -1 for factor <= 0 (even lo fails)."""
    if not factor > 0:
        return -1
    n = 1 << int(iters)
    return int(min(max(round(math.log(factor / lo) / math.log(hi / lo) * n), 0), n))


def throughput_at_slo(run: Callable[[float], SimResult], slo_scale_target: float, lo: float = 0.25, hi: float = 4.0,
                      iters: int = 6, cascade=None, cluster=None, engine: str | None = None,
                      hint: float | None = None, trace: list | None = None) -> float:
    """Highest rate factor in [lo, hi] at which run(factor) keeps the attainment target within
    slo_scale_target x ref(r); 0.0 if even lo fails, hi if hi passes. Bisection is geometric (mid = sqrt(lo*hi))
    so that `iters` steps give the same relative resolution, (hi/lo)**(2**-iters), at any load. run(f) may end
    a run early with SloMissed or SloMet (given an SloStop from slo_stop): the same verdict, sooner. hi is run first (it
    ends the search when it passes); lo last, and only when every mid failed.

    hint: a factor the answer is expected near (e.g. another seed's answer for the same plan). The bisection returns
    the highest passing point of a fixed grid (rate_grid_factor) when the verdict is monotone in the factor, which
    it assumes; with a hint the search gallops on that same grid from the hint's point (steps 1, 2, 4, ...) until
    it holds a passing point next to a failing one (or hi passing, or lo failing), then bisects the bracket: under
    the same monotonicity the same answer, float for float, in 2 runs when the hint is right instead of iters + 1.
    trace: a list that receives (factor, verdict) for every run made, in order."""
    if cascade is None or cluster is None:
        raise ConfigError("throughput_at_slo needs the cascade and the cluster (for the reference latency)")
    if not 0 < lo < hi:
        raise ConfigError(f"throughput bisection bounds must satisfy 0 < lo < hi, got lo={lo}, hi={hi}")
    def ok(f: float) -> bool:
        try:
            verdict = meets_slo(run(f), slo_scale_target, cascade, cluster, engine)
        except SloMissed:  # run(f) stopped as soon as its verdict was certain (sim.metrics.slo_stop)
            verdict = False
        except SloMet:  # ... either way
            verdict = True
        if trace is not None:
            trace.append((f, verdict))
        return verdict

    if hint is not None:
        return _grid_gallop(ok, lo, hi, int(iters), max(rate_grid_index(hint, lo, hi, iters), 0))
    if ok(hi):
        return hi
    a, b, passed = lo, hi, False
    for _ in range(int(iters)):
        mid = math.sqrt(a * b)
        if ok(mid):
            a, passed = mid, True
        else:
            b = mid
    # lo is run only when every mid failed: a passing mid above it says lo passes, under the same monotonicity
    if not passed and not ok(lo):
        return 0.0
    return a


def _grid_gallop(ok: Callable[[float], bool], lo: float, hi: float, iters: int, start: int) -> float:
    """The highest passing grid point found from grid index `start` (see throughput_at_slo's hint)."""
    n = 1 << iters

    def test(k: int) -> bool:
        return ok(rate_grid_factor(k, lo, hi, iters))

    step = 1
    if test(start):  # gallop up: good holds a passing point, bad (once found) a failing one
        good = start
        while True:
            if good == n:
                return hi
            k = min(good + step, n)
            if not test(k):
                bad = k
                break
            good, step = k, step * 2
    else:  # gallop down
        bad = start
        while True:
            if bad == 0:
                return 0.0
            k = max(bad - step, 0)
            if test(k):
                good = k
                break
            bad, step = k, step * 2
    while bad - good > 1:
        mid = (good + bad) // 2
        if test(mid):
            good = mid
        else:
            bad = mid
    return rate_grid_factor(good, lo, hi, iters)
