"""Per-request records (column arrays filled during a run, one immutable DataFrame at the end) and the SimResult."""
from __future__ import annotations

from array import array
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
    """One slot per request (and per request and tier), written by the cascade flow as events happen.

    ttft_s is the time from the request's arrival to the first token of the FINAL answer (the tier that
    answered), so it includes earlier tiers and judging. Per-tier times: queue_s (arrival at the tier to the
    first scheduling), prefill_s (first scheduling to that tier's first token), decode_s (first token to the
    tier's last token, preempted time included), judge_s (judge latency after that tier's answer).

    During the run the numeric slots are array.array columns, per-tier ones indexed [tier][request]: setting an
    item costs what setting a list item does (a fraction of setting a numpy scalar), while a slot takes 8 bytes
    instead of a pointer plus a float object (a million requests' records fit in a few hundred MB). to_frame()
    views them as numpy columns (float64 values are kept exactly). status and drop_reason are lists of strings."""

    def __init__(self, arrival_s: np.ndarray, input_tokens: np.ndarray, num_tiers: int,
                 output_tokens: np.ndarray | None = None, scores: np.ndarray | None = None) -> None:
        n, c = len(arrival_s), num_tiers
        self.n, self.num_tiers = n, c
        self.arrival_s = np.asarray(arrival_s, dtype=np.float64)
        self.input_tokens = np.asarray(input_tokens, dtype=np.int64)
        # final_tier is written when a request completes; its final_score, ttft_s and output_tokens_final are read
        # off the per-tier columns at that tier in to_frame (the values the flow would copy, and the same subtraction)
        self.final_tier = _ints(n, -1)
        self.tiers_visited = _ints(n, 0)
        self.completion_s = _floats(n)
        self.preemptions = _ints(n, 0)
        self.status = [""] * n
        self.drop_reason = [""] * n
        self.gate_score = [_floats(n) for _ in range(c)]
        self.enter_s = [_floats(n) for _ in range(c)]
        # A visit's first scheduling and its last token (queue_s, prefill_s and decode_s are differences of these,
        # enter_s and first_token_s, taken in to_frame)
        self.first_sched_s = [_floats(n) for _ in range(c)]
        self.done_s = [_floats(n) for _ in range(c)]
        self.judge_s = [_floats(n) for _ in range(c)]
        self.first_token_s = [_floats(n) for _ in range(c)]
        self.replica = [_ints(n, -1) for _ in range(c)]
        self.cached_tokens = None  # per tier, prompt tokens found in the prefix cache (track_cached_tokens)
        self.kv_transfer_s = None  # per tier, disaggregated tiers: KV transfer incl. link wait (track_disaggregation)
        self.prefill_replica = None  # per tier, disaggregated tiers: the prefill instance (replica_t{t}: the decode one)
        self.decode_admit_s = None  # per tier, disaggregated tiers: first admission into a decode instance's batch
        # What each tier would generate (from the workload), so metrics can compute ref(r) from the records alone.
        self.output_tokens = (np.zeros((n, c), dtype=np.int64) if output_tokens is None
                              else np.asarray(output_tokens, dtype=np.int64))
        # Each tier's answer score (the final one is the score of the tier that answered); NaN where unknown.
        self.scores = (np.full((n, c), np.nan) if scores is None else np.asarray(scores, dtype=np.float64))

    def track_cached_tokens(self) -> None:
        """Runs with prefix caching record, per tier, the prompt tokens the serving replica had cached at the
        visit's first admission (column cached_tokens_t{t}; NaN where the tier did not serve the request)."""
        self.cached_tokens = [_floats(self.n) for _ in range(self.num_tiers)]

    def track_disaggregation(self) -> None:
        """Runs with a disaggregated tier record, per tier, kv_transfer_s_t{t} (prefill end to the KV's arrival at
        the decode instance, link queueing included; 0 for a one-token answer) and prefill_replica_t{t}; NaN / -1
        where a colocated tier served the visit or none did. decode_admit_s_t{t}: when a decode instance first admitted
        the visit into its batch (its KV arrived and room freed): a disaggregated engine streams the first token to
        the client from there (sim.fidelity.corpus_disagg's client-side TTFT); NaN for a one-token answer."""
        self.kv_transfer_s = [_floats(self.n) for _ in range(self.num_tiers)]
        self.prefill_replica = [_ints(self.n, -1) for _ in range(self.num_tiers)]
        self.decode_admit_s = [_floats(self.n) for _ in range(self.num_tiers)]

    def to_frame(self) -> pd.DataFrame:
        f, i = _as_f64, _as_i64
        completion_s = f(self.completion_s)
        final_tier = i(self.final_tier)
        done = np.flatnonzero(final_tier >= 0)  # the completed requests
        at = final_tier[done]
        first = [f(col) for col in self.first_token_s]
        final_score = np.full(self.n, np.nan)
        final_score[done] = self.scores[done, at]
        ttft_s = np.full(self.n, np.nan)
        ttft_s[done] = np.stack(first)[at, done] - self.arrival_s[done]
        output_tokens_final = np.zeros(self.n, dtype=np.int64)
        output_tokens_final[done] = self.output_tokens[done, at]
        cols = {
            "request_id": np.arange(self.n), "arrival_s": self.arrival_s, "input_tokens": self.input_tokens,
            "final_tier": final_tier, "tiers_visited": i(self.tiers_visited),
            "final_score": final_score, "ttft_s": ttft_s,
            "completion_s": completion_s, "latency_s": completion_s - self.arrival_s,
            "output_tokens_final": output_tokens_final,
            "preemptions": i(self.preemptions), "status": np.array(self.status, dtype=object),
            "drop_reason": np.array(self.drop_reason, dtype=object),
        }
        for t in range(self.num_tiers):
            cols[f"gate_score_t{t}"] = f(self.gate_score[t])
        enter = [f(col) for col in self.enter_s]
        sched = [f(col) for col in self.first_sched_s]
        durations = {"enter_s": enter, "queue_s": [s - e for s, e in zip(sched, enter)],
                     "prefill_s": [ft - s for ft, s in zip(first, sched)],
                     "decode_s": [f(d) - ft for d, ft in zip(self.done_s, first)],
                     "judge_s": [f(col) for col in self.judge_s]}
        for name, per_tier in durations.items():
            for t in range(self.num_tiers):
                cols[f"{name}_t{t}"] = per_tier[t]
        for t in range(self.num_tiers):
            cols[f"replica_t{t}"] = i(self.replica[t])
        for t in range(self.num_tiers):
            cols[f"output_tokens_t{t}"] = self.output_tokens[:, t]
        if self.cached_tokens is not None:
            for t in range(self.num_tiers):
                cols[f"cached_tokens_t{t}"] = f(self.cached_tokens[t])
        if self.kv_transfer_s is not None:
            for t in range(self.num_tiers):
                cols[f"kv_transfer_s_t{t}"] = f(self.kv_transfer_s[t])
                cols[f"prefill_replica_t{t}"] = i(self.prefill_replica[t])
                cols[f"decode_admit_s_t{t}"] = f(self.decode_admit_s[t])
        return pd.DataFrame(cols)


_NAN = array("d", [float("nan")])


def _floats(n: int) -> array:
    """A float64 column of n NaN slots."""
    return _NAN * n


def _ints(n: int, fill: int) -> array:
    """An int64 column of n slots holding fill."""
    return array("q", [fill]) * n


def _as_f64(column) -> np.ndarray:
    """A float64 copy of a column (array.array or list)."""
    return np.array(column, dtype=np.float64)


def _as_i64(column) -> np.ndarray:
    return np.array(column, dtype=np.int64)
