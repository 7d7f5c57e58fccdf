"""Planner protocol and registry: get_planner(name, **cfg) with defaults from conf/planner/<name>.yaml."""
from __future__ import annotations

import dataclasses
from typing import Protocol

from omegaconf import OmegaConf

from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR

from planners.baselines import CascadeServePlanner, NoisyOracleRouterPlanner, SingleModelPlanner
from planners.cascadia import CascadiaPlanner
from planners.plan import CascadePlan
from planners.routellm import RouteLLMPlanner


class Planner(Protocol):
    name: str

    def plan(self, problem) -> CascadePlan: ...


# name -> (class, settings fixed by the name that a config may not change)
_REGISTRY = {
    "cascadia": (CascadiaPlanner, {}),
    "cascadia_no_parallelism": (CascadiaPlanner, {"parallelism_search": False}),
    "cascadia_no_allocation": (CascadiaPlanner, {"allocation": "proportional"}),
    "cascadia_colocated": (CascadiaPlanner, {"disaggregation": "colocated"}),
    "single_model": (SingleModelPlanner, {"batching": "vllm"}),
    "sarathi": (SingleModelPlanner, {"batching": "sarathi"}),
    "cascadeserve": (CascadeServePlanner, {}),
    "routellm": (RouteLLMPlanner, {}),
    "routellm_oracle_noisy": (NoisyOracleRouterPlanner, {}),
}
PLANNERS = tuple(_REGISTRY)


def planner_defaults(name: str) -> dict:
    path = CONF_DIR / "planner" / f"{name}.yaml"
    if not path.exists():
        return {}
    return dict(OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {})


def colocated_settings(name: str, settings: dict | None = None) -> dict:
    """settings with the planner's deployment search held to colocated tiers, where the planner has that choice.
    Online re-planning uses it: a rolling reconfiguration (sim.control.transition) moves colocated replicas only."""
    settings = dict(settings or {})
    if name not in _REGISTRY:
        return settings
    cls, fixed = _REGISTRY[name]
    names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    for key in ("disaggregation", "deployment"):
        if key in names:
            settings[key] = "colocated"
    return settings


def get_planner(name: str, **cfg) -> Planner:
    """The named planner with conf/planner/<name>.yaml settings, overridden by cfg."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown planner {name!r}; valid names are {list(PLANNERS)}")
    cls, fixed = _REGISTRY[name]
    settings = {**planner_defaults(name), **cfg}
    settings.pop("_target_", None)
    settings["name"] = name
    valid = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise ConfigError(f"planner {name}: unknown setting(s) {unknown} (conf/planner/{name}.yaml or overrides); "
                          f"valid: {sorted(valid)}")
    for key, value in settings.items():
        if isinstance(value, list):
            settings[key] = tuple(value)
    return cls(**settings, **fixed)
