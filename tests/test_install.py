"""`make run` installs once and again only when pyproject.toml changes, and the licence metadata is the SPDX form
setuptools >= 77 accepts without its deprecation banner."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from sim.common.paths import PROJECT_ROOT


def _dry_run(venv) -> str:
    return subprocess.run(["make", "-n", "-C", str(PROJECT_ROOT), "run", f"VENV={venv}"], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_only_when_pyproject_changed(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    assert "pip install" in _dry_run(venv)  # never installed: install
    stamp = venv / ".installed"
    stamp.touch()
    later = time.time() + 60
    os.utime(stamp, (later, later))
    assert "pip install" not in _dry_run(venv)  # installed after the last pyproject change: just run
    earlier = (PROJECT_ROOT / "pyproject.toml").stat().st_mtime - 60
    os.utime(stamp, (earlier, earlier))
    assert "pip install" in _dry_run(venv)  # pyproject changed since: install again


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_licence_is_an_spdx_string():
    import tomllib

    meta = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in meta["build-system"]["requires"])
    assert {"jupyter", "nbclient", "ipykernel", "nbformat"} <= {
        r.split(">")[0].split("=")[0] for r in meta["project"]["optional-dependencies"]["notebooks"]}
