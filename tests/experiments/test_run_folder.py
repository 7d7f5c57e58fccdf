"""A single run's folder: output_dir= is the folder itself (nothing is left under outputs/), and run.log holds the
run's log: its overrides, the final table, the files written and every warning."""
import os
import subprocess
import sys

import pytest

from sim.common.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _listing(root):
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def test_output_dir_is_the_run_folder_and_run_log_holds_the_run(tmp_path):
    out = tmp_path / "mine"
    before = _listing(PROJECT_ROOT / "outputs")
    env = {**os.environ, "CASCADESIM_QUICK": "1"}
    # question_fraction 0.999 leaves one test question: a warning the log must keep.
    r = subprocess.run([sys.executable, "-m", "experiments.run", "planner=[single_model]", "seeds=1",
                        "throughput.enabled=false", "figure=false", "progress=false", "split.question_fraction=0.999",
                        f"output_dir={out}"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _listing(PROJECT_ROOT / "outputs") == before  # no empty run folder beside the one asked for
    log = (out / "run.log").read_text()
    assert "output_dir=" in log and "single_model" in log and "summary.json" in log
    assert "leaves 1 question" in log and "leaves 1 question" in r.stderr
    assert (out / "summary.json").exists() and (out / ".hydra" / "config.yaml").exists()
