"""Every experiment config composes against the schema; typos and bad values fail loudly."""
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from experiments.config import register_configs
from sim.common.paths import CONF_DIR

register_configs()
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def _compose(overrides=()):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def test_default_composes_with_every_planner():
    cfg = _compose()
    assert {"cascadia", "single_model", "cascadeserve", "routellm", "sarathi"} <= set(cfg.planner)
    assert cfg.cluster.num_nodes * cfg.cluster.gpus_per_node == 32
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name):
    cfg = _compose([f"experiment={name}"])
    assert cfg.name == name
    OmegaConf.to_container(cfg, resolve=False)


def test_typo_in_key_fails():
    with pytest.raises(Exception, match="q_mn"):
        _compose(["q_mn=80"])


def test_wrong_type_fails():
    with pytest.raises(Exception, match="rate_scale"):
        _compose(["rate_scale=fast"])


def test_unknown_group_option_fails():
    with pytest.raises(Exception, match="cascade"):
        _compose(["cascade=gpt5"])
