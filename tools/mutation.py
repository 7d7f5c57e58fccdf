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
                                [--out results/mutation.json]
       python -m tools.mutation --resume ...     (per module: only mutants not checked yet, and survivors)
       python -m tools.mutation --collect-only   (summarise what mutants/ holds, run nothing)
"""
from __future__ import annotations

import argparse
import json
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
EQUIVALENT: dict[str, str] = {
    **{f"sim.metrics.x_{name}": _NAN for name in (
        "_pct__mutmut_9", "_pct__mutmut_19", "_pct__mutmut_24", "slo_scale__mutmut_15", "summarize__mutmut_102",
        "summarize__mutmut_115", "summarize__mutmut_148")},
    "sim.metrics.x_request_slo_ratios__mutmut_64": "final > 0 -> final >= 0 on completed requests: a completed "
                                                   "answer has at least one token (flow sets output_tokens_final "
                                                   "only on completion, from outputs >= 1)",
}

KILLED, SURVIVED, TIMEOUT, NO_TESTS = "killed", "survived", "timeout", "no_tests"
STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT, -24: TIMEOUT, 24: TIMEOUT,
          152: TIMEOUT, 255: TIMEOUT}


def dotted(path: str) -> str:
    return path[:-3].replace("/", ".")


def run_module(path: str, budget_s: float, resume: bool = False) -> float:
    """mutmut over one module's mutants, stopped after budget_s (what it checked by then is kept in mutants/).
    resume: only the mutants not checked yet and the survivors (tests added since may kill them)."""
    t0 = time.monotonic()
    names = [f"{dotted(path)}.*"]
    meta = ROOT / "mutants" / f"{path}.meta"
    if resume and meta.exists():
        names = [k for k, v in _read_meta(meta)["exit_code_by_key"].items() if v is None or v == 0]
        if not names:
            return 0.0
    cmd = [sys.executable, "-m", "mutmut", "run", *names]
    try:
        subprocess.run(cmd, cwd=ROOT, timeout=budget_s, stdout=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        print(f"{path}: time budget of {budget_s:.0f} s spent; the rest stays not_checked", file=sys.stderr)
    return time.monotonic() - t0


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


def summarise(modules, wall_s: dict) -> dict:
    per = {m: {**module_counts(m), "wall_s": round(wall_s.get(m, 0.0), 1)} for m in modules}
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
    args = ap.parse_args(argv)
    wall: dict = {}
    if not args.collect_only:
        deadline = time.monotonic() + args.budget_s
        for m in args.modules:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wall[m] = run_module(m, min(left, args.module_budget_s or left), args.resume)
            print(f"{m}: {json.dumps({k: v for k, v in module_counts(m).items() if k not in ('survivors', 'equivalent_mutants')})}")
    summary = summarise(args.modules, wall)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"overall {summary['overall']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
