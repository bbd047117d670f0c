"""From trained parameters to the files a user reads: graph.csv, weights.npy, the threshold table.

Shared by training (at the end of a run) and `jaxcausal.evaluate` (from a checkpoint), so both
produce the same graph from the same parameters. The exported graph never depends on ground
truth: the truth, when given, only scores it.
"""
from __future__ import annotations

import csv
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxcausal import cpdag, graphs, program_cache, structure
from jaxcausal import metrics as metrics_lib
from jaxcausal.model import CausalSEM, edge_scores

@functools.partial(jax.jit, compiler_options=program_cache.ONE_SHOT)
def _threshold_table(scores, truth):
    """The 21-threshold table of W's scores against the truth, and the index of its best F1."""
    table = metrics_lib.threshold_table(scores=metrics_lib.scale_scores(scores), truth=truth,
                                        thresholds=jnp.asarray(metrics_lib.THRESHOLDS, jnp.float32))
    return table, metrics_lib.best_threshold_index(table["f1"])


@functools.partial(jax.jit, static_argnums=0, compiler_options=program_cache.ONE_SHOT)
def _learned(model: CausalSEM, params):
    """W, its edge scores and the lag matrices: one program, not an eager op each."""
    return (model.apply({"params": params}, method=CausalSEM.adjacency), edge_scores(model, params),
            model.apply({"params": params}, method=CausalSEM.lag_weights))


def graph_report(model: CausalSEM, params, truth: np.ndarray | None, graph_threshold: float, *,
                 windows: tuple[np.ndarray, np.ndarray] | None = None, search_cfg=None,
                 priors: dict | None = None, seed: int = 0, progress=None) -> dict:
    """W, its scores, the exported graph and, with truth, the metrics of both.

    The trained W, thresholded label-free (score > graph_threshold, cycles broken at their weakest
    edge), gives the search its start. With `windows` = (raw-scale x, mask) training windows and
    `search_cfg.graph_search == "order"`, the export is `structure.choose_graph`'s: the best-order
    search under the noise model chosen by BIC, as a DAG or, where only the equivalence class is
    identified, a CPDAG. Otherwise (or with too few rows) the export is thresholded W itself.
    priors: {"allowed", "required"} (D + L*D, D) masks, enforced by the search.
    Keys: weights, scores, lagged, orientation (D, D) int8 PDAG, coefficients (D, D),
    lagged_coefficients (L, D, D), model, rule; with truth also thresholds (the 21-threshold table), best_index, best_threshold,
    auprc (of W) and exported (metrics of the exported graph, `cpdag.compare`).
    """
    weights, scores, lagged = (np.asarray(a, np.float32) for a in jax.device_get(_learned(model, params)))
    report = {"weights": weights, "scores": scores, "lagged": lagged}
    start = graphs.enforce_dag(np.where(scores > graph_threshold, scores, 0.0))
    chosen = None
    if windows is not None and search_cfg is not None and search_cfg.graph_search == "order":
        priors = priors or {}
        chosen = structure.choose_graph(*windows, n_lags=lagged.shape[0], noise=search_cfg.noise,
                                        mechanism=search_cfg.mechanism, start_DxD=start,
                                        penalty_discount=search_cfg.penalty_discount,
                                        max_rows=search_cfg.search_rows, allowed=priors.get("allowed"),
                                        required=priors.get("required"), bootstrap=search_cfg.bootstrap,
                                        stable_threshold=search_cfg.stable_threshold, seed=seed,
                                        progress=progress)
    if chosen is not None:
        report.update(orientation=chosen["orientation"], coefficients=chosen["coefficients"],
                      lagged_coefficients=chosen["lagged_coefficients"], model=chosen["model"],
                      search_seconds=chosen["seconds"],
                      **{k: chosen[k] for k in ("confidence", "lagged_confidence", "bootstrap") if k in chosen},
                      rule=f"best-order search, {chosen['model']['mechanism']} SEM with {chosen['model']['noise']} "
                           f"noise, BIC (penalty x{search_cfg.penalty_discount:g}), started from the trained W; "
                           f"{chosen['model']['directions']}")
    else:
        directed = start > 0
        report.update(orientation=directed.astype(np.int8), coefficients=np.where(directed, weights, 0.0),
                      lagged_coefficients=np.where(np.abs(lagged) > graph_threshold, lagged, 0.0),
                      model={"noise": None, "mechanism": None, "directions": "thresholded W (no search)"},
                      rule=f"label-free: raw edge score > {graph_threshold}, cycles broken at the weakest edge")
    if truth is not None:
        table, best = jax.device_get(_threshold_table(np.asarray(scores, np.float32), np.asarray(truth, np.float32)))
        best = int(best)
        report.update(thresholds={k: np.asarray(v) for k, v in table.items()}, best_index=best,
                      best_threshold=float(metrics_lib.THRESHOLDS[best]),
                      auprc=float(metrics_lib.auprc(scores=scores, truth=truth)),
                      exported=score_graph(pred=report["orientation"], true=truth))
    return report


def score_graph(*, pred: np.ndarray, true: np.ndarray) -> dict:
    """`cpdag.compare` of the exported graph; a cyclic truth (accepted with a warning) has no
    CPDAG, so it gets `cpdag.compare_without_cpdag`, with cpdag_shd None."""
    if graphs.is_dag(true):
        return cpdag.compare(pred=pred, true=true)
    return cpdag.compare_without_cpdag(pred=pred, true=true)


def edge_rows(report: dict, names) -> list[tuple]:
    """(cause, effect, weight, orientation[, confidence]) of the exported graph, strongest first; an
    undirected edge is listed once, lower variable index first, with the coefficient of the chosen DAG."""
    pdag, coef = report["orientation"] != 0, report["coefficients"]
    conf = report.get("confidence")
    undirected = pdag & pdag.T
    return sorted(((str(names[i]), str(names[j]), float(coef[i, j]), "undirected" if undirected[i, j] else "directed")
                   + (() if conf is None else (round(float(conf[i, j]), 4),))
                   for i, j in zip(*np.nonzero(pdag)) if not (undirected[i, j] and i > j)),
                  key=lambda r: -abs(r[2]))


def console_summary(report: dict, names, top: int = 20) -> list[str]:
    """The end-of-run lines: which model was chosen and why, whether directions are identified,
    and the strongest edges with their orientation."""
    lines = model_lines(report["model"]) if report["model"].get("noise") else []
    rows = edge_rows(report, names)
    lines.append(f"edges: {len(rows)}" + (f" (strongest {top} shown)" if len(rows) > top else ""))
    width = max((len(c) for c, *_ in rows[:top]), default=0)
    for cause, effect, weight, orientation, *conf in rows[:top]:
        arrow = "->" if orientation == "directed" else "--"
        lines.append(f"  {cause:>{width}} {arrow} {effect:<{width}} {weight:+.3f}"
                     + (f"  confidence {conf[0]:.2f}" if conf else ""))
    return lines


def model_lines(model: dict) -> list[str]:
    """The searched model in words: mechanism and noise, the BICs behind the choice, why the MLP
    candidate was not searched (if so), and what identifies the directions."""
    mlp = model.get("mechanism") == "mlp"
    units = (model.get("mlp") or {}).get("hidden_units")
    sem = f"MLP SEM ({units} random tanh units per variable)" if mlp else "linear SEM"
    bics = ", ".join(f"{m} {v['bic']:.1f}" for m, v in model["scores"].items())
    lines = [f"model: {sem}, {model['noise']} noise ({model['choice']}; BIC {bics})"]
    skipped = (model.get("mlp") or {}).get("skipped_because")
    if skipped:
        lines.append(f"MLP mechanism: not searched ({skipped})")
    if model["directions"] == "identified":
        by = "the nonlinear mechanism (additive noise)" if mlp else "the chosen noise model"
        lines.append(f"directions: identified by {by}; graph.csv is a DAG")
    else:
        lines.append(f"directions: NOT identified (Gaussian noise, a variance per variable): graph.csv is the "
                     f"equivalence class, {model['undirected_edges']} edge(s) undirected")
    if mlp:
        lines.append(f"weights: {model['weights']}")
    return lines


def lagged_rows(report: dict, names) -> list[tuple]:
    """(cause, effect, lag, weight[, confidence]) of the exported lagged parents, strongest first."""
    lagged, conf = report["lagged_coefficients"], report.get("lagged_confidence")
    rows = [(str(names[i]), str(names[j]), lag + 1, float(lagged[lag, i, j]))
            + (() if conf is None else (round(float(conf[lag, i, j]), 4),)) for lag, i, j in zip(*np.nonzero(lagged))]
    return sorted(rows, key=lambda r: -abs(r[3]))


def threshold_rows(report: dict) -> list[dict]:
    if "thresholds" not in report:
        return []
    table = report["thresholds"]
    keys = ["f1", "shd", "precision", "recall", "edge_count"]
    return [{"threshold": round(float(t), 4), **{k: float(table[k][i]) for k in keys}}
            for i, t in enumerate(metrics_lib.THRESHOLDS)]


def write_graph_files(run_dir: str, report: dict, names) -> None:
    """graph.csv, weights.npy (the raw D x D W); graph_lagged.csv and weights_lagged.npy if lagged."""
    confidence = ["confidence"] if "confidence" in report else []
    _write_csv(os.path.join(run_dir, "graph.csv"), ["cause", "effect", "weight", "orientation"] + confidence,
               edge_rows(report, names))
    np.save(os.path.join(run_dir, "weights.npy"), report["weights"])
    if report["lagged"].shape[0]:
        np.save(os.path.join(run_dir, "weights_lagged.npy"), report["lagged"])
        _write_csv(os.path.join(run_dir, "graph_lagged.csv"), ["cause", "effect", "lag", "weight"] + confidence,
                   lagged_rows(report, names))


def _write_csv(path: str, header: list[str], rows) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
