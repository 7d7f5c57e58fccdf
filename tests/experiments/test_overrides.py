"""experiments.overrides: the user's config folders read off a command line as Hydra reads them, the options of a
group across conf/ and those folders, and a bad option or folder refused as one ConfigError."""
from __future__ import annotations

import pytest

from experiments.config import register_configs
from experiments.overrides import compose_from_argv, group_options, user_config_dirs
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR


@pytest.fixture(autouse=True)
def _schemas():
    register_configs()  # experiments.run registers the schemas before it composes


@pytest.mark.parametrize("argv,dirs", [
    ([], []),
    (["--config-dir", "/a", "seed=1"], ["/a"]),
    (["-cd=/b"], ["/b"]),
    (["hydra.searchpath=[file:///c, 'file:///d']"], ["/c", "/d"]),
    (["--config-dir=/a", "hydra.searchpath=[file:///c]"], ["/a", "/c"]),
])
def test_user_config_dirs(argv, dirs):
    assert user_config_dirs(argv) == dirs


def test_group_options_join_conf_and_the_users_folders(tmp_path):
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "my_lab.yaml").write_text("name: my_lab\n")
    shipped = sorted(p.stem for p in (CONF_DIR / "cluster").glob("*.yaml"))
    assert group_options("cluster", []) == shipped
    assert group_options("cluster", [str(tmp_path)]) == sorted([*shipped, "my_lab"])


def test_an_unknown_option_names_the_valid_ones_and_the_users_own_way():
    with pytest.raises(ConfigError, match=r"unknown cluster 'nope'.*valid cluster options: .*paper_4x8_h100"):
        compose_from_argv(["cluster=nope"])


def test_a_config_folder_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        compose_from_argv(["--config-dir", str(tmp_path / "missing"), "seed=1"])


def test_flags_and_hydra_keys_are_not_passed_as_overrides():
    cfg = compose_from_argv(["--multirun", "-cn", "config", "hydra.job.chdir=false", "seed=4"])
    assert cfg.seed == 4
