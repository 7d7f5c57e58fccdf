"""Schemas of a workload config (conf/workload/*.yaml) and a judge config, as plain dataclasses that Hydra can register.

`workload_config_from_dict` turns a (possibly partial) dict into a checked `WorkloadConfig`; each field states its
default and its bound once (sim.common.config_checks.setting), so unknown keys, wrong types and out-of-range values
raise ConfigError naming the key path and what is valid, and a typo never silently defaults.
The classes are not frozen on purpose: Hydra makes a frozen structured config read-only, so a YAML or command-line
value could not be merged onto it. Treat instances as values all the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from sim.common.config_checks import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Range, check_fields,
                                     from_mapping, setting)
from sim.common.errors import ConfigError

ARRIVAL_PROCESSES = ("trace", "poisson", "gamma")
TRACE_FORMATS = ("csv", "jsonl")
TIME_UNITS = ("timestamp", "s", "ms", "us", "ns")
SCORE_RULES = ("auto", "linear", "binary", "x10")
QUALITY_FORMATS = ("csv", "jsonl")
OUTPUT_LENGTHS = ("dataset", "trace", "scaled")
JUDGE_KINDS = ("oracle", "noisy")
LATENCY_DISTS = ("constant", "lognormal", "gamma", "uniform")


@dataclass
class TraceColumns:
    arrival: str = "TIMESTAMP"
    input_tokens: str = "ContextTokens"
    output_tokens: str = "GeneratedTokens"
    # optional: a column of per-request KV block hash ids (integer lists) for prefix caching; null = none
    hash_ids: Optional[str] = None


@dataclass
class TraceConfig:
    path: str = ""  # relative to the project root, or absolute
    format: str = setting("csv", valid=TRACE_FORMATS)  # csv | jsonl (gzip-compressed when the path ends in .gz)
    columns: TraceColumns = field(default_factory=TraceColumns)
    # timestamp: the arrival column holds date-times (parsed with timestamp_format, or inferred when null);
    # s | ms | us | ns: it holds numbers in that unit. Either way arrivals become seconds from the first request.
    time_unit: str = setting("timestamp", valid=TIME_UNITS)
    timestamp_format: Optional[str] = None
    # tokens per hash block of columns.hash_ids (Mooncake's traces: 512); see docs/prefix_caching.md
    hash_block_tokens: int = setting(16, valid=POSITIVE_INT)


@dataclass
class ArrivalsConfig:
    process: str = setting("trace", valid=ARRIVAL_PROCESSES)  # trace: the trace's own times; poisson | gamma: synthetic times, lengths from the trace
    rate_scale: float = setting(1.0, valid=POSITIVE)  # multiplies the arrival rate (trace times are divided by it)
    rate_rps: Optional[float] = setting(None, valid=POSITIVE)  # synthetic rate before rate_scale; null = the trace window's mean rate
    cv: float = setting(1.0, valid=POSITIVE)  # gamma: coefficient of variation of inter-arrival times (1 = Poisson, > 1 = bursty)


@dataclass
class QualityColumns:
    """Column names of a long-format quality table (one row per question x model); None = the table has none."""

    question_id: str = "question_id"
    model: str = "model"
    score: str = "score"
    output_tokens: Optional[str] = None  # the model's answer length in tokens
    prompt: Optional[str] = None  # the question's prompt text (for routers that read it)
    subset: Optional[str] = None  # a category to filter on with quality.subsets
    contaminated: Optional[str] = None  # true where the prompt must be excluded (exclude_contaminated)


@dataclass
class QualityConfig:
    # A quality dataset: a name of conf/quality/<name>.yaml, or a path (relative to the project root, or absolute)
    # to a long-format CSV/JSONL table (gzip when it ends in .gz) read with columns, score_scale and format below.
    dataset: str = "arena_bench_v1"
    columns: Optional[QualityColumns] = None  # path datasets: the table's column names (null = the defaults)
    score_scale: Optional[List[float]] = None  # path datasets: [min, max] of the raw score, mapped to 0-100
    format: Optional[str] = setting(None, valid=QUALITY_FORMATS)  # path datasets: csv | jsonl (null = from the file name)
    tier_models: List[str] = field(default_factory=list)  # dataset model per cascade tier, smallest first
    # used when the cascade has two tiers and its tiers name no dataset_model (the Llama-3 8B/70B mapping)
    two_tier_models: List[str] = field(default_factory=list)
    score_rule: str = setting("auto", valid=SCORE_RULES)  # linear: score_scale -> 0-100; binary: >= mid-scale -> 100, else 0; auto: the dataset's; x10: linear on [0, 10]
    output_lengths: str = setting("dataset", valid=OUTPUT_LENGTHS)  # dataset: per-tier answer lengths; trace: trace length for every tier; scaled
    subsets: List[str] = field(default_factory=list)  # keep only these subsets (e.g. MMLU subjects); empty = all
    exclude_contaminated: bool = True  # drop prompts RouteLLM flagged as overlapping its router-training data


@dataclass
class WindowConfig:
    start_s: float = setting(0.0, valid=NON_NEGATIVE)  # in trace time (seconds from the trace's first request), before rate scaling
    end_s: Optional[float] = setting(None, valid=NON_NEGATIVE)  # null = to the end of the trace


@dataclass
class PhaseConfig:
    workload: str = ""  # name of a workload in conf/workload/
    duration_s: float = setting(0.0, valid=POSITIVE)  # length of the phase in the drifting workload (after rate scaling)
    start_s: float = setting(0.0, valid=NON_NEGATIVE)  # where in the phase's trace it starts (trace time)
    rate_scale: float = setting(1.0, valid=POSITIVE)


@dataclass
class WorkloadConfig:
    name: str = ""
    trace: TraceConfig = field(default_factory=TraceConfig)
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    num_requests: Optional[int] = setting(None, valid=POSITIVE_INT)  # keep the first n requests (after windowing)
    max_output_tokens: Optional[int] = setting(None, valid=POSITIVE_INT)  # cap on every tier's output tokens (e.g. the answering API's limit)
    seed: int = setting(0, valid=NON_NEGATIVE_INT)
    phases: List[PhaseConfig] = field(default_factory=list)  # non-empty: a drifting concatenation of workloads


@dataclass
class JudgeLatencyConfig:
    dist: str = setting("constant", valid=LATENCY_DISTS)  # constant | lognormal | gamma | uniform
    mean_s: float = setting(0.27, valid=NON_NEGATIVE)  # the paper's GPT-4o judging latency
    cv: float = setting(0.0, valid=NON_NEGATIVE)  # coefficient of variation (lognormal, gamma, uniform)


@dataclass
class JudgeConfig:
    kind: str = setting("oracle", valid=JUDGE_KINDS)  # oracle: the gate sees the real score; noisy: real score + N(0, noise_std), clipped to 0-100
    noise_std: float = setting(0.0, valid=Range(0.0, 100.0))  # on the 0-100 scale; see sim.workload.judge.calibrate_noise_std
    latency: JudgeLatencyConfig = field(default_factory=JudgeLatencyConfig)


def check_score_scale(scale: Any, key: str) -> tuple[float, float]:
    if not isinstance(scale, (list, tuple)) or len(scale) != 2:
        raise ConfigError(f"{key} must be [min, max] of the raw score, got {scale!r}")
    lo, hi = float(scale[0]), float(scale[1])
    if not lo < hi:
        raise ConfigError(f"{key} must be [min, max] with min < max, got {list(scale)}")
    return lo, hi


def validate_workload_config(cfg: WorkloadConfig) -> WorkloadConfig:
    """The checks that need more than one field (each field's own bound is stated on the field)."""
    where = f"workload {cfg.name!r}" if cfg.name else "workload"
    if cfg.phases:
        for i, p in enumerate(cfg.phases):
            if not p.workload:
                raise ConfigError(f"{where}: phases[{i}].workload is empty; name a workload of conf/workload/")
        return cfg
    if not cfg.trace.path:
        raise ConfigError(f"{where}: trace.path is empty; give the trace file relative to the project root")
    if cfg.quality.score_scale is not None:
        check_score_scale(cfg.quality.score_scale, f"{where}: quality.score_scale")
    if cfg.window.end_s is not None and cfg.window.end_s <= cfg.window.start_s:
        raise ConfigError(f"{where}: window.end_s ({cfg.window.end_s}) must be after window.start_s ({cfg.window.start_s})")
    return cfg


def workload_config_from_dict(data: dict) -> WorkloadConfig:
    """A checked WorkloadConfig from a (possibly partial) mapping; key paths in errors start with `workload.`."""
    if isinstance(data, WorkloadConfig):
        for part in (data, data.trace, data.trace.columns, data.arrivals, data.quality, data.window, *data.phases):
            check_fields(part, "workload")
        return validate_workload_config(data)
    return validate_workload_config(from_mapping(WorkloadConfig, data, "workload"))


def judge_config_from_dict(data: dict | None, where: str = "judge") -> JudgeConfig:
    """A checked JudgeConfig (every bound is stated on the fields above)."""
    return from_mapping(JudgeConfig, data, where)
