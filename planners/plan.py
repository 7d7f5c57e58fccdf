"""The plan data model, re-exported: it lives in sim.spec.plan because the simulator consumes it and must not import
planners (data flows planner -> plan -> simulator); `from planners.plan import CascadePlan` keeps working."""
from sim.spec.plan import GPU, CascadePlan, ReplicaPlan, TierPlan

__all__ = ["GPU", "CascadePlan", "ReplicaPlan", "TierPlan"]
