"""From the training windows to the exported graph, without ground truth.

The order search (`search.py`) runs under each candidate noise model; the model is then chosen by
BIC on the training split, and the graph is exported in the form its model supports:
- gauss_ev (one noise variance on the data's own scale) or laplace: directions are identified, the
  export is the DAG;
- gauss_nv (a variance per variable): only the Markov equivalence class is identified, the export
  is its CPDAG, where edges the data cannot orient are `undirected`; for time series the lagged
  parents, directed by time, orient what they can first (`cpdag.cpdag_with_lags`).
numpy only: it runs once per export, on the host.
"""
from __future__ import annotations

import time

import numpy as np

from jaxcausal import cpdag, graphs, search

MIN_ROWS_PER_COLUMN = 2  # fewer complete rows than this per design column: no search, W stands


def design_rows(x_NxTxD: np.ndarray, mask_NxTxD: np.ndarray, n_lags: int, max_rows: int) -> np.ndarray:
    """(n, D + L*D) complete rows [x_t, x_{t-1}, ..., x_{t-L}] cut within windows (lag pairs never
    cross a window boundary), at most `max_rows` of them, spread evenly over the data."""
    n_win, t, d = x_NxTxD.shape
    lags = min(n_lags, t - 1)
    columns = [x_NxTxD[:, lags - lag: t - lag, :] for lag in range(lags + 1)]
    observed = [mask_NxTxD[:, lags - lag: t - lag, :] for lag in range(lags + 1)]
    z = np.concatenate(columns, axis=-1).reshape(-1, d * (lags + 1)).astype(np.float64)
    z = z[np.concatenate(observed, axis=-1).reshape(z.shape).all(axis=1)]
    if len(z) > max_rows:  # evenly spaced, so a long series is not cut to its beginning
        z = z[np.linspace(0, len(z) - 1, max_rows).round().astype(int)]
    return z


def start_order(start_DxD: np.ndarray | None, d: int) -> list[int]:
    """A causal order of the trained model's graph (cycles broken at their weakest edge)."""
    if start_DxD is None:
        return list(range(d))
    return graphs.topological_order(graphs.enforce_dag(np.abs(start_DxD))) or list(range(d))


def choose_graph(x_NxTxD: np.ndarray, mask_NxTxD: np.ndarray, *, n_lags: int, noise: str = "auto",
                 start_DxD: np.ndarray | None = None, penalty_discount: float = 2.0, max_rows: int = 20000,
                 allowed: np.ndarray | None = None, required: np.ndarray | None = None,
                 seed: int = 0, progress=None) -> dict | None:
    """Search, choose the model and export. x: raw-scale windows (missing entries masked out).

    noise: auto (chosen by BIC) or one of search.NOISES. start_DxD: the trained model's weights,
    whose order starts the search. allowed / required: (D + L*D, D) prior-knowledge masks.
    Returns None when there are too few complete rows to fit the model, else a dict with
    `orientation` (D, D) int8 PDAG, `coefficients` (D, D) least squares on the standardised scale
    (nonzero on both sides of an undirected edge), `lagged_coefficients` (L, D, D), `model` (the
    choice and the scores behind it), `rows`, `seconds`.
    """
    t0 = time.perf_counter()
    d = x_NxTxD.shape[-1]
    lags = min(n_lags, x_NxTxD.shape[1] - 1)
    z = design_rows(x_NxTxD, mask_NxTxD, lags, max_rows)
    if len(z) < MIN_ROWS_PER_COLUMN * z.shape[1] + 2:
        return None
    sd = z.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    # One shared scale keeps the numbers near 1 without changing relative variances (gauss_ev).
    design = search.make_design(z / np.sqrt(np.mean(sd[:d] ** 2)), d, penalty_discount=penalty_discount,
                                allowed=allowed, required=required)
    learned = start_order(start_DxD, d)
    candidates = search.NOISES if noise == "auto" else (noise,)
    states, scores = {}, {}
    say = progress or (lambda msg: None)
    # Restarts guard against the local optima of single relocation moves; the score decides. The
    # other models start from the Gaussian optimum, which lies in the right class when they hold.
    say(f"search: gauss_nv from {len(starts := restarts(learned, d, seed))} orders ...")
    nv = search.search(design, starts, "gauss_nv")
    for model in candidates:
        if model == "gauss_nv":
            states[model] = nv
        else:
            say(f"search: {model} ...")
            states[model] = search.search(design, _unique([nv.order, learned]), model,
                                          max_sweeps=10 if model == "gauss_ev" else 50)
        scores[model] = {"bic": search.bic(design, states[model], model),
                         "nll": search.nll(design, states[model], model),
                         "edges": search.edge_count(states[model]), "moves": states[model].moves}
    chosen = min(candidates, key=lambda m: scores[m]["bic"])
    state = states[chosen]
    coef, lag_coef = search.adjacency(design, state)
    # Standardised effects: coefficient x sd(cause) / sd(effect).
    coef_std = coef * sd[:d, None] / sd[None, :d]
    lag_std = (lag_coef * sd[d:, None] / sd[None, :d]).reshape(lags, d, d)
    dag = coef != 0
    identified = chosen != "gauss_nv"
    if identified:
        orientation = dag.astype(np.int8)
    elif lags:
        orientation = cpdag.cpdag_with_lags(dag, lag_std != 0)
    else:
        orientation = cpdag.cpdag_from_dag(dag)
    undirected = (orientation == 1) & (orientation.T == 1)
    coefficients = np.where(dag, coef_std, 0.0)
    coefficients = np.where(undirected & ~dag, coefficients.T, coefficients)
    return {
        "orientation": orientation.astype(np.int8), "coefficients": coefficients.astype(np.float32),
        "lagged_coefficients": lag_std.astype(np.float32), "rows": int(len(z)),
        "seconds": time.perf_counter() - t0,
        "model": {"noise": chosen, "mechanism": "linear", "choice": "auto (lowest BIC)" if noise == "auto" else "fixed",
                  "directions": "identified" if identified else "equivalence class (CPDAG)",
                  "undirected_edges": int(undirected.sum() // 2), "penalty_discount": penalty_discount,
                  "rows": int(len(z)), "scores": scores},
    }


def restarts(learned: list[int], d: int, seed: int) -> list[list[int]]:
    """The trained model's order, the index order and its reverse, plus seeded random orders while
    they are cheap (a single search costs about D^2 grow-shrinks per sweep)."""
    rng = np.random.default_rng(seed)
    extra = 3 if d <= 30 else 1 if d <= 100 else 0
    return _unique([learned, list(range(d)), list(range(d))[::-1]] + [list(rng.permutation(d)) for _ in range(extra)])


def _unique(orders: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for o in orders:
        if o not in out:
            out.append(o)
    return out
