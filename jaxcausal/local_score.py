"""Local scores for the order search: each variable's best parents among a candidate set.

Grow-shrink on the covariance (sufficient statistics), batched over problems, and the Laplace
score from residuals; `search.py` moves variables through causal orders on top of these.
Shapes: n rows, D variables, A = D + L*D design columns (the variables, then their lags); a
problem is one (target, candidate set) pair, batched as rows of (B, A) masks.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

NOISES = ("gauss_nv", "gauss_ev", "laplace")
LOCAL_ALL = 150  # designs up to this many columns consider every column a potential parent


@dataclasses.dataclass
class Design:
    """The rows a search scores: z (n, A) centred columns, cov (A + 1, A + 1) with a null column.

    The extra column A has unit variance and no covariance: padded parent slots point at it.
    allowed[i, j]: column i may be a parent of variable j (prior knowledge, no self loops);
    required[i, j]: it must be; local[i, j]: i is a potential parent (a superset of j's parents).
    """

    z: np.ndarray
    d: int
    pen: float
    allowed: np.ndarray
    required: np.ndarray
    local: np.ndarray
    cov: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self):
        n, a = self.z.shape
        cov = np.zeros((a + 1, a + 1))
        cov[:a, :a] = self.z.T @ self.z / n
        cov[a, a] = 1.0
        self.cov = cov
        self.cache: dict = {}  # (noise, sigma2, target, candidate bits) -> its grow-shrink result
        self.zpad = np.concatenate([self.z, np.zeros((n, 1))], axis=1)

    def __getstate__(self) -> dict:  # a copy sent to a worker process starts with an empty cache
        return {**self.__dict__, "cache": {}}

    def with_own_cache(self) -> Design:
        """This design with an empty cache of its own. A fit depends in its last bits on the batch it
        was computed in, so a search that starts empty gives the same answer wherever it runs."""
        fresh = copy.copy(self)
        fresh.cache = {}
        return fresh

    @property
    def n(self) -> int:
        return self.z.shape[0]

    @property
    def a(self) -> int:
        return self.z.shape[1]

    def fit(self, targets: np.ndarray, candidates: np.ndarray, noise: str, sigma2: float = 1.0) -> Fit:
        """Parents of each target among its candidate columns: linear grow-shrink (a nonlinear
        design, `nonlinear.py`, overrides this and `n_params`)."""
        return grow_shrink(self, targets, candidates, noise, sigma2)

    def n_params(self, j: int, parents) -> float:
        """Coefficients of variable j's fit on `parents`: one per parent here."""
        return float(len(parents))


def make_design(z: np.ndarray, d: int, *, penalty_discount: float = 2.0, allowed: np.ndarray | None = None,
                required: np.ndarray | None = None) -> Design:
    """A Design from rows z (n, A) of the D variables then their lags; columns are centred here."""
    z = np.asarray(z, np.float64)
    z = z - z.mean(axis=0)
    n, a = z.shape
    base = np.ones((a, d), bool)
    base[np.arange(d), np.arange(d)] = False
    allowed = base if allowed is None else base & np.asarray(allowed, bool)
    required = np.zeros((a, d), bool) if required is None else np.asarray(required, bool) & allowed
    local = allowed & (potential_parents(z, d) | required)
    return Design(z, d, penalty_discount * 0.5 * np.log(n), allowed, required, local)


def potential_parents(z: np.ndarray, d: int, alpha_z: float = 3.3) -> np.ndarray:
    """(A, D) bool: columns whose partial correlation with variable j, given all other columns, is
    not negligible (Fisher z above alpha_z, about p < 1e-3); all columns for small designs.

    The parents of j are in its Markov blanket, which under faithfulness is this set, so the search
    loses nothing by considering only these candidates, and its cost no longer grows as D^2 per move.
    """
    n, a = z.shape
    if a <= LOCAL_ALL or n <= a + 10:
        return np.ones((a, d), bool)
    sd = z.std(axis=0)
    corr = (z.T @ z) / n / np.outer(sd, sd)
    precision = np.linalg.inv(corr + 1e-6 * np.eye(a))
    diag = np.sqrt(np.diag(precision))
    partial = -precision / np.outer(diag, diag)
    stat = np.abs(np.arctanh(np.clip(partial, -0.999999, 0.999999))) * np.sqrt(n - a - 1)
    return stat[:, :d] > alpha_z


@dataclasses.dataclass
class Fit:
    """Grow-shrink results for B problems: parents (B, K) column indices (A = none), coef (B, K),
    score (B,) local scores, rss (B,) residual variances, mean_abs (B,) mean absolute residuals."""

    parents: np.ndarray
    coef: np.ndarray
    score: np.ndarray
    rss: np.ndarray
    mean_abs: np.ndarray


def grow_shrink(design: Design, targets: np.ndarray, candidates: np.ndarray, noise: str,
                sigma2: float = 1.0) -> Fit:
    """Parents of each target among its candidate columns ((B, A) bool), by grow then shrink.

    Grow adds, one at a time, the candidate whose addition lowers the local score most (through an
    incremental Gram-Schmidt on the covariance: O(B K A) per step); shrink then drops parents while
    that lowers it. Required parents are added first and never dropped.
    """
    cov, a, n, pen = design.cov, design.a, design.n, design.pen
    targets = np.asarray(targets, int)
    b = len(targets)
    required = design.required[:, targets].T & candidates
    candidates = candidates | required
    k_max = max(1, int(candidates.sum(axis=1).max(initial=0)))
    # Only the candidate columns and the targets are ever read: the elimination runs on those C
    # columns (tens under the partial-correlation screen), not all A (O(B K C) per step, not O(B K A)).
    read = candidates.any(axis=0)
    read[targets] = True
    cols = np.flatnonzero(read)
    at_target = np.searchsorted(cols, targets)
    cand = candidates[:, cols]
    cov_cc = cov[np.ix_(cols, cols)]
    diag = np.diag(cov_cc)
    r = cov_cc[at_target]  # cov(target, column | parents so far)
    v = np.broadcast_to(diag, (b, len(cols))).copy()  # var(column | parents so far)
    rv = cov[targets, targets].copy()
    floor = 1e-10 * np.maximum(diag, 1e-300)
    # basis[:, s]: the orthonormalised column added at step s (zero for rows that added none then).
    basis = np.zeros((b, min(k_max, 8), len(cols)))
    steps = 0
    chosen = np.zeros((b, len(cols)), bool)
    count = np.zeros(b, int)
    rows = np.arange(b)
    active = np.ones(b, bool)

    def add(sel: np.ndarray, col: np.ndarray):  # col: positions in cols
        nonlocal basis, steps
        if steps == basis.shape[1]:
            basis = np.concatenate([basis, np.zeros_like(basis)], axis=1)
        u = cov_cc[col] - np.einsum("bk,bka->ba", basis[sel, :steps, col], basis[sel, :steps])
        u = u / np.sqrt(np.maximum(v[sel, col], floor[col]))[:, None]
        ut = u[np.arange(len(sel)), at_target[sel]]
        r[sel] -= ut[:, None] * u
        v[sel] -= u * u
        rv[sel] -= ut * ut
        basis[sel, steps] = u
        steps += 1
        chosen[sel, col] = True
        count[sel] += 1

    pending_required = required[:, cols]
    while True:  # required parents first
        pending = pending_required & ~chosen
        sel = np.flatnonzero(pending.any(axis=1))
        if not len(sel):
            break
        add(sel, np.argmax(pending[sel], axis=1))
    for _ in range(k_max):
        ok = cand & ~chosen & (v > floor)
        gain_sq = np.where(ok, r * r / np.maximum(v, floor), 0.0)
        best = np.argmax(gain_sq, axis=1)
        drop = gain_sq[rows, best]
        if noise == "gauss_ev":
            gain = n * drop / (2 * sigma2) - pen
        else:
            gain = 0.5 * n * (np.log(np.maximum(rv, 1e-300)) - np.log(np.maximum(rv - drop, 1e-300))) - pen
        active &= (gain > 1e-9) & ok[rows, best] & (count < k_max)
        sel = np.flatnonzero(active)
        if not len(sel):
            break
        add(sel, best[sel])
    # Chosen columns first (in index order), padded with the null column A to the widest set.
    width = max(1, int(count.max(initial=0)))
    parents = np.sort(np.where(chosen, cols, a), axis=1)[:, :width]
    return _shrink(design, targets, parents, required, noise, sigma2)


def local_fits(design: Design, targets, candidates: np.ndarray, noise: str, sigma2: float = 1.0) -> Fit:
    """`grow_shrink` through the design's cache: a (target, candidate set) pair met before (later
    sweeps revisit most of them) is not fitted again."""
    targets = np.asarray(targets, int)
    cands = candidates & design.local[:, targets].T & design.allowed[:, targets].T
    keys = [(noise, sigma2, int(t), row.tobytes()) for t, row in zip(targets, np.packbits(cands, axis=1))]
    cache = design.cache
    miss = [i for i, k in enumerate(keys) if k not in cache]
    if miss:
        fit = design.fit(targets[miss], cands[miss], noise, sigma2)
        for slot, i in enumerate(miss):
            real = fit.parents[slot] < design.a
            cache[keys[i]] = (fit.parents[slot][real], fit.coef[slot][real], fit.score[slot], fit.rss[slot],
                              fit.mean_abs[slot])
    hits = [cache[k] for k in keys]
    width = max(1, max(len(h[0]) for h in hits))
    parents = np.full((len(keys), width), design.a)
    coef = np.zeros((len(keys), width))
    for i, h in enumerate(hits):
        parents[i, : len(h[0])], coef[i, : len(h[0])] = h[0], h[1]
    return Fit(parents, coef, *(np.array([h[k] for h in hits]) for k in (2, 3, 4)))


def _regress(design: Design, targets: np.ndarray, parents: np.ndarray):
    """Least squares of each target on its parents (padding = the null column): (inverse of the
    parents' covariance (B, K, K), coefficients (B, K), residual variance (B,))."""
    cov = design.cov
    real = parents < design.a
    # Padded slots form an identity block, so they neither fit nor couple to the real parents.
    c_pp = np.where(real[:, :, None] & real[:, None, :], cov[parents[:, :, None], parents[:, None, :]],
                    np.eye(parents.shape[1]))
    c_pt = cov[parents, targets[:, None]]
    inv = np.linalg.inv(c_pp)
    coef = np.einsum("bij,bj->bi", inv, c_pt)
    rv = cov[targets, targets] - np.einsum("bi,bi->b", c_pt, coef)
    return inv, coef, np.maximum(rv, 1e-12 * cov[targets, targets])


def _shrink(design: Design, targets, parents, required, noise, sigma2) -> Fit:
    a, n, pen = design.a, design.n, design.pen
    rows = np.arange(len(targets))
    while parents.shape[1]:
        inv, coef, rv = _regress(design, targets, parents)
        real = parents < a
        if not real.any():
            break
        keep = required[rows[:, None], np.minimum(parents, a - 1)] & real
        rv_without = rv[:, None] + coef ** 2 / np.einsum("bii->bi", inv)  # RSS with parent k dropped
        if noise == "gauss_ev":
            gain = pen - n * (rv_without - rv[:, None]) / (2 * sigma2)
        else:
            gain = pen - 0.5 * n * (np.log(rv_without) - np.log(rv[:, None]))
        gain = np.where(real & ~keep, gain, -np.inf)
        best = np.argmax(gain, axis=1)
        sel = np.flatnonzero(gain[rows, best] > 1e-9)
        if not len(sel):
            break
        parents[sel, best[sel]] = a
    # Compact the padding to the right, then fit and score.
    order = np.argsort(parents >= a, axis=1, kind="stable")
    parents = np.take_along_axis(parents, order, axis=1)
    width = max(1, int((parents < a).sum(axis=1).max(initial=0)))
    parents = parents[:, :width]
    _, coef, rv = _regress(design, targets, parents)
    n_par = (parents < a).sum(axis=1)
    mean_abs = mean_abs_residual(design, targets, parents, coef) if noise == "laplace" else np.full(len(rv), np.nan)
    if noise == "gauss_nv":
        score = 0.5 * n * np.log(rv)
    elif noise == "gauss_ev":
        score = n * rv / (2 * sigma2)
    else:
        score = n * np.log(mean_abs)
    return Fit(parents, coef, score + pen * n_par, rv, mean_abs)


def mean_abs_residual(design: Design, targets, parents, coef, chunk: int = 128) -> np.ndarray:
    """(B,) mean |residual| of each target's regression, in chunks so memory stays O(n * chunk * K)."""
    out = np.empty(len(targets))
    for s in range(0, len(targets), chunk):
        t, p, c = targets[s:s + chunk], parents[s:s + chunk], coef[s:s + chunk]
        resid = design.zpad[:, t] - np.einsum("nbk,bk->nb", design.zpad[:, p], c)
        out[s:s + chunk] = np.abs(resid).mean(axis=0)
    return np.maximum(out, 1e-300)


