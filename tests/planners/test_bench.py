"""The planner benchmark runs end to end and ends with its JSON line (benchmark marker: not in the default run)."""
import json

import pytest

from planners.bench import main


@pytest.mark.benchmark
def test_bench_json_line(capsys):
    assert main(["--skip-sim"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    data = json.loads(last)
    assert set(data["plan_s"]) == {"32", "80", "1024"}
    # Planning time is the benchmark's printed figure, never asserted: a loaded machine would fail a limit here.
    assert all(v > 0 for v in data["plan_s"].values())
    assert set(data["plan_cpu_s"]) == set(data["plan_s"]) and all(v > 0 for v in data["plan_cpu_s"].values())
    assert set(data["plan_disaggregation_s"]) == set(data["plan_s"])  # the search that may disaggregate, timed too
    assert all(v > 0 for v in data["plan_disaggregation_cpu_s"].values())
    assert data["bruteforce_gap_pct"] <= 5
