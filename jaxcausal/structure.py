"""From the training windows to the exported graph, without ground truth.

The order search (`search.py`) runs under each candidate model: the linear mechanism with each
noise model, and (static data, up to `nonlinear.MAX_D` variables) the MLP mechanism with gauss_nv
noise (`nonlinear.py`). The model is then chosen by BIC on the training split, and the graph is
exported in the form its model supports:
- gauss_ev (one noise variance on the data's own scale), laplace, or the MLP mechanism: directions
  are identified, the export is the DAG;
- linear gauss_nv (a variance per variable): only the Markov equivalence class is identified, the
  export is its CPDAG, where edges the data cannot orient are `undirected`; for time series the
  lagged parents, directed by time, orient what they can first (`cpdag.cpdag_with_lags`).
numpy only: it runs once per export, on the host.
"""
from __future__ import annotations

import dataclasses
import functools

import time

import numpy as np

from jaxcausal import cpdag, distributed, graphs, nonlinear, parallel, search
from jaxcausal.prepare import rows_needed
from jaxcausal.errors import InputError

MECHANISMS = ("auto", "linear", "mlp")
MLP = "gauss_nv+mlp"  # the MLP candidate's key among the scores
IDENTIFIED_BY = {
    "gauss_ev": "equal noise variances on the data's scale (the true order has the smallest total variance)",
    "laplace": "non-Gaussian (Laplace) noise: only the true direction leaves independent residuals",
    MLP: "nonlinear mechanisms with additive noise: the reverse regression leaves residuals that depend "
         "on the regressor, so it fits worse (additive noise models, Hoyer et al. 2009)",
}
WEIGHTS = {"linear": "standardised least-squares effect: coefficient x sd(cause) / sd(effect)",
           "mlp": "share of the effect's variance the cause explains uniquely: the rise in residual variance "
                  "when it is dropped from the fit, over var(effect), in (0, 1]"}


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
                 mechanism: str = "auto", start_DxD: np.ndarray | None = None, penalty_discount: float = 2.0, max_rows: int = 20000,
                 allowed: np.ndarray | None = None, required: np.ndarray | None = None,
                 bootstrap: int = 0, stable_threshold: float = 0.0, seed: int = 0, progress=None) -> dict | None:
    """Search, choose the model and export. x: raw-scale windows (missing entries masked out).

    noise: auto (chosen by BIC) or one of search.NOISES. mechanism: auto (linear and, where it
    applies, MLP, chosen by BIC), linear, or mlp (gauss_nv noise). start_DxD: the trained model's weights,
    whose order starts the search. allowed / required: (D + L*D, D) prior-knowledge masks.
    bootstrap: K resampled replicates (whole windows, with replacement), each searched like the
    data under the chosen model, give every edge a confidence; with stable_threshold > 0 the export
    is then the edges at least that confident (stability selection).
    Returns None when there are too few complete rows to fit the model, else a dict with
    `orientation` (D, D) int8 PDAG, `coefficients` (D, D) least squares on the standardised scale
    (nonzero on both sides of an undirected edge), `lagged_coefficients` (L, D, D), `model` (the
    choice and the scores behind it), `rows`, `seconds`, and with bootstrap `confidence` (D, D),
    `lagged_confidence` (L, D, D) and `bootstrap`.
    """
    with parallel.Workers() as workers:  # started only if the search turns out long enough
        return _choose_graph(x_NxTxD, mask_NxTxD, n_lags=n_lags, noise=noise, mechanism=mechanism,
                             start_DxD=start_DxD, penalty_discount=penalty_discount, max_rows=max_rows,
                             allowed=allowed, required=required, bootstrap=bootstrap,
                             stable_threshold=stable_threshold, seed=seed, progress=progress, workers=workers)


def _choose_graph(x_NxTxD, mask_NxTxD, *, n_lags, noise, mechanism, start_DxD, penalty_discount, max_rows,
                  allowed, required, bootstrap, stable_threshold, seed, progress, workers) -> dict | None:
    t0 = time.perf_counter()
    d = x_NxTxD.shape[-1]
    lags = min(n_lags, x_NxTxD.shape[1] - 1)
    say = progress or (lambda msg: None)
    z = design_rows(x_NxTxD, mask_NxTxD, lags, max_rows)
    # prepare refuses training splits below this; the search's own rows can still fall short of it.
    if len(z) < rows_needed(d, lags):
        say(f"search: skipped, {len(z)} complete rows for {z.shape[1]} design columns (it needs "
            f"{rows_needed(d, lags)}); the graph is thresholded W")
        return None
    design, sd = _design(z, d, penalty_discount, allowed, required)
    learned = start_order(start_DxD, d)
    skipped = mlp_skipped(noise, mechanism, d, lags)
    if mechanism == "mlp" and skipped:
        raise InputError(f"mechanism 'mlp' cannot be searched here: {skipped}; use mechanism 'linear' or 'auto'")
    candidates = [] if mechanism == "mlp" else list(search.NOISES if noise == "auto" else (noise,))
    candidates += [] if skipped else [MLP]
    states, scores, designs = {}, {}, {}
    # Restarts guard against the local optima of single relocation moves; the score decides. The
    # other models start from the Gaussian optimum, which lies in the right class when they hold.
    say(f"search: gauss_nv from {len(starts := restarts(learned, d, seed))} orders ...")
    linear = [m for m in candidates if m not in ("gauss_nv", MLP)]
    # The first start is timed here; when the search looks long (these starts, then about two for
    # each other linear model), the rest is shared with a worker process.
    nv = search.search(design, starts, "gauss_nv",
                       map_=functools.partial(workers.map_long, later=2 * len(linear)))
    if linear:
        say(f"search: {', '.join(linear)} ...")
    # Independent of each other: side by side when a worker is running already.
    other = (workers.map if workers.started else parallel.serial)(
        functools.partial(_search_linear, design, nv_order=nv.order, learned=learned), linear)
    for model in candidates:
        designs[model] = design
        if model == "gauss_nv":
            states[model] = nv
        elif model == MLP:
            designs[model] = _mlp_design(design)
            best_linear = min((scores[m]["bic"] for m in scores), default=np.inf)
            probe_bic = search.bic(designs[model], _mlp_probe(designs[model], nv), "gauss_nv")
            if probe_bic >= best_linear - 1e-9 * abs(best_linear) - 1e-6:
                # MLP fits of the linear optimum's parent sets (one per variable) do not beat the best
                # linear model: on linear data its search would only rebuild the linear graph, at ~50x the cost.
                skipped = (f"its fits of the linear optimum's parents (BIC "
                           f"{probe_bic:.1f}) do not beat the best linear "
                           f"model (BIC {best_linear:.1f}), so it was not searched further")
                candidates = candidates[:-1]
                break
            say(f"search: {model} ...")
            # In this process: its starts share the MLP fits' memo, worth more than a second core.
            states[model] = search.search(designs[model], _unique([nv.order, learned, *starts[:3]]), "gauss_nv")
        else:
            states[model] = other[linear.index(model)]
        noise_of = model.split("+")[0]
        scores[model] = {"bic": search.bic(designs[model], states[model], noise_of),
                         "nll": search.nll(designs[model], states[model], noise_of),
                         "edges": search.edge_count(states[model]),
                         "parameters": search.param_count(designs[model], states[model]), "moves": states[model].moves}
    # The linear models first: on a tie (an MLP fit that uses no hidden units is the linear fit) they win.
    chosen = min(candidates, key=lambda m: scores[m]["bic"] + (1e-9 * abs(scores[m]["bic"]) + 1e-6) * (m == MLP))
    chosen_mechanism = "mlp" if chosen == MLP else "linear"
    out = _export(designs[chosen], states[chosen], chosen, sd, lags)
    undirected = int(((out["orientation"] == 1) & (out["orientation"].T == 1)).sum() // 2)
    out["model"] = {"noise": chosen.split("+")[0], "mechanism": chosen_mechanism,
                    "choice": "auto (lowest BIC)" if len(candidates) > 1 else "fixed",
                    "directions": "equivalence class (CPDAG)" if chosen == "gauss_nv" else "identified",
                    "identified_by": IDENTIFIED_BY.get(chosen), "weights": WEIGHTS[chosen_mechanism],
                    "mlp": {"searched": not skipped, "skipped_because": skipped or None,
                            "hidden_units": nonlinear.HIDDEN},
                    "undirected_edges": undirected, "penalty_discount": penalty_discount,
                    "rows": int(len(z)), "scores": scores}
    out["rows"] = int(len(z))
    if bootstrap:
        t_boot = time.perf_counter()
        say(f"bootstrap: {bootstrap} replicates under {chosen} ...")
        # Across processes each computes its share (k % P) and all receive every replicate, in order;
        # within one, the share is split over the machine's cores when it is long enough.
        replicate = functools.partial(_replicate, x_NxTxD, mask_NxTxD, lags, max_rows, penalty_discount,
                                      allowed, required, chosen, learned, seed)
        replicates = distributed.spread(replicate, bootstrap, workers.map_long)
        out.update(_confidence(out, replicates, stable_threshold))
        out["bootstrap"] = {"replicates": bootstrap, "resampled": "windows" if x_NxTxD.shape[1] > 1 else "rows",
                            "model": chosen, "stable_threshold": stable_threshold,
                            "seconds": time.perf_counter() - t_boot}
    out["seconds"] = time.perf_counter() - t0
    return out


def _design(z, d, penalty_discount, allowed, required):
    sd = z.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    # One shared scale keeps the numbers near 1 without changing relative variances (gauss_ev).
    design = search.make_design(z / np.sqrt(np.mean(sd[:d] ** 2)), d, penalty_discount=penalty_discount,
                                allowed=allowed, required=required)
    return design, sd


def mlp_skipped(noise: str, mechanism: str, d: int, lags: int) -> str:
    """Why the MLP candidate is not searched ('' when it is)."""
    if mechanism not in MECHANISMS:
        raise InputError(f"mechanism {mechanism!r} is unknown; use one of {', '.join(MECHANISMS)}")
    if mechanism == "linear":
        return "mechanism fixed to linear"
    if noise not in ("auto", "gauss_nv"):
        return f"noise fixed to {noise}; the MLP mechanism is scored with gauss_nv noise"
    if lags:
        return ("time series: each MLP fit costs rows x hidden units^2, too slow at the row counts of "
                "windowed series, so lagged data keep the linear mechanism")
    if d > nonlinear.MAX_D:
        return f"{d} variables: the MLP candidate is searched up to {nonlinear.MAX_D}"
    return ""


def _mlp_probe(mlp_design, linear: search.State) -> search.State:
    """The linear optimum's graph with each variable fitted by the MLP of the same parents."""
    rss = np.array([mlp_design.local_fit(j, tuple(sorted(int(p) for p in parents)))[1]
                    for j, parents in enumerate(linear.parents)])
    return dataclasses.replace(linear, rss=rss)


def _mlp_design(design):
    return nonlinear.make_mlp_design(design.z, design.d, penalty_discount=design.pen / (0.5 * np.log(design.n)),
                                     allowed=design.allowed, required=design.required)


def _search_linear(design, model: str, *, nv_order, learned) -> search.State:
    return _search_other(design, model, nv_order, learned)[1]


def _search_other(design, model, nv_order, learned):
    """(design, state) of a model other than linear gauss_nv, searched from the Gaussian optimum."""
    if model == MLP:  # its own design, started from the linear optimum and the trained order
        mlp = _mlp_design(design)
        return mlp, search.search(mlp, _unique([nv_order, learned]), "gauss_nv")
    # gauss_ev converges in one or two sweeps from the Gaussian optimum when it holds (measured at
    # d = 20-50); where it does not, more sweeps only wander, so its budget is small.
    return design, search.search(design, _unique([nv_order, learned]), model,
                                 max_sweeps=3 if model == "gauss_ev" else 50)


def _export(design, state, chosen: str, sd=None, lags: int = 0) -> dict:
    """The graph of a search state in the form its model supports (DAG, or CPDAG for gauss_nv)."""
    d = design.d
    sd = np.ones(design.a) if sd is None else sd
    coef, lag_coef = search.adjacency(design, state)
    if chosen == MLP:  # the MLP's weights (variance shares) are on the standardised scale already
        sd = np.ones(design.a)
    # Standardised effects: coefficient x sd(cause) / sd(effect).
    coef_std = coef * sd[:d, None] / sd[None, :d]
    lag_std = (lag_coef * sd[d:, None] / sd[None, :d]).reshape(lags, d, d)
    dag = coef != 0
    # Prior knowledge orients what it can: a required edge, or one whose reverse is forbidden (tiers).
    known = dag & (design.required[:d] | ~design.allowed[:d].T)
    if chosen != "gauss_nv":
        orientation = dag.astype(np.int8)
    elif lags:
        orientation = cpdag.cpdag_with_lags(dag, lag_std != 0)
        if known.any():
            orientation[known.T] = 0
            orientation = cpdag.meek_rules(orientation)
    else:
        orientation = cpdag.cpdag_from_dag(dag, fixed=known if known.any() else None)
    undirected = (orientation == 1) & (orientation.T == 1)
    coefficients = np.where(dag, coef_std, 0.0)
    coefficients = np.where(undirected & ~dag, coefficients.T, coefficients)
    return {"orientation": orientation.astype(np.int8), "coefficients": coefficients.astype(np.float32),
            "lagged_coefficients": lag_std.astype(np.float32)}


def _replicate(x, mask, lags, max_rows, penalty_discount, allowed, required, chosen, learned, seed, k) -> dict:
    """One bootstrap replicate, searched and exported under the chosen model."""
    d = x.shape[-1]
    rng = np.random.default_rng([seed, k])
    if x.shape[1] > 1:  # whole windows, so lag pairs stay intact
        pick = rng.integers(0, x.shape[0], x.shape[0])
        z = design_rows(x[pick], mask[pick], lags, max_rows)
    else:
        z = design_rows(x, mask, lags, max_rows)
        z = z[rng.integers(0, len(z), len(z))]
    design, sd = _design(z, d, penalty_discount, allowed, required)
    nv = search.search(design, _unique([learned, list(range(d))]), "gauss_nv")
    if chosen != "gauss_nv":
        design, nv = _search_other(design, chosen, nv.order, learned)
    return _export(design, nv, chosen, sd, lags)


def _confidence(out: dict, replicates: list[dict], stable_threshold: float) -> dict:
    """Fractions of replicates holding each edge with each orientation, and (stability selection)
    the export restricted to the edges whose orientation reaches `stable_threshold`."""
    k = len(replicates)
    pd = np.stack([r["orientation"] != 0 for r in replicates])
    und = pd & pd.transpose(0, 2, 1)
    directed_freq = (pd & ~und).mean(axis=0)  # [i, j]: share with i -> j
    undirected_freq = und.mean(axis=0)
    lag_freq = np.stack([r["lagged_coefficients"] != 0 for r in replicates]).mean(axis=0)
    orient = out["orientation"] != 0
    out_und = orient & orient.T
    confidence = np.where(out_und, undirected_freq, np.where(orient, directed_freq, 0.0))
    result = {"confidence": confidence.astype(np.float32),
              "lagged_confidence": np.where(out["lagged_coefficients"] != 0, lag_freq, 0.0).astype(np.float32),
              "edge_frequencies": {"directed": directed_freq, "undirected": undirected_freq, "replicates": k}}
    if stable_threshold > 0:
        # Per pair, the most frequent orientation, kept when it reaches the threshold; cycles among
        # the kept directed edges are broken at their least confident edge.
        keep_dir = (directed_freq >= stable_threshold) & (directed_freq >= directed_freq.T) \
            & (directed_freq >= undirected_freq)
        keep_und = (undirected_freq >= stable_threshold) & (undirected_freq > np.maximum(directed_freq,
                                                                                           directed_freq.T))
        directed = graphs.enforce_dag(np.where(keep_dir & ~keep_und, directed_freq + 1e-9, 0.0)) > 0
        pdag = (directed | keep_und).astype(np.int8)
        coef = np.mean([r["coefficients"] for r in replicates], axis=0)
        coef = np.where(pdag != 0, coef, 0.0)
        result.update(orientation=pdag, coefficients=coef.astype(np.float32),
                      confidence=np.where(keep_und, undirected_freq, np.where(directed, directed_freq, 0.0))
                      .astype(np.float32))
        lagged = lag_freq >= stable_threshold
        result["lagged_coefficients"] = np.where(
            lagged, np.mean([r["lagged_coefficients"] for r in replicates], axis=0), 0.0).astype(np.float32)
        result["lagged_confidence"] = np.where(lagged, lag_freq, 0.0).astype(np.float32)
    return result


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
