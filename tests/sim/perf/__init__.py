"""Tests of the calibrated cost model (sim/perf)."""
