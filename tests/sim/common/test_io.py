"""The one YAML reader of user inputs (sim.common.io.read_yaml): numbers read as Hydra reads them, one error line
naming the file, and no second reader elsewhere in the packages."""
import re

import pytest
from omegaconf import OmegaConf

from sim.common.errors import ConfigError
from sim.common.io import read_yaml
from sim.common.paths import CONF_DIR, PROJECT_ROOT

PACKAGES = ("sim", "planners", "online", "experiments")


def test_every_shipped_data_file_reads_as_hydra_reads_it():
    # Hydra composes these groups; sim.spec and friends read the same files with read_yaml: the two must agree
    # (plain PyYAML reads `mu: 1.0e9` as a string).
    for path in sorted(CONF_DIR.glob("*/*.yaml")):
        if path.parent.name in ("experiment", "hydra"):
            continue  # Hydra-only files (interpolations, @package _global_)
        assert read_yaml(path) == (OmegaConf.to_container(OmegaConf.load(path)) or {}), path


@pytest.mark.parametrize("text,word", [("a: [1, 2\n", "line"), ("- 1\n- 2\n", "mapping")])
def test_a_bad_file_is_one_config_error_naming_it(tmp_path, text, word):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=word) as exc:
        read_yaml(path)
    assert str(path) in str(exc.value)


def test_a_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: x\nnum_layers: 2\n")
    assert read_yaml(path) == {"name": "x", "num_layers": 2}


def test_no_second_yaml_reader_in_the_packages():
    readers = re.compile(r"yaml\.(safe_)?load\(|OmegaConf\.load\(")
    found = [str(p.relative_to(PROJECT_ROOT)) for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py")
             if readers.search(p.read_text()) and p != PROJECT_ROOT / "sim/common/io.py"]
    assert found == []


def test_every_entry_point_is_in_the_one_commands_list():
    # docs/usage.md, "Commands": the one list of `python -m` entry points.
    text = (PROJECT_ROOT / "docs" / "usage.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_.]+)", text.split("## Commands", 1)[1].split("\n## ", 1)[0], re.M))
    mains = set()
    for pkg in PACKAGES:
        for p in (PROJECT_ROOT / pkg).rglob("*.py"):
            if '__name__ == "__main__"' in p.read_text():
                module = ".".join(p.relative_to(PROJECT_ROOT).with_suffix("").parts)
                mains.add(module.removesuffix(".__main__"))
    mains = {m for m in mains if not m.startswith("experiments.figures.")}  # one figure each: experiments.figures NAME
    assert mains <= listed, sorted(mains - listed)
