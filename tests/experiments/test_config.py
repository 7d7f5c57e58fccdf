"""experiments.config: each default lives once. The `sim` and `planner.<name>` schemas are derived from the classes
(SimConfig, the planner dataclasses), so the conf files repeat no default and a typo or a wrong type fails at compose."""
import dataclasses

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from experiments.config import register_configs
from planners.base import PLANNERS, get_planner, registered
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR

register_configs()


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("name", PLANNERS)
def test_a_builtin_planner_file_holds_no_value_and_composes_to_the_class_defaults(name):
    assert set(read_yaml(CONF_DIR / "planner" / f"{name}.yaml")) == {"defaults"}
    settings = OmegaConf.to_container(_compose([f"planner=[{name}]"]).planner)[name]
    cls, fixed = registered(name)
    expected = {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default)
                for f in dataclasses.fields(cls) if f.name != "name" and f.name not in fixed}
    assert settings == expected
    assert get_planner(name, **settings) == get_planner(name)  # the same planner with or without Hydra


@pytest.mark.parametrize("override", ["planner.cascadia.bogus=1", "planner.cascadia.threads=abc",
                                      "planner.cascadia.parallelism_search=maybe"])
def test_a_planner_typo_or_wrong_type_fails_at_compose(override):
    with pytest.raises(ConfigCompositionException):
        _compose(["planner=[cascadia]", override])


def test_a_fixed_setting_cannot_be_overridden():
    with pytest.raises(ConfigCompositionException):
        _compose(["planner=[cascadia_no_parallelism]", "planner.cascadia_no_parallelism.parallelism_search=true"])
