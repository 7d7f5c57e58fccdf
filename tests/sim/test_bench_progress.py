"""`python -m sim.bench` says what it is doing on stderr while it runs, and its last stdout line stays the JSON."""
import json
import subprocess
import sys

import pytest

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


@pytest.mark.integration  # a named case of sim.bench: the simulator on a shipped scenario, in both modes
def test_named_case_reports_requests_per_second_and_matches_reference_mode():
    """The side-by-side scenario (2,000 Azure requests on one Llama-2-70B TP8 node): every request ends completed
    or dropped, the rate is requests over the median wall time, and fast mode equals reference mode."""
    from sim.bench import llama2_70b_tp8_azure2k, run_case
    from sim.simulator import simulate

    result = run_case("llama2_70b_tp8_azure2k", runs=1)
    assert result["identical"] is True and result["requests"] == 2000
    assert abs(result["requests_per_s"] - 2000 / result["wall_s"]) <= 0.01 * result["requests_per_s"]
    plan, cascade, cluster, workload, cfg = llama2_70b_tp8_azure2k()
    assert plan.gpus_per_tier() == (0, 8) and cluster.num_gpus == 8
    req = simulate(plan, cascade, cluster, workload, cfg).requests
    assert len(req) == 2000 and set(req["status"]) <= {"completed", "dropped"}
    assert (req.loc[req["status"] == "completed", "final_tier"] == 1).all()
