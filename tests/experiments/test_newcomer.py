"""A newcomer's first hour: run folders named by what ran and never shared, one line listing the valid
options for an unknown group option, the user's own config folders (--config-dir and hydra.searchpath), sweep job
folders named by their overrides, and the quick mode of the documented commands."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.run import validate_overrides
from sim.common.paths import CONF_DIR, PROJECT_ROOT
from sim.common.quick import ENV_VAR, experiment_overrides, quick_mode

# A one-planner run on a 30 s window: a few seconds.
FAST = ["planner=[single_model]", "horizon_s=30", "plan_sample_size=200", "throughput.enabled=false",
        "figure=false", "progress=false"]

pytestmark = pytest.mark.integration  # first runs through the command line


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return {**env, **extra}


def _run(args, cwd, **env):
    return subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=cwd, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_started_together_get_their_own_named_folders(tmp_path):
    procs = [_run(FAST, tmp_path) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = sorted(tmp_path.glob("outputs/*/*/*/summary.json"))
    assert len(runs) == 2, list(tmp_path.rglob("summary.json"))
    for summary in runs:
        experiment, what, stamp = summary.parent.relative_to(tmp_path / "outputs").parts
        assert (experiment, what) == ("default", "conversation_deepseek3")
    assert runs[0].parent != runs[1].parent


@pytest.mark.parametrize("override,group,valid", [
    ("planner=[cascadia,cascadia_fast]", "planner", "cascadia_no_allocation"),
    ("workload=chat", "workload", "conversation"),
    ("cluster=dgx", "cluster", "one_node_h100"),
    ("experiment=slo", "experiment", "slo_throughput"),
])
def test_unknown_group_option_lists_the_valid_ones(override, group, valid, capsys):
    with pytest.raises(SystemExit) as exit_info:
        validate_overrides([override])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(f"error: unknown {group} ") and valid in err
    assert len(err.strip().splitlines()) == 1 and "search path" not in err.lower()


def _user_configs(root: Path) -> Path:
    """A researcher's own folder: a workload, a cascade and an experiment that uses both."""
    (root / "workload").mkdir(parents=True)
    (root / "cascade").mkdir()
    (root / "experiment").mkdir()
    workload = (CONF_DIR / "workload" / "coding.yaml").read_text().replace("name: coding", "name: my_coding")
    (root / "workload" / "my_coding.yaml").write_text(workload)
    cascade = (CONF_DIR / "cascade" / "llama3.yaml").read_text().replace("name: llama3", "name: my_llama")
    (root / "cascade" / "my_llama.yaml").write_text(cascade)
    (root / "experiment" / "my_exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /workload: my_coding\n  - override /cascade: my_llama\n"
        "name: my_exp\n")
    return root


@pytest.mark.parametrize("how", ["config-dir", "searchpath"])
def test_user_config_folder_outside_the_repo(how, tmp_path):
    user = _user_configs(tmp_path / "mine")
    args = ["--config-dir", str(user)] if how == "config-dir" else [f"hydra.searchpath=[file://{user}]"]
    p = _run([*args, "experiment=my_exp", *FAST], tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert list(tmp_path.glob("outputs/my_exp/my_coding_my_llama/*/summary.json")), out + err


def test_unknown_option_with_user_folder_names_both(tmp_path, capsys):
    user = _user_configs(tmp_path / "mine")
    with pytest.raises(SystemExit):
        validate_overrides(["--config-dir", str(user), "workload=nope"])
    err = capsys.readouterr().err
    assert "my_coding" in err and "conversation" in err and str(user) in err


def test_sweep_job_folders_are_named_by_their_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    with_bars = [a for a in FAST if a != "progress=false"]  # a sweep job shows no bar even with progress on
    p = subprocess.run([sys.executable, "-m", "experiments.run", "-m", "workload=conversation,coding", *with_bars,
                        "hydra/launcher=basic", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == [
        f"horizon_s=30,plan_sample_size=200,planner=[single_model],throughput.enabled=False,workload={w}"
        for w in ("coding", "conversation")]
    done = [line for line in p.stdout.splitlines() if "done]" in line]
    assert len(done) == 2 and all("planner  slo_scale" not in line for line in p.stdout.splitlines())
    assert "planning + simulating" not in p.stderr


def test_quick_mode_is_read_in_one_place_and_yields_to_the_user(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    assert quick_mode()
    extra = experiment_overrides(["horizon_s=120"])
    assert "horizon_s=60" not in extra and "throughput.iters=2" in extra
    monkeypatch.setenv(ENV_VAR, "0")
    assert not quick_mode()
    sources = [p for p in PROJECT_ROOT.glob("[se]*/**/*.py") if ENV_VAR in p.read_text()]
    assert [p.relative_to(PROJECT_ROOT).as_posix() for p in sources] == ["sim/common/quick.py"]
