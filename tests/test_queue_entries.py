"""tools/queue_entries.py: its counting loop runs the simulator unchanged (the same request table as simulate()), and
its counts agree with what the run reports on its own (every request arrives once; decode jumps as meta counts them)."""
from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from sim.bench import llama2_70b_tp8_azure2k
from sim.simulator import simulate
from tools.queue_entries import count, main


def test_counting_changes_nothing_and_counts_what_the_run_reports():
    plan, cascade, cluster, workload, cfg = llama2_70b_tp8_azure2k(0)
    workload = workload.window(0.0, float(workload.arrival_s[399]))  # the first 400 requests: a quick run
    counts, digest, res = count(plan, cascade, cluster, workload, cfg)
    plain = simulate(plan, cascade, cluster, workload, cfg, seed=0)
    pd.testing.assert_frame_equal(res.requests, plain.requests, check_exact=True)
    assert digest == hashlib.sha256(pd.util.hash_pandas_object(plain.requests, index=True).values.tobytes()).hexdigest()[:16]
    n = workload.num_requests
    assert counts["arrival"] + counts["arrival (the first: the arrivals' urgent start)"] == n
    assert counts["engine boundary: decode jump end"] == plain.meta["jumps"]
    assert counts["judge verdict"] == 0  # one serving tier: its answers are final
    # One engine: its jumps end where the next arrival cuts them (sim.runtime.flow.CascadeFlow.arm_precut), so no cut
    # leaves a stale entry behind; disarmed, the arrivals cut the jumps and the tool sorts out the stale entries.
    assert counts["engine boundary, stale (its jump was cut short)"] == 0
    with pytest.MonkeyPatch.context() as m:
        m.setattr("sim.runtime.flow.CascadeFlow.arm_precut", lambda self: False)
        cut, cut_digest, _ = count(plan, cascade, cluster, workload, cfg)
    assert cut_digest == digest and cut["engine boundary, stale (its jump was cut short)"] > 20


def test_a_request_count_below_one_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--requests", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --requests must be a positive request count, got 0"]
