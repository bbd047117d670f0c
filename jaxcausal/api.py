"""`jaxcausal.fit(X)` from Python: the command line's engine on an array or a DataFrame, as a `Result`.

    import jaxcausal
    r = jaxcausal.fit(X)              # X: (N, D) samples, (N, T, D) windows, or a pandas DataFrame
    r.edges[:3]                       # [{'cause': 'x0', 'effect': 'x2', 'lag': 0, 'weight': 0.8, ...}, ...]
    r.adjacency                       # (D, D); [i, j] != 0 means i -> j (lingam's B is the transpose)
    r.plot("graph.png"); r.save_graphml("graph.graphml")

`fit` writes X to a temporary .npz and runs `jaxcausal.training.train_and_evaluate`, exactly as
`python -m jaxcausal.train --data FILE` does, so the same settings give the same graph. The run
directory is temporary unless `out=` names one (then X is kept in it as data.npz, so
`python -m jaxcausal.evaluate OUT` and `--resume OUT` work). The Result is read back from the
run directory's files (README, "Reading the results"), never from the engine's internals.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import numpy as np

from jaxcausal import config as config_lib
from jaxcausal import formats
from jaxcausal.errors import InputError

NETWORKX_HINT = 'to_networkx() needs networkx: pip install "jaxcausal[networkx]"'
DATA_FILE = "data.npz"  # X as fit() received it, kept in an `out=` run directory
PRIOR_FILES = {"forbid": "forbid.csv", "require": "require.csv", "tiers": "tiers.csv"}  # lists given to fit()


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    """A learned causal graph, read from a run directory.

    adjacency: (D, D) float; adjacency[i, j] != 0 means names[i] -> names[j] (the row causes the
        column, as NOTEARS and DAGMA write it; lingam's `adjacency_matrix_` B is the transpose,
        B[j, i] for i -> j). An undirected edge (direction not identified by the data) is nonzero
        at both [i, j] and [j, i]. Values are the exported edge weights (1.0 for an edge whose
        file gives no weight).
    lagged: (L, D, D); lagged[l - 1, i, j] != 0 means names[i] at t - l -> names[j] at t. L = 0
        for static data.
    edges: one dict per edge: cause, effect, lag (0 for contemporaneous), weight, orientation
        ("directed": cause -> effect; "undirected": listed once, either order) and confidence
        (the bootstrap fraction in [0, 1], None without --bootstrap).
    names: the D variable names. model: the chosen model (noise, mechanism, scores) from
        summary.json, None if the run does not record one. summary: summary.json. log: the
        training_log.jsonl rows. run_dir: the run directory, None when it was temporary.
    """

    adjacency: np.ndarray
    lagged: np.ndarray
    edges: list[dict]
    names: tuple[str, ...]
    model: dict | None
    summary: dict
    log: list[dict]
    config: dict
    run_dir: str | None = None

    @classmethod
    def from_run_dir(cls, run_dir: str) -> Result:
        run = formats.read_run(run_dir)
        names, edges = run["names"], run["edges"]
        index = {n: k for k, n in enumerate(names)}
        d = len(names)
        adjacency = np.zeros((d, d))
        lagged = np.zeros((run["n_lags"], d, d))
        for e in edges:
            i, j = index[e["cause"]], index[e["effect"]]
            value = e["weight"] if e["weight"] not in (None, 0.0) and np.isfinite(e["weight"]) else 1.0
            if e["lag"]:
                lagged[e["lag"] - 1, i, j] = value
            else:
                adjacency[i, j] = value
                if e["orientation"] == "undirected":
                    adjacency[j, i] = value
        summary = run["summary"] or {}
        return cls(adjacency=adjacency, lagged=lagged, edges=edges, names=names, model=summary.get("model"),
                   summary=summary, log=run["log"], config=run["config"], run_dir=os.fspath(run_dir))

    def __repr__(self) -> str:
        contemporaneous = [e for e in self.edges if e["lag"] == 0]
        undirected = sum(e["orientation"] == "undirected" for e in contemporaneous)
        lagged = len(self.edges) - len(contemporaneous)
        return (f"Result({len(self.names)} variables, {len(contemporaneous)} edges"
                + (f" ({undirected} undirected)" if undirected else "")
                + (f", {lagged} lagged" if lagged else "")
                + (f", run_dir={self.run_dir!r}" if self.run_dir else "") + ")")

    def to_networkx(self, *, lagged: bool = False):
        """nx.DiGraph of the contemporaneous graph (an undirected edge appears in both directions,
        as in `adjacency`, with orientation "undirected"); with `lagged`, an nx.MultiDiGraph of
        every edge, keyed by lag. Edge attributes: weight, lag, orientation, confidence."""
        try:
            import networkx as nx
        except ImportError:
            raise ImportError(NETWORKX_HINT) from None
        graph = nx.MultiDiGraph() if lagged else nx.DiGraph()
        graph.add_nodes_from(self.names)
        for e in self.edges:
            if e["lag"] and not lagged:
                continue
            attrs = {k: e[k] for k in ("weight", "lag", "orientation", "confidence")}
            pairs = [(e["cause"], e["effect"])]
            if e["orientation"] == "undirected":
                pairs.append((e["effect"], e["cause"]))
            for u, v in pairs:
                if lagged:
                    graph.add_edge(u, v, key=e["lag"], **attrs)
                else:
                    graph.add_edge(u, v, **attrs)
        return graph

    def to_dot(self, *, lagged: bool = True) -> str:
        """Graphviz DOT text (render with `dot -Tpng`): undirected edges have no arrowhead, lagged are dashed."""
        return formats.to_dot(self.edges, self.names, lagged=lagged)

    def save_graphml(self, path: str) -> None:
        """GraphML for Gephi, Cytoscape, yEd or `networkx.read_graphml`; written without networkx."""
        formats.write_graphml(path, self.edges, self.names)

    def plot(self, path: str | None = None, *, lagged: bool = True):
        """Draw the graph (matplotlib Figure); with `path`, save it there (Agg, pyplot untouched)."""
        from jaxcausal import plotting
        return plotting.plot_graph(self.edges, self.names, path, lagged=lagged)

    def plot_training(self, path: str | None = None):
        """Loss, acyclicity h and edge-count curves per epoch (matplotlib Figure); with `path`, saved."""
        from jaxcausal import plotting
        return plotting.plot_training(self.log, path, best_epoch=self.summary.get("best_epoch"))


def load_result(run_dir: str) -> Result:
    """The Result of a finished run directory (`python -m jaxcausal.train --out DIR` or `fit(out=DIR)`)."""
    return Result.from_run_dir(run_dir)


def _from_dataframe(frame) -> tuple[np.ndarray, list[str]]:
    names = [str(c) for c in frame.columns]
    bad = [str(c) for c, dtype in frame.dtypes.items() if getattr(dtype, "kind", "O") not in "biuf"]
    if bad:
        raise InputError(f"X: DataFrame column(s) {', '.join(bad[:5])} are not numeric; "
                         "select the variables, e.g. fit(df[[...]]) or df.drop(columns=[...])")
    return frame.to_numpy(dtype=np.float64, na_value=np.nan), names


def as_array(X, names=None) -> tuple[np.ndarray, list[str] | None]:
    """(X as a float array, names or None), checked; pandas is only touched when X is a DataFrame."""
    frame_names = None
    if type(X).__module__.split(".")[0] == "pandas" and hasattr(X, "columns"):
        X, frame_names = _from_dataframe(X)
    try:
        x = np.asarray(X)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise InputError(f"X: cannot be read as an array ({err}); give an (N, D) or (N, T, D) array") from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise InputError(f"X: has non-numeric dtype {x.dtype}; give a float or integer array")
    if x.ndim not in (2, 3):
        raise InputError(f"X: has shape {x.shape}; give (N, D) samples or (N, T, D) windows")
    names = frame_names if names is None else names
    if names is not None:
        if isinstance(names, str):
            raise InputError(f"names: give a list of {x.shape[-1]} strings, not one string")
        names = [str(n) for n in names]
        if len(names) != x.shape[-1] or len(set(names)) != len(names) or "" in names:
            raise InputError(f"names: need {x.shape[-1]} distinct non-empty names (one per column of X), "
                             f"got {len(names)}")
    return x.astype(np.float64), names


def _config(config) -> config_lib.Config:
    if config is None:
        return config_lib.Config()
    if isinstance(config, config_lib.Config):
        return config
    if isinstance(config, (str, os.PathLike)):
        return config_lib.load_toml(os.fspath(config))
    raise InputError(f"config: give a jaxcausal.Config, a preset name or a .toml path, not {type(config).__name__}")


def _write_data(path: str, x: np.ndarray, names, truth) -> None:
    arrays = {"X": x}
    if names is not None:
        arrays["names"] = np.asarray(names, dtype=str)  # a plain str array: object arrays need pickle
    if truth is not None:
        arrays["adjacency"] = np.asarray(truth)
    np.savez(path, **arrays)


def _prior_rows(name: str, value) -> list[list]:
    """CSV rows (header first) of prior knowledge given as Python values rather than a file path:
    forbid / require: [(cause, effect[, lag]), ...]; tiers: {name: tier} or [[tier-0 names], ...]."""
    if name == "tiers":
        if isinstance(value, dict):
            pairs = list(value.items())
        elif isinstance(value, (list, tuple)) and all(isinstance(t, (list, tuple)) for t in value):
            pairs = [(v, k) for k, tier in enumerate(value) for v in tier]
        else:
            raise InputError("tiers: give a file path, a dict {name: tier} or a list of lists of names (tier 0 first)")
        return [["variable", "tier"]] + [[str(v), str(t)] for v, t in pairs]
    rows = [list(e) for e in value] if isinstance(value, (list, tuple)) else None
    if rows is None or any(len(r) not in (2, 3) for r in rows):
        raise InputError(f"{name}: give a file path or a list of (cause, effect) or (cause, effect, lag) tuples")
    return [["cause", "effect", "lag"]] + [[str(r[0]), str(r[1]), str(r[2]) if len(r) > 2 else "0"] for r in rows]


def _write_priors(folder: str, given: dict) -> dict[str, str]:
    """Write prior knowledge given as lists to CSV files in `folder`; {setting: path}."""
    import csv
    paths = {}
    for name, rows in given.items():
        paths[name] = os.path.join(folder, PRIOR_FILES[name])
        with open(paths[name], "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return paths


def fit(X, *, names=None, window: int | None = None, config=None, out: str | None = None,
        **overrides: Any) -> Result:
    """Learn a causal graph from X with the command line's engine; returns a `Result`.

    X: (N, D) samples, (N, T, D) windows or a pandas DataFrame (its columns become `names`);
    NaN marks a missing value. names: D variable names (default x0, x1, ...). window: cut a 2-D
    X whose rows are time steps into windows of this length. config: a `jaxcausal.Config`, a
    preset name ("default", "smoke", ...) or a .toml path. out: keep the run directory there
    (default: a temporary one, removed afterwards). overrides: any config field by its flag's
    name, e.g. epochs=50, seed=0, truth=<D x D 0/1 array or file>; quiet=False prints the epochs.
    Prior knowledge (docs/priors.md): forbid= / require= a CSV path or [(cause, effect[, lag]), ...],
    tiers= a CSV path, {name: tier} or [[tier-0 names], [tier-1 names], ...].
    Bad input raises `jaxcausal.errors.InputError` with one line.
    """
    from jaxcausal.rundir import prepare_output_dir
    from jaxcausal.training import train_and_evaluate  # the engine, only when used

    x, names = as_array(X, names)
    if window is not None and x.ndim == 3:
        raise InputError(f"window: X is already windowed, shape {x.shape} (N, T, D); drop window= "
                         "or pass the series as (rows, D)")
    for given in ("data", "resume"):
        if given in overrides:
            raise InputError(f"fit: '{given}' is not an option here; X is the data "
                             "(train on a file or resume with python -m jaxcausal.train)")
    truth = overrides.pop("truth", None)
    truth_file = truth if isinstance(truth, (str, os.PathLike)) else None
    prior_lists = {name: _prior_rows(name, overrides.pop(name)) for name in PRIOR_FILES
                   if name in overrides and not isinstance(overrides[name], (str, os.PathLike))}
    overrides.update({name: os.fspath(overrides[name]) for name in PRIOR_FILES if name in overrides})
    settings = {"quiet": True, **overrides}
    if out is None:
        settings.setdefault("plots", False)  # nobody would see a temporary directory's figures
    if window is not None:
        settings["window"] = window
    if truth_file is not None:
        settings["truth"] = os.fspath(truth_file)
    cfg = config_lib.replace(_config(config), settings, where="fit")  # unknown names fail here, before any work
    with tempfile.TemporaryDirectory(prefix="jaxcausal-fit-") as tmp:
        run_dir = os.path.abspath(os.fspath(out)) if out is not None else os.path.join(tmp, "run")
        if out is not None:
            prepare_output_dir(run_dir, cfg.train.overwrite, clear=False,
                               alternatives="choose another out= or pass overwrite=True")
        created = not os.path.isdir(run_dir)
        os.makedirs(run_dir, exist_ok=True)
        data_path = os.path.join(run_dir if out is not None else tmp, DATA_FILE)
        _write_data(data_path, x, names, None if truth_file is not None else truth)
        prior_paths = _write_priors(os.path.dirname(data_path), prior_lists)
        cfg = config_lib.replace(cfg, {"data": data_path, "out": run_dir, **prior_paths}, where="fit")
        try:
            _, summary = train_and_evaluate(cfg)
        except InputError as err:  # name the array the user passed, not the file it was written to
            _discard([data_path, *prior_paths.values()], run_dir if created else None)
            message = str(err).replace(data_path, "X")
            for name, path in prior_paths.items():
                message = message.replace(path, f"{name}= list")  # its line 1 is the header
            raise InputError(message) from None
        except BaseException:
            _discard([data_path, *prior_paths.values()], run_dir if created else None)
            raise
        if summary.get("exit_code", 0) >= 128:  # Ctrl-C: the engine saved what it had and stopped
            kept = f"; the run is saved in {run_dir}" if out is not None else ""
            raise KeyboardInterrupt(f"fit interrupted after epoch {summary.get('epochs_run', 0)}{kept}")
        result = Result.from_run_dir(run_dir)
    return result if out is not None else dataclasses.replace(result, run_dir=None)


def _discard(paths: list[str], created_dir: str | None) -> None:
    """Remove the files fit() wrote (and the directory it made, if left empty) after a failure."""
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
    if created_dir and os.path.isdir(created_dir) and not os.listdir(created_dir):
        os.rmdir(created_dir)
