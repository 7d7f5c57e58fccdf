"""`make mutation`: mutation testing of the core modules with mutmut, one module at a time, on a seeded uniform
random sample of each module's mutants, summarised in results/mutation.json (per module and overall: mutants,
sampled, killed, survived, timeout, score_pct with a 95% interval, with the commit and the CPU seconds).

Why mutmut 3 and not cosmic-ray (both install on Python 3.11 here): mutmut compiles every mutant of a file into
one copy of the package behind trampolines and forks each mutant's test run from a process that has already
imported numpy, pandas and simpy, running only the tests that call the mutated function (found once, in a stats
run), fastest first, stopping at the first failure (-x). cosmic-ray writes each mutant to disk and runs a whole
pytest command per mutant, paying the ~3 s import and collection every time: on 2 cores that alone is hours for
the few thousand mutants of these modules.

Why a sample. The 12 core modules have ~5,700 mutants; at 1.5 to 4 CPU s each that is 2 to 6 CPU hours, far over
the issue's 45 minutes on 2 cores. Mutant sampling (checking a uniform
random x% of the mutants) is the oldest of the cost-reduction techniques (Acree 1980, Budd 1980; Wong & Mathur
1995 studied 10% to 40% samples; surveyed in Jia & Harman, IEEE TSE 2011). Zhang et al. (ICSE 2010, "Is
operator-based mutant selection superior to random mutant selection?") found uniform random selection as good
as the operator-based selections, and Gopinath et al. (ISSRE 2015, "How hard does mutation analysis have to be,
anyway?") that a random sample of a few hundred to a thousand mutants estimates the full score to within a few
points. The reason is plain statistics: the score of a uniform sample is a binomial estimate of the full score,
so its error is that of a proportion (a Wilson interval) whatever the module's size, and it has no bias.

The sampling rule, fixed before any run: per module n = min(all its mutants, N), the first N of a permutation of
its sorted mutant names seeded by (SEED, module path), so the sample is the same on every machine and a larger N
only adds mutants to a smaller N's sample. N is set by the budget: 12 modules x N x CPU_PER_MUTANT_S must fit
(1 - OVERHEAD) of budget_s x children CPU seconds (OVERHEAD is left for the stats run and each module's clean
run): N = floor(2700 s x 2 children x 0.75 / (12 x 4.3 s)) = 78 for `make mutation` (2 children on 2 cores),
39 with one child. CPU_PER_MUTANT_S is measured: the first sampled run (N = 93, set by this rule with 1.8 s, a
margin over the 1.1 to 1.5 s per mutant of the exhaustive run at 77cbbe3) cost 4.3 CPU s per mutant over
batching, workload build, MILP and estimator (1,593 CPU s for 372 mutants, clean-test runs included), so 93 per
module did not fit 45 minutes; 4.3 s is the value for the next run. A larger N only adds to a smaller N's
sample, so the committed N = 93 results contain the N = 78 sample. `--sample-n` overrides N; `--full` checks
every mutant (`make mutation-full`, hours).

Score: (killed + timeout) / (killed + survived + timeout + no_tests), equivalent mutants (EQUIVALENT, each with
the reason it cannot be killed) left out of both sides. A mutant not yet checked (the run's time budget ran out)
is counted in `not_checked`, never as killed. A module whose every mutant was checked is exact (`complete`,
`sampled` false, its interval the score itself); a sampled module's score is over its sample only, with a 95%
Wilson interval. The overall score weights each module's score by its number of (non-equivalent) mutants, so a
sampled module counts as much as it would in a full run; its interval adds the modules' binomial variances
(finite-population corrected; an exact module adds none).

Usage: python -m tools.mutation [--modules sim/metrics.py ...] [--budget-s 2700] [--module-budget-s S]
                                [--max-children 1] [--sample-n N | --full] [--out results/mutation.json]
       python -m tools.mutation --resume ...     (per module: only sampled mutants not checked yet, and survivors)
       python -m tools.mutation --collect-only   (summarise what mutants/ holds, run nothing)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
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
_MIP_NAMES = ("a python-mip variable's name (\"L\", \"x_i_f\") -> none or None: names only label variables in "
              "LP files and messages, none is written or read here, and mip names an unnamed variable itself")
EQUIVALENT: dict[str, str] = {
    "sim.runtime.batching.x_schedule_static__mutmut_20": "_shape(chunks, ()) -> _shape(chunks, None): with no "
        "decodes the sequence branch counts 0 sequences and 0 context tokens, the very defaults the None branch keeps",
    "sim.runtime.batching.x\u01c1Seq\u01c1__init____mutmut_15": "Seq.blocks starts at 1 instead of 0: no reader "
        "sees it, since every reader (kv_cache.free, the prefix cache's release and private count, the decode step's "
        "growth check) runs on an admitted sequence, and each admission path (batching.admit, disagg's KV arrival, "
        "decode_batch) assigns blocks first; prefix.admit takes its block count as an argument",
    "sim.runtime.batching.x\u01c1Seq\u01c1reset_for_requeue__mutmut_3": "prefilled = None after a requeue: a requeued "
        "sequence waits, and every read of prefilled (_shape's chunks, the chunk size of a running sequence, the "
        "engine's progress) follows its re-admission, which assigns prefilled = cached (or disagg's held + 1) first",
    "sim.runtime.batching.x\u01c1Seq\u01c1reset_for_requeue__mutmut_7": "decoding = None instead of False: decoding is "
        "only ever read in truth tests (if seq.decoding / if not seq.decoding / [s for s in running if s.decoding]), "
        "where None and False agree",
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
    "sim.perf.cost_model.x__check_options__mutmut_12": "ep > 1 -> ep >= 1 before `num_routed_experts % ep`: every "
                                                       "count is divisible by 1, so EP 1 never raises either way",
    "sim.perf.cost_model.xǁReplicaCostModelǁ_graph__mutmut_6": "ceil by -(-n // tp) -> -(-n / tp) (n / tp itself): "
                                                               "it is only compared with an integer limit m, and "
                                                               "ceil(x) <= m exactly when x <= m",
    "sim.runtime.kv_cache.xǁKVCacheǁtake__mutmut_5": "used > peak -> used >= peak: on equality the peak is set to "
                                                     "the value it already has",
    # Found by the sampled run (tools/mutation.py --sample-n 93).
    "sim.runtime.batching.xǁSeqǁreset_for_requeue__mutmut_5": "prefill_target = 0 -> None on requeue: a waiting "
                                                              "sequence's target is never read; every way back into "
                                                              "a running list sets it first (admit: the prompt + "
                                                              "generated length; disagg's KV transfer: held + 1)",
    **{f"planners.milp.x__solve_cbc__mutmut_{k}": _MIP_NAMES for k in (23, 25, 39)},
    "planners.milp.x__solve_cbc__mutmut_9": "mip.Model(solver_name=mip.CBC) -> no solver_name: python-mip picks "
                                            "Gurobi only when it is installed, which it is not (nor a dependency); "
                                            "here the default is CBC. Equivalent on this install only",
    "planners.milp.x__solve_highs__mutmut_76": "Bounds(0, 1 for the x, inf for L) -> scipy's default bounds (0, "
                                              "inf): each tier's x are integers >= 0 whose row sums to 1, so each "
                                              "is 0 or 1 anyway, and L >= 0 is the default's lower bound too",
    "planners.milp.x_exact_allocation__mutmut_24": "np.searchsorted(..., side='left') -> no side: 'left' is "
                                                   "numpy's default",
    "planners.estimator.x__decode_times__mutmut_26": "grid.astype(np.int64) -> astype(None) (float64): the lattice "
                                                     "holds integers, a float batch size b == int b is the same memo "
                                                     "key, and decode_affine and a_s + b_s * b * ctx give the same "
                                                     "floats for it",
    "planners.estimator.x__lattice__mutmut_23": "one more lattice point above hi (k_hi + 2): np.interp of values in "
                                                "[lo, hi] reads only the points around them, never the extra one "
                                                "beyond hi (it only costs one more cost-model call)",
    "planners.estimator.x__prefill_times__mutmut_23": ("the prefill memo looked up under another key: every "
                                                           "lookup misses and recomputes the same cost-model float, "
                                                           "stored under the key read next; only time changes"),
    "planners.estimator.x_quantile_rows__mutmut_11": "n < 2 -> n < 3 sends two-sample rows to np.quantile, which "
                                                     "the fast path reproduces float for float (its docstring; "
                                                     "tests/planners/test_lazy_p95.py)",
    "planners.estimator.x_rate_profile__mutmut_61": "bincount(idx, minlength=k) -> no minlength: the last arrival "
                                                    "always lands in window k - 1 (idx is capped there), so bincount "
                                                    "has k bins either way",
    "sim.runtime.flow.xǁCascadeFlowǁ_context_fallback__mutmut_3": "return -1 -> -2 under the drop policy: the only "
                                                                  "caller (_enter) tests tier < 0, true for both",
    "sim.runtime.flow.xǁCascadeFlowǁ_context_fallback__mutmut_14": "t < 0 -> t <= 0: t comes from _taker_from(i, "
                                                                   "tier + 1, ...), a tier >= tier + 1 >= 1 or -1, "
                                                                   "never 0",
    "sim.runtime.replica.xǁEngineǁ_at__mutmut_14": "d > 0.0 -> d >= 0.0 in now + d if ... else now: at d == 0 both "
                                                   "branches give now (now + 0.0 is now)",
    "sim.runtime.replica.xǁEngineǁ__init____mutmut_24": "_arrivals_interrupt = fast and ... -> fast or ...: it is read "
                                                        "only in fast mode's paths (a decode jump, _jumping, which "
                                                        "reference mode never sets, and _plan_decode after its "
                                                        "reference-mode return)",
    "sim.runtime.flow.xǁCascadeFlowǁ__init____mutmut_3": "self.cfg = cfg -> None: CascadeFlow reads its config "
                                                         "through the constructor's local cfg only; no code reads "
                                                         "flow.cfg (grep of sim, online, experiments)",
    "sim.runtime.flow.xǁCascadeFlowǁ__init____mutmut_71": "float('inf') -> float('XXinfXX') in the max_context=None "
                                                          "default: unreachable, CascadeFlow's one constructor "
                                                          "(sim.simulator.simulate) always passes every tier's "
                                                          "max_context",
    "sim.runtime.flow.xǁCascadeFlowǁ__init____mutmut_96": "the longest draft per request -> over all requests in "
                                                          "fits_everywhere: that flag only lets a request skip the "
                                                          "exact per-visit context check; a larger bound turns the "
                                                          "shortcut off for more requests (never on wrongly), and "
                                                          "their exact check gives the same answers",
    "sim.runtime.flow.xǁCascadeFlowǁdrop_parked__mutmut_12": "dropped += 1 -> dropped = 1: only the returned count "
                                                             "changes, and its one caller (simulate) ignores it; "
                                                             "every parked visit is still dropped with its reason",
    "planners.estimator.x_rows_to_fill__mutmut_38": "the row mask one entry longer (grid.size + 2): it is cut "
                                                    "to rows[:grid.size] before use, and j + 1 <= grid.size, so the "
                                                    "extra entry is never set nor read (was ReplicaModel.prepare's "
                                                    "mutant 29 before rows_to_fill was factored out)",
    "planners.estimator.x_rate_profile__mutmut_3": "np.asarray(arrival_s, dtype=np.float64) -> no dtype: every "
                                                   "caller passes a workload's float64 arrival_s, which asarray "
                                                   "keeps as it is",
    "sim.workload.build.x__apply_overrides__mutmut_61": "data.setdefault(section, {}) -> setdefault(section, None): "
                                                        "the next line is data[section] = dict(data[section] or {}), "
                                                        "which turns None into {} as well",
    "sim.workload.build.x_load_workload_dict__mutmut_10": "a relative YAML path p -> p instead of cwd / p: every file "
                                                          "operation resolves a relative path against the working "
                                                          "directory, so both name the same file, and the messages "
                                                          "show the path as given either way",
    "sim.runtime.batching.xǁSeqǁ__init____mutmut_29": "Seq.unit_tokens = 0 -> None: read only where the visit has "
                                                      "unit keys (admit's prefix branch, the prefix router), and "
                                                      "everything that gives a visit keys sets unit_tokens with them "
                                                      "(RequestUnits.attach, disagg's visit copy)",
    "sim.runtime.batching.x_schedule_vllm__mutmut_19": "_shape(chunks, ()) -> _shape(chunks, None) for a prefill-only "
                                                       "step: None takes decode_seqs and decode_ctx_tokens from the "
                                                       "defaults, 0 and 0, what an empty tuple of decodes counts",
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

# The sampling rule (module docstring): fixed before any run, not tuned on its results.
SEED = 22  # issue 22
CPU_PER_MUTANT_S = 4.3  # CPU seconds per checked mutant, mutmut and its worker, measured (module docstring)
OVERHEAD = 0.25  # share of the budget left for the stats run and each module's clean-test run
Z95 = 1.959963984540054

KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no_tests"
STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, -24: TIMEOUT, 24: TIMEOUT,
          152: TIMEOUT, 255: TIMEOUT}


def dotted(path: str) -> str:
    return path[:-3].replace("/", ".")


def sample_size(budget_s: float, children: int, n_modules: int = len(CORE),
                cpu_per_mutant_s: float = CPU_PER_MUTANT_S) -> int:
    """N of the rule: n_modules x N x cpu_per_mutant_s fits (1 - OVERHEAD) of budget_s x children CPU seconds."""
    return max(1, math.floor(budget_s * children * (1.0 - OVERHEAD) / (n_modules * cpu_per_mutant_s)))


def sample_names(names, n: int, path: str, seed: int = SEED) -> list[str]:
    """The module's sample: the first n of a permutation of its sorted mutant names, seeded by (seed, path), so it
    is the same on every machine and every Python (random.Random seeds a str by its SHA-512), and a larger n only
    adds mutants to a smaller n's sample. Equivalent mutants stay in the frame (they are left out of the score, as
    in a full run), so listing one never shifts the sample."""
    order = sorted(names)
    random.Random(f"{seed}:{path}").shuffle(order)
    return sorted(order[:n])


def wilson_pct(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval of a binomial proportion k/n, in percent (None when n is 0)."""
    if n <= 0:
        return None
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return [round(100.0 * max(0.0, centre - half), 1), round(100.0 * min(1.0, centre + half), 1)]


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_module(path: str, budget_s: float, resume: bool = False, max_children: int = 1,
               sample_n: int | None = None) -> tuple[float, float]:
    """mutmut over one module's mutants (sample_n: only its sample of that size; None: all), stopped after budget_s
    (what it checked by then is kept in mutants/).
    resume: only the mutants not checked yet, the survivors and those no test reached (tests added since may
    kill them).
    max_children: mutants tested at once (1 by default: the 2 cores here are shared).
    Returns (wall seconds, CPU seconds of mutmut and all its children)."""
    t0, cpu0 = time.monotonic(), _children_cpu_s()
    meta = ROOT / "mutants" / f"{path}.meta"
    # The sample is drawn from the module's current mutants: a .meta older than the source names an earlier version's
    # mutants (mutmut renumbers them when it regenerates the file), so regenerate first.
    if sample_n is not None and (not meta.exists() or meta.stat().st_mtime < (ROOT / path).stat().st_mtime):
        _generate_mutants()
    names = [f"{dotted(path)}.*"]
    if sample_n is not None or (resume and meta.exists()):
        codes = _read_meta(meta)["exit_code_by_key"]
        frame = sample_names(codes, sample_n, path) if sample_n is not None else list(codes)
        # By name, leaving out the equivalent mutants: no test can kill them, and a survivor costs all its tests.
        # A resume reruns survivors and mutants no test reached (tests added since may kill or reach them).
        names = [k for k in frame if k not in EQUIVALENT
                 and (not resume or codes[k] is None or STATUS.get(codes[k]) in (SURVIVED, NO_TESTS))]
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


def _generate_mutants() -> None:
    """mutmut writes mutants/ (and each module's .meta, the list of its mutants) before its stats run; a run with a
    name that matches no mutant does exactly that, plus the stats run, then stops ("nothing matches")."""
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", "zzz_no_such_mutant"], cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def module_counts(path: str, sample_n: int | None = None) -> dict:
    """The module's counts over all its mutants, or, with sample_n below their number and some still unchecked,
    over its sample only (`sampled`). A module whose every mutant was checked is exact either way."""
    meta = ROOT / "mutants" / f"{path}.meta"
    codes = _read_meta(meta)["exit_code_by_key"] if meta.exists() else {}
    total = len(codes)
    sampled = (sample_n is not None and sample_n < total and any(v is None for v in codes.values()))
    if sampled:
        codes = {k: codes[k] for k in sample_names(codes, sample_n, path)}
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
    score = _score(c)
    complete = c["not_checked"] == 0 and bool(codes) and not sampled  # exact: every mutant checked
    checked = c[KILLED] + c[SURVIVED] + c[TIMEOUT] + c[NO_TESTS] + c["suspicious"]
    if complete and not sampled:
        ci = [score, score] if score is not None else None  # every mutant checked: exact
    elif sampled and c["not_checked"] == 0:
        ci = wilson_pct(c[KILLED] + c[TIMEOUT], checked)
    else:
        # Part of a sample or of a full run, in mutmut's order (cheapest functions first): not a uniform sample of
        # the module, so no interval; its score says only what was checked.
        ci = None
    return {"mutants": total, "sampled": sampled, "sample_n": len(codes), KILLED: c[KILLED], SURVIVED: c[SURVIVED],
            TIMEOUT: c[TIMEOUT], NO_TESTS: c[NO_TESTS], "suspicious": c["suspicious"], "not_checked": c["not_checked"],
            "equivalent": len(equivalent), "score_pct": score, "ci95_pct": ci, "complete": complete,
            "survivors": sorted(survivors), "equivalent_mutants": equivalent}


def _any_checked(path: str) -> bool:
    meta = ROOT / "mutants" / f"{path}.meta"
    return meta.exists() and any(v is not None for v in _read_meta(meta)["exit_code_by_key"].values())


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


def summarise(modules, spent: dict, earlier: dict | None = None, resumed: bool = False,
              sample_n: int | None = None, recount=()) -> dict:
    """spent: module -> (wall s, CPU s) of this invocation. A module run now (or named in recount) is counted from
    mutants/ (over its sample when sample_n is given); any other keeps the entry an earlier summary recorded for it,
    measured at that summary's commit. A resumed module adds its new times to its earlier ones (its whole cost
    over the runs)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    earlier_commit = (earlier or {}).get("commit")
    earlier = (earlier or {}).get("modules", {})
    per = {}
    for m in modules:
        before = earlier.get(m, {})
        if m not in spent and m not in recount and "mutants" in before:
            kept = dict(before)
            kept.setdefault("commit", earlier_commit)
            kept.setdefault("sampled", False)
            if "ci95_pct" not in kept:
                kept["ci95_pct"] = [kept["score_pct"]] * 2 if kept.get("complete") else None
            per[m] = kept
            continue
        wall_s, cpu_s = before.get("wall_s", 0.0), before.get("cpu_s", 0.0)
        if m in spent:
            keep = 1.0 if resumed else 0.0
            wall_s, cpu_s = keep * wall_s + spent[m][0], keep * cpu_s + spent[m][1]
        per[m] = {**module_counts(m, sample_n), "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
                  "commit": commit, "dirty_worktree": dirty}
    total = Counter()
    for m in per.values():
        for k in (KILLED, SURVIVED, TIMEOUT, NO_TESTS, "suspicious", "not_checked"):
            total[k] += m[k]
    score, ci, unmeasured, partial = stratified_score(per)
    return {"tool": "mutmut " + _mutmut_version(), "commit": commit, "dirty_worktree": dirty,
            "command": "make mutation", "sampling": {"seed": SEED, "sample_n": sample_n, "rule": SAMPLING_RULE},
            "overall": {"mutants": sum(m["mutants"] for m in per.values()),
                        "sample_n": sum(m.get("sample_n", m["mutants"]) for m in per.values()),
                        **{k: total[k] for k in total}, "score_pct": score, "ci95_pct": ci,
                        "score_method": "each module's score weighted by its non-equivalent mutants (stratified)",
                        "not_measured": unmeasured, "partial": partial,
                        "wall_s": round(sum(m["wall_s"] for m in per.values()), 1),
                        "cpu_s": round(sum(m["cpu_s"] for m in per.values()), 1),
                        "sampled": any(m.get("sampled") for m in per.values()),
                        "complete": all(m["complete"] for m in per.values())},
            "modules": per}


SAMPLING_RULE = ("per module n = min(mutants, N), the first N of a permutation of its sorted mutant names seeded by "
                 "(seed, module path); N = floor(budget_s x children x (1 - 0.25) / (12 modules x CPU_PER_MUTANT_S)): "
                 "78 for 2700 s, 2 children and the measured 4.3 CPU s per mutant (this file's N = 93 modules used "
                 "1.8 s, the estimate before measuring; flow and replica: the first 30 of the same permutation)")


def stratified_score(per: dict) -> tuple[float | None, list[float] | None, list[str], list[str]]:
    """Overall score as a stratified estimate: each module's score weighted by its non-equivalent mutants (for a
    sampled module, its mutants times the non-equivalent share of its sample), so a sampled module weighs what
    it would in a full run. The 95% interval adds each sampled module's binomial variance with the
    finite-population correction (1 - n/N), at Agresti-Coull's adjusted proportion (k + z^2/2) / (n + z^2) over
    n + z^2 so that a sample with no survivor is not taken as certain; an exact module adds none. Modules with no score are left out and
    named (not_measured); so are the modules whose sample (or full run) is only partly checked (partial): they
    count with their checked mutants as if a sample, though mutmut checks the cheapest functions first."""
    weights, scores, variances, unmeasured, partial = [], [], [], [], []
    for name, m in per.items():
        checked = m[KILLED] + m[SURVIVED] + m[TIMEOUT] + m[NO_TESTS] + m.get("suspicious", 0)
        if m.get("score_pct") is None or checked == 0:
            unmeasured.append(name)
            continue
        p = m["score_pct"] / 100.0
        frame = checked + m["equivalent"]
        w = m["mutants"] * checked / frame if m.get("sampled") else m["mutants"] - m["equivalent"]
        # Agresti-Coull's adjusted proportion: a sample that killed every mutant still carries its uncertainty
        # (p(1-p) = 0 at p = 1 would give a sampled 100 % module no variance at all).
        n_adj = checked + Z95 ** 2
        p_adj = (p * checked + Z95 ** 2 / 2) / n_adj
        var = 0.0
        if m.get("sampled"):
            var = p_adj * (1 - p_adj) / n_adj * max(0.0, 1 - checked / max(w, checked))
        if not m.get("complete") and m.get("not_checked", 0):
            partial.append(name)
            var = p_adj * (1 - p_adj) / n_adj  # checked in mutmut's order, not at random: counted as if a sample
        weights.append(w)
        scores.append(p)
        variances.append(var)
    if not weights:
        return None, None, unmeasured, partial
    total_w = sum(weights)
    est = sum(w * p for w, p in zip(weights, scores)) / total_w
    se = math.sqrt(sum((w / total_w) ** 2 * v for w, v in zip(weights, variances)))
    ci = [round(100.0 * max(0.0, est - Z95 * se), 1), round(100.0 * min(1.0, est + Z95 * se), 1)]
    return round(100.0 * est, 1), ci, unmeasured, partial


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
    ap.add_argument("--measured-commit", default=None,
                    help="with --collect-only: the commit whose sources mutants/ was generated from, when HEAD has "
                         "moved on since (recorded as the recounted modules' commit)")
    ap.add_argument("--resume", action="store_true", help="per module, only unchecked mutants and survivors")
    ap.add_argument("--max-children", type=int, default=1,
                    help="mutants tested at once (mutmut's default is one per core; the cores here are shared)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--full", action="store_true", help="every mutant of each module, not a sample (hours)")
    how.add_argument("--sample-n", type=int, default=None,
                     help="mutants sampled per module (default: the rule's N for --budget-s and --max-children)")
    args = ap.parse_args(argv)
    if args.sample_n is not None and args.sample_n < 1:
        print("error: --sample-n must be at least 1", file=sys.stderr)
        return 2
    sample_n = None if args.full else (args.sample_n or sample_size(args.budget_s, args.max_children))
    spent: dict = {}
    if not args.collect_only:
        print(f"sample: {'every mutant' if sample_n is None else f'{sample_n} mutants per module'} (seed {SEED})",
              flush=True)
        deadline = time.monotonic() + args.budget_s
        for m in args.modules:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            spent[m] = run_module(m, min(left, args.module_budget_s or left), args.resume, args.max_children,
                                  sample_n)
            counts = {k: v for k, v in module_counts(m, sample_n).items()
                      if k not in ("survivors", "equivalent_mutants")}
            print(f"{m}: wall {spent[m][0]:.0f} s, CPU {spent[m][1]:.0f} s, {json.dumps(counts)}", flush=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else None
    # Every core module is summarised, run now or not: the file is the state of the whole run. --collect-only
    # recounts the modules named with --modules from mutants/.
    recount = [m for m in args.modules if _any_checked(m)] if args.collect_only else ()
    summary = summarise(CORE, spent, earlier, args.resume, sample_n, recount)
    if args.collect_only and args.measured_commit:
        for m in recount:
            summary["modules"][m]["commit"] = args.measured_commit
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"overall {summary['overall']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
