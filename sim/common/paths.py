"""Where the project's own config and data live (never the raw-data folder beside the checkout: the product runs without it)."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
DATA_DIR = PROJECT_ROOT / "data"


def catalog_dirs(user_dirs=()) -> tuple[Path, ...]:
    """Config folders searched for a named file, in order: the user's own (--config-dir, hydra.searchpath), then conf/.
    A user's file of the same name shadows the shipped one, as Hydra's search path does for config groups."""
    return (*(Path(d) for d in user_dirs), CONF_DIR)


def find_config(group: str, name: str, user_dirs=()) -> Path | None:
    """The file <dir>/<group>/<name>.yaml of the first config folder that has it, or None."""
    for d in catalog_dirs(user_dirs):
        path = d / group / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def catalog_names(group: str, user_dirs=()) -> list[str]:
    """Every name of a config group across the config folders."""
    return sorted({p.stem for d in catalog_dirs(user_dirs) for p in (d / group).glob("*.yaml")})
