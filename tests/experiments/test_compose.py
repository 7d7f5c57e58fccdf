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


def test_every_replan_override_the_docs_write_composes():
    """The docs once wrote `replan.enabled=true` for the default config, which Hydra refuses without `+`. Each
    `replan.*` override written in README.md or docs/ composes: on the default config, or in the experiments that
    the text just before it names (`experiment=drift`)."""
    import re

    from sim.common.paths import PROJECT_ROOT

    found = []
    for page in [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for m in re.finditer(r"`(\+?replan\.[a-z_]+=[^`\s]+)`", text):
            named = re.findall(r"`experiment=(\w+)`", text[max(0, m.start() - 200):m.start()])
            found.append((page.name, m.group(1), named or [None]))
    assert found
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for page, override, experiments in found:
            for experiment in experiments:
                extra = [f"experiment={experiment}"] if experiment else []
                cfg = compose(config_name="config", overrides=[*extra, override])
                key, value = override.lstrip("+").split("=", 1)
                assert str(OmegaConf.select(cfg, key)).lower() == value.lower(), (page, override, experiment)
