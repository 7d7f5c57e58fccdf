"""Structured-config schema of the experiment entry points, registered with Hydra's ConfigStore so typos fail loudly.

Defaults live in one place each: the simulator's in sim.simulator.SimConfig (the `sim` node below is derived from it,
so conf/sim/*.yaml hold only what they change), the cluster's and the protocol's here. experiments.inputs turns a
composed config into typed objects in one pass.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from experiments.inputs import SplitSpec
from sim.spec.cascade import TierSpec

from sim.simulator import SimConfig
from sim.workload.config import JudgeConfig


def _hydra_type(tp):
    """A field type OmegaConf can hold: `X | None` -> Optional[X], tuple[X, ...] -> List[X]."""
    import types

    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return Optional[_hydra_type(rest[0])] if len(rest) == 1 else Any
    if typing.get_origin(tp) is tuple:
        return List[_hydra_type(args[0])] if args else List[Any]
    return tp


def _default(f):
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(value, tuple):
        return field(default_factory=lambda v=value: list(v))
    return field(default=value)


def planner_schema(name: str) -> type:
    """The settings a built-in planner's config may set: its class's fields (minus its name and the settings its
    name fixes), with the class's types and defaults, so conf/planner/<name>.yaml repeats none of them."""
    from planners.base import registered

    cls, fixed = registered(name)
    hints = typing.get_type_hints(cls)
    specs = [(f.name, _hydra_type(hints[f.name]), _default(f)) for f in dataclasses.fields(cls)
             if f.name != "name" and f.name not in fixed]
    return dataclasses.make_dataclass(f"{cls.__name__}Settings_{name}", specs)


def _mutable_schema(frozen_cls: type, name: str, dict_schemas: dict[str, type]) -> type:
    """A plain (unfrozen) copy of a frozen dataclass for Hydra: same fields, types and defaults, so the defaults are
    written once, in the frozen class. (Hydra makes a frozen structured config read-only, so overrides could not
    merge onto the class itself.) A dict field takes its schema from dict_schemas."""
    hints = typing.get_type_hints(frozen_cls)
    specs = []
    for f in dataclasses.fields(frozen_cls):
        if f.name in dict_schemas:
            specs.append((f.name, dict_schemas[f.name], field(default_factory=dict_schemas[f.name])))
            continue
        tp = hints[f.name]
        default = (field(default_factory=f.default_factory) if f.default_factory is not dataclasses.MISSING
                   else field(default=f.default))
        specs.append((f.name, tp, default))
    return dataclasses.make_dataclass(name, specs)


SimConf = _mutable_schema(SimConfig, "SimConf", {"judge": JudgeConfig})


@dataclass
class ClusterConf:
    """Keys of a cluster file (conf/cluster/*.yaml gives every value)."""
    name: str = MISSING
    hardware: str = MISSING
    num_nodes: int = MISSING
    gpus_per_node: int = MISSING
    ib_bw_gbps: float = MISSING
    ib_latency_us: float = MISSING


@dataclass
class TierConf:
    model: str = MISSING
    weights: str = TierSpec.weights  # the defaults of sim.spec.cascade.TierSpec
    kv: str = TierSpec.kv
    dataset_model: str = TierSpec.dataset_model
    ep: Any = TierSpec.ep  # "tp" or a positive integer
    dp_attention: bool = TierSpec.dp_attention
    mtp_draft_tokens: int = TierSpec.mtp_draft_tokens


@dataclass
class CascadeConf:
    name: str = "???"
    tiers: List[TierConf] = field(default_factory=list)


@dataclass
class ThroughputConf:
    enabled: bool = True
    slo_scale: float = 10.0  # attain 95% of requests within this multiple of ref(r)
    lo: float = 0.05  # bisection bounds on the rate factor relative to the run's rate
    hi: float = 10.0
    iters: int = 7  # geometric bisection: (hi/lo)**(2**-7) ~ 3.5% resolution
    # (seeds after the first search that grid from the previous seed's answer: sim.metrics.throughput_at_slo's hint)
    horizon_s: float = 300.0  # seconds of the trace used per bisection step
    # false: the plan made at the run's rate is fixed while the rate is bisected; true: every planner plans anew
    # for each rate it is bisected at (from its planning split re-timed to that rate), as the paper likely measured
    replan_per_rate: bool = False


# Train/test protocol (experiments.protocol): planners see the earlier plan_fraction of the window bound to
# question_fraction of the questions; metrics come from the rest of the window bound to the other questions.
SplitConf = _mutable_schema(SplitSpec, "SplitConf", {})


@dataclass
class TraceWindowConf:
    """Which part of the trace is simulated, in trace time (seconds from its first request, before any rate
    change). duration_s null: the legacy cut (horizon_s of the rate-scaled trace, so the part depends on the rate)."""
    start_s: float = 0.0
    duration_s: Optional[float] = None


@dataclass
class ExperimentConf:
    cluster: ClusterConf = field(default_factory=ClusterConf)
    cascade: CascadeConf = field(default_factory=CascadeConf)
    workload: Dict[str, Any] = field(default_factory=dict)  # validated by sim.workload's own schema
    sim: Any = field(default_factory=SimConf)  # sim.simulator.SimConfig's fields and defaults
    planner: Dict[str, Any] = field(default_factory=dict)  # planner name -> its settings
    throughput: ThroughputConf = field(default_factory=ThroughputConf)
    name: str = "default"
    # Quality requirement: mean real judge score on the 0-100 scale. When q_min is null, it is placed at
    # q_min_level of the way from the smallest model's quality (0) to the largest model's (1) on the workload,
    # which makes one level comparable across datasets whose absolute score ranges differ.
    q_min: Optional[float] = None
    q_min_level: float = 0.7
    rate_scale: float = 1.0  # multiplies the trace's arrival rate
    # The rate knob in requests/s: with trace_window.duration_s set, the window's requests are re-timed so that they
    # arrive at this mean rate (same requests, same arrival pattern, compressed or stretched); it replaces rate_scale
    # (summary.json records the factor used as scenario.rate_scale); null = rate_scale.
    rate_rps: Optional[float] = None
    trace_window: TraceWindowConf = field(default_factory=TraceWindowConf)  # the part-of-the-trace knob
    # The load sweep's rule (experiments.load): rate_rps = load_fraction x the single model's capacity (the largest
    # model alone on every GPU, by the planners' queueing model); needs trace_window; replaces rate_rps/rate_scale.
    load_fraction: Optional[float] = None
    horizon_s: Optional[float] = None  # simulate only the first horizon_s seconds of the workload (None: all)
    plan_sample_size: int = 2000  # requests of the workload the planners see
    seed: int = 0
    seeds: int = 3  # repeats per planner (seed, seed + 1, ...): mean and 95% bootstrap CI per metric
    split: SplitConf = field(default_factory=SplitConf)
    faults: List[Dict[str, Any]] = field(default_factory=list)  # fault injections (see sim.control.controller)
    replan: Dict[str, Any] = field(default_factory=dict)  # online re-planning settings (see sim.control.controller)
    # Also simulate each plan on its own planning split (slo_scale_in_sample, quality_in_sample); the load sweep turns
    # it off to halve its simulations (the columns are then NaN).
    in_sample: bool = True
    output_dir: Optional[str] = None  # where summary.json and figures go (default: Hydra's run dir)
    # The user's config folders (set by experiments.run from --config-dir / hydra.searchpath): model, hardware and
    # cluster files and plug-in planners are looked up there before conf/.
    config_dirs: List[str] = field(default_factory=list)
    figure: bool = True
    progress: bool = True


def _job_dir(override_dirname: str, num: Any) -> str:
    """A sweep job's folder: its overrides, or job<num> when it overrides nothing that names it."""
    return override_dirname or f"job{num}"


def register_configs() -> None:
    # Resolvers of conf/config.yaml's output folders (the run folder's process id, the sweep job's folder).
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    OmegaConf.register_new_resolver("job_dir", _job_dir, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="experiment_schema", node=ExperimentConf)
    from planners.base import PLANNERS

    for name in PLANNERS:  # conf/planner/<name>.yaml: defaults: [/planner_schema@_here_: <name>]
        cs.store(group="planner_schema", name=name, node=planner_schema(name))
