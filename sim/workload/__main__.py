"""Command line: `python -m sim.workload describe NAME|PATH.yaml` (summary + one JSON line), `models [DATASET]`, `list`."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sim.common.cli import exit_on_user_error
from sim.workload.build import build_workload, workload_names
from sim.workload.prefix import prefix_reuse_pct
from sim.workload.quality import dataset_models, dataset_names, quality_source
from sim.workload.types import Workload


def summary(w: Workload) -> dict:
    return {
        "name": w.name,
        "requests": w.num_requests,
        "duration_s": round(w.duration_s, 3),
        "rate_rps": round(w.rate_rps, 4),
        "mean_input_tokens": round(float(w.input_tokens.mean()), 2),
        "mean_output_tokens": round(float(w.output_tokens.mean()), 2),
        "tier_models": list(w.tier_models),
        "tier_mean_score": [round(float(s), 2) for s in w.scores.mean(axis=0)],
        # per tier, the mean answer length of the bound requests (reasoning tokens included where the data has them)
        "tier_mean_output_tokens": [round(float(o), 1) for o in w.output_tokens.mean(axis=0)],
        # real questions in the pool the requests are bound to (a drifting workload: distinct questions bound)
        "questions": int(w.meta.get("pool_questions", len(set(w.question_ids.tolist())))),
        "prefix_reuse_pct": round(prefix_reuse_pct(w), 2),
    }


def describe_text(w: Workload) -> str:
    gaps = np.diff(w.arrival_s)
    cv = float(gaps.std() / gaps.mean()) if gaps.size > 1 and gaps.mean() > 0 else float("nan")
    q = lambda a: "/".join(f"{v:.0f}" for v in np.percentile(a, [50, 90, 99]))  # noqa: E731
    lines = [
        f"workload {w.name}: {w.num_requests:,} requests over {w.duration_s:,.1f} s ({w.rate_rps:.2f} req/s, "
        f"inter-arrival cv {cv:.2f})",
    ]
    for k in ("trace", "dataset", "score_rule", "output_lengths", "process", "rate_scale"):
        if k in w.meta:
            lines.append(f"  {k}: {w.meta[k]}")
    if "pool_questions" in w.meta:
        lines.append(f"  question pool: {w.meta['pool_questions']} ({w.meta['dropped_invalid_questions']} dropped for "
                     f"invalid judgments, {w.meta['dropped_contaminated_questions']} as contaminated), "
                     f"{len(set(w.question_ids.tolist()))} bound")
    if "dropped_score_rows" in w.meta:
        lines.append(f"  quality rows dropped (score missing or outside the scale): {w.meta['dropped_score_rows']}")
    lines.append(f"  input tokens: mean {w.input_tokens.mean():.1f}, p50/p90/p99 {q(w.input_tokens)}")
    if w.prefix is not None:
        lines.append(f"  prefix reuse: {prefix_reuse_pct(w):.1f}% of prompt blocks ({w.prefix.block_tokens} tokens "
                     "each) were seen, same prefix, in an earlier request (an unlimited cache's hit rate)")
    lines.append("  tier  model                                       mean score  score>=50  output tokens mean (p50/p90/p99)")
    for t, m in enumerate(w.tier_models):
        s, o = w.scores[:, t], w.output_tokens[:, t]
        lines.append(f"  {t + 1:>4}  {m:<42}  {s.mean():>10.1f}  {np.mean(s >= 50):>8.1%}  {o.mean():>8.1f} ({q(o)})")
    if w.num_tiers > 1:
        corr = np.corrcoef(w.scores.T)
        pairs = ", ".join(f"{i + 1}-{j + 1}: {corr[i, j]:.2f}" for i in range(w.num_tiers) for j in range(i + 1, w.num_tiers))
        lines.append(f"  score correlation between tiers: {pairs}")
    for p in w.meta.get("phases", []):
        lines.append(f"  phase {p['workload']}: {p['start_s']:.0f}-{p['end_s']:.0f} s, {p['requests']} requests "
                     f"({p['rate_rps']:.2f} req/s), {p['dataset']}")
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.workload", description="Inspect workloads and quality data.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("describe", help="summary of a workload; the last line is JSON")
    d.add_argument("name", help=f"one of {', '.join(workload_names())}, or a path to a workload .yaml")
    d.add_argument("--seed", type=int, default=None)
    d.add_argument("--rate-scale", type=float, default=None)
    d.add_argument("--duration-s", type=float, default=None, help="window length in trace time")
    d.add_argument("--num-requests", type=int, default=None)
    d.add_argument("--process", choices=["trace", "poisson", "gamma"], default=None)
    d.add_argument("--cv", type=float, default=None)
    d.add_argument("--trace", dest="trace_path", default=None, help="replace the trace file (same column mapping)")
    m = sub.add_parser("models", help="valid dataset model names (for quality.tier_models)")
    m.add_argument("dataset", nargs="?", default=None, help=f"one of {', '.join(dataset_names())}")
    sub.add_parser("list", help="named workloads and quality datasets")
    args = parser.parse_args(argv)
    if args.command == "describe":
        overrides = {k: v for k, v in (("rate_scale", args.rate_scale), ("duration_s", args.duration_s),
                                       ("num_requests", args.num_requests), ("process", args.process),
                                       ("cv", args.cv), ("trace_path", args.trace_path)) if v is not None}
        w = build_workload(args.name, seed=args.seed, **overrides)
        print(describe_text(w))
        print(json.dumps(summary(w)))
    elif args.command == "models":
        if args.dataset is not None and args.dataset not in dataset_names():
            from sim.common.errors import ConfigError

            raise ConfigError(f"dataset {args.dataset!r} is unknown; valid: {', '.join(dataset_names())}")
        names = [args.dataset] if args.dataset else dataset_names()
        for n in names:
            print(f"{n}: {', '.join(dataset_models(n))}")
    else:
        print("workloads: " + ", ".join(workload_names()))
        for name in dataset_names():
            print(f"dataset {name}: {quality_source(name).description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
