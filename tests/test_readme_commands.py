"""Every command in the README and in the docs pages written for newcomers runs as written and exits 0 (slow).

Each ```bash block is one script (`bash -e`), run in a copy of the repository (so `make results` and `make
notebooks` rewrite the copy's tables and notebooks, not the checkout's) with CASCADESIM_QUICK=1 (sim/common/quick.py:
short horizons, 2 bisection steps, the benchmarks' smallest sizes). The copy's `.venv` links to this checkout's
environment, with fresh install stamps, so `make` does not reinstall into it. Commands that never end by
themselves (a notebook server) are written in the text, not in bash blocks.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim.common.paths import PROJECT_ROOT
from sim.common.quick import ENV_VAR

PAGES = ["README.md", "docs/usage.md", "docs/definitions.md", "docs/results.md", "docs/performance.md"]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def bash_blocks() -> list[tuple[str, int, str]]:
    out = []
    for page in PAGES:
        text = (PROJECT_ROOT / page).read_text()
        for i, m in enumerate(BLOCK.finditer(text)):
            out.append((page, i, m.group(1)))
    return out


BLOCKS = bash_blocks()


def test_every_page_has_commands_and_the_readme_starts_with_the_two():
    assert {page for page, _, _ in BLOCKS} == set(PAGES)
    first = BLOCKS[0][2].splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make run", "make test"]


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").exists():
        pytest.skip("needs the tests to run from a virtual environment (make test, .venv)")
    copy = tmp_path_factory.mktemp("repo") / "cascadesim"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "outputs", "multirun", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info",
        ".ipynb_checkpoints"))  # copy2 keeps mtimes: make sees pyproject.toml as old as in the checkout
    (copy / ".venv").mkdir()
    for part in ("bin", "lib", "lib64", "include", "share"):
        if (venv / part).exists():
            (copy / ".venv" / part).symlink_to(venv / part)
    shutil.copy(venv / "pyvenv.cfg", copy / ".venv" / "pyvenv.cfg")
    for stamp in (".installed", ".installed-test", ".installed-notebooks"):
        (copy / ".venv" / stamp).touch()
    return copy


@pytest.mark.slow
@pytest.mark.timeout(1600)  # pytest-timeout's default 300 s would cut `make test` and `make results` short
@pytest.mark.parametrize("page,index,script", BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_documented_commands_run_as_written(page, index, script, repo_copy):
    env = {**os.environ, ENV_VAR: "1", "PATH": f"{repo_copy / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=repo_copy, env=env, capture_output=True, text=True,
                          timeout=1500)
    # stdout too: `make test` reports its failing tests there, while stderr holds only progress bars
    assert proc.returncode == 0, (f"{page} block {index} failed:\n{script}\n--- stdout:\n{proc.stdout[-3000:]}\n"
                                  f"--- stderr:\n{proc.stderr[-3000:]}")
