"""RouteLLM-style planner with a real learned router: trained on the planning workload's prompts and scores, it
routes every request straight to one tier from its prompt text alone (no cascading, no true scores at routing time).

Label: the smallest sufficient tier, the smallest tier whose real score reaches target_score (default: q_min, the
requirement on the mean score, used as the bar for one answer); the last tier when none does. Routing rule: send a
request to the smallest tier k with P(label <= k) >= confidence. The confidence is the one knob, set as RouteLLM sets
its threshold: on the planning workload, with out-of-fold probabilities, the lowest confidence whose routed mean
score meets q_min (lowest = cheapest, as it routes downward). GPUs: proportional to the routed load with a fixed TP,
as the other RouteLLM baseline. The plan carries the route of every question that has prompt text in the
workload's quality datasets (CascadePlan.routes), so the simulator looks routes up by question id.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from sim.common.errors import ConfigError
from sim.workload.quality import workload_prompt_pool
from sim.workload.types import Workload

from planners.baselines import load_weights, proportional_gpus
from sim.spec.plan import CascadePlan
from planners import plan_cache
from planners.text_router import (RouterFeatures, SoftmaxRegression, out_of_fold_proba, route_at, router_features,
                                  sufficient_tier, term_counts)
from planners.search import SearchContext

CONFIDENCE_GRID = np.round(np.linspace(0.0, 1.0, 201), 4)
# Router features by (prompt pool, training questions, vectoriser settings): the quality levels of a sweep train on
# the same questions with other labels. A few MB each (sparse TF-IDF matrices of a few thousand prompts); the
# least recently used go first. Kept and charged by planners.plan_cache.remember; off with the planning cache
# (CASCADESIM_PLAN_CACHE_MB=0).
MAX_FEATURE_SETS = 16
_FEATURES: OrderedDict[tuple, tuple[RouterFeatures, float]] = OrderedDict()
# Fitted routers (out-of-fold probabilities and the final model) by features and labels: about 0.5 MB each.
MAX_FITS = 64
_FITS: OrderedDict[tuple, tuple[tuple, float]] = OrderedDict()
for _memo in (_FEATURES, _FITS):
    plan_cache.register_clear(_memo.clear)


@dataclass(frozen=True)
class RouterModel:
    """The trained router's view, kept on the plan (estimates["router_model"]) for its test-split report."""

    target_score: float
    confidence: float
    question_ids: np.ndarray  # (m,) every question with prompt text ("<dataset>:<id>")
    proba: np.ndarray  # (m, C) predicted P(smallest sufficient tier = k)
    routes: np.ndarray  # (m,) routed tier
    majority_label: int  # the planning workload's most common label (the constant router to beat)
    train_questions: int
    train_s: float


@dataclass(frozen=True)
class RouteLLMPlanner:
    """Learned RouteLLM-style router (TF-IDF + multinomial logistic regression on the prompt text).

    target_score: null = q_min. l2: inverse of scikit-learn's C (1.0 = its default). folds: cross-fitting folds
    for the confidence calibration. ngram: word n-grams up to this length. min_df / max_features: vocabulary."""

    name: str = "routellm"
    target_score: float | None = None
    l2: float = 1.0
    folds: int = 5
    ngram: int = 2
    min_df: int = 2
    max_features: int = 20_000
    max_iter: int = 100

    def __post_init__(self) -> None:
        if self.target_score is not None and not 0.0 <= self.target_score <= 100.0:
            raise ConfigError(f"planner {self.name}: target_score must be on the 0-100 scale (or null = q_min), "
                              f"got {self.target_score}")
        if self.l2 <= 0 or self.folds < 2 or self.ngram < 1 or self.min_df < 1 or self.max_iter < 1:
            raise ConfigError(f"planner {self.name}: need l2 > 0, folds >= 2, ngram >= 1, min_df >= 1, max_iter >= 1; "
                              f"got l2 {self.l2}, folds {self.folds}, ngram {self.ngram}, min_df {self.min_df}, "
                              f"max_iter {self.max_iter}")

    def features(self, workload: Workload, qids: np.ndarray, pool_ids: np.ndarray,
                 pool_texts: np.ndarray) -> tuple[RouterFeatures, tuple, float]:
        """(the label-independent features, their memo key, seconds charged): built once per process for equal
        prompt pool (workload_prompt_pool's ids and texts), training questions and vectoriser settings (_FEATURES)."""
        h = hashlib.sha256()
        for part in (pool_ids.tolist(), pool_texts.tolist(), qids.tolist()):
            h.update(repr(part).encode())
        key = (h.hexdigest(), self.ngram, self.min_df, self.max_features, self.folds)

        def build() -> RouterFeatures:
            pool_docs = term_counts(pool_texts.tolist(), self.ngram)
            doc_of = dict(zip(pool_ids.tolist(), pool_docs))
            missing = [q for q in qids.tolist() if q not in doc_of]
            if missing:
                raise ConfigError(f"planner {self.name}: question {missing[0]!r} of workload {workload.name!r} has no "
                                  "prompt text; a learned router needs quality.columns.prompt or a dataset with a "
                                  "prompt table")
            docs = [doc_of[q] for q in qids.tolist()]
            return router_features(docs, qids, self.folds, pool_docs, self.ngram, self.min_df, self.max_features)

        feats, charged_s = plan_cache.remember(_FEATURES, key, build, MAX_FEATURE_SETS)
        return feats, key, charged_s

    def fits(self, feats: RouterFeatures, feats_key: tuple, labels: np.ndarray, num_classes: int):
        """((out-of-fold probabilities, final model), seconds charged): the fits read the features and the labels
        only, and the labels of several quality requirements often coincide (scores come in steps: coding's are 0 or
        100, so every level of a seed has the same labels), so they are kept by labels too (_FITS)."""
        key = (feats_key, labels.tobytes(), num_classes, self.l2, self.max_iter)

        def build():
            fit = lambda x, y: SoftmaxRegression.fit(x, y, num_classes, self.l2, self.max_iter)  # noqa: E731
            oof = out_of_fold_proba(feats, labels, num_classes, fit)
            model = fit(feats.x, labels)
            unscored = oof.sum(axis=1) == 0  # a fold held every question (tiny sets): fall back to in-sample
            if unscored.any():
                oof[unscored] = model.predict_proba(feats.x[np.nonzero(unscored)[0]])
            oof.flags.writeable = False  # shared by later trains
            return oof, model

        return plan_cache.remember(_FITS, key, build, MAX_FITS)

    def train(self, workload: Workload, q_min: float) -> RouterModel:
        """Fit on the workload's distinct questions, calibrate the confidence on its requests, predict the pool."""
        t0 = time.perf_counter()
        c = workload.num_tiers
        target = q_min if self.target_score is None else float(self.target_score)
        qids, first = np.unique(workload.question_ids, return_index=True)
        pool_ids, pool_texts = workload_prompt_pool(workload.meta)
        feats, feats_key, reused_s = self.features(workload, qids, pool_ids, pool_texts)
        labels = sufficient_tier(workload.scores[first], target)
        (oof, model), fits_reused_s = self.fits(feats, feats_key, labels, c)
        reused_s += fits_reused_s
        # Confidence: the lowest whose routing of the planning requests meets q_min (request-weighted).
        row = np.searchsorted(qids, workload.question_ids)
        n = workload.num_requests
        confidence = 1.0
        for conf in CONFIDENCE_GRID:
            tier = route_at(oof[row], conf)
            if workload.scores[np.arange(n), tier].mean() >= q_min - 1e-9:
                confidence = float(conf)
                break
        proba = model.predict_proba(feats.x_pool)
        counts = np.bincount(labels[row], minlength=c)
        return RouterModel(target, confidence, pool_ids, proba, route_at(proba, confidence), int(counts.argmax()),
                           int(qids.size), time.perf_counter() - t0 + reused_s)

    def plan(self, problem) -> CascadePlan:
        t0 = time.perf_counter()
        router = self.train(problem.workload, problem.q_min)
        ctx = SearchContext(problem, parallelism_search=False)
        route_of = dict(zip(router.question_ids.tolist(), router.routes.tolist()))
        sample_tier = np.array([route_of[q] for q in ctx.sample.question_ids.tolist()], dtype=np.int64)
        w = problem.workload
        planned_quality = float(w.scores[np.arange(w.num_requests),
                                         [route_of[q] for q in w.question_ids.tolist()]].mean())
        mask = sample_tier[:, None] == np.arange(ctx.num_tiers)[None, :]
        loads = ctx.loads_from_mask(mask)
        tables = ctx.tables(loads)
        gpus = proportional_gpus(ctx, load_weights(ctx, mask))
        stats = {"solver": "lbfgs", "status": "TRAINED", "time_s": time.perf_counter() - t0,
                 "router_train_s": router.train_s, "router_train_questions": router.train_questions}
        # Direct plans carry thresholds only for display: the routes decide. Here: the target score per tier.
        th = tuple(router.target_score for _ in range(ctx.num_tiers - 1))
        est = {"quality": planned_quality, "router_confidence": router.confidence,
               "router_target_score": router.target_score, "router_model": router}
        plan = ctx.build_plan(self.name, th, tables, gpus, loads, est, stats, routing="direct")
        return replace(plan, routes=tuple(zip(router.question_ids.tolist(), router.routes.tolist())))


def router_report(plan: CascadePlan, workload: Workload) -> dict:
    """The learned router's accuracy and calibration on the simulated (test) requests; {} for other plans.

    router_accuracy: share of requests whose most probable label is their true smallest sufficient tier.
    router_route_accuracy: share routed exactly to that tier (the confidence rule trades this for quality).
    router_brier: multi-class Brier score, mean of sum_k (p_k - [label = k])^2 (0 best, 2 worst).
    router_ece: expected calibration error of the top-label probability, 10 equal-width bins.
    router_majority_accuracy: accuracy of always predicting the planning workload's most common label.
    router_confusion: counts, rows = true label, columns = routed tier.
    """
    router = plan.estimates.get("router_model")
    if not isinstance(router, RouterModel):
        return {}
    c = workload.num_tiers
    row = {q: i for i, q in enumerate(router.question_ids.tolist())}
    idx = np.array([row[q] for q in workload.question_ids.tolist()], dtype=np.int64)
    proba = router.proba[idx]
    labels = sufficient_tier(workload.scores, router.target_score)
    top = proba.argmax(axis=1)
    conf = proba.max(axis=1)
    onehot = np.eye(c)[labels]
    bins = np.minimum((conf * 10).astype(int), 9)
    hit = (top == labels).astype(float)
    ece = sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * np.mean(bins == b) for b in range(10) if (bins == b).any())
    routed = router.routes[idx]
    confusion = np.zeros((c, c), dtype=np.int64)
    np.add.at(confusion, (labels, routed), 1)
    return {
        "router_accuracy": float(hit.mean()),
        "router_route_accuracy": float((routed == labels).mean()),
        "router_brier": float(((proba - onehot) ** 2).sum(axis=1).mean()),
        "router_ece": float(ece),
        "router_majority_accuracy": float((labels == router.majority_label).mean()),
        "router_confusion": confusion.tolist(),
        "router_label_share": (np.bincount(labels, minlength=c) / labels.size).tolist(),
        "router_confidence": router.confidence,
        "router_target_score": router.target_score,
        "router_train_questions": router.train_questions,
    }
