"""From trained parameters to the files a user reads: graph.csv, weights.npy, the threshold table.

Shared by training (at the end of a run) and `jaxcausal.evaluate` (from a checkpoint), so both
produce the same graph from the same parameters.
"""
from __future__ import annotations

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxcausal import graphs
from jaxcausal import metrics as metrics_lib
from jaxcausal import refine as refine_lib
from jaxcausal.model import CausalSEM

_sweep = jax.jit(lambda scores, truth: metrics_lib.threshold_sweep(
    scores=metrics_lib.scale_scores(scores), truth=truth,
    thresholds=jnp.asarray(metrics_lib.THRESHOLDS, jnp.float32)))
_metrics_at = jax.jit(lambda scores, truth, t: metrics_lib.edge_metrics(scores=scores, truth=truth, threshold=t))


def _floats(tree) -> dict:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def graph_report(model: CausalSEM, params, truth: np.ndarray | None, graph_threshold: float,
                 refine_on: tuple[np.ndarray, np.ndarray] | None = None, noise: str = "gaussian") -> dict:
    """Scores, the exported DAG and (with truth) metrics of the exported and label-free graphs.

    Exported graph: with ground truth, the validation-best threshold over scaled scores (as the
    original's sweep); without, the label-free rule score > graph_threshold on raw scores (a
    standardised effect size for the linear SEM). Any cycle left is broken by removing its weakest
    edge, so the export is always a DAG. With `refine_on` = (x, mask) training windows (linear SEM),
    that DAG is then refined by hill climbing on a BIC score with `noise` (see `refine`); the exported
    edges then carry least-squares coefficients on the refined graph ("edge_weights"); weights.npy
    stays W. With truth, "label_free" scores the graph the label-free rule would have exported.
    """
    variables = {"params": params}
    weights = np.asarray(model.apply(variables, method=CausalSEM.adjacency), np.float32)
    scores = np.abs(weights)
    lagged = np.asarray(model.apply(variables, method=CausalSEM.lag_weights), np.float32)
    report = {"weights": weights, "scores": scores, "lagged": lagged}
    label_free = scores > graph_threshold

    def acyclic(chosen: np.ndarray) -> dict:
        dag = graphs.enforce_dag(np.where(chosen, scores, 0.0))
        return {"dag": dag, "edge_weights": weights, "pruned_for_dag": int(chosen.sum() - (dag > 0).sum())}

    def refined_exports(chosen_sets: list[np.ndarray]) -> list[dict]:
        """The acyclic export of each edge set, refined in one search (`refine`) when configured."""
        outs = [acyclic(c) for c in chosen_sets]
        results = None if refine_on is None else refine_lib.refine(*refine_on, [o["dag"] for o in outs],
                                                                   n_lags=lagged.shape[0], noise=noise)
        for out, refined in zip(outs, results or []):
            before, after = out["dag"] > 0, refined["dag"]
            out["refined"] = {"start": refined["start"], "moves": refined["moves"], "rows": refined["rows"],
                              "score": refined["score"], "noise": noise,
                              "added": int((after & ~before & ~before.T).sum()),
                              "removed": int((before & ~after & ~after.T).sum()),
                              "reversed": int((before & after.T).sum())}
            out["edge_weights"] = refined["coefficients"]
            if lagged.shape[0]:
                out["lagged_edge_weights"] = refined["lagged_coefficients"]
            # Edge strength for ordering; a refit coefficient is never exactly 0, the floor only guards it.
            out["dag"] = np.where(after, np.maximum(np.abs(refined["coefficients"]), 1e-12), 0.0).astype(np.float32)
        return outs

    def metrics_of(dag: np.ndarray) -> dict:
        return _floats(_metrics_at(jnp.asarray((dag > 0).astype(np.float32)), jnp.asarray(truth, jnp.float32),
                                   jnp.float32(0.5)))

    if truth is not None:
        t = jnp.asarray(truth, jnp.float32)
        sweep = jax.device_get(_sweep(jnp.asarray(scores), t))
        best = int(metrics_lib.best_threshold_index(sweep["f1"]))
        scaled = np.asarray(metrics_lib.scale_scores(jnp.asarray(scores)))
        chosen = scaled > metrics_lib.THRESHOLDS[best]
        report.update(
            sweep={k: np.asarray(v) for k, v in sweep.items()}, best_index=best,
            best_threshold=float(metrics_lib.THRESHOLDS[best]),
            auprc=float(metrics_lib.auprc(scores=scores, truth=truth)),
            rule=f"validation-best threshold {metrics_lib.THRESHOLDS[best]:.2f} on scores scaled to [0, 1]")
        exported, label_free_export = refined_exports([chosen, label_free])
        report["label_free"] = metrics_of(label_free_export["dag"])
    else:
        report["rule"] = f"label-free: raw edge score > {graph_threshold}"
        (exported,) = refined_exports([label_free])
    report.update(exported)
    if "refined" in report:
        report["rule"] += f"; refined by hill climbing on a {noise} BIC"
    if truth is not None:
        report["exported"] = metrics_of(report["dag"])
    return report


def threshold_table(report: dict) -> list[dict]:
    if "sweep" not in report:
        return []
    sweep = report["sweep"]
    keys = ["f1", "shd", "precision", "recall", "edge_count"]
    return [{"threshold": round(float(t), 4), **{k: float(sweep[k][i]) for k in keys}}
            for i, t in enumerate(metrics_lib.THRESHOLDS)]


def write_graph_files(run_dir: str, report: dict, names) -> None:
    """graph.csv (cause, effect, weight), weights.npy (D, D); lagged graph and weights if any."""
    dag, weights = report["dag"], report["edge_weights"]
    rows = [(c, e, float(weights[names.index(c), names.index(e)]))
            for c, e, _ in graphs.edges_table(dag, list(names))]
    _write_csv(os.path.join(run_dir, "graph.csv"), ["cause", "effect", "weight"], rows)
    np.save(os.path.join(run_dir, "weights.npy"), report["weights"])
    lagged = report["lagged"]
    if lagged.shape[0]:
        np.save(os.path.join(run_dir, "weights_lagged.npy"), lagged)


def write_lagged_graph(run_dir: str, report: dict, names, threshold: float) -> None:
    """graph_lagged.csv: lagged edges with |weight| > threshold, from the refit when refined."""
    lagged = report.get("lagged_edge_weights", report["lagged"])
    if not lagged.shape[0]:
        return
    rows = [(names[i], names[j], lag + 1, float(lagged[lag, i, j]))
            for lag in range(lagged.shape[0]) for i in range(lagged.shape[1]) for j in range(lagged.shape[2])
            if abs(lagged[lag, i, j]) > threshold]
    rows.sort(key=lambda r: -abs(r[3]))
    _write_csv(os.path.join(run_dir, "graph_lagged.csv"), ["cause", "effect", "lag", "weight"], rows)


def _write_csv(path: str, header: list[str], rows) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
