"""One place that checks every number of a composed config (and of loaded hardware specs) for finiteness and range.

The rules are data: a table from a dotted key pattern to the valid interval, plus defaults by unit suffix
(a `_s`, `_gbps`, `_rps`, `_tokens`... value is never negative). Every numeric leaf of the config tree is walked,
so a NaN or an infinity is refused wherever it appears, even under a key no rule names. Rules that need more than
one key (the size of a cluster) are listed in CROSS_CHECKS. check_keys is the one unknown-key check of every config
mapping. A typed schema (a dataclass) states each field's default and its bound once, in the field itself
(`setting(default, valid=Range | choices)`); from_mapping builds it from a mapping (unknown keys, types, bounds, with
the key path) and check_fields checks an instance made in code the same way.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import types
import typing
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

# Dotted key patterns (fnmatch; list items appear as their index) -> valid range. First match wins. The groups with a
# typed schema state their bounds on its fields instead (sim: sim.simulator.SimConfig, workload and sim.judge:
# sim.workload.config, replan: online.replan.ReplanConfig, split: experiments.inputs.SplitSpec); every number of the
# tree is still checked here for finiteness.
EXPERIMENT_RULES: dict[str, Range] = {
    "seed": NON_NEGATIVE_INT,
    "seeds": POSITIVE_INT,
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

# A model file (conf/model/*.yaml, or the user's own): sizes of a real decoder. A zero count or a fraction of a head is
# a typo that would otherwise reach the cost model as a division by zero or a silently empty layer.
MODEL_RULES: dict[str, Range] = {
    "published_params_b": POSITIVE,
    "num_layers": POSITIVE_INT,
    "hidden_size": POSITIVE_INT,
    "num_heads": POSITIVE_INT,
    "num_kv_heads": POSITIVE_INT,
    "head_dim": POSITIVE_INT,
    "intermediate_size": POSITIVE_INT,
    "vocab_size": POSITIVE_INT,
    "max_context": POSITIVE_INT,
    "q_lora_rank": NON_NEGATIVE_INT,
    "kv_lora_rank": NON_NEGATIVE_INT,
    "qk_nope_head_dim": NON_NEGATIVE_INT,
    "qk_rope_head_dim": NON_NEGATIVE_INT,
    "v_head_dim": NON_NEGATIVE_INT,
    "num_routed_experts": NON_NEGATIVE_INT,
    "num_shared_experts": NON_NEGATIVE_INT,
    "experts_per_token": NON_NEGATIVE_INT,
    "moe_intermediate_size": NON_NEGATIVE_INT,
    "first_k_dense_layers": NON_NEGATIVE_INT,
}

CLUSTER_RULES: dict[str, Range] = {k.split(".", 1)[1]: r for k, r in EXPERIMENT_RULES.items()
                                   if k.startswith("cluster.")}

# A number whose key names a duration, rate, size or bandwidth is never negative, whichever group it is in.
UNIT_SUFFIXES = ("_s", "_ms", "_us", "_ns", "_rps", "_gbps", "_gb", "_tokens", "_bytes", "_tflops")


def check_keys(data: Any, valid, where: str, what: str = "key") -> None:
    """The one unknown-key check of every config mapping (a typo never silently becomes a default): ConfigError naming
    where, the unknown keys and the valid ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__} {data!r}")
    unknown = sorted(map(str, set(data) - set(valid)))
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {unknown}; valid {what}s are {sorted(map(str, valid))}")


def dataclass_from_mapping(cls, data: Any, where: str, required: bool = False):
    """cls(**data) after check_keys; required: every field without a default must be given. A wrong type or a missing
    field is one ConfigError naming where."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(data, names, where)
    no_default = [f.name for f in dataclasses.fields(cls)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = sorted(n for n in no_default if n not in data) if required else []
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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


# ---- typed schemas: a field states its default and its bound once ---------------------------------------------
def setting(default: Any = dataclasses.MISSING, *, valid: Range | tuple | None = None,
            default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its valid range (a Range) or its valid names (a tuple), checked by from_mapping and
    check_fields. None passes wherever the field's type allows it."""
    meta = {} if valid is None else {"valid": valid}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _describe_type(tp: Any) -> str:
    if typing.get_origin(tp) in (list, tuple, typing.List):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        plural = {float: "numbers", int: "integers", bool: "booleans", str: "strings"}
        return f"a list of {plural.get(args[0], _describe_type(args[0])) if args else 'values'}"
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string", dict: "a mapping"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for Optional[X] / X | None, else (tp, False)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) < len(typing.get_args(tp)):
            return (rest[0] if len(rest) == 1 else Any), True
    return tp, False


def convert(tp: Any, value: Any, key: str) -> Any:
    """value as type tp (a dataclass from a mapping, a list, a number...), or ConfigError naming key and the type."""
    tp, nullable = _optional(tp)
    if value is None:
        if nullable or tp is Any:
            return None
        raise ConfigError(f"{key} must not be null; it must be {_describe_type(tp)}")
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r} is not valid; it must be {_describe_type(tp)}")
        item = ([a for a in typing.get_args(tp) if a is not Ellipsis] or [Any])[0]
        out = [convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    try:
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is int:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            return int(value)
        if tp is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if tp is str:
            if isinstance(value, (dict, list, tuple)):
                raise ValueError
            return str(value)
        if tp is dict or origin is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key} = {value!r} is not valid; it must be {_describe_type(tp)}") from None
    return value


def check_value(value: Any, valid: Range | tuple | None, key: str) -> None:
    """One value against its stated bound: a Range (finite, inside) or a tuple of valid names."""
    if valid is None or value is None:
        return
    if isinstance(valid, Range):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r} is not a number; it must be {valid.describe()}")
        if not math.isfinite(value):
            raise ConfigError(f"{key} = {value} is not a finite number; it must be {valid.describe()}")
        if not valid.holds(value):
            raise ConfigError(f"{key} = {value:g} is out of range; it must be {valid.describe()}")
    elif value not in valid:
        raise ConfigError(f"{key} is {value!r}; valid: {', '.join(map(str, valid))}")


def check_fields(obj: Any, where: str) -> None:
    """Every field of dataclass instance obj: its type (as from_mapping would convert it) and its stated bound.
    Nested dataclasses are checked where they were built (from_mapping) or by their own __post_init__."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = _key(where, f.name)
        if not dataclasses.is_dataclass(value):
            tp, _ = _optional(hints[f.name])
            if not dataclasses.is_dataclass(tp) and typing.get_origin(tp) not in (list, tuple):
                convert(hints[f.name], value, key)
                if tp in (int, bool) and value is not None and type(value) is not tp:  # 512.0 is not a count
                    raise ConfigError(f"{key} = {value!r} is not valid; it must be {_describe_type(tp)}")
        check_value(value, f.metadata.get("valid"), key)


def from_mapping(cls: type, data: Any, where: str = "") -> Any:
    """Dataclass cls from a (nested) mapping: unknown keys, wrong types and values outside a field's stated bound are
    one ConfigError naming the key path and what is valid. None: every default. An instance of cls passes as is."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, where or cls.__name__)
    hints = typing.get_type_hints(cls)
    kwargs = {name: convert(hints[name], value, _key(where, name)) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    for f in fields.values():  # defaults too: a default that must be given (a phase's duration_s) is refused
        check_value(getattr(obj, f.name), f.metadata.get("valid"), _key(where, f.name))
    return obj
