"""Order-based search for the exported graph: best-order search with grow-shrink parents.

A causal order fixes a DAG: each variable takes, as parents, the subset of its predecessors (and,
for time series, of the lagged values, which precede everything) chosen by grow-shrink on its local
score. The search relocates one variable at a time to the position in the order that lowers the
total score most (BOSS-style moves), until no relocation helps. Every state is a DAG consistent
with its order, so the search never returns a cycle, and a move is taken only when it lowers the
total, so the result never scores worse than its start.

Local scores (lower is better), n rows, pen = penalty_discount * log(n) / 2 per parent:
- gauss_nv: n/2 log(RSS_j / n), Gaussian with a variance per variable;
- gauss_ev: n RSS_j / (2 n sigma^2) with one shared variance sigma^2, re-estimated between passes;
- laplace: n log(mean |r_j|), Laplace with a scale per variable (coefficients are least squares).
Parents are grown and shrunk on the Gaussian criterion of the model (sufficient statistics only);
the Laplace score then judges the order by its residuals, which breaks the Gaussian ties inside an
equivalence class when the noise is heavy-tailed.

The local scores and grow-shrink live in `local_score.py`.
"""
from __future__ import annotations

import dataclasses
import functools
import heapq

import numpy as np

from jaxcausal import parallel
from jaxcausal.local_score import NOISES, Design, Fit, local_fits, make_design  # noqa: F401 (re-exported)

EV_PASSES = 2  # gauss_ev: searches alternated with re-estimating the shared variance

@dataclasses.dataclass
class State:
    """A DAG given by an order of the D variables and each variable's parents (column indices)."""

    order: list[int]
    parents: list[np.ndarray]
    coef: list[np.ndarray]
    score: np.ndarray  # (D,) local scores
    rss: np.ndarray
    mean_abs: np.ndarray
    moves: int = 0

    @property
    def total(self) -> float:
        return float(self.score.sum())

    def set(self, j: int, fit: Fit, i: int, a: int):
        real = fit.parents[i] < a
        self.parents[j] = fit.parents[i][real]
        self.coef[j] = fit.coef[i][real]
        self.score[j], self.rss[j], self.mean_abs[j] = fit.score[i], fit.rss[i], fit.mean_abs[i]


def _candidates_before(design: Design, targets, before: np.ndarray) -> np.ndarray:
    """(B, A): the columns each target may take as parents when `before` (B, D) precede it."""
    lags = np.ones((len(targets), design.a - design.d), bool)
    mask = np.concatenate([before, lags], axis=1)
    return mask & design.local[:, targets].T & design.allowed[:, targets].T


def state_from_order(design: Design, order, noise: str, sigma2: float = 1.0) -> State:
    d = design.d
    pos = np.empty(d, int)
    pos[list(order)] = np.arange(d)
    before = pos[None, :] < pos[:, None]  # [j, i]: i precedes j
    targets = np.arange(d)
    fit = local_fits(design, targets, _candidates_before(design, targets, before), noise, sigma2)
    state = State(list(order), [None] * d, [None] * d, np.zeros(d), np.zeros(d), np.zeros(d))
    for j in range(d):
        state.set(j, fit, j, design.a)
    return state


def _order_allows(design: Design, rest: list[int], v: int) -> np.ndarray:
    """(D,) bool over insertion positions k of v into `rest`: required edges keep their direction."""
    d = design.d
    k = np.arange(d)
    ok = np.ones(d, bool)
    index = {w: i for i, w in enumerate(rest)}
    for a_ in np.flatnonzero(design.required[:d, v]):  # a -> v: a must come before v
        ok &= k > index[int(a_)]
    for b_ in np.flatnonzero(design.required[v, :d]):  # v -> b: b must come after v
        ok &= k <= index[int(b_)]
    return ok


def relocate(design: Design, state: State, v: int, noise: str, sigma2: float, ties: bool = False) -> bool:
    """Move v to the position that lowers the total score most (with `ties`, also to an equally good
    one, which lets the order drift across a plateau of equal scores); True if it moved."""
    d, a = design.d, design.a
    rest = [w for w in state.order if w != v]
    p = state.order.index(v)
    rest_arr = np.asarray(rest, int)
    # v's candidate sets: its prefixes in `rest`, distinct only where a potential parent enters.
    member = design.local[rest_arr, v] & design.allowed[rest_arr, v]
    group = np.concatenate([[0], np.cumsum(member)])  # group[k]: potential parents among rest[:k]
    firsts = np.searchsorted(group, np.arange(group[-1] + 1))
    before_v = np.zeros((len(firsts), d), bool)
    for g, k in enumerate(firsts):
        before_v[g, rest_arr[:k]] = True
    # Variables for which v is a potential parent, on the side of v where it changes their score.
    s_minus = state.score[rest_arr].copy()  # without v among the predecessors
    s_plus = s_minus.copy()  # with v among them
    aff_idx, aff_before = [], []
    for i, w in enumerate(rest):
        if not (design.local[v, w] and design.allowed[v, w]):
            continue
        if i < p or v in state.parents[w]:
            row = np.zeros(d, bool)
            row[rest_arr[:i]] = True
            row[v] = i < p  # before v: score with v joining (s_plus); after: with v leaving (s_minus)
            aff_idx.append(i)
            aff_before.append(row)
    targets = np.concatenate([np.full(len(firsts), v), rest_arr[aff_idx]]).astype(int)
    before = np.concatenate([before_v, np.asarray(aff_before, bool).reshape(-1, d)])
    fit = local_fits(design, targets, _candidates_before(design, targets, before), noise, sigma2)
    g_count = len(firsts)
    for slot, i in enumerate(aff_idx):
        (s_plus if i < p else s_minus)[i] = fit.score[g_count + slot]
    cum_minus = np.concatenate([[0.0], np.cumsum(s_minus)])
    cum_plus = np.concatenate([[0.0], np.cumsum(s_plus)])
    k = np.arange(d)
    totals = cum_minus[k] + (cum_plus[-1] - cum_plus[k]) + fit.score[group[k]]
    totals = np.where(_order_allows(design, rest, v), totals, np.inf)
    best = int(np.argmin(totals))
    current = state.total
    tol = 1e-9 * max(1.0, abs(current))
    if best == p or not (totals[best] < current + tol if ties else totals[best] < current - tol):
        return False
    for slot, i in enumerate(aff_idx):
        w = rest[i]
        gains_v = i >= best  # w after v's new position: v is among its predecessors
        if gains_v == (i < p):  # its score changes to the recomputed one
            state.set(w, fit, g_count + slot, a)
    state.set(v, fit, int(group[best]), a)
    state.order = rest[:best] + [v] + rest[best:]
    state.moves += 1
    return True


def consistent_order(order, required_DxD: np.ndarray) -> list[int]:
    """`order` with the fewest changes that put every required cause before its effect: a
    topological sort of the required edges that breaks ties by position in `order`."""
    rank = {int(v): i for i, v in enumerate(order)}
    indegree = required_DxD.sum(axis=0).astype(int)
    ready = [(rank[v], v) for v in rank if indegree[v] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        _, v = heapq.heappop(ready)
        out.append(v)
        for w in np.flatnonzero(required_DxD[v]):
            indegree[w] -= 1
            if indegree[w] == 0:
                heapq.heappush(ready, (rank[int(w)], int(w)))
    if len(out) != len(order):
        raise ValueError("the required edges form a cycle")
    return out


def best_order_search(design: Design, start_order, noise: str, *, sigma2: float = 1.0,
                      max_sweeps: int = 50, progress=None) -> State:
    """Relocate each variable in turn to its best position (ties included: moving across a plateau
    of equal scores finds ways out of it that strict moves miss) until a sweep lowers the total no more."""
    start_order = consistent_order(start_order, design.required[: design.d])
    state = state_from_order(design, start_order, noise, sigma2)
    for sweep in range(max_sweeps):
        before = state.total
        for v in list(state.order):
            relocate(design, state, v, noise, sigma2, ties=True)
        if progress is not None:
            progress(sweep + 1, state)
        if not state.total < before - 1e-9 * max(1.0, abs(before)):
            if not widen_local(design, state, noise, sigma2):
                break
            state = state_from_order(design, state.order, noise, sigma2)  # refit with the wider sets
    return state


def widen_local(design: Design, state: State, noise: str, sigma2: float) -> bool:
    """Add to each variable's potential parents the columns outside them that would lower its
    score as one more parent, given its current parents, in either direction of the order.

    The partial-correlation screen misses a few weak parents (about 3% at D = 200); the converged
    graph shows which: the child's score improves by taking them. True if any set grew.
    """
    if design.local.all():
        return False
    cov, a, d, n, pen = design.cov, design.a, design.d, design.n, design.pen
    grew = False
    for j in range(d):
        p = state.parents[j]
        if len(p):
            solve = np.linalg.solve(cov[np.ix_(p, p)], cov[p, :a])  # (K, A)
            r = cov[j, :a] - cov[j, p] @ solve
            v = np.diag(cov)[:a] - np.einsum("ka,ka->a", cov[p, :a], solve)
        else:
            r, v = cov[j, :a].copy(), np.diag(cov)[:a].copy()
        rv = max(state.rss[j], 1e-300)
        drop = r * r / np.maximum(v, 1e-12)
        if noise == "gauss_ev":
            gain = n * drop / (2 * sigma2) - pen
        else:
            gain = 0.5 * n * (np.log(rv) - np.log(np.maximum(rv - drop, 1e-300))) - pen
        new = (gain > 0) & ~design.local[:, j] & design.allowed[:, j]
        new[p] = False
        if new.any():
            design.local[new, j] = True
            back = np.flatnonzero(new[:d])  # j may also be a parent of a contemporaneous newcomer
            design.local[j, back] |= design.allowed[j, back]
            grew = True
    return grew


def search(design: Design, starts, noise: str, *, max_sweeps: int = 50, progress=None, map_=None) -> State:
    """The best state over `starts` (orders) for one noise model, the first on a tie; the
    equal-variance model alternates the search with re-estimating its shared variance until the
    graph stops changing. map_(fn, starts): how the starts are searched (default: one by one,
    here; `parallel.Workers.map` shares them with worker processes). Each start is searched on its
    own, so the answer is the same either way."""
    one = functools.partial(search_from, design, noise=noise, max_sweeps=max_sweeps, progress=progress)
    best = None
    for state in (map_ or parallel.serial)(one, starts):
        if best is None or objective(design, state, noise) < objective(design, best, noise):
            best = state
    return best


def search_from(design: Design, order, *, noise: str, max_sweeps: int = 50, progress=None) -> State:
    """The search from one start order, with a grow-shrink cache of its own (see `with_own_cache`)."""
    design = design.with_own_cache()
    if noise != "gauss_ev":
        return best_order_search(design, order, noise, max_sweeps=max_sweeps, progress=progress)
    sigma2 = float(state_from_order(design, consistent_order(order, design.required[: design.d]),
                                    "gauss_nv").rss.mean())
    state, seen = None, set()
    for _ in range(EV_PASSES):
        state = best_order_search(design, order if state is None else state.order, noise,
                                  sigma2=sigma2, max_sweeps=max_sweeps, progress=progress)
        key = edges_key(state)
        sigma2 = float(state.rss.mean())
        if key in seen:
            break
        seen.add(key)
    return state


def edges_key(state: State) -> tuple:
    return tuple(tuple(sorted(p.tolist())) for p in state.parents)


def edge_count(state: State) -> int:
    return int(sum(len(p) for p in state.parents))


def param_count(design: Design, state: State) -> float:
    """Coefficients of the state's graph: one per edge (linear), the fits' degrees of freedom (MLP)."""
    return float(sum(design.n_params(j, p) for j, p in enumerate(state.parents)))


def nll(design: Design, state: State, noise: str) -> float:
    """Negative log-likelihood of the rows under the state's graph, least-squares coefficients and
    maximum-likelihood noise scales (per variable, or one shared variance for gauss_ev)."""
    n, d = design.n, design.d
    if noise == "gauss_nv":
        return float(0.5 * n * np.sum(np.log(2 * np.pi * state.rss) + 1))
    if noise == "gauss_ev":
        return float(0.5 * n * d * (np.log(2 * np.pi * state.rss.mean()) + 1))
    if np.isnan(state.mean_abs).any():
        raise ValueError("the Laplace likelihood needs the residuals' mean |r|: search with noise='laplace'")
    return float(n * np.sum(np.log(2 * state.mean_abs) + 1))


def objective(design: Design, state: State, noise: str) -> float:
    """What the search minimises, comparable across starts: NLL + the search's penalty per coefficient."""
    return nll(design, state, noise) + design.pen * param_count(design, state)


def bic(design: Design, state: State, noise: str) -> float:
    """BIC with the standard log(n)/2 per free parameter: coefficients plus noise scales."""
    scales = 1 if noise == "gauss_ev" else design.d
    return nll(design, state, noise) + 0.5 * np.log(design.n) * (param_count(design, state) + scales)


def adjacency(design: Design, state: State) -> tuple[np.ndarray, np.ndarray]:
    """(D, D) coefficients of the contemporaneous graph and (A - D, D) of the lagged columns."""
    d, a = design.d, design.a
    coef = np.zeros((a, d))
    for j in range(d):
        coef[state.parents[j], j] = state.coef[j]
    return coef[:d], coef[d:]
