"""A prompt has at least one token: an empty one (an engine refuses it) is a user error naming where it is,
in a trace file and in a workload handed to simulate (once it got its first token with no prefill at all)."""
from __future__ import annotations

import numpy as np
import pytest
from sim_fakes import OracleJudge, cluster, fake_factory, llama_cascade, plan, poisson_workload

from sim.common.errors import DataError
from sim.simulator import SimConfig, simulate
from sim.workload.types import Workload


def test_simulate_refuses_a_zero_token_prompt():
    w = poisson_workload(10, 1.0, 0)
    inp = w.input_tokens.copy()
    inp[3] = 0
    w = Workload(w.name, w.arrival_s.copy(), inp, w.output_tokens.copy(), w.scores.copy(), w.question_ids.copy(),
                 w.tier_models)
    with pytest.raises(DataError, match=r"1 request\(s\) with a prompt of 0 tokens \(first: request 3\)"):
        simulate(plan((1, 1)), llama_cascade(), cluster(), w, SimConfig(), cost_factory=fake_factory(),
                 judge=OracleJudge())


def test_a_trace_line_with_a_zero_token_prompt_is_named(tmp_path):
    from sim.workload.config import TraceConfig
    from sim.workload.traces import read_trace

    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0.0,12,5\n1.0,0,7\n")
    with pytest.raises(DataError, match="line 3: ContextTokens is 0; a prompt needs at least 1 token"):
        read_trace(TraceConfig(path=str(path), time_unit="s"))
