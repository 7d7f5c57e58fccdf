"""`python -m sim.bench` says what it is doing on stderr while it runs, and its last stdout line stays the JSON."""
import json
import subprocess
import sys

from sim.common.paths import PROJECT_ROOT
from sim.common.quick import ENV_VAR


def test_bench_reports_each_stage_then_prints_json_last():
    import os

    env = {**os.environ, ENV_VAR: "1"}
    proc = subprocess.run([sys.executable, "-m", "sim.bench"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    stages = ["loading the default scenario", "timing reference and fast mode", "simulating the whole trace"]
    positions = [err.find(s) for s in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert "reference vs fast, rounds" in err  # the rounds' bar
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["identical"] is True and result["requests"] > 0
