"""Launcher of the main job and every experiment (`python -m experiments.run`): compose the config, check every input
once (experiments.inputs), then run experiments.main_job in the run folder. No experiment logic lives here."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from experiments.config import register_configs
from experiments.main_job import run_experiment, simulate_plan, throughput_rps  # noqa: F401 (the importable API)
from experiments.progress import in_sweep
from sim.common.cli import exit_on_user_error
from sim.common.io import check_run_dir_free, prepare_output_dir
from sim.common.paths import CONF_DIR

register_configs()
_log = logging.getLogger(__name__)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(hc.runtime.output_dir)
    if cfg.output_dir and in_sweep():  # each job of a sweep in its own folder under output_dir, named as Hydra's
        out_dir = out_dir / hc.sweep.subdir
    run_guarded(cfg, out_dir)


@exit_on_user_error
def run_guarded(cfg: DictConfig, out_dir: Path) -> None:
    from experiments.inputs import parse_experiment

    parse_experiment(cfg)  # every input checked before the folder is used (a sweep job's own overrides too)
    prepare_output_dir(out_dir)
    _log.info("run %s in %s; overrides: %s", cfg.name, out_dir, " ".join(_overrides()) or "none")
    run_experiment(cfg, out_dir)


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@exit_on_user_error
def validate_overrides(argv: list[str]) -> DictConfig | None:
    """Compose the config once with the compose API and parse every input (experiments.inputs), so a bad override or
    input file fails as one line with exit 2 before any folder is made (experiments.overrides: valid options listed,
    user config folders included)."""
    from experiments.inputs import parse_experiment
    from experiments.overrides import compose_from_argv

    if any(a in ("-m", "--multirun") for a in argv):
        return None  # sweeps are validated per job
    cfg = compose_from_argv(argv)
    parse_experiment(cfg)
    return cfg


def hydra_dir_at_output_dir(cfg: DictConfig | None, argv: list[str]) -> list[str]:
    """With output_dir set (and no hydra.run.dir of the user's), Hydra's own job folder (.hydra/, the log) is the
    output folder too, not an otherwise empty folder under outputs/; the folder must then be new or empty before
    Hydra writes into it, so another run's config is never overwritten, and it is made here (a path that is a file or
    cannot be created is the user's one-line error, not Hydra's traceback when it makes its job folder)."""
    if cfg is None or not cfg.output_dir or any("hydra.run.dir=" in a for a in argv):
        return []
    check_run_dir_free(Path(cfg.output_dir))
    prepare_output_dir(Path(cfg.output_dir))
    quoted = str(cfg.output_dir).replace("\\", "\\\\").replace('"', '\\"')
    return [f'hydra.run.dir="{quoted}"']


def config_dirs_override(argv: list[str]) -> list[str]:
    """`config_dirs=[...]` from --config-dir / hydra.searchpath, so model, hardware and planner files there are found
    (the composed config carries them: summary.json records where a run's files came from)."""
    from experiments.overrides import user_config_dirs

    dirs = user_config_dirs(argv)
    if not dirs or any(a.startswith("config_dirs=") for a in argv):
        return []
    return ["config_dirs=[" + ",".join(repr(str(Path(d).resolve())) for d in dirs) + "]"]


@exit_on_user_error  # Ctrl-C during start-up or in Hydra's own code still ends as one line
def main() -> None:
    from sim.common.quick import announce, experiment_overrides, quick_mode

    if quick_mode():
        sys.argv += experiment_overrides(sys.argv[1:])
        announce("120 s horizon, 2 throughput bisection steps on 60 s, 300 planning requests")
    sys.argv += config_dirs_override(sys.argv[1:])
    cfg = validate_overrides(sys.argv[1:])
    sys.argv += exit_on_user_error(hydra_dir_at_output_dir)(cfg, sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
