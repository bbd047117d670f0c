"""Seeded synthetic data with a known causal graph: the built-in dataset, benchmarks and tests.

Linear SEM over a random DAG W (row-vector convention, [i, j] != 0 means i -> j):
    static:       X = X W + E
    time series:  X_t = X_t W + X_{t-1} A + E_t   (A: autoregressive diagonal + cross lag-1 edges)
The 'mlp' mechanism replaces X W by a random one-hidden-layer MLP of each variable's parents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from jaxcausal.data.dataset import Dataset, default_names
from jaxcausal.graphs import topological_order
from jaxcausal.errors import InputError

GRAPH_TYPES = ("er", "sf")
MECHANISMS = ("linear", "mlp")
BURN_IN = 200  # time steps discarded so windows start near the stationary distribution
MAX_LAG_GAIN = 0.8  # spectral radius cap of the lag-1 transition: keeps every series stable

# Unit-variance, zero-mean noise of each family; multiplied by noise_scale.
_NOISE: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "gaussian": lambda rng, shape: rng.standard_normal(shape),
    "laplace": lambda rng, shape: rng.laplace(0.0, 1.0 / np.sqrt(2.0), shape),
    "uniform": lambda rng, shape: rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), shape),
    "gumbel": lambda rng, shape: (rng.gumbel(0.0, np.sqrt(6.0) / np.pi, shape)
                                  - np.euler_gamma * np.sqrt(6.0) / np.pi),
    "exponential": lambda rng, shape: rng.exponential(1.0, shape) - 1.0,
}
NOISE_TYPES = tuple(_NOISE)

# The dataset `python -m jaxcausal.train` uses without --data: retune here, nowhere else.
BUILTIN = dict(
    d=10, n_edges=13, graph="er", mechanism="linear", noise="laplace", noise_scale=1.0,
    n_windows=2048, window=32, lag_edges=5, autoregressive=0.5, weight_range=(0.5, 2.0),
    raw_scale=True, missing_fraction=0.0,
)


def random_dag(d: int, n_edges: int, graph_type: str, rng: np.random.Generator) -> np.ndarray:
    """A random DAG as a (d, d) int8 0/1 matrix, nodes randomly permuted.

    'er': exactly n_edges edges drawn uniformly over the pairs of a random order.
    'sf': Barabasi-Albert-like preferential attachment; each new node sends edges to existing nodes
    picked in proportion to their degree + 1 (so early hubs collect many parents, as in NOTEARS'
    'SF'); the per-node edge counts are spread so the total is n_edges.
    """
    if graph_type not in GRAPH_TYPES:
        raise InputError(f"graph type {graph_type!r} is unknown; use one of {', '.join(GRAPH_TYPES)}")
    max_edges = d * (d - 1) // 2
    if d < 1 or not 0 <= n_edges <= max_edges:
        raise InputError(f"cannot draw a DAG with {n_edges} edges over {d} variables; "
                         f"use d >= 1 and 0 <= n_edges <= {max_edges}")
    dag = np.zeros((d, d), dtype=np.int8)
    if graph_type == "er":
        rows, cols = np.triu_indices(d, k=1)  # i < j in the order: acyclic by construction
        chosen = rng.choice(len(rows), size=n_edges, replace=False)
        dag[rows[chosen], cols[chosen]] = 1
    else:
        degree = np.zeros(d)
        left = n_edges
        for k in range(1, d):
            capacity_after = (k + 1 + d - 1) * (d - 1 - k) // 2  # most edges nodes k+1..d-1 can add
            m = min(k, max(round(left / (d - k)), left - capacity_after))
            p = (degree[:k] + 1.0) / (degree[:k] + 1.0).sum()
            targets = rng.choice(k, size=m, replace=False, p=p)
            dag[k, targets] = 1  # new -> old: acyclic in the order of arrival
            degree[targets] += 1
            degree[k] += m
            left -= m
    perm = rng.permutation(d)
    return dag[np.ix_(perm, perm)]


def simulate(*, seed: int, d: int = 10, n_edges: int | None = None, graph: str = "er",
             mechanism: str = "linear", noise: str = "gaussian", noise_scale: float = 1.0,
             n_windows: int = 1000, window: int = 1, lag_edges: int | None = None,
             autoregressive: float = 0.5, weight_range: tuple[float, float] = (0.5, 2.0),
             raw_scale: bool = False, missing_fraction: float = 0.0) -> Dataset:
    """Draw a Dataset of n_windows windows (window == 1: static samples) from a random SEM.

    n_edges: instantaneous edges (default 2 * d). lag_edges: cross-variable lag-1 edges (default
    d // 2; time series only). autoregressive: x_{t-1, j} -> x_{t, j} weight before the stability
    rescale. Edge weights are U(weight_range) with a random sign. raw_scale maps each variable to
    offset_j + scale_j * x_j / sd(x_j) (non-negative, hundreds to thousands). missing_fraction of
    the entries are dropped at random.
    Returns x (N, T, D), truth (D, D), truth_lagged (1, D, D) (None if static).
    """
    n_edges = min(2 * d, d * (d - 1) // 2) if n_edges is None else n_edges  # ER2, capped for tiny d
    static = window == 1
    lag_edges = (d // 2 if lag_edges is None else lag_edges) if not static else 0
    _check_arguments(d=d, mechanism=mechanism, noise=noise, noise_scale=noise_scale,
                     n_windows=n_windows, window=window, lag_edges=lag_edges,
                     weight_range=weight_range, missing_fraction=missing_fraction)
    rng = np.random.default_rng(seed)
    dag = random_dag(d, n_edges, graph, rng)
    parents_of = _mechanism(mechanism, dag, weight_range, rng)
    scale = np.broadcast_to(np.asarray(noise_scale, dtype=np.float64), (d,))

    if static:
        x = _sample_static(parents_of, dag, _NOISE[noise](rng, (n_windows, d)) * scale)[:, None, :]
        truth_lagged = None
    else:
        lag = _lag_weights(d, lag_edges, autoregressive, weight_range, rng)
        # Stability: the lag-1 transition of the linear process is A (I - W)^{-1}; an MLP's
        # instantaneous part is bounded, so there only A itself matters.
        transition = lag @ np.linalg.inv(np.eye(d) - parents_of.weights) if mechanism == "linear" else lag
        radius = np.abs(np.linalg.eigvals(transition)).max()
        if radius > MAX_LAG_GAIN:
            lag *= MAX_LAG_GAIN / radius
        noise_steps = _NOISE[noise](rng, (BURN_IN + n_windows * window, d)) * scale
        series = _sample_series(parents_of, dag, lag, noise_steps, linear=mechanism == "linear")
        x = series[BURN_IN:].reshape(n_windows, window, d)
        truth_lagged = (lag != 0).astype(np.int8)[None]

    if raw_scale:
        x = _to_raw_scale(x, rng)
    if missing_fraction > 0:
        x = np.where(rng.random(x.shape) < missing_fraction, np.nan, x)
    source = (f"synthetic(seed={seed}, d={d}, n_edges={int(dag.sum())}, graph={graph}, "
              f"mechanism={mechanism}, noise={noise}, window={window}, n_windows={n_windows})")
    return Dataset.from_array(x, names=default_names(d), truth=dag.astype(np.int8),
                              truth_lagged=truth_lagged, source=source)


def builtin_dataset(seed: int = 0) -> Dataset:
    """The dataset used when no file is given: see BUILTIN (D = 10, 13 edges, raw scale)."""
    return dataclasses.replace(simulate(seed=seed, **BUILTIN), source="builtin")


class _Parents:
    """Instantaneous mechanism: __call__(x (n, D), j) -> (n,) contribution of j's parents."""

    def __init__(self, weights: np.ndarray, mlps: dict[int, tuple] | None = None):
        self.weights = weights  # (D, D) linear weights (zero for 'mlp')
        self.mlps = mlps or {}  # j -> (w1 (|pa|, H), w2 (H,), activation, parent indices)

    def __call__(self, x: np.ndarray, j: int) -> np.ndarray:
        if j not in self.mlps:
            return x @ self.weights[:, j]
        w1, w2, activation, parents = self.mlps[j]
        return activation(x[:, parents] @ w1) @ w2


def _mechanism(mechanism: str, dag: np.ndarray, weight_range, rng) -> _Parents:
    d = dag.shape[0]
    if mechanism == "linear":
        return _Parents(dag * _signed_uniform(rng, (d, d), weight_range))
    # As NOTEARS-MLP's simulate_nonlinear_sem('mlp'): one random MLP of the whole parent set.
    mlps = {}
    for j in range(d):
        parents = np.flatnonzero(dag[:, j])
        if len(parents):
            hidden = int(rng.integers(10, 101))
            activation = _sigmoid if rng.random() < 0.5 else np.tanh
            mlps[j] = (_signed_uniform(rng, (len(parents), hidden), weight_range),
                       _signed_uniform(rng, (hidden,), weight_range), activation, parents)
    return _Parents(np.zeros((d, d)), mlps)


def _sample_static(parents_of: _Parents, dag: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(N, D) samples, each variable generated after its parents."""
    x = np.zeros_like(noise)
    for j in topological_order(dag):
        x[:, j] = parents_of(x, j) + noise[:, j]
    return x


def _sample_series(parents_of: _Parents, dag: np.ndarray, lag: np.ndarray, noise: np.ndarray,
                   *, linear: bool) -> np.ndarray:
    """One long (S, D) series: x_t = f(x_t) + x_{t-1} A + e_t, started from zero."""
    x = np.zeros_like(noise)
    if linear:
        # Solving x_t (I - W) = x_{t-1} A + e_t per step equals generating in topological order,
        # and is ~D times faster for the long built-in series.
        inv = np.linalg.inv(np.eye(len(lag)) - parents_of.weights)
        transition, shocks = lag @ inv, noise @ inv
        x[0] = shocks[0]
        for t in range(1, len(x)):
            x[t] = x[t - 1] @ transition + shocks[t]
        return x
    order = topological_order(dag)
    for t in range(len(x)):
        drive = (x[t - 1] @ lag if t else 0.0) + noise[t]
        row = x[t:t + 1]  # view: parents written earlier in this step are visible
        for j in order:
            row[0, j] = parents_of(row, j)[0] + drive[j]
    return x


def _lag_weights(d: int, lag_edges: int, autoregressive: float, weight_range, rng) -> np.ndarray:
    """(D, D) lag-1 weights: autoregressive diagonal plus lag_edges random cross edges."""
    lag = np.eye(d) * autoregressive
    off_diagonal = np.flatnonzero(~np.eye(d, dtype=bool))
    chosen = rng.choice(off_diagonal, size=lag_edges, replace=False)
    lag.flat[chosen] = _signed_uniform(rng, (lag_edges,), weight_range)
    return lag


def _to_raw_scale(x: np.ndarray, rng) -> np.ndarray:
    """Sensor-like units: offset_j + scale_j * x_j / sd(x_j), scale_j ~ U(20, 300), every value >= 0.

    Scaling per standard deviation keeps deep nodes (whose variance grows along weighted paths)
    in the same hundreds-to-thousands range as roots; standardisation undoes any such affine map.
    """
    flat = x.reshape(-1, x.shape[-1])
    sd = flat.std(axis=0)
    scaled = x * (rng.uniform(20.0, 300.0, x.shape[-1]) / np.where(sd > 0, sd, 1.0))
    # Shift so the smallest value lands at U(100, 500): non-negative without clipping.
    offset = rng.uniform(100.0, 500.0, x.shape[-1]) - scaled.reshape(flat.shape).min(axis=0)
    return scaled + offset


def _signed_uniform(rng, shape, weight_range) -> np.ndarray:
    low, high = weight_range
    return rng.uniform(low, high, shape) * rng.choice((-1.0, 1.0), shape)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * z) + 1.0)  # overflow-free form of 1 / (1 + exp(-z))


def _check_arguments(*, d, mechanism, noise, noise_scale, n_windows, window, lag_edges,
                     weight_range, missing_fraction) -> None:
    if mechanism not in MECHANISMS:
        raise InputError(f"mechanism {mechanism!r} is unknown; use one of {', '.join(MECHANISMS)}")
    if noise not in _NOISE:
        raise InputError(f"noise {noise!r} is unknown; use one of {', '.join(NOISE_TYPES)}")
    scale = np.asarray(noise_scale, dtype=np.float64)
    if scale.shape not in ((), (d,)) or not (np.isfinite(scale).all() and (scale > 0).all()):
        raise InputError(f"noise_scale must be a positive number or {d} positive numbers, got {noise_scale}")
    if n_windows < 1 or window < 1:
        raise InputError(f"need n_windows >= 1 and window >= 1, got {n_windows} and {window}")
    if not 0 <= lag_edges <= d * (d - 1):
        raise InputError(f"lag_edges must lie in 0..{d * (d - 1)} for d = {d}, got {lag_edges}")
    low, high = weight_range
    if not 0 < low <= high:
        raise InputError(f"weight_range must satisfy 0 < low <= high, got {weight_range}")
    if not 0 <= missing_fraction < 1:
        raise InputError(f"missing_fraction must lie in [0, 1), got {missing_fraction}")
