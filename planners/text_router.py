"""A prompt-text router: TF-IDF features and an L2-regularised multinomial logistic regression (numpy + scipy).

It predicts, from a request's prompt text alone, the smallest sufficient tier: the smallest tier whose real score
reaches a target score (the last tier when none does), as RouteLLM's routers predict from the prompt whether the
weak model suffices. Everything is deterministic: the vocabulary is sorted, folds come from a CRC32 of the
question id, and L-BFGS starts from zeros.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokens(text: str, ngram: int = 2) -> list[str]:
    """Lower-cased word and symbol tokens plus their n-grams up to ngram (symbols matter for code and math)."""
    words = _TOKEN.findall(text.lower())
    out = list(words)
    for n in range(2, ngram + 1):
        out += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return out


@dataclass(frozen=True)
class TfidfVocabulary:
    """Terms seen in at least min_df training prompts (the max_features most frequent), with their idf."""

    index: dict  # term -> column
    idf: np.ndarray  # (d,)
    ngram: int

    @classmethod
    def fit(cls, docs: list[Counter], ngram: int = 2, min_df: int = 2, max_features: int = 20_000) -> "TfidfVocabulary":
        """docs: term counts of each training prompt (term_counts)."""
        df = Counter()
        for d in docs:
            df.update(d.keys())
        # Sorted by (-document frequency, term) so the kept set and the column order never depend on hash order.
        kept = sorted((term for term, c in df.items() if c >= min_df), key=lambda term: (-df[term], term))[:max_features]
        n = len(docs)
        idf = np.array([np.log((1 + n) / (1 + df[term])) + 1.0 for term in kept])
        return cls({term: i for i, term in enumerate(kept)}, idf, ngram)

    def transform(self, docs: list[Counter]) -> sp.csr_matrix:
        """Rows: sublinear tf (1 + log count) x idf, L2-normalised; unseen terms are ignored."""
        indptr, cols, vals = [0], [], []
        index = self.index
        for d in docs:
            for term, c in d.items():
                k = index.get(term)
                if k is not None:
                    cols.append(k)
                    vals.append(c)
            indptr.append(len(cols))
        x = sp.csr_matrix((1.0 + np.log(np.asarray(vals, dtype=np.float64)), np.asarray(cols, dtype=np.int64),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(indptr) - 1, len(self.idf)))
        x.sort_indices()  # canonical column order inside rows (the Counter gave first-occurrence order)
        x = x.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x


def term_counts(texts, ngram: int = 2) -> list[Counter]:
    """Each text's token counts, computed once and shared by every fit and prediction."""
    return [Counter(tokens(t, ngram)) for t in texts]


@dataclass(frozen=True)
class SoftmaxRegression:
    """Multinomial logistic regression: weights (d, K) and bias (K,) over the classes it was fitted on."""

    weights: np.ndarray
    bias: np.ndarray
    classes: np.ndarray  # (K,) class labels (tier indices)
    converged: bool

    @classmethod
    def fit(cls, x: sp.csr_matrix, y: np.ndarray, num_classes: int, l2: float = 1.0, max_iter: int = 100) -> "SoftmaxRegression":
        """Minimise mean cross-entropy + l2/(2n) ||W||^2 (scikit-learn's C = 1/l2); the bias is not penalised.
        A class absent from y gets probability ~0 through a large negative bias, not a fitted weight."""
        n, d = x.shape
        present = np.unique(y)
        k = present.size
        if k == 1:  # one class: nothing to learn
            bias = np.full(num_classes, -30.0)
            bias[present[0]] = 0.0
            return cls(np.zeros((d, num_classes)), bias, np.arange(num_classes), True)
        yi = np.searchsorted(present, y)
        onehot = np.zeros((n, k))
        onehot[np.arange(n), yi] = 1.0
        lam = l2 / n

        def loss_grad(theta):
            w = theta[: d * k].reshape(d, k)
            b = theta[d * k:]
            z = x @ w + b
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            p = np.exp(logp)
            loss = -(onehot * logp).sum() / n + 0.5 * lam * (w * w).sum()
            g = (p - onehot) / n
            gw = np.asarray(x.T @ g) + lam * w
            return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])

        theta, converged = lbfgs(loss_grad, np.zeros(d * k + k), max_iter)
        w = np.zeros((d, num_classes))
        b = np.full(num_classes, -30.0)
        w[:, present] = theta[: d * k].reshape(d, k)
        b[present] = theta[d * k:]
        return cls(w, b, np.arange(num_classes), converged)

    def predict_proba(self, x: sp.csr_matrix) -> np.ndarray:
        z = x @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def lbfgs(loss_grad, x0: np.ndarray, max_iter: int, memory: int = 10, gtol: float = 1e-6) -> tuple[np.ndarray, bool]:
    """Minimise a smooth convex function: L-BFGS two-loop recursion with an Armijo backtracking line search.
    Written out rather than scipy's L-BFGS-B, whose bound handling on this shared machine spent 10x longer in BLAS
    threads than the whole fit needs; plain numpy vector operations keep it fast and deterministic. Inner products
    are elementwise sums, not BLAS dot, for the same reason (multithreaded ddot spins on a busy machine)."""
    dot = lambda a, b: float(np.multiply(a, b).sum())  # noqa: E731
    x = x0.copy()
    f, g = loss_grad(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.abs(g).max() < gtol:
            return x, True
        q = g.copy()
        alphas = []
        for s_i, y_i in zip(reversed(s_hist), reversed(y_hist)):
            a = dot(s_i, q) / dot(y_i, s_i)
            alphas.append(a)
            q -= a * y_i
        if s_hist:
            q *= dot(s_hist[-1], y_hist[-1]) / dot(y_hist[-1], y_hist[-1])
        else:
            q /= max(np.sqrt(dot(g, g)), 1e-12)
        for (s_i, y_i), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += s_i * (a - dot(y_i, q) / dot(y_i, s_i))
        direction = -q
        slope = dot(g, direction)
        if slope >= 0:  # not a descent direction (numerical): restart from the gradient
            s_hist.clear(), y_hist.clear()
            direction, slope = -g / max(np.sqrt(dot(g, g)), 1e-12), -np.sqrt(dot(g, g))
        step = 1.0
        for _ in range(40):
            x_new = x + step * direction
            f_new, g_new = loss_grad(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            return x, False
        s_vec, y_vec = x_new - x, g_new - g
        if dot(s_vec, y_vec) > 1e-12:
            s_hist.append(s_vec)
            y_hist.append(y_vec)
            if len(s_hist) > memory:
                s_hist.pop(0), y_hist.pop(0)
        converged = f - f_new <= 1e-10 * max(1.0, abs(f))
        x, f, g = x_new, f_new, g_new
        if converged:
            return x, True
    return x, False


def sufficient_tier(scores: np.ndarray, target_score: float) -> np.ndarray:
    """(n,) smallest tier whose real score reaches target_score; the last tier when none does (the largest model
    is then the best bet, as in a cascade that forwards every failing answer)."""
    ok = scores >= target_score
    ok[:, -1] = True
    return ok.argmax(axis=1).astype(np.int64)


def route_at(proba: np.ndarray, confidence: float) -> np.ndarray:
    """(n,) the smallest tier k with P(sufficient tier <= k) >= confidence: higher confidence routes upward. The
    last tier's cumulative probability is 1, so every request gets a tier."""
    cum = np.cumsum(proba, axis=1)
    cum[:, -1] = 1.0
    return (cum >= confidence - 1e-12).argmax(axis=1).astype(np.int64)


def fold_of(question_ids: np.ndarray, folds: int) -> np.ndarray:
    """Deterministic fold of each question (CRC32 of its id), independent of order and of Python's hash seed."""
    return np.array([zlib.crc32(q.encode()) % folds for q in question_ids.tolist()], dtype=np.int64)


@dataclass(frozen=True)
class RouterFeatures:
    """What the router's fits read besides the labels: per cross-fitting fold, the vocabulary of its training
    questions with their TF-IDF matrix and its held-out questions' matrix (None for a fold that is empty or holds
    every question); the vocabulary and matrix of all training questions, and the prompt pool's matrix."""

    folds: tuple  # per fold: (held-out mask, training rows, vocabulary, x_train, x_held_out) or None
    vocab: TfidfVocabulary
    x: sp.csr_matrix
    x_pool: sp.csr_matrix


def router_features(docs: list[Counter], question_ids: np.ndarray, folds: int, pool_docs: list[Counter],
                    ngram: int = 2, min_df: int = 2, max_features: int = 20_000) -> RouterFeatures:
    """The label-independent part of out_of_fold_proba and the final fit, computed once: a router trained at several
    quality requirements on the same questions differs only in its labels."""
    fold = fold_of(question_ids, folds)
    per_fold = []
    for f in range(folds):
        test = fold == f
        if not test.any() or test.all():
            per_fold.append(None)
            continue
        train = np.nonzero(~test)[0]
        train_docs = [docs[i] for i in train]
        vocab = TfidfVocabulary.fit(train_docs, ngram, min_df, max_features)
        per_fold.append((test, train, vocab, vocab.transform(train_docs),
                         vocab.transform([docs[i] for i in np.nonzero(test)[0]])))
    vocab = TfidfVocabulary.fit(docs, ngram, min_df, max_features)
    return RouterFeatures(tuple(per_fold), vocab, vocab.transform(docs), vocab.transform(pool_docs))


def out_of_fold_proba(features: RouterFeatures, labels: np.ndarray, num_classes: int, fit) -> np.ndarray:
    """Probabilities of each training question from a model that did not see it (k-fold cross-fitting), so the
    routing confidence is calibrated on predictions as unseen test prompts will get them. fit(x, y) -> a model with
    predict_proba; rows of a fold that held every question stay 0."""
    proba = np.zeros((features.x.shape[0], num_classes))
    for part in features.folds:
        if part is None:
            continue
        test, train, _, x_train, x_test = part
        proba[test] = fit(x_train, labels[train]).predict_proba(x_test)
    return proba
