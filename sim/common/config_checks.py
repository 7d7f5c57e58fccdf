"""One place that checks every number of a composed config (and of loaded hardware specs) for finiteness and range.

The rules are data: a table from a dotted key pattern to the valid interval, plus defaults by unit suffix
(a `_s`, `_gbps`, `_rps`, `_tokens`... value is never negative). Every numeric leaf of the config tree is walked,
so a NaN or an infinity is refused wherever it appears, even under a key no rule names. Rules that need more than
one key (the size of a cluster) are listed in CROSS_CHECKS. Group-specific checks (choices, unknown keys) stay with
their schemas; this module only judges numbers.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Iterator

from sim.common.errors import ConfigError

INF = math.inf


@dataclass(frozen=True)
class Range:
    """Valid interval of one number; open ends are exclusive. integer: the value must be a whole number."""

    lo: float = -INF
    hi: float = INF
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def holds(self, v: float) -> bool:
        lo_ok = v > self.lo if self.lo_open else v >= self.lo
        hi_ok = v < self.hi if self.hi_open else v <= self.hi
        return lo_ok and hi_ok and (not self.integer or float(v).is_integer())

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.lo == 0 and self.lo_open and self.hi == INF:
            return f"{kind} > 0"
        if self.hi == INF:
            return f"{kind} {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo == -INF:
            return f"{kind} {'<' if self.hi_open else '<='} {self.hi:g}"
        return (f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}")


POSITIVE = Range(0.0, lo_open=True)
NON_NEGATIVE = Range(0.0)
POSITIVE_INT = Range(1.0, integer=True)
NON_NEGATIVE_INT = Range(0.0, integer=True)
SHARE = Range(0.0, 1.0)
SCORE = Range(0.0, 100.0)

# The planners are measured up to 1024 GPUs (experiments.planner_time: 4.5-16 s on a loaded 2-core machine). At
# 2048 GPUs Cascadia's allocation MILP found no solution within its time limit (about 2 min), and 4096 GPUs did not
# finish planning in 400 s: a larger cluster is refused up front rather than left to look like a hang.
MAX_CLUSTER_GPUS = 1024

# Dotted key patterns (fnmatch; list items appear as their index) -> valid range. First match wins.
EXPERIMENT_RULES: dict[str, Range] = {
    "seed": NON_NEGATIVE_INT,
    "q_min": SCORE,
    "q_min_level": SHARE,
    "rate_scale": POSITIVE,
    "horizon_s": POSITIVE,
    "rate_rps": POSITIVE,
    "load_fraction": POSITIVE,
    "trace_window.start_s": NON_NEGATIVE,
    "trace_window.duration_s": POSITIVE,
    "plan_sample_size": Range(2.0, integer=True),
    "cluster.num_nodes": Range(1.0, MAX_CLUSTER_GPUS, integer=True),  # and nodes x GPUs: check_cluster_size
    "cluster.gpus_per_node": Range(1.0, 64.0, integer=True),
    "cluster.ib_bw_gbps": POSITIVE,
    "cluster.ib_latency_us": Range(0.0, 1e6),  # a second per message would be a typo, not a network
    "throughput.slo_scale": POSITIVE,
    "throughput.lo": POSITIVE,
    "throughput.hi": POSITIVE,
    "throughput.iters": Range(1.0, 64.0, integer=True),
    "throughput.horizon_s": POSITIVE,
    "sim.chunk_tokens": POSITIVE_INT,
    "sim.max_num_seqs": POSITIVE_INT,
    "sim.max_batched_tokens": POSITIVE_INT,
    "sim.kv_block_size": POSITIVE_INT,
    "sim.kv_watermark": Range(0.0, 1.0, hi_open=True),
    "sim.gpu_memory_utilization": Range(0.0, 1.0, lo_open=True),
    "sim.attainment": Range(0.0, 1.0, lo_open=True, hi_open=True),
    "sim.reference_tier": Range(-64.0, 63.0, integer=True),
    "sim.lb_prefill_weight": NON_NEGATIVE,
    "sim.judge.noise_std": Range(0.0, 100.0),
    "sim.judge.latency.mean_s": NON_NEGATIVE,
    "sim.judge.latency.cv": NON_NEGATIVE,
    "workload.seed": NON_NEGATIVE_INT,
    "workload.arrivals.rate_scale": POSITIVE,
    "workload.arrivals.rate_rps": POSITIVE,
    "workload.arrivals.cv": POSITIVE,
    "workload.num_requests": POSITIVE_INT,
    "workload.max_output_tokens": POSITIVE_INT,
    "workload.phases.*.rate_scale": POSITIVE,
    "workload.phases.*.duration_s": POSITIVE,
    "planner.*.threads": POSITIVE_INT,
    "planner.*.seed": NON_NEGATIVE_INT,
    "planner.*.mu": NON_NEGATIVE,
    "planner.*.mip_gap": Range(0.0, 1.0),
    "planner.*.rounds_stable": POSITIVE_INT,
    "planner.*.max_rounds": POSITIVE_INT,
    "planner.*.max_candidates": Range(2.0, integer=True),
    "planner.*.tol": NON_NEGATIVE,
    "planner.*.router_error_rate": SHARE,
    "planner.*.grid_step": POSITIVE,
}

HARDWARE_RULES: dict[str, Range] = {
    "memory_gb": POSITIVE,
    "bf16_tflops": POSITIVE,
    "fp8_tflops": POSITIVE,
    "hbm_bw_gbps": POSITIVE,
    "nvlink_bw_gbps": POSITIVE,
    "nvlink_latency_us": Range(0.0, 1e6),
}

CLUSTER_RULES: dict[str, Range] = {k.split(".", 1)[1]: r for k, r in EXPERIMENT_RULES.items()
                                   if k.startswith("cluster.")}

# A number whose key names a duration, rate, size or bandwidth is never negative, whichever group it is in.
UNIT_SUFFIXES = ("_s", "_ms", "_us", "_ns", "_rps", "_gbps", "_gb", "_tokens", "_bytes", "_tflops")


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _leaves(v, f"{path}.{i}" if path else str(i))
    else:
        yield path, node


def _rule_for(key: str, rules: dict[str, Range]) -> Range | None:
    for pattern, rule in rules.items():
        if fnmatch.fnmatchcase(key, pattern):
            return rule
    if key.rsplit(".", 1)[-1].endswith(UNIT_SUFFIXES):
        return NON_NEGATIVE
    return None


def check_numbers(tree: Any, rules: dict[str, Range], where: str = "config", prefix: str = "") -> None:
    """Raise ConfigError for the first numeric leaf that is NaN, infinite, or outside its rule's range."""
    for key, value in _leaves(tree, prefix):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} = {value} is not a finite number; give a finite value")
        rule = _rule_for(key, rules)
        if rule is not None and not rule.holds(value):
            raise ConfigError(f"{where}: {key} = {value:g} is out of range; it must be {rule.describe()}")


def check_cluster_size(num_nodes: int, gpus_per_node: int, where: str = "cluster") -> None:
    if num_nodes * gpus_per_node > MAX_CLUSTER_GPUS:
        raise ConfigError(f"{where}: {num_nodes} nodes x {gpus_per_node} GPUs = {num_nodes * gpus_per_node} GPUs is "
                          f"more than the {MAX_CLUSTER_GPUS} the planners are measured to plan for; use a smaller cluster")


def check_experiment_numbers(cfg: Any) -> None:
    """Every number of a composed experiment config (a DictConfig or plain dict), before anything is built."""
    from omegaconf import DictConfig, OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    check_numbers(tree, EXPERIMENT_RULES)
    cluster = tree.get("cluster") or {}
    if isinstance(cluster.get("num_nodes"), int) and isinstance(cluster.get("gpus_per_node"), int):
        check_cluster_size(cluster["num_nodes"], cluster["gpus_per_node"])
