"""Planner protocol and registry: get_planner(name, **cfg) with defaults from conf/planner/<name>.yaml, or a plug-in
planner named by `_target_` in the user's own planner/<name>.yaml."""
from __future__ import annotations

import dataclasses
from typing import Protocol

from sim.common.config_checks import check_keys
from sim.common.errors import ConfigError
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR

from planners.baselines import CascadeServePlanner, NoisyOracleRouterPlanner, SingleModelPlanner
from planners.cascadia import CascadiaPlanner
from sim.spec.plan import CascadePlan
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


def registered(name: str) -> tuple[type, dict]:
    """(class, settings its name fixes) of a built-in planner."""
    return _REGISTRY[name]


def planner_defaults(name: str) -> dict:
    path = CONF_DIR / "planner" / f"{name}.yaml"
    if not path.exists():
        return {}
    # Built-in planner files hold only a Hydra defaults list (their schema comes from the class): no values to add.
    return {k: v for k, v in read_yaml(path, "planner file").items() if k != "defaults"}


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


def get_planner(name: str, config_dirs=(), **cfg) -> Planner:
    """The named planner with conf/planner/<name>.yaml settings, overridden by cfg.

    A name the code does not register is a plug-in: its settings (the user's planner/<name>.yaml under --config-dir)
    carry `_target_: module.Class`, a class whose fields are its settings and whose plan(problem) returns a
    CascadePlan. The module is imported as usual, or found as module.py in one of config_dirs."""
    if name in _REGISTRY:
        cls, fixed = _REGISTRY[name]
        settings = {**planner_defaults(name), **cfg}
        settings.pop("_target_", None)
    elif cfg.get("_target_"):
        cls, fixed = plugin_class(str(cfg["_target_"]), name, config_dirs), {}
        settings = {k: v for k, v in cfg.items() if k != "_target_"}
    else:
        raise ConfigError(f"unknown planner {name!r}; valid names are {list(PLANNERS)}, or your own: "
                          f"planner/{name}.yaml in your --config-dir with _target_: module.Class")
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"planner {name}: {cls.__name__} must be a dataclass whose fields are its settings")
    field_names = {f.name for f in dataclasses.fields(cls)}
    if "name" in field_names:
        settings["name"] = name
    check_keys(settings, field_names - set(fixed), f"planner {name} (planner/{name}.yaml or overrides)", "setting")
    for key, value in settings.items():
        if isinstance(value, list):
            settings[key] = tuple(value)
    try:
        return cls(**settings, **fixed)
    except TypeError as exc:  # a required field the file does not set
        raise ConfigError(f"planner {name}: {exc}") from None


def plugin_class(target: str, name: str, config_dirs=()) -> type:
    """The class `module.Class` of a plug-in planner: importable, or module.py (module/sub.py) in a config folder."""
    module_name, _, class_name = target.rpartition(".")
    if not module_name:
        raise ConfigError(f"planner {name}: _target_ {target!r} must be module.Class")
    module = _import_module(module_name, name, config_dirs)
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"planner {name}: module {module_name} has no class {class_name}")
    if not callable(getattr(cls, "plan", None)):
        raise ConfigError(f"planner {name}: {target} has no plan(problem) method")
    return cls


def _import_module(module_name: str, name: str, config_dirs):
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    rel = Path(*module_name.split("."))
    for d in config_dirs:
        path = Path(d) / rel.with_suffix(".py")
        if path.is_file():
            key = f"cascadesim_plugin_{abs(hash(str(path.resolve())))}_{module_name.replace('.', '_')}"
            if key not in sys.modules:
                spec = importlib.util.spec_from_file_location(key, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[key] = module  # dataclasses look their module up while building the class
                spec.loader.exec_module(module)
            return sys.modules[key]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        where = f" nor {module_name.replace('.', '/')}.py in {', '.join(map(str, config_dirs))}" if config_dirs else ""
        raise ConfigError(f"planner {name}: cannot import module {module_name} ({exc}){where}") from None
