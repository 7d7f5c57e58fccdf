"""`make mutation`: mutation testing of the core modules with mutmut, one module at a time, summarised in
results/mutation.json (mutants, killed, survived, timeout, score_pct per module and overall, with the commit).

Why mutmut 3 and not cosmic-ray (both install on Python 3.11 here): mutmut compiles every mutant of a file into
one copy of the package behind trampolines and forks each mutant's test run from a process that has already
imported numpy, pandas and simpy, running only the tests that call the mutated function (found once, in a stats
run). cosmic-ray writes each mutant to disk and runs a whole pytest command per mutant, paying the ~3 s import
and collection every time: on 2 cores that alone is hours for the few thousand mutants of these modules.

Score: (killed + timeout) / (killed + survived + timeout + no_tests), equivalent mutants (EQUIVALENT, each with
the reason it cannot be killed) left out of both sides. A mutant not yet checked (the run's time budget ran out)
is counted in `not_checked`, never as killed; a module is `complete` only when none is left.

Usage: python -m tools.mutation [--modules sim/metrics.py ...] [--budget-s 2700] [--module-budget-s S]
                                [--max-children 1] [--out results/mutation.json]
       python -m tools.mutation --resume ...     (per module: only mutants not checked yet, and survivors)
       python -m tools.mutation --collect-only   (summarise what mutants/ holds, run nothing)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The core modules of issue 22, most likely to miss the target first (they are run in this order).
CORE = ("sim/metrics.py", "sim/runtime/batching.py", "sim/runtime/kv_cache.py", "sim/runtime/router.py",
        "sim/workload/build.py", "planners/routing.py", "planners/milp.py", "sim/runtime/flow.py",
        "sim/runtime/prefix_cache.py", "planners/estimator.py", "sim/runtime/replica.py", "sim/perf/cost_model.py")
# mutant name -> why no test can tell it from the original (left out of the score).
_NAN = 'float("nan") -> float("NAN"): Python parses "nan" case-insensitively, the same NaN'
_MEMO = ("the per-stage token memo only saves time: with this change an entry is missed, never kept or kept one past "
         "its bound, and a miss recomputes the same float by the same additions (the function says so), so every time "
         "is unchanged")
_GUARDED = ("_stage_fixed_s's `tokens <= 0` return is unreachable: both callers (stage_time_s, _iteration_fixed_s) "
            "return 0.0 for a batch of no tokens before calling it, and tokens is that batch's num_tokens")
_INT_TOKENS = ("np.asarray(tokens, dtype=np.int64) -> no dtype: every caller passes integer token counts (the "
               "workload's int64 columns), on which the cast changes nothing; it differs only on fractional tokens, "
               "which no record holds")
_TPOT_ONE = ("tokens > 1 -> tokens >= 1 in the TPOT mask: a one-token answer then gives 0/0 = NaN (its decode time is "
             "0), which _pct drops as non-finite, exactly as the NaN of the else branch")
_DIVIDE = ("np.errstate(divide='ignore') removed: the only zero denominator is a one-token answer, whose decode time is "
           "0 (checked on simulator records), so 0/0 raises 'invalid' (kept ignored, and tested), never 'divide'")
_INT64 = ("dtype=np.int64 dropped: numpy >= 2 (2.4 here) makes Python ints int64 on every platform, so no test on "
          "this machine can tell; the dtype is stated for numpy 1.x on Windows, where the default was int32")
EQUIVALENT: dict[str, str] = {
    "sim.runtime.router.x_question_routes__mutmut_8": _INT64,
    "sim.runtime.router.x_question_routes__mutmut_10": _INT64,
    **{f"sim.metrics.x_{name}": _NAN for name in (
        "_pct__mutmut_9", "_pct__mutmut_14", "_pct__mutmut_19", "_pct__mutmut_24", "slo_scale__mutmut_15", "summarize__mutmut_102",
        "summarize__mutmut_115", "summarize__mutmut_148")},
    "sim.metrics.x_request_slo_ratios__mutmut_64": "final > 0 -> final >= 0 on completed requests: a completed "
                                                   "answer has at least one token (flow sets output_tokens_final "
                                                   "only on completion, from outputs >= 1)",
    **{f"sim.metrics.x_{name}": _NAN for name in ("summarize__mutmut_67", "summarize__mutmut_91",
                                                  "summarize__mutmut_296")},
    **{f"sim.metrics.x_reference_latency_s__mutmut_{k}": _INT_TOKENS for k in (3, 5, 12, 14)},
    "sim.metrics.x_reference_latency_s__mutmut_42": ".astype(np.float64) -> .astype(None): numpy reads dtype None "
                                                    "as float64, the same array",
    **{f"sim.metrics.x_summarize__mutmut_{k}": _TPOT_ONE for k in (193, 225)},
    **{f"sim.metrics.x_summarize__mutmut_{k}": _DIVIDE for k in (178, 180, 210, 212)},
    "sim.metrics.x_summarize__mutmut_96": "quality's `if done.any()` -> always: the mean of an empty pandas Series "
                                          "is NaN (no warning), the same value as the else branch",
    **{f"sim.metrics.x_slo_stop__mutmut_{k}": "np.arange(n, dtype=np.float64) -> integer arange: the inverted-CDF "
                                             "quantile returns one of the values themselves, and int() of k and "
                                             "of k.0 is the same index" for k in (40, 42)},
    "sim.runtime.prefix_cache.x__remember__mutmut_14": "capacity // unit -> / (a float): it is only compared with "
                                                       "len(index), an integer, and n > x / u holds exactly when "
                                                       "n > x // u for positive x, u",
    "sim.runtime.prefix_cache.x__remember__mutmut_16": "index[k] = None -> '': the routed index is an ordered set, its "
                                                       "values are never read (membership and order only)",
    "sim.runtime.prefix_cache.x_prefix_hit_rates__mutmut_5": "input_tokens.to_numpy(dtype=np.float64) -> no dtype: "
                                                             "the int64 token counts sum exactly either way (far "
                                                             "below 2**53), and the quotient is the same float",
    "sim.runtime.prefix_cache.x_prefix_hit_rates__mutmut_23": _NAN,
    "sim.perf.cost_model.x__attention_flops_per_pair_gpu__mutmut_2": "num_heads // tp -> / tp: _check_shape refuses "
                                                                     "a TP that does not divide num_heads, so the "
                                                                     "quotient is exact either way",
    "sim.metrics.x_reference_deployment__mutmut_31": "after a ConfigError (a TP that does not divide the heads or "
                                                     "widths) tp *= 2 -> tp *= 3: a width that 2^j does not divide "
                                                     "is divided by neither 2^(j+1) nor 3 * 2^j, so both searches "
                                                     "end in the same 'does not fit one node' error",
    "sim.perf.cost_model.x__decode_attention_flops_per_ctx_gpu__mutmut_2": "num_heads // tp -> / tp: as in "
                                                                           "_attention_flops_per_pair_gpu, TP "
                                                                           "divides the heads",
    "sim.perf.cost_model.x_replica_cost_for__mutmut_25": "getattr(replica, key, None) -> no default: every replica "
                                                          "the callers pass (the simulator's and serving's cost "
                                                          "factories, the measured table) is a ReplicaPlan, which "
                                                          "always has ep, dp_attention and mtp_draft_tokens",
    **{f"sim.perf.cost_model.xǁReplicaCostModelǁ_stage_fixed_s__mutmut_{k}": _MEMO for k in (6, 7, 34, 35)},
    **{f"sim.perf.cost_model.xǁReplicaCostModelǁ_stage_fixed_s__mutmut_{k}": _GUARDED for k in (3, 5)},
    "sim.perf.cost_model.xǁReplicaCostModelǁ_stage_fixed_s__mutmut_72": "eager floor `> t` -> `>= t`: on equality t "
                                                                        "is set to the value it already has",
    "sim.perf.cost_model.xǁReplicaCostModelǁiteration_time_s__mutmut_1": "(mtp and decode and not prefill) -> ((mtp "
                                                                         "and decode) or not prefill): the extra "
                                                                         "batches it sends to decode_affine have no "
                                                                         "MTP and no prompt tokens, where decode_affine "
                                                                         "reproduces the general path bit for bit "
                                                                         "(tested by test_decode_affine_is_exact; an "
                                                                         "empty batch is 0 both ways)",
    "sim.perf.cost_model.x__check_options__mutmut_12": "ep > 1 -> ep >= 1 before `num_routed_experts % ep`: every "
                                                       "count is divisible by 1, so EP 1 never raises either way",
    "sim.perf.cost_model.xǁReplicaCostModelǁ_graph__mutmut_6": "ceil by -(-n // tp) -> -(-n / tp) (n / tp itself): "
                                                               "it is only compared with an integer limit m, and "
                                                               "ceil(x) <= m exactly when x <= m",
    "sim.runtime.kv_cache.xǁKVCacheǁtake__mutmut_5": "used > peak -> used >= peak: on equality the peak is set to "
                                                     "the value it already has",
    **{f"planners.routing.x_context_ok__mutmut_{k}": (
        "np.asarray(..., dtype=np.int64) -> no dtype in context_ok: its one caller (PlanningProblem.context_mask) "
        "passes the Workload's int64 token columns and the catalog's int max_context values, on which the cast "
        "changes nothing (whole-number floats compare the same); it differs only on fractional token counts, which "
        "no workload or model holds") for k in (4, 6, 12, 14, 18, 20)},
    **{f"planners.routing.x_final_tiers__mutmut_{k}": _INT64 for k in (5, 8)},
    "planners.routing.x_reach_mask__mutmut_7": "mask[:, i] = False -> = None: a bool array stores bool(None), "
                                               "False, the same mask",
    "planners.routing.x_direct_final_tiers__mutmut_11": "u < error_rate -> u <= error_rate: rng.random() draws "
                                                        "multiples of 2**-53, so the two differ only when a draw "
                                                        "equals error_rate to the last bit (probability 2**-53 per "
                                                        "request); the error share is error_rate either way",
    "planners.routing.x_direct_final_tiers__mutmut_28": "(final + shift) % C -> (final - shift) % C: shift is uniform "
                                                        "on 1..C-1, and so is -shift mod C, so a misrouted request "
                                                        "still goes to each other tier with probability 1/(C-1) (the "
                                                        "documented distribution, tested); only which draw maps to "
                                                        "which tier changes",
    "planners.routing.x_replay_thresholds__mutmut_10": "the no-GPU fallback last = C - 1 -> C + 1: i runs over the "
                                                       "C - 1 thresholds only, so i < C - 1 and i < C + 1 hold alike",
    "planners.routing.x_replay_thresholds__mutmut_16": "i < last -> i <= last: at i == last either tier `last` is "
                                                       "deployed (gpus > 0, so the `== 0` test fails anyway) or none "
                                                       "is and last = C - 1 lies past every threshold index",
    "planners.routing.x_best_attainable_quality__mutmut_26": "meshgrid indexing 'ij' -> 'xy': both arrays swap their "
                                                             "first two axes alike, so the same grid points are "
                                                             "replayed in another order; the best quality is the same "
                                                             "and the thresholds returned reach it (only which of "
                                                             "tied optima comes first can change; no caller reads "
                                                             "more than the quality and that they reach it)",
    "sim.perf.cost_model.x__dp_prefill_excess_s__mutmut_10": "excess <= 0 -> excess < 0: at excess == 0 the "
                                                             "function returns 0.0 x (a finite prefill time) = 0.0, "
                                                             "the same value",
    **{f"sim.perf.cost_model.xǁReplicaCostModelǁ_stage_fixed_s__mutmut_{k}": (
        "the DP-excess guard `dp_ranks > 1 and num_prefill_seqs` -> `or` / `>= 1`: with dp_ranks == 1, "
        "_dp_prefill_excess_s computes n / n - 1 / 1 = 0.0 exactly and adds 0.0; `or` adds a call only where a "
        "batch has prefill tokens but no prefill sequence, which no BatchShape builder makes (batching's _shape "
        "counts the chunks, the estimator, metrics, corpus and prefill_time_s pass num_prefill_seqs >= 1)")
       for k in (42, 43)},
    **{f"sim.perf.cost_model.xǁReplicaCostModelǁ_mtp_decode_affine__mutmut_{k}": (
        "the draft pass's graph flag -> None (or left out): _iteration_fixed_s then computes "
        "self._graph(BatchShape(decode_seqs=decode_seqs)) itself, the very expression the flag was set from")
       for k in (19, 21)},
}

KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no_tests"
STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, -24: TIMEOUT, 24: TIMEOUT,
          152: TIMEOUT, 255: TIMEOUT}


def dotted(path: str) -> str:
    return path[:-3].replace("/", ".")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_module(path: str, budget_s: float, resume: bool = False, max_children: int = 1) -> tuple[float, float]:
    """mutmut over one module's mutants, stopped after budget_s (what it checked by then is kept in mutants/).
    resume: only the mutants not checked yet and the survivors (tests added since may kill them).
    max_children: mutants tested at once (1 by default: the 2 cores here are shared).
    Returns (wall seconds, CPU seconds of mutmut and all its children)."""
    t0, cpu0 = time.monotonic(), _children_cpu_s()
    names = [f"{dotted(path)}.*"]
    meta = ROOT / "mutants" / f"{path}.meta"
    if resume and meta.exists():
        # By name, leaving out the equivalent mutants: no test can kill them, and a survivor costs all its tests.
        names = [k for k, v in _read_meta(meta)["exit_code_by_key"].items()
                 if (v is None or v == 0) and k not in EQUIVALENT]
        if not names:
            return 0.0, 0.0
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names]
    # Its own session, so that a spent budget stops mutmut's forked workers too, not only mutmut.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"{path}: time budget of {budget_s:.0f} s spent; the rest stays not_checked", file=sys.stderr)
    return time.monotonic() - t0, _children_cpu_s() - cpu0


def module_counts(path: str) -> dict:
    meta = ROOT / "mutants" / f"{path}.meta"
    codes = _read_meta(meta)["exit_code_by_key"] if meta.exists() else {}
    c = Counter()
    survivors, equivalent = [], []
    for name, code in codes.items():
        if name in EQUIVALENT:
            equivalent.append({"mutant": name, "reason": EQUIVALENT[name]})
            continue
        status = "not_checked" if code is None else STATUS.get(code, "suspicious")
        c[status] += 1
        if status == SURVIVED:
            survivors.append(name)
    return {"mutants": len(codes), KILLED: c[KILLED], SURVIVED: c[SURVIVED], TIMEOUT: c[TIMEOUT],
            NO_TESTS: c[NO_TESTS], "suspicious": c["suspicious"], "not_checked": c["not_checked"],
            "equivalent": len(equivalent), "score_pct": _score(c), "complete": c["not_checked"] == 0 and bool(codes),
            "survivors": sorted(survivors), "equivalent_mutants": equivalent}


def _read_meta(meta: Path, tries: int = 20) -> dict:
    """mutmut rewrites a module's .meta after every mutant; a read can meet it half-written."""
    for _ in range(tries - 1):
        try:
            return json.loads(meta.read_text())
        except json.JSONDecodeError:
            time.sleep(0.2)
    return json.loads(meta.read_text())


def _score(c: Counter) -> float | None:
    checked = c[KILLED] + c[SURVIVED] + c[TIMEOUT] + c[NO_TESTS] + c["suspicious"]
    return round(100.0 * (c[KILLED] + c[TIMEOUT]) / checked, 1) if checked else None


def summarise(modules, spent: dict, earlier: dict | None = None, resumed: bool = False) -> dict:
    """spent: module -> (wall s, CPU s) of this invocation. A module not run now keeps the times an earlier
    summary recorded for it; a resumed module adds its new times to them (its whole cost over the runs)."""
    earlier = (earlier or {}).get("modules", {})
    per = {}
    for m in modules:
        before = earlier.get(m, {})
        wall_s, cpu_s = before.get("wall_s", 0.0), before.get("cpu_s", 0.0)
        if m in spent:
            keep = 1.0 if resumed else 0.0
            wall_s, cpu_s = keep * wall_s + spent[m][0], keep * cpu_s + spent[m][1]
        per[m] = {**module_counts(m), "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1)}
    total = Counter()
    for m in per.values():
        for k in (KILLED, SURVIVED, TIMEOUT, NO_TESTS, "suspicious", "not_checked"):
            total[k] += m[k]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"tool": "mutmut " + _mutmut_version(), "commit": commit, "dirty_worktree": dirty,
            "command": "make mutation", "overall": {"mutants": sum(m["mutants"] for m in per.values()),
                                                    **{k: total[k] for k in total}, "score_pct": _score(total),
                                                    "wall_s": round(sum(m["wall_s"] for m in per.values()), 1),
                                                    "cpu_s": round(sum(m["cpu_s"] for m in per.values()), 1),
                                                    "complete": all(m["complete"] for m in per.values())},
            "modules": per}


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", nargs="+", default=list(CORE), choices=CORE)
    ap.add_argument("--budget-s", type=float, default=45 * 60, help="wall-clock budget for all modules together")
    ap.add_argument("--module-budget-s", type=float, default=None, help="at most this long on any one module")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "mutation.json")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--resume", action="store_true", help="per module, only unchecked mutants and survivors")
    ap.add_argument("--max-children", type=int, default=1,
                    help="mutants tested at once (mutmut's default is one per core; the cores here are shared)")
    args = ap.parse_args(argv)
    spent: dict = {}
    if not args.collect_only:
        deadline = time.monotonic() + args.budget_s
        for m in args.modules:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            spent[m] = run_module(m, min(left, args.module_budget_s or left), args.resume, args.max_children)
            counts = {k: v for k, v in module_counts(m).items() if k not in ("survivors", "equivalent_mutants")}
            print(f"{m}: wall {spent[m][0]:.0f} s, CPU {spent[m][1]:.0f} s, {json.dumps(counts)}", flush=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else None
    # Every core module is summarised, run now or not: the file is the state of the whole run.
    summary = summarise(CORE, spent, earlier, args.resume)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"overall {summary['overall']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
