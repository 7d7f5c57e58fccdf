"""Evaluation protocol of the main job: a planning/test split per seed, repeats over seeds, mean and 95% CI per metric.

Planners see the planning split: the earlier `split.plan_fraction` of the scenario's window, whose requests are bound
only to a random `split.question_fraction` of the quality dataset's questions. Metrics come from the test split: the
rest of the window (re-timed to start at 0), bound only to the other questions. Each split keeps its own real arrival
rate, so a planner plans from the planning window's statistics and is scored on a later window it has not seen.
Seed k of `seeds` (the run's seed + k) varies the question binding, the question partition and the simulator's
streams (judge noise and latency); the trace's arrival times are the trace's own in every seed.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

import numpy as np
from omegaconf import DictConfig

from experiments.inputs import SplitSpec, run_seeds, split_spec, trace_window  # noqa: F401 (the protocol's settings, parsed there)
from experiments.scenario import Scenario, build_scenario, resolve_q_min
from experiments.stats import bounded_outcome, mean_ci95, outcome, paired_ratio_ci95, ratio_bound
from sim.common.errors import ConfigError

# Per-planner metrics reported as mean, ci95 and per-seed values (summary.json, the printed table, aggregate).
SEED_METRICS = ("slo_scale", "slo_scale_in_sample", "throughput_rps", "throughput_replan_rps", "quality",
                "quality_in_sample", "gpu_s_per_request", "p95_latency_s", "completed_rps", "dropped")
# SLO attainment curve (the paper's end-to-end figure): the share of test requests finishing within s x ref(r), at
# these SLO scales s; a dropped request never attains. Reported per seed as attain_at_<s>, combined like the others.
ATTAINMENT_SCALES = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0)
ATTAINMENT_METRICS = tuple(f"attain_at_{s:g}" for s in ATTAINMENT_SCALES)
# A request served alone on the reference deployment finishes at its reference latency, which the simulator's clock
# and ref(r)'s closed form round differently (about 1e-15 relative): it attains scale 1 whichever way the rounding
# falls. Without this tolerance 48 of 2,861 such requests in a RouteLLM run were decided by rounding alone.
ATTAINMENT_RTOL = 1e-9


def attainment_shares(ratio: np.ndarray) -> dict:
    """attain_at_<s> for each s of ATTAINMENT_SCALES: the share of ratios (latency / ref(r); inf for a dropped
    request) at most s, within a relative ATTAINMENT_RTOL."""
    ratio = np.asarray(ratio, dtype=np.float64)
    return {key: float(np.mean(ratio <= s * (1.0 + ATTAINMENT_RTOL))) for key, s in zip(ATTAINMENT_METRICS,
                                                                                       ATTAINMENT_SCALES)}


# Metrics only some planners report (the learned router's accuracy, CascadeServe's gear switches): combined over
# seeds like the others where the planner has them.
PLANNER_SEED_METRICS = ("router_accuracy", "router_brier", "gear_switches")
REFERENCE_PLANNER = "cascadia"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuestionSplitBinder:
    """Binds requests before the split boundary to planning questions and the others to test questions
    (uniformly with replacement inside each part), for sim.workload.build_workload(bind_questions=...).

    window_s: the scenario's window in the workload's own time units (None: the whole workload)."""

    plan_fraction: float
    question_fraction: float
    entropy: tuple[int, int]  # (split.seed, run seed)
    window_s: float | None

    def partition(self, num_questions: int) -> tuple[np.ndarray, np.ndarray]:
        """(planning, test) indices into the question pool: disjoint, each non-empty."""
        if num_questions < 2:
            raise ConfigError(f"the question split needs at least 2 questions in the pool, got {num_questions}")
        perm = np.random.default_rng(np.random.SeedSequence(list(self.entropy))).permutation(num_questions)
        k = min(max(int(round(self.question_fraction * num_questions)), 1), num_questions - 1)
        if min(k, num_questions - k) == 1:
            side = "planning" if k == 1 else "test"
            fix = ("move split.question_fraction towards 0.5" if self.question_fraction != 0.5
                   else "use a quality dataset (or subsets) with more questions")
            _log.warning(f"split.question_fraction {self.question_fraction:g} leaves 1 question of {num_questions} "
                         f"for the {side} split: every {side} request asks it, so that split's quality and answer "
                         f"lengths are one question's; {fix}")
        return np.sort(perm[:k]), np.sort(perm[k:])

    def __call__(self, arrival_s: np.ndarray, pool_ids: np.ndarray, rng: np.random.Generator):
        plan_q, test_q = self.partition(pool_ids.size)
        start = float(arrival_s[0])
        span = self.window_s if self.window_s is not None else float(arrival_s[-1]) - start
        n_plan = int(np.searchsorted(arrival_s, start + self.plan_fraction * span, side="left"))
        qidx = np.concatenate([plan_q[rng.integers(0, plan_q.size, n_plan)],
                               test_q[rng.integers(0, test_q.size, arrival_s.size - n_plan)]])
        info = {"plan_requests": n_plan, "plan_questions": pool_ids[plan_q].tolist(),
                "test_questions": pool_ids[test_q].tolist()}
        return qidx, info


@dataclass(frozen=True)
class SeedSplit:
    """The scenarios of one seed: `plan` is what planners see, `test` what metrics come from (the same object
    when the split is off)."""

    seed: int
    plan: Scenario
    test: Scenario
    boundary_s: float | None  # split time in the unsplit scenario's clock (None: no split)

    @property
    def enabled(self) -> bool:
        return self.boundary_s is not None


def seed_split(cfg: DictConfig, seed: int) -> SeedSplit:
    spec = split_spec(cfg)
    if not spec.enabled:
        sc = build_scenario(cfg, seed=seed)
        return SeedSplit(seed, sc, sc, None)
    if cfg.workload.get("phases"):
        raise ConfigError(f"split.enabled is not supported for the phased workload {cfg.workload.name!r} (its "
                          "phases are the drift under test); set split.enabled=false and plan on a first window "
                          "with replan.plan_window_s")
    part = trace_window(cfg)
    # the scenario's window in the unscaled workload's time (the binder sees arrival times before the rate change)
    if part is not None:
        window = part[1] - part[0]
    else:
        window = None if cfg.horizon_s is None else float(cfg.horizon_s) * float(cfg.rate_scale)
    binder = QuestionSplitBinder(float(spec.plan_fraction), float(spec.question_fraction), (spec.seed, seed), window)
    full = build_scenario(cfg, seed=seed, bind_questions=binder)
    w = full.workload
    n_plan = min(int(w.meta["binding"]["plan_requests"]), w.num_requests)
    start = float(w.arrival_s[0])
    span = full.extras["window_s"] if full.extras.get("window_s") is not None else w.duration_s
    boundary = start + spec.plan_fraction * span
    plan_w = w.take(np.arange(n_plan))
    test_w = w.take(np.arange(n_plan, w.num_requests))
    if plan_w.num_requests < 2 or test_w.num_requests < 2:
        raise ConfigError(f"split.plan_fraction {spec.plan_fraction:g} leaves {plan_w.num_requests} planning and "
                          f"{test_w.num_requests} test request(s) in the window; each needs at least 2, so "
                          f"{_split_advice(cfg, spec, w, boundary)}")
    test_w = test_w.with_arrivals(test_w.arrival_s - boundary)
    q_min = resolve_q_min(cfg, plan_w)  # the requirement is set on what the planner sees
    plan = replace(full, workload=plan_w, q_min=q_min)
    test = replace(full, workload=test_w, q_min=q_min)
    return SeedSplit(seed, plan, test, boundary)


def _split_advice(cfg: DictConfig, spec: SplitSpec, w, boundary: float) -> str:
    """What would give both sides two requests; each remedy only where it can help (a horizon past the trace's end
    needs shortening, not widening; plan_fraction 0.5 cannot move towards 0.5)."""
    last = float(w.arrival_s[-1])
    if cfg.horizon_s is not None and boundary > last:
        span = last - float(w.arrival_s[0])
        return (f"horizon_s = {float(cfg.horizon_s):g} s is longer than the {span:.4g} s of arrivals the workload has "
                f"at rate_scale {float(cfg.rate_scale):g}, which puts the split boundary after the last request; set "
                f"horizon_s to at most {span:.4g}")
    advice = ["widen horizon_s" if cfg.horizon_s is not None else "use a longer trace window"]
    if spec.plan_fraction != 0.5:
        advice.append("move plan_fraction towards 0.5")
    return " or ".join(advice)


def throughput_cap_rps(scenario: Scenario, tcfg) -> float:
    """The highest throughput the bisection can report (its hi factor on the first horizon_s seconds of the
    scenario's workload, the test split): a throughput there is a lower bound."""
    start = float(scenario.workload.arrival_s[0])
    return float(tcfg.hi) * scenario.workload.window(start, start + float(tcfg.horizon_s)).rate_rps


@functools.lru_cache(maxsize=None)
def scenario_cap_rps(experiment: str, workload: str, rate_scale: float) -> float:
    """The bisection's cap of a finished run known only by its table row (experiment, workload, load): its config
    composed again (the experiment's own throughput settings), the test split's cap. The trace's arrival times are
    the same in every seed, so one seed stands for all."""
    from hydra import compose, initialize_config_dir

    from experiments.config import register_configs
    from sim.common.paths import CONF_DIR

    register_configs()
    overrides = [f"workload={workload}", f"rate_scale={rate_scale}", "hydra.mode=RUN"]
    if experiment and experiment != "default" and (CONF_DIR / "experiment" / f"{experiment}.yaml").exists():
        overrides.insert(0, f"experiment={experiment}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return throughput_cap_rps(seed_split(cfg, int(cfg.seed)).test, cfg.throughput)


def split_meta(split: SeedSplit) -> dict:
    """Sizes of the two splits (summary.json's scenario.split)."""
    if not split.enabled:
        return {"enabled": False}
    b = split.test.workload.meta["binding"]
    return {"enabled": True, "boundary_s": split.boundary_s,
            "plan_requests": split.plan.workload.num_requests, "test_requests": split.test.workload.num_requests,
            "plan_rate_rps": split.plan.workload.rate_rps, "test_rate_rps": split.test.workload.rate_rps,
            "plan_questions": len(b["plan_questions"]), "test_questions": len(b["test_questions"])}


def combine_seeds(runs: list[dict]) -> dict:
    """One planner's record over seeds: every SEED_METRICS key becomes the mean over seeds, with `<key>_ci95`
    (95% bootstrap CI of the mean) and `<key>_per_seed`; other keys (plan, tier shares) are the first seed's."""
    out = dict(runs[0])
    for key in SEED_METRICS + tuple(k for k in PLANNER_SEED_METRICS + ATTAINMENT_METRICS if k in runs[0]):
        values = [float(r.get(key, float("nan"))) for r in runs]
        stats = mean_ci95(values)
        out[key], out[f"{key}_ci95"], out[f"{key}_per_seed"] = stats["mean"], stats["ci95"], values
    out["seeds"] = [r["seed"] for r in runs]
    out["details_seed"] = runs[0]["seed"]
    if "tier_deployment" in runs[0]:  # each seed plans anew: a tier's deployment per seed, e.g. "P2:D6|P2:D6|colocated"
        out["tier_deployment"] = ["|".join(r["tier_deployment"][t] for r in runs)
                                  for t in range(len(runs[0]["tier_deployment"]))]
    # A seed's throughput at the bisection's cap is a lower bound, and so is any mean that includes it.
    out["throughput_at_cap_per_seed"] = [bool(r.get("throughput_at_cap", False)) for r in runs]
    out["throughput_lower_bound"] = any(out["throughput_at_cap_per_seed"])
    return out


def versus_reference(planners: dict, reference: str = REFERENCE_PLANNER) -> dict:
    """Per baseline, the paired ratios against the reference planner over seeds: baseline SLO scale / reference
    SLO scale and reference throughput / baseline throughput (> 1: the reference is better), with 95% CIs and
    the outcome for the reference (a CI containing 1 is a tie)."""
    if reference not in planners:
        return {}
    ref = planners[reference]
    out = {}
    for name, p in planners.items():
        if name == reference:
            continue
        slo = paired_ratio_ci95(p["slo_scale_per_seed"], ref["slo_scale_per_seed"])
        thr = paired_ratio_ci95(ref["throughput_rps_per_seed"], p["throughput_rps_per_seed"])
        bound = ratio_bound(ref.get("throughput_at_cap_per_seed", []), p.get("throughput_at_cap_per_seed", []))
        out[name] = {"slo_ratio": slo["mean"], "slo_ratio_ci95": slo["ci95"], "slo_outcome": decide(slo),
                     "throughput_ratio": thr["mean"], "throughput_ratio_ci95": thr["ci95"],
                     "throughput_ratio_bound": bound, "throughput_outcome": bounded_outcome(decide(thr), bound),
                     "n": slo["n"]}
    return out


def decide(ratio: dict) -> str:
    """Win/tie/loss for the reference from a paired ratio (> 1: the reference is better). Fewer than two paired
    seeds give a zero-width interval, which is no evidence of a difference: a tie."""
    if ratio["n"] < 2:
        return "tie"
    return outcome(ratio["ci95"], null=1.0)


def format_mean_ci(mean: float, ci95, lower_bound: bool = False) -> str:
    """"mean [lo, hi]"; a lower bound (a throughput at the bisection's cap in some seed) reads ">=mean [lo, hi]"."""
    if not np.isfinite(mean):
        return "nan"
    lo, hi = ci95
    return f"{'>=' if lower_bound else ''}{mean:.3g} [{lo:.3g}, {hi:.3g}]"
