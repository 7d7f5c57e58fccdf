"""Structured-config schema of the experiment entry points, registered with Hydra's ConfigStore so typos fail loudly."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


@dataclass
class ClusterConf:
    name: str = "paper_4x8_h100"
    hardware: str = "h100_sxm"
    num_nodes: int = 4
    gpus_per_node: int = 8
    ib_bw_gbps: float = 200.0
    ib_latency_us: float = 5.0


@dataclass
class TierConf:
    model: str = "???"
    weights: str = "bf16"
    kv: str = "bf16"
    dataset_model: str = ""


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
    horizon_s: float = 300.0  # seconds of the trace used per bisection step
    # false: the plan made at the run's rate is fixed while the rate is bisected; true: every planner plans anew
    # for each rate it is bisected at (from its planning split re-timed to that rate), as the paper likely measured
    replan_per_rate: bool = False


@dataclass
class SplitConf:
    """Train/test protocol (experiments.protocol): planners see the earlier plan_fraction of the window bound to
    question_fraction of the questions; metrics come from the rest of the window bound to the other questions."""
    enabled: bool = True
    plan_fraction: float = 0.5
    question_fraction: float = 0.5
    seed: int = 0


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
    sim: Dict[str, Any] = field(default_factory=dict)  # validated by sim.simulator.SimConfig
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
