"""Plug-ins by config alone: a planner, a model and a GPU from the user's own config folder, outside the repository,
run exactly like the built-in ones (docs/usage.md, "Your own planner": its example is the test)."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments.config import register_configs
from experiments.inputs import parse_experiment
from planners.base import get_planner
from sim.common.errors import ConfigError
from sim.common.paths import CONF_DIR, PROJECT_ROOT

register_configs()


def _docs_example() -> str:
    text = (PROJECT_ROOT / "docs" / "usage.md").read_text()
    section = text.split("## Your own planner", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.integration
def test_the_documented_planner_runs_from_a_folder_outside_the_repository(tmp_path):
    folder = tmp_path / "my_planner"
    out = tmp_path / "out"
    block = _docs_example().replace("/tmp/my_planner", str(folder))
    assert str(PROJECT_ROOT) not in str(folder)
    # The documented command, shortened (quick mode, two seeds) and writing to a known folder.
    block = block.replace('"planner=[one_threshold,cascadia]"',
                          f'"planner=[one_threshold,cascadia]" seeds=2 output_dir={out} progress=false figure=false')
    env = {**os.environ, "CASCADESIM_QUICK": "1"}
    r = subprocess.run(["bash", "-e", "-c", block.replace(".venv/bin/python", sys.executable)], cwd=PROJECT_ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    mine = summary["planners"]["one_threshold"]
    # The same protocol as a built-in planner: per-seed values, CIs, throughput, the test split.
    assert mine["seeds"] == [0, 1] and len(mine["slo_scale_per_seed"]) == 2 and len(mine["slo_scale_ci95"]) == 2
    assert mine["throughput_rps"] > 0 and summary["scenario"]["split"]["enabled"]
    # Its own decision: the configured threshold on every tier that forwards (the last deployed tier answers all).
    assert mine["thresholds"][0] == 60.0
    assert "one_threshold" in summary["versus_cascadia"]
    assert not list(PROJECT_ROOT.glob("my_planners*")) and not (PROJECT_ROOT / "conf/planner/one_threshold.yaml").exists()


def _write_plugin(folder, body="", settings="threshold: 50.0"):
    (folder / "planner").mkdir(parents=True, exist_ok=True)
    (folder / "plug.py").write_text(body or (
        "from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass P:\n    name: str = 'p'\n"
        "    threshold: float = 60.0\n\n    def plan(self, problem):\n        raise NotImplementedError\n"))
    (folder / "planner" / "mine.yaml").write_text(f"# @package planner.mine\n_target_: plug.P\n{settings}\n")


@pytest.mark.unit
def test_a_plugin_planner_gets_its_settings_and_name(tmp_path):
    _write_plugin(tmp_path)
    p = get_planner("mine", config_dirs=(str(tmp_path),), _target_="plug.P", threshold=50.0)
    assert (p.name, p.threshold) == ("mine", 50.0)


@pytest.mark.unit
@pytest.mark.parametrize("target,settings,word", [
    ("plug.P", {"thresold": 1.0}, "unknown setting"),
    ("nowhere.P", {}, "cannot import module nowhere"),
    ("plug.Missing", {}, "no class Missing"),
    ("P", {}, "module.Class"),
])
def test_a_bad_plugin_is_one_config_error(tmp_path, target, settings, word):
    _write_plugin(tmp_path)
    with pytest.raises(ConfigError, match=word):
        get_planner("mine", config_dirs=(str(tmp_path),), _target_=target, **settings)


@pytest.mark.unit
def test_a_plugin_without_plan_is_refused(tmp_path):
    _write_plugin(tmp_path, body="from dataclasses import dataclass\n\n@dataclass\nclass P:\n    name: str = 'p'\n")
    with pytest.raises(ConfigError, match="plan"):
        get_planner("mine", config_dirs=(str(tmp_path),), _target_="plug.P")


@pytest.mark.unit
def test_an_unknown_planner_without_target_names_both_ways():
    with pytest.raises(ConfigError, match="_target_"):
        get_planner("no_such_planner")


def _compose(folder, overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*overrides, f"hydra.searchpath=[file://{folder}]",
                                                        f"config_dirs=['{folder}']"])


@pytest.mark.unit
def test_model_and_hardware_files_from_the_users_folder(tmp_path):
    model = yaml.safe_load((CONF_DIR / "model" / "llama3_70b.yaml").read_text())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "my_70b.yaml").write_text(yaml.safe_dump({**model, "name": "my_70b", "max_context": 4096}))
    gpu = yaml.safe_load((CONF_DIR / "hardware" / "h100_sxm.yaml").read_text())
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "my_gpu.yaml").write_text(yaml.safe_dump({**gpu, "name": "my_gpu", "memory_gb": 141.0}))
    (tmp_path / "cascade").mkdir()
    (tmp_path / "cascade" / "mine.yaml").write_text(yaml.safe_dump(
        {"name": "mine", "tiers": [{"model": "llama3_8b"}, {"model": "my_70b"}]}))
    cfg = _compose(tmp_path, ["cascade=mine", "cascade.name=mine", "cluster.hardware=my_gpu", "workload=math",
                              "planner=[cascadia]"])
    inputs = parse_experiment(cfg)
    assert inputs.cascade.tiers[1].model.name == "my_70b" and inputs.cascade.tiers[1].model.max_context == 4096
    assert inputs.cluster.gpu.name == "my_gpu" and inputs.cluster.gpu.memory_gb == 141.0
    # The same range checks as a shipped file.
    (tmp_path / "model" / "my_70b.yaml").write_text(yaml.safe_dump({**model, "name": "my_70b", "num_layers": 0}))
    with pytest.raises(ConfigError, match="num_layers"):
        parse_experiment(cfg)
