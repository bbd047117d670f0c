"""The exported graph is always a DAG, whatever cycles the weights still hold."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxcausal import export, graphs
from jaxcausal.model import CausalSEM


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_truth", [True, False])
def test_export_breaks_every_cycle(seed, with_truth):
    d = 8
    rng = np.random.default_rng(seed)
    model = CausalSEM(n_vars=d, max_lag=0)
    params = model.init(jax.random.key(seed), np.zeros((2, 1, d), np.float32))["params"]
    w = rng.uniform(0.2, 1.0, (d, d)) * (rng.random((d, d)) < 0.5)  # dense and cyclic
    np.fill_diagonal(w, 0)
    assert not graphs.is_dag(w)
    params = dict(params, w=np.asarray(w, np.float32))
    truth = np.triu(rng.random((d, d)) < 0.3, 1).astype(np.int8) if with_truth else None
    report = export.graph_report(model, params, truth, graph_threshold=0.1)  # no search: thresholded W
    kept = report["orientation"] != 0
    assert graphs.is_dag(kept)
    assert kept.sum() < (w > 0.1).sum()  # cycles were broken
    assert np.all(w[kept] > 0.1)  # only existing edges above the threshold survive
    rows = export.edge_rows(report, [f"x{i}" for i in range(d)])
    assert len(rows) == kept.sum() and all(r[3] == "directed" for r in rows)


def test_graph_csv_lists_an_undirected_edge_once():
    report = {"orientation": np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0]], np.int8),
              "coefficients": np.array([[0, 0.5, -0.7], [0.5, 0, 0], [0, 0, 0]], np.float32)}
    rows = export.edge_rows(report, ["a", "b", "c"])
    assert rows == [("a", "c", pytest.approx(-0.7), "directed"), ("a", "b", 0.5, "undirected")]
