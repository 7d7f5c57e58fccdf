"""Plans written in config: conf/plan/<name>.yaml (or any YAML path) <-> sim.spec.plan.CascadePlan."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sim.spec.plan import ROLES, CascadePlan, ReplicaPlan, TierPlan
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR

_PLAN_KEYS = {"planner", "tiers", "thresholds", "routing", "router_error_rate", "routes", "estimates", "solver_stats"}


def plan_from_dict(data: dict, where: str = "plan") -> CascadePlan:
    """{planner, routing, thresholds, router_error_rate, tiers: [{model, replicas: [{tp, pp, gpus: [[node, gpu]],
    role}]}]}; role (colocated | prefill | decode) is optional, colocated by default."""
    unknown = sorted(set(data) - _PLAN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(_PLAN_KEYS)}")
    if not data.get("tiers"):
        raise ConfigError(f"{where}: 'tiers' is missing or empty; list one entry per cascade tier")
    tiers = []
    for i, t in enumerate(data["tiers"]):
        if set(t) - {"model", "replicas"} or "model" not in t:
            raise ConfigError(f"{where}: tier {i} must have keys model and replicas, got {sorted(t)}")
        reps = []
        for j, r in enumerate(t.get("replicas") or []):
            if set(r) - {"tp", "pp", "gpus", "role"} or "gpus" not in r:
                raise ConfigError(f"{where}: tier {i} replica {j} must have keys tp, pp, gpus (and optionally role), "
                                  f"got {sorted(r)}")
            role = str(r.get("role", "colocated"))
            if role not in ROLES:
                raise ConfigError(f"{where}: tier {i} replica {j}: role {role!r} is not valid; choose one of {list(ROLES)}")
            try:
                gpus = tuple((int(node), int(g)) for node, g in r["gpus"])
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: tier {i} replica {j}: gpus must be a list of [node, gpu] pairs, "
                                  f"got {r['gpus']!r}") from None
            reps.append(ReplicaPlan(int(r.get("tp", 1)), int(r.get("pp", 1)), gpus, role))
        tiers.append(TierPlan(str(t["model"]), tuple(reps)))
    return CascadePlan(str(data.get("planner", "fixed")), tuple(tiers),
                       tuple(float(h) for h in data.get("thresholds") or ()),
                       routing=str(data.get("routing", "cascade")),
                       router_error_rate=float(data.get("router_error_rate", 0.0)),
                       routes=tuple((str(q), int(t)) for q, t in (data.get("routes") or {}).items()),
                       estimates=dict(data.get("estimates") or {}), solver_stats=dict(data.get("solver_stats") or {}))


def plan_to_dict(plan: CascadePlan) -> dict:
    return {
        "planner": plan.planner, "routing": plan.routing, "thresholds": list(plan.thresholds),
        "router_error_rate": plan.router_error_rate,
        **({"routes": dict(plan.routes)} if plan.routes else {}),
        "tiers": [{"model": t.model, "replicas": [{"tp": r.tp, "pp": r.pp, "gpus": [list(g) for g in r.gpus],
                                                   **({"role": r.role} if r.role != "colocated" else {})}
                                                  for r in t.replicas]} for t in plan.tiers],
    }


def load_plan(name_or_path: str) -> CascadePlan:
    """A plan by name (conf/plan/<name>.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONF_DIR / "plan" / f"{name_or_path}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in (CONF_DIR / "plan").glob("*.yaml"))
        raise ConfigError(f"plan {name_or_path!r} not found; valid names are {names} or a YAML path")
    return plan_from_dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True), str(path))
