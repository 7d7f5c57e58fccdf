"""Build a Workload from a named or user config: trace window, arrivals, rate scaling, quality binding, drift phases.

Randomness: SeedSequence(seed).spawn(3) -> [arrivals, lengths, binding]; drift phases get one child seed each.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sim.common.errors import ConfigError
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR
from sim.workload.arrivals import renewal_arrivals_s
from sim.workload.config import WorkloadConfig, workload_config_from_dict
from sim.workload.prefix import PrefixHashes
from sim.workload.quality import TierTable, quality_source, tier_table
from sim.workload.traces import Trace, read_trace
from sim.workload.types import Workload

WORKLOAD_DIR = CONF_DIR / "workload"

# override -> (section, key) in the config; None section = top level
_OVERRIDES = {
    "rate_scale": ("arrivals", "rate_scale"), "process": ("arrivals", "process"),
    "arrival_process": ("arrivals", "process"), "rate_rps": ("arrivals", "rate_rps"), "cv": ("arrivals", "cv"),
    "start_s": ("window", "start_s"), "end_s": ("window", "end_s"), "num_requests": (None, "num_requests"),
    "tier_models": ("quality", "tier_models"), "dataset": ("quality", "dataset"),
    "output_lengths": ("quality", "output_lengths"), "score_rule": ("quality", "score_rule"),
    "max_output_tokens": (None, "max_output_tokens"), "trace_path": ("trace", "path"),
}
_EXTRA_OVERRIDES = ("duration_s", "window")


def workload_names() -> list[str]:
    return sorted(p.stem for p in WORKLOAD_DIR.glob("*.yaml"))


def load_workload_dict(name_or_path: str) -> dict:
    """The dict of conf/workload/<name>.yaml, or of a YAML file given by path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        path = p if p.is_absolute() else Path.cwd() / p
        shown = str(name_or_path)
    else:
        path = WORKLOAD_DIR / f"{name_or_path}.yaml"
        shown = f"conf/workload/{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"workload {name_or_path!r} is unknown; valid: {', '.join(workload_names())} "
                              "(or a path to a .yaml workload config)")
    if not path.is_file():
        raise ConfigError(f"{shown}: workload config file not found")
    data = read_yaml(path, "workload config (keys name, trace, arrivals, quality, ...)")
    data.setdefault("name", p.stem)
    return data


def _to_plain(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        pass
    return dict(cfg)


def _apply_overrides(data: dict, overrides: dict) -> dict:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for key, value in overrides.items():
        if value is None and key not in ("end_s", "num_requests", "rate_rps", "max_output_tokens"):
            continue
        if key == "duration_s":
            window = data.setdefault("window", {})
            window["end_s"] = float(window.get("start_s") or 0.0) + float(value)
        elif key == "window":
            if isinstance(value, dict):
                data.setdefault("window", {}).update(value)
            else:
                start, end = value
                data["window"] = {"start_s": start, "end_s": end}
        elif key in _OVERRIDES:
            section, k = _OVERRIDES[key]
            if section is None:
                data[k] = value
            else:
                data.setdefault(section, {})
                data[section] = dict(data[section] or {})
                data[section][k] = value
        else:
            raise ConfigError(f"build_workload: unknown override {key!r}; valid: "
                              f"{', '.join(sorted([*_OVERRIDES, *_EXTRA_OVERRIDES]))}")
    return data


def _tier_models(cfg: WorkloadConfig, cascade: Any) -> list[str]:
    q = cfg.quality
    if cascade is None:
        return list(q.tier_models)
    named = [t.dataset_model for t in cascade.tiers]
    if all(named):
        return named
    c = cascade.num_tiers
    if len(q.tier_models) == c:
        return list(q.tier_models)
    if c == 2 and q.two_tier_models:
        return list(q.two_tier_models)
    raise ConfigError(f"workload {cfg.name!r} maps {len(q.tier_models)} tiers (quality.tier_models) but cascade "
                      f"{cascade.name!r} has {c}; set quality.tier_models (or quality.two_tier_models) to {c} "
                      f"{q.dataset} models, or dataset_model on every cascade tier")


def _window(trace: Trace, cfg: WorkloadConfig) -> tuple[np.ndarray, float, float]:
    start = cfg.window.start_s
    if cfg.window.end_s is None:
        # Open-ended: every request from start on. (last + 1e-9 rounds back to last once times reach ~1e7 s, which
        # silently lost the last request.) The next float after the last arrival keeps [start, end) true.
        end = float(np.nextafter(trace.arrival_s[-1], np.inf)) if trace.arrival_s.size else float(start)
        idx = np.nonzero(trace.arrival_s >= start)[0]
    else:
        end = cfg.window.end_s
        idx = np.nonzero((trace.arrival_s >= start) & (trace.arrival_s < end))[0]
    if idx.size == 0:
        raise ConfigError(f"workload {cfg.name!r}: no request of {trace.path} arrives in the window "
                          f"[{start}, {end}) s; the trace spans 0 to {trace.duration_s:.1f} s")
    return idx, start, end


def _output_tokens(mode: str, tt: TierTable, qidx: np.ndarray, trace_out: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """(n, C) output tokens and the number of cells that fell back to the trace's length (no answer text)."""
    c = tt.scores.shape[1]
    from_trace = np.repeat(trace_out[:, None].astype(np.float64), c, axis=1)
    if mode == "trace":
        return from_trace, 0
    answers = tt.answer_tokens[qidx]
    missing = ~np.isfinite(answers)
    if missing.all():
        raise ConfigError(f"workload {name!r}: {tt.dataset} has no answer texts, so quality.output_lengths "
                          f"{mode!r} is impossible; use quality.output_lengths: trace")
    if mode == "dataset":
        out = np.where(missing, from_trace, answers)
    else:  # scaled: the trace's length, split across tiers in the question's real per-tier proportions
        ratio = answers / np.nanmean(np.where(missing, np.nan, answers), axis=1, keepdims=True)
        out = np.where(missing, from_trace, from_trace * ratio)
    return out, int(missing.sum())


def _build_single(cfg: WorkloadConfig, cascade: Any, seed: int, bind_questions: Any = None) -> Workload:
    trace = read_trace(cfg.trace)
    tier_models = _tier_models(cfg, cascade)
    q = cfg.quality
    tt = tier_table(q.dataset, tier_models, q.score_rule, q.subsets, q.exclude_contaminated,
                    q.columns, q.score_scale, q.format)
    source = quality_source(q.dataset, q.columns, q.score_scale, q.format)
    rng_arrivals, rng_lengths, rng_binding = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    idx, start, end = _window(trace, cfg)
    a = cfg.arrivals
    if a.process == "trace":
        rows = idx if cfg.num_requests is None else idx[: cfg.num_requests]
        arrival_s = (trace.arrival_s[rows] - start) / a.rate_scale
    else:
        span = min(end, trace.arrival_s[-1]) - start
        window_rate = (idx.size - 1) / span if span > 0 and idx.size > 1 else None
        base_rate = a.rate_rps if a.rate_rps is not None else window_rate
        if base_rate is None:
            raise ConfigError(f"workload {cfg.name!r}: arrivals.rate_rps is needed, the window holds too few requests to infer a rate")
        cv = 1.0 if a.process == "poisson" else a.cv
        rate = base_rate * a.rate_scale
        # Same expected count as replaying the window at this rate_scale, unless num_requests fixes it.
        arrival_s = renewal_arrivals_s(rate, cv, rng_arrivals, n=cfg.num_requests,
                                       duration_s=None if cfg.num_requests else span / a.rate_scale)
        # Lengths: joint (input, output) pairs drawn from the window's empirical distribution.
        rows = idx[rng_lengths.integers(0, idx.size, arrival_s.size)]
    n = arrival_s.size
    if n == 0:
        raise ConfigError(f"workload {cfg.name!r}: no requests after windowing; widen the window or raise the rate")

    # Binding: each request gets one real question, uniformly with replacement (or by the caller's rule, e.g. the
    # evaluation protocol's disjoint planning/test questions: bind_questions(arrival_s, pool_ids, rng) -> qidx, info).
    binding = None
    if bind_questions is None:
        qidx = rng_binding.integers(0, tt.question_ids.size, n)
    else:
        qidx, binding = bind_questions(arrival_s, tt.question_ids, rng_binding)
    out, fallback = _output_tokens(q.output_lengths, tt, qidx, trace.output_tokens[rows], cfg.name)
    # Every answer has at least one token: a 0-token decode is not a request the engines serve.
    out = np.maximum(np.rint(out), 1)
    if cfg.max_output_tokens is not None:
        out = np.minimum(out, cfg.max_output_tokens)
    meta = {
        "trace": trace.path, "dataset": q.dataset, "score_rule": tt.score_rule, "output_lengths": q.output_lengths,
        "process": a.process, "rate_scale": a.rate_scale, "cv": a.cv if a.process == "gamma" else None,
        "window_s": [float(start), float(end)], "seed": seed, "pool_questions": int(tt.question_ids.size),
        "dropped_invalid_questions": tt.dropped_invalid, "dropped_contaminated_questions": tt.dropped_contaminated,
        "output_tokens_from_trace_cells": fallback, "dropped_score_rows": tt.dropped_score_rows,
        # question-id prefix -> where its prompt texts live (sim.workload.quality.prompts_for reads them)
        "quality_sources": {source.name: source},
    }
    prefix = None
    if trace.hash_ids is not None:
        meta["hash_block_tokens"] = cfg.trace.hash_block_tokens
        prefix = PrefixHashes(cfg.trace.hash_block_tokens, tuple(trace.hash_ids[r] for r in rows))
    if binding is not None:
        meta["binding"] = binding
    return Workload(cfg.name, arrival_s.astype(np.float64), trace.input_tokens[rows].astype(np.int64),
                    out.astype(np.int64), tt.scores[qidx].astype(np.float64), tt.question_ids[qidx].astype(str),
                    tuple(tier_models), meta, prefix)


def _build_drift(cfg: WorkloadConfig, cascade: Any, seed: int) -> Workload:
    """Phases back to back; phase i is its workload's trace from start_s, rate-scaled, cut at duration_s."""
    parts, phases, offset = [], [], 0.0
    for i, (p, child) in enumerate(zip(cfg.phases, np.random.SeedSequence(seed).spawn(len(cfg.phases)))):
        w = build_workload(p.workload, cascade=cascade, seed=int(child.generate_state(1)[0]),
                           rate_scale=p.rate_scale, window={"start_s": p.start_s, "end_s": p.start_s + p.duration_s * p.rate_scale})
        parts.append(w.with_arrivals(w.arrival_s + offset))
        phases.append({"workload": p.workload, "start_s": offset, "end_s": offset + p.duration_s,
                       "requests": w.num_requests, "dataset": w.meta["dataset"], "tier_models": list(w.tier_models),
                       "rate_rps": w.num_requests / p.duration_s})
        offset += p.duration_s
    c = {len(w.tier_models) for w in parts}
    if len(c) != 1:
        raise ConfigError(f"workload {cfg.name!r}: phases map different numbers of tiers ({sorted(c)}); use one cascade shape")
    # Datasets name the same stand-in models differently; keep every phase's name per tier.
    tier_models = tuple(" | ".join(dict.fromkeys(w.tier_models[t] for w in parts)) for t in range(c.pop()))
    cat = lambda f: np.concatenate([getattr(w, f) for w in parts])  # noqa: E731
    prefix = PrefixHashes.concat([w.prefix for w in parts], [w.num_requests for w in parts],
                                 [str(w.meta.get("trace", "")) for w in parts])
    w = Workload(cfg.name, cat("arrival_s"), cat("input_tokens"), cat("output_tokens"), cat("scores"),
                 cat("question_ids"), tier_models, {"phases": phases, "seed": seed, "dataset": "drift",
                                                    "quality_sources": {k: v for p in parts for k, v in p.meta["quality_sources"].items()}},
                 prefix)
    if cfg.num_requests is not None:
        w = w.take(np.arange(min(cfg.num_requests, w.num_requests)))
    return w


def _config(name_or_cfg: Any, overrides: dict) -> WorkloadConfig:
    if isinstance(name_or_cfg, WorkloadConfig):
        data = dataclasses.asdict(name_or_cfg)
    elif isinstance(name_or_cfg, (str, Path)):
        data = load_workload_dict(str(name_or_cfg))
    else:
        data = _to_plain(name_or_cfg)
    return workload_config_from_dict(_apply_overrides(data, overrides))


def check_workload_data(name_or_cfg: Any, cascade: Any = None, **overrides: Any) -> None:
    """Read and check every data file the workload names (its trace, its quality table and the tier models it binds;
    each phase's for a drifting workload), so that a bad file is refused in the parse step, naming file and line,
    before any run starts. Same arguments as build_workload."""
    cfg = _config(name_or_cfg, overrides)
    if cfg.phases:
        for p in cfg.phases:
            check_workload_data(p.workload, cascade=cascade)
        return
    read_trace(cfg.trace)
    q = cfg.quality
    tier_table(q.dataset, _tier_models(cfg, cascade), q.score_rule, q.subsets, q.exclude_contaminated,
               q.columns, q.score_scale, q.format)


def build_workload(name_or_cfg: Any, cascade: Any = None, seed: int | None = None, bind_questions: Any = None,
                   **overrides: Any) -> Workload:
    """A Workload for a named default (conf/workload/<name>.yaml), a YAML path, or a dict/DictConfig.

    cascade (a sim.spec.cascade.CascadeSpec): its tiers' dataset_model, if all set, pick the dataset models; else the
    config's quality.tier_models (or two_tier_models for a two-tier cascade). seed: None = the config's seed.
    overrides: rate_scale, duration_s, window=(start_s, end_s) or dict, start_s, end_s, num_requests,
    process/arrival_process (trace|poisson|gamma), rate_rps, cv, tier_models, dataset, output_lengths,
    score_rule, max_output_tokens, trace_path. The window is in trace time (before rate scaling).
    bind_questions(arrival_s, pool_question_ids, rng) -> (question indices, info dict kept in meta["binding"]):
    replaces the uniform binding (single-trace workloads only; experiments.protocol uses it for its split).
    """
    cfg = _config(name_or_cfg, overrides)
    seed = cfg.seed if seed is None else int(seed)
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (numpy SeedSequence), got {seed}")
    if cfg.phases and bind_questions is not None:
        raise ConfigError(f"workload {cfg.name!r}: a custom question binding needs a single-trace workload, not phases")
    return _build_drift(cfg, cascade, seed) if cfg.phases else _build_single(cfg, cascade, seed, bind_questions)


__all__ = ["build_workload", "check_workload_data", "load_workload_dict", "workload_names"]
