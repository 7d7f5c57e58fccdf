"""Workloads: trace replay, synthetic arrivals, quality binding (per-tier real judge scores), judges, drift."""
from sim.workload.build import build_workload, check_workload_data, load_workload_dict, workload_names
from sim.workload.config import JudgeConfig, WorkloadConfig, judge_config_from_dict, workload_config_from_dict
from sim.workload.judge import Judge, calibrate_noise_std, decision_agreement
from sim.workload.quality import dataset_models, dataset_names, tier_table
from sim.workload.traces import Trace, read_trace
from sim.workload.types import Workload

__all__ = [
    "Judge", "JudgeConfig", "Trace", "Workload", "WorkloadConfig", "build_workload", "check_workload_data",
    "calibrate_noise_std", "dataset_models", "dataset_names", "decision_agreement", "judge_config_from_dict", "load_workload_dict",
    "read_trace", "tier_table", "workload_config_from_dict", "workload_names",
]
