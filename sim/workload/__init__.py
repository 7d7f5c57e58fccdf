"""Workloads: trace replay, synthetic arrivals, quality binding (per-tier real judge scores), judges, drift."""
from sim.workload.types import Workload

__all__ = ["Workload"]
