"""Hydra entry points, sweeps, aggregation and figure scripts that regenerate the paper's results."""
