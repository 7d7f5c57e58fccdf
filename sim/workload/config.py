"""Schemas of a workload config (conf/workload/*.yaml) and a judge config, as plain dataclasses that Hydra can register.

`workload_config_from_dict` turns a (possibly partial) dict into a validated, frozen `WorkloadConfig`; unknown keys
and out-of-range values raise ConfigError naming the key and what is valid, so a typo never silently defaults.
The classes are not frozen on purpose: Hydra makes a frozen structured config read-only, so a YAML or command-line
value could not be merged onto it. Treat instances as values all the same.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Optional

from sim.common.config_checks import check_keys
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
    format: str = "csv"  # csv | jsonl (gzip-compressed when the path ends in .gz)
    columns: TraceColumns = field(default_factory=TraceColumns)
    # timestamp: the arrival column holds date-times (parsed with timestamp_format, or inferred when null);
    # s | ms | us | ns: it holds numbers in that unit. Either way arrivals become seconds from the first request.
    time_unit: str = "timestamp"
    timestamp_format: Optional[str] = None
    # tokens per hash block of columns.hash_ids (Mooncake's traces: 512); see docs/prefix_caching.md
    hash_block_tokens: int = 16


@dataclass
class ArrivalsConfig:
    process: str = "trace"  # trace: the trace's own times; poisson | gamma: synthetic times, lengths from the trace
    rate_scale: float = 1.0  # multiplies the arrival rate (trace times are divided by it)
    rate_rps: Optional[float] = None  # synthetic rate before rate_scale; null = the trace window's mean rate
    cv: float = 1.0  # gamma: coefficient of variation of inter-arrival times (1 = Poisson, > 1 = bursty)


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
    format: Optional[str] = None  # path datasets: csv | jsonl (null = from the file name)
    tier_models: List[str] = field(default_factory=list)  # dataset model per cascade tier, smallest first
    # used when the cascade has two tiers and its tiers name no dataset_model (the Llama-3 8B/70B mapping)
    two_tier_models: List[str] = field(default_factory=list)
    score_rule: str = "auto"  # linear: score_scale -> 0-100; binary: >= mid-scale -> 100, else 0; auto: the dataset's; x10: linear on [0, 10]
    output_lengths: str = "dataset"  # dataset: per-tier answer lengths; trace: trace length for every tier; scaled
    subsets: List[str] = field(default_factory=list)  # keep only these subsets (e.g. MMLU subjects); empty = all
    exclude_contaminated: bool = True  # drop prompts RouteLLM flagged as overlapping its router-training data


@dataclass
class WindowConfig:
    start_s: float = 0.0  # in trace time (seconds from the trace's first request), before rate scaling
    end_s: Optional[float] = None  # null = to the end of the trace


@dataclass
class PhaseConfig:
    workload: str = ""  # name of a workload in conf/workload/
    duration_s: float = 0.0  # length of the phase in the drifting workload (after rate scaling)
    start_s: float = 0.0  # where in the phase's trace it starts (trace time)
    rate_scale: float = 1.0


@dataclass
class WorkloadConfig:
    name: str = ""
    trace: TraceConfig = field(default_factory=TraceConfig)
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    num_requests: Optional[int] = None  # keep the first n requests (after windowing)
    max_output_tokens: Optional[int] = None  # cap on every tier's output tokens (e.g. the answering API's limit)
    seed: int = 0
    phases: List[PhaseConfig] = field(default_factory=list)  # non-empty: a drifting concatenation of workloads


@dataclass
class JudgeLatencyConfig:
    dist: str = "constant"  # constant | lognormal | gamma | uniform
    mean_s: float = 0.27  # the paper's GPT-4o judging latency
    cv: float = 0.0  # coefficient of variation (lognormal, gamma, uniform)


@dataclass
class JudgeConfig:
    kind: str = "oracle"  # oracle: the gate sees the real score; noisy: real score + N(0, noise_std), clipped to 0-100
    noise_std: float = 0.0  # on the 0-100 scale; see sim.workload.judge.calibrate_noise_std
    latency: JudgeLatencyConfig = field(default_factory=JudgeLatencyConfig)


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass cls from a nested dict, rejecting unknown keys and wrong types with a one-line message."""
    if data is None:
        return cls()
    if dataclasses.is_dataclass(data):
        return data
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, where or "workload")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(fields[name], value, key)
    return cls(**kwargs)


_NESTED = {"trace": TraceConfig, "columns": TraceColumns, "arrivals": ArrivalsConfig, "quality": QualityConfig,
           "window": WindowConfig, "latency": JudgeLatencyConfig}


def _convert(f: dataclasses.Field, value: Any, key: str) -> Any:
    if f.name == "columns" and key.endswith("quality.columns"):
        return None if value is None else _from_dict(QualityColumns, value, key)
    if f.name in _NESTED:
        return _from_dict(_NESTED[f.name], value, key)
    if f.name == "phases":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of phases, got {value!r}")
        return [_from_dict(PhaseConfig, p, f"{key}[{i}]") for i, p in enumerate(value)]
    typ = str(f.type)
    if value is None:
        if "Optional" in typ:
            return None
        raise ConfigError(f"{key} must not be null")
    try:
        if "List[" in typ:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ValueError
            return [float(v) for v in value] if "float" in typ else [str(v) for v in value]
        if "float" in typ:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if "int" in typ:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            return int(value)
        if "bool" in typ:
            if not isinstance(value, bool):
                raise ValueError
            return value
        return str(value)
    except (TypeError, ValueError):
        wanted = typ.replace("Optional[", "").replace("]", "").replace("List[", "list of ")
        raise ConfigError(f"{key} must be {wanted}, got {value!r}") from None


def _choice(value: str, valid: tuple[str, ...], key: str) -> None:
    if value not in valid:
        raise ConfigError(f"{key} is {value!r}; valid: {', '.join(valid)}")


def _positive(value: float, key: str) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def check_score_scale(scale: Any, key: str) -> tuple[float, float]:
    if not isinstance(scale, (list, tuple)) or len(scale) != 2:
        raise ConfigError(f"{key} must be [min, max] of the raw score, got {scale!r}")
    lo, hi = float(scale[0]), float(scale[1])
    if not lo < hi:
        raise ConfigError(f"{key} must be [min, max] with min < max, got {list(scale)}")
    return lo, hi


def validate_workload_config(cfg: WorkloadConfig) -> WorkloadConfig:
    where = f"workload {cfg.name!r}" if cfg.name else "workload"
    if cfg.phases:
        for i, p in enumerate(cfg.phases):
            if not p.workload:
                raise ConfigError(f"{where}: phases[{i}].workload is empty; name a workload of conf/workload/")
            _positive(p.duration_s, f"{where}: phases[{i}].duration_s")
            _positive(p.rate_scale, f"{where}: phases[{i}].rate_scale")
        return cfg
    if not cfg.trace.path:
        raise ConfigError(f"{where}: trace.path is empty; give the trace file relative to the project root")
    _choice(cfg.trace.format, TRACE_FORMATS, f"{where}: trace.format")
    _choice(cfg.trace.time_unit, TIME_UNITS, f"{where}: trace.time_unit")
    if cfg.trace.hash_block_tokens < 1:
        raise ConfigError(f"{where}: trace.hash_block_tokens must be a positive number of tokens, got "
                          f"{cfg.trace.hash_block_tokens}")
    _choice(cfg.arrivals.process, ARRIVAL_PROCESSES, f"{where}: arrivals.process")
    _positive(cfg.arrivals.rate_scale, f"{where}: arrivals.rate_scale")
    _positive(cfg.arrivals.cv, f"{where}: arrivals.cv")
    if cfg.arrivals.rate_rps is not None:
        _positive(cfg.arrivals.rate_rps, f"{where}: arrivals.rate_rps")
    _choice(cfg.quality.score_rule, SCORE_RULES, f"{where}: quality.score_rule")
    _choice(cfg.quality.output_lengths, OUTPUT_LENGTHS, f"{where}: quality.output_lengths")
    if cfg.quality.format is not None:
        _choice(cfg.quality.format, QUALITY_FORMATS, f"{where}: quality.format")
    if cfg.quality.score_scale is not None:
        check_score_scale(cfg.quality.score_scale, f"{where}: quality.score_scale")
    if cfg.window.start_s < 0:
        raise ConfigError(f"{where}: window.start_s must be >= 0, got {cfg.window.start_s}")
    if cfg.window.end_s is not None and cfg.window.end_s <= cfg.window.start_s:
        raise ConfigError(f"{where}: window.end_s ({cfg.window.end_s}) must be after window.start_s ({cfg.window.start_s})")
    if cfg.max_output_tokens is not None and cfg.max_output_tokens <= 0:
        raise ConfigError(f"{where}: max_output_tokens must be positive (or null for no cap), got {cfg.max_output_tokens}")
    if cfg.num_requests is not None and cfg.num_requests <= 0:
        raise ConfigError(f"{where}: num_requests must be positive (or null for all), got {cfg.num_requests}")
    return cfg


def workload_config_from_dict(data: dict) -> WorkloadConfig:
    return validate_workload_config(_from_dict(WorkloadConfig, data, ""))


def judge_config_from_dict(data: dict | None) -> JudgeConfig:
    cfg = _from_dict(JudgeConfig, data, "judge")
    _choice(cfg.kind, JUDGE_KINDS, "judge.kind")
    _choice(cfg.latency.dist, LATENCY_DISTS, "judge.latency.dist")
    if cfg.noise_std < 0:
        raise ConfigError(f"judge.noise_std must be >= 0, got {cfg.noise_std}")
    if cfg.latency.mean_s < 0 or cfg.latency.cv < 0:
        raise ConfigError(f"judge.latency.mean_s and judge.latency.cv must be >= 0, got {cfg.latency.mean_s}, {cfg.latency.cv}")
    return cfg
