"""Cascade planners: plan data model, feasibility checker, Cascadia and baselines."""
