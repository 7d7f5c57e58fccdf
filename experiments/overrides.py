"""Up-front check of experiments.run's command line: compose once, on the same search path Hydra will use, so a bad
override ends as one line naming the valid options (Hydra's own handler prints its search path and exits 1)."""
from __future__ import annotations

from pathlib import Path

from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR


def user_config_dirs(argv: list[str]) -> list[str]:
    """The config folders the user added: `--config-dir DIR` / `-cd DIR` (Hydra puts it first on the search path)
    and the file:// entries of `hydra.searchpath=[...]`."""
    dirs: list[str] = []
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                dirs.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                dirs.append(arg.split("=", 1)[1])
        if arg.startswith("hydra.searchpath="):
            items = arg.split("=", 1)[1].strip().strip("[]")
            dirs += [s.strip().strip("'\"") for s in items.split(",") if s.strip()]
    return [d[len("file://"):] if d.startswith("file://") else d for d in dirs]


def _search_path_override(dirs: list[str]) -> list[str]:
    if not dirs:
        return []
    for d in dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"config folder {d} (from --config-dir or hydra.searchpath) is not a directory")
    return ["hydra.searchpath=[" + ",".join(f"file://{Path(d).resolve()}" for d in dirs) + "]"]


def group_options(group: str, dirs: list[str]) -> list[str]:
    """The options of a config group: conf/<group>/*.yaml and the same folder in every user config dir."""
    names = {p.stem for d in [str(CONF_DIR), *dirs] for p in Path(d, group).glob("*.yaml")}
    return sorted(names)


def _missing_option_error(exc, dirs: list[str]) -> ConfigError:
    missing = str(getattr(exc, "missing_cfg_file", "") or "")
    group, _, name = missing.rpartition("/")
    where = f" or in {', '.join(dirs)}" if dirs else ""
    valid = ", ".join(group_options(group, dirs)) or "none"
    # A user's planner file names its class by _target_ (docs/usage.md, "Your own planner").
    own = f" (your own: --config-dir DIR with DIR/{group}/{name}.yaml" + (
        ", naming its class by _target_)" if group == "planner" else ")")
    return ConfigError(f"unknown {group} '{name}': no {group}/{name}.yaml in {CONF_DIR}{where}; valid {group} "
                       f"options: {valid}{own}")


def compose_from_argv(argv: list[str]):
    """The config experiments.run will compose from this command line (without Hydra's own hydra.* keys)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import MissingConfigException

    dirs = user_config_dirs(argv)
    skip_next = False
    overrides = []
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        if arg in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp"):
            skip_next = True
            continue
        if arg.startswith("-") or "=" not in arg or arg.startswith("hydra"):
            continue
        overrides.append(arg)
    error = None
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose(config_name="config", overrides=overrides + _search_path_override(dirs))
        except MissingConfigException as exc:
            if not getattr(exc, "missing_cfg_file", None):
                raise
            error = _missing_option_error(exc, dirs)
        except (ValueError, TypeError) as exc:
            # Hydra raises bare ValueError/TypeError for a number, list or dict given as a group option
            # (cluster=0, cluster=[1,2]).
            error = ConfigError(f"invalid override in {overrides}: {exc}")
    raise error  # outside the handler, so the one-line message does not grow Hydra's search-path listing
