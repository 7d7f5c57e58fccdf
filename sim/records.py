"""Per-request records (column arrays filled during a run, one immutable DataFrame at the end) and the SimResult."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

STATUS_COMPLETED = "completed"
STATUS_DROPPED = "dropped"


@dataclass(frozen=True)
class SimResult:
    """requests: one row per request (see RecordBook.to_frame for the columns); iterations: one row per
    iteration (reference mode) or per jump over k iterations (fast mode) when record_iterations is set;
    meta: run settings, per-replica usage, GPU-seconds, wall time."""

    requests: pd.DataFrame
    iterations: pd.DataFrame | None
    meta: dict = field(default_factory=dict)


class RecordBook:
    """Structure of arrays, one slot per request and tier; written by the cascade flow as events happen.

    ttft_s is the time from the request's arrival to the first token of the FINAL answer (the tier that
    answered), so it includes earlier tiers and judging. Per-tier times: queue_s (arrival at the tier to the
    first scheduling), prefill_s (first scheduling to that tier's first token), decode_s (first token to the
    tier's last token, preempted time included), judge_s (judge latency after that tier's answer)."""

    def __init__(self, arrival_s: np.ndarray, input_tokens: np.ndarray, num_tiers: int,
                 output_tokens: np.ndarray | None = None) -> None:
        n, c = len(arrival_s), num_tiers
        self.n, self.num_tiers = n, c
        self.arrival_s = np.asarray(arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(input_tokens, dtype=np.int64)
        nan2 = lambda: np.full((n, c), np.nan)  # noqa: E731
        self.final_tier = np.full(n, -1, dtype=np.int64)
        self.tiers_visited = np.zeros(n, dtype=np.int64)
        self.final_score = np.full(n, np.nan)
        self.ttft_s = np.full(n, np.nan)
        self.completion_s = np.full(n, np.nan)
        self.output_tokens_final = np.zeros(n, dtype=np.int64)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.status = np.full(n, "", dtype=object)
        self.drop_reason = np.full(n, "", dtype=object)
        self.gate_score = nan2()
        self.enter_s = nan2()
        self.queue_s = nan2()
        self.prefill_s = nan2()
        self.decode_s = nan2()
        self.judge_s = nan2()
        self.first_token_s = nan2()
        self.replica = np.full((n, c), -1, dtype=np.int64)
        # What each tier would generate (from the workload), so metrics can compute ref(r) from the records alone.
        self.output_tokens = (np.zeros((n, c), dtype=np.int64) if output_tokens is None
                              else np.asarray(output_tokens, dtype=np.int64))

    def to_frame(self) -> pd.DataFrame:
        cols = {
            "request_id": np.arange(self.n), "arrival_s": self.arrival_s, "input_tokens": self.input_tokens,
            "final_tier": self.final_tier, "tiers_visited": self.tiers_visited, "final_score": self.final_score,
            "ttft_s": self.ttft_s, "completion_s": self.completion_s,
            "latency_s": self.completion_s - self.arrival_s, "output_tokens_final": self.output_tokens_final,
            "preemptions": self.preemptions, "status": self.status, "drop_reason": self.drop_reason,
        }
        for t in range(self.num_tiers):
            cols[f"gate_score_t{t}"] = self.gate_score[:, t]
        for name in ("enter_s", "queue_s", "prefill_s", "decode_s", "judge_s"):
            arr = getattr(self, name)
            for t in range(self.num_tiers):
                cols[f"{name}_t{t}"] = arr[:, t]
        for t in range(self.num_tiers):
            cols[f"replica_t{t}"] = self.replica[:, t]
        for t in range(self.num_tiers):
            cols[f"output_tokens_t{t}"] = self.output_tokens[:, t]
        return pd.DataFrame(cols)
