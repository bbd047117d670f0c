"""Refining the exported DAG by greedy hill climbing on a BIC score (linear SEM).

Gradient training with an acyclicity path ends in a local optimum: typically a few missing and
extra edges, and sometimes an edge whose reversal would let two others go. A discrete local search
from that graph fixes many of these at little cost: each move adds, deletes or reverses one edge,
keeps the graph acyclic, and is taken only when it lowers

    BIC = sum_j [ n/2 log(RSS_j / n) + log(n)/2 * |parents_j| ],

the penalised Gaussian likelihood of regressing each variable on its parents, or its Laplace
counterpart n log(mean |r_j|) (matching the default laplace_nv fit), which also tells the direction
of an edge when the noise is heavy-tailed. Only strict improvements are taken.

Coefficients come from the (D + K) x (D + K) covariance of the training rows; the Gaussian score
needs nothing else, the Laplace score one residual pass over the rows (at most MAX_ROWS). For time
series, every variable's lagged values enter every regression as fixed covariates (the K = L * D
extra columns). Shapes: N rows, D variables, K covariates. The search is plain numpy: it runs once
per export, after training, and is discrete.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class _Scorer:
    """Local scores of node j given parent sets: BIC under Gaussian or Laplace noise.

    Coefficients are least squares (from the covariance); the Laplace score evaluates their
    residuals by n log(mean |r|), which, unlike the variance, differs between the two directions of
    an edge when the noise is non-Gaussian.
    """

    def __init__(self, z: np.ndarray, d: int, fixed: list[np.ndarray], noise: str):
        self.z, self.n, self.d, self.fixed, self.noise = z, len(z), d, fixed, noise
        self.cov = z.T @ z / len(z)
        self.penalty = 0.5 * np.log(len(z))

    def _fit(self, j: int, parents) -> tuple[np.ndarray, np.ndarray]:
        regressors = np.concatenate([np.fromiter(parents, int, len(parents)), self.fixed[j]]).astype(int)
        if not len(regressors):
            return regressors, np.zeros(0)
        c_rr = self.cov[np.ix_(regressors, regressors)]
        return regressors, np.linalg.lstsq(c_rr, self.cov[regressors, j], rcond=None)[0]

    def score(self, j: int, parents) -> float:
        regressors, coef = self._fit(j, parents)
        if self.noise == "laplace":
            resid = self.z[:, j] - self.z[:, regressors] @ coef
            fit = self.n * np.log(max(np.mean(np.abs(resid)), 1e-12))
        else:
            rss = self.cov[j, j] - self.cov[regressors, j] @ coef
            fit = 0.5 * self.n * np.log(max(rss, 1e-12 * self.cov[j, j]))
        return fit + self.penalty * len(parents)

    def coefficients(self, j: int, parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Least-squares coefficients of j on (parents, its fixed covariates), as two arrays."""
        coef = self._fit(j, parents)[1]
        return coef[: len(parents)], coef[len(parents):]


MAX_ROWS = 20000  # rows used by the search (the first complete ones): the Laplace score is O(rows)
MAX_VARS = 200  # above this the search (O(D^2) candidate moves per step) is skipped: the learned DAG stands


def _reach(adj: np.ndarray) -> np.ndarray:
    """reach[i, j]: a directed path of length >= 1 leads from i to j (transitive closure)."""
    r = adj.astype(np.float64)
    for _ in range(max(1, int(np.ceil(np.log2(max(len(adj), 2)))))):
        r = np.minimum(r + r @ r, 1.0)
    return r > 0


def hill_climb(z: np.ndarray, start_DxD: np.ndarray, *, fixed: list[np.ndarray] | None = None,
               noise: str = "gaussian", max_moves: int | None = None):
    """Greedy best-move search from the DAG `start_DxD` ([i, j] != 0: i -> j).

    z: (N, D + K) centred rows of the variables then the covariates; fixed[j]: indices (>= D) of
    the covariates always in j's regression; noise: gaussian | laplace (the local score).
    Returns (dag bool (D, D), least-squares coefficients (D, D) on that DAG, moves taken, its score,
    least-squares coefficients (K, D) of the covariates).
    """
    d = start_DxD.shape[0]
    fixed = fixed if fixed is not None else [np.zeros(0, int)] * d
    scorer = _Scorer(np.asarray(z, np.float64), d, fixed, noise)
    adj = np.asarray(start_DxD) != 0
    np.fill_diagonal(adj, False)
    parents = [set(np.flatnonzero(adj[:, j]).tolist()) for j in range(d)]
    current = np.array([scorer.score(j, parents[j]) for j in range(d)])
    # gain[i, j]: score drop of toggling i in j's parent set (add if absent, delete if present).
    gain = np.full((d, d), -np.inf)

    def refresh(j):
        for i in range(d):
            if i != j:
                gain[i, j] = current[j] - scorer.score(j, parents[j] ^ {i})

    for j in range(d):
        refresh(j)
    max_moves = 4 * d * d if max_moves is None else max_moves
    tol = 1e-9 * max(1.0, float(np.abs(current).max()))
    moves = 0
    while moves < max_moves:
        reach = _reach(adj)
        # i -> j may be added if neither edge exists and j does not already reach i.
        add_ok = ~adj & ~adj.T & ~reach.T
        np.fill_diagonal(add_ok, False)
        # i -> j may be reversed if no other path leads from i to j.
        through_child = (adj.astype(np.float64) @ (reach | np.eye(d, dtype=bool)).astype(np.float64)) > adj
        rev_ok = adj & ~through_child
        candidates = {
            "add": np.where(add_ok, gain, -np.inf),
            "delete": np.where(adj, gain, -np.inf),
            "reverse": np.where(rev_ok, gain + gain.T, -np.inf),
        }
        kind, (i, j), best = max(((k, np.unravel_index(np.argmax(g), g.shape), g.max())
                                  for k, g in candidates.items()), key=lambda item: item[2])
        if not best > tol:
            break
        i, j = int(i), int(j)
        if kind == "add":
            adj[i, j] = True
            parents[j].add(i)
        elif kind == "delete":
            adj[i, j] = False
            parents[j].discard(i)
        else:
            adj[i, j], adj[j, i] = False, True
            parents[j].discard(i)
            parents[i].add(j)
        for k in {i, j}:
            current[k] = scorer.score(k, parents[k])
            refresh(k)
        moves += 1
    coef = np.zeros((d, d))
    covariate_coef = np.zeros((scorer.z.shape[1] - d, d))  # [k, j]: covariate d + k -> j
    for j in range(d):
        pa = sorted(parents[j])
        coef[pa, j], covariate_coef[fixed[j] - d, j] = scorer.coefficients(j, pa)
    return adj, coef, moves, float(current.sum()), covariate_coef


def refine(x_NxTxD: np.ndarray, mask_NxTxD: np.ndarray, starts: Sequence[np.ndarray], n_lags: int = 0,
           noise: str = "gaussian", max_rows: int = MAX_ROWS) -> list[dict] | None:
    """Hill-climb on the training windows (standardised, missing = 0) from each learned DAG in
    `starts` and from the empty graph; for each start keep the result with the lower score (ties:
    the learned start). The empty-graph search is shared by all starts and runs once.

    Two starts guard against a poor learned graph (the search from it can only move one edge at a
    time); the score decides between them, so no labels are involved. With n_lags > 0 (time
    series), every variable's lagged values x_{t-1..t-n_lags} are fixed covariates of every
    regression, so the instantaneous graph is judged after all lagged effects. Uses complete rows
    only, at most `max_rows`; None when too few remain to fit (fewer than 2 (D + K) + 10) or when
    D > MAX_VARS.
    Returns one {dag, coefficients, lagged_coefficients (n_lags, D, D), moves, rows, score, start}
    per start.
    """
    n_win, t, d = x_NxTxD.shape
    if d > MAX_VARS:
        return None
    lags = min(n_lags, t - 1)
    columns = [x_NxTxD[:, lags - lag: t - lag, :] for lag in range(lags + 1)]
    observed = [mask_NxTxD[:, lags - lag: t - lag, :] for lag in range(lags + 1)]
    k = lags * d
    z = np.concatenate(columns, axis=-1).reshape(-1, d + k).astype(np.float64)
    complete = np.concatenate(observed, axis=-1).reshape(-1, d + k).all(axis=1)
    z = z[complete][:max_rows]
    if len(z) < 2 * (d + k) + 10:
        return None
    z = z - z.mean(axis=0)
    fixed = [np.arange(d, d + k)] * d

    def search(name: str, begin: np.ndarray) -> dict:
        dag, coef, moves, score, lag_coef = hill_climb(z, begin, fixed=fixed, noise=noise)
        return {"dag": dag, "coefficients": coef.astype(np.float32), "moves": moves, "rows": int(len(z)),
                "score": score, "start": name,
                # [lag - 1, i, j]: x_{t-lag, i} -> x_{t, j}, refit alongside the refined graph.
                "lagged_coefficients": lag_coef.reshape(lags, d, d).astype(np.float32)}

    from_empty = search("empty", np.zeros((d, d)))
    return [min(search("learned", begin), from_empty, key=lambda r: r["score"]) for begin in starts]
