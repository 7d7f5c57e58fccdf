"""The learned RouteLLM-style router: a correct logistic regression, routes from prompt text only, calibrated to q_min."""
from dataclasses import replace

import numpy as np
import pytest
import scipy.optimize

from planners.base import get_planner
from planners.routellm import RouteLLMPlanner, router_report
from planners.text_router import (SoftmaxRegression, TfidfVocabulary, route_at, sufficient_tier, term_counts,
                                  tokens)
from sim.common.errors import ConfigError
from sim.workload.types import Workload

from conftest import make_problem


def test_tokens_keep_symbols_and_bigrams():
    assert tokens("Print x+1!", 2) == ["print", "x", "+", "1", "!", "print x", "x +", "+ 1", "1 !"]


def test_softmax_regression_matches_scipy_on_the_same_objective():
    rng = np.random.default_rng(3)
    texts = [f"{rng.choice(['alpha', 'beta', 'gamma'])} {rng.choice(['red', 'blue'])} item{i % 9}" for i in range(90)]
    labels = np.array([{"alpha": 0, "beta": 1, "gamma": 2}[t.split()[0]] for t in texts])
    docs = term_counts(texts)
    vocab = TfidfVocabulary.fit(docs, min_df=1)
    x = vocab.transform(docs)
    model = SoftmaxRegression.fit(x, labels, 3, l2=1.0, max_iter=500)
    assert model.converged and (model.predict_proba(x).argmax(axis=1) == labels).all()
    # Independent optimiser on the documented objective: mean cross-entropy + l2/(2n) ||W||^2.
    n, d = x.shape
    xd = x.toarray()

    onehot = np.eye(3)[labels]

    def objective(theta):
        w, b = theta[: d * 3].reshape(d, 3), theta[d * 3:]
        z = xd @ w + b
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = (np.exp(logp) - onehot) / n
        grad = np.concatenate([(xd.T @ g + w / n).ravel(), g.sum(axis=0)])
        return -logp[np.arange(n), labels].mean() + 0.5 / n * (w * w).sum(), grad

    ref = scipy.optimize.minimize(objective, np.zeros(d * 3 + 3), jac=True, method="L-BFGS-B",
                                  options={"gtol": 1e-9, "ftol": 1e-14, "maxiter": 2000})
    ours = objective(np.concatenate([model.weights.ravel(), model.bias]))[0]
    assert ours == pytest.approx(ref.fun, rel=1e-5)


def test_label_is_the_smallest_tier_meeting_the_target_else_the_last():
    scores = np.array([[80.0, 90.0, 100.0], [10.0, 75.0, 20.0], [0.0, 0.0, 0.0], [0.0, 10.0, 70.0]])
    assert sufficient_tier(scores, 70.0).tolist() == [0, 1, 2, 2]
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    assert route_at(proba, 0.5).tolist() == [0, 1] and route_at(proba, 0.95).tolist() == [2, 2]
    assert route_at(proba, 0.0).tolist() == [0, 0]


@pytest.fixture(scope="module")
def problem2():
    return make_problem(num_tiers=2, n=800, rate_rps=4.0)


def test_router_meets_q_min_on_its_planning_requests_and_is_deterministic(problem2):
    a = get_planner("routellm").plan(problem2)
    b = get_planner("routellm").plan(problem2)
    assert a.routing == "direct" and a.routes == b.routes and len(a.routes) == problem2.workload.num_requests
    assert a.estimates["quality"] >= problem2.q_min - 1e-9
    assert 0 < a.estimates["router_confidence"] < 1


def test_routes_depend_on_the_prompt_text_only(problem2):
    """No true scores at routing time: the same prompt text gets the same route, whatever the question's scores."""
    plan = get_planner("routellm").plan(problem2)
    texts = problem2.workload.meta["prompt_texts"]
    by_text = {}
    for q, tier in plan.routes:
        by_text.setdefault(texts[q], set()).add(tier)
    assert all(len(tiers) == 1 for tiers in by_text.values())
    # The prompt hint is informative: "hard" prompts go up more often than "easy" ones.
    up = {w: np.mean([t for q, t in plan.routes if f" {w} " in texts[q]]) for w in ("easy", "hard")}
    assert up["hard"] > up["easy"]


def test_higher_q_min_routes_more_requests_up():
    low = make_problem(num_tiers=2, n=800, q_min=None)
    lo, hi = low.workload.quality_bounds()
    shares = []
    for level in (0.3, 0.9):
        p = replace(low, q_min=lo + level * (hi - lo))
        plan = RouteLLMPlanner().plan(p)
        shares.append(np.mean([t for _, t in plan.routes]))
    assert shares[1] > shares[0]


def test_router_report_on_test_requests(problem2):
    plan = get_planner("routellm").plan(problem2)
    report = router_report(plan, problem2.workload)
    assert 0 <= report["router_accuracy"] <= 1 and 0 <= report["router_brier"] <= 2
    assert np.sum(report["router_confusion"]) == problem2.workload.num_requests
    assert report["router_accuracy"] > report["router_majority_accuracy"]  # beats the constant router in sample
    assert router_report(get_planner("routellm_oracle_noisy").plan(problem2), problem2.workload) == {}


def test_a_workload_without_prompt_text_is_refused(problem2):
    w = problem2.workload
    bare = Workload(w.name, w.arrival_s.copy(), w.input_tokens.copy(), w.output_tokens.copy(), w.scores.copy(),
                    w.question_ids.copy(), w.tier_models, {})
    with pytest.raises(ConfigError, match="prompt texts"):
        RouteLLMPlanner().train(bare, problem2.q_min)


@pytest.mark.parametrize("bad", [{"folds": 1}, {"l2": 0.0}, {"target_score": 150.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="planner routellm"):
        get_planner("routellm", **bad)
