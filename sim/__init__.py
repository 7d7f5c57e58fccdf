"""Discrete-event simulator of LLM cascade serving on GPU clusters (hardware, cost model, replicas, cascade flow, metrics)."""
