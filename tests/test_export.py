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


def _searched_model(mechanism: str, **extra) -> dict:
    """A `model` entry as structure.choose_graph records it (only the keys the console reads)."""
    mlp = mechanism == "mlp"
    return {"noise": "gauss_nv" if mlp else "laplace", "mechanism": mechanism, "choice": "auto (lowest BIC)",
            "directions": "identified", "weights": "share of the effect's variance" if mlp else "coefficient",
            "scores": {"laplace": {"bic": 10.0}, "gauss_nv+mlp": {"bic": 5.0 if mlp else 12.0}},
            "mlp": {"searched": True, "skipped_because": None, "hidden_units": 120}, **extra}


def _console(model: dict) -> list[str]:
    report = {"model": model, "orientation": np.array([[0, 1], [0, 0]], np.int8),
              "coefficients": np.array([[0, 0.4], [0, 0]], np.float32)}
    return export.console_summary(report, ["a", "b"])


def test_console_names_the_chosen_mechanism():
    mlp = _console(_searched_model("mlp"))
    assert mlp[0].startswith("model: MLP SEM (120 random tanh units per variable), gauss_nv noise"), mlp
    assert "identified by the nonlinear mechanism" in mlp[1] and mlp[2].startswith("weights: share")
    assert not any("linear SEM" in line for line in mlp)
    linear = _console(_searched_model("linear"))
    assert linear[0].startswith("model: linear SEM, laplace noise (auto (lowest BIC); BIC laplace 10.0, "
                                "gauss_nv+mlp 12.0)"), linear
    assert not any("MLP" in line or "weights:" in line for line in linear)  # searched and lost: its BIC says so
    assert linear[-2:] == ["edges: 1", "  a -> b +0.400"]


def test_console_says_why_the_mlp_was_not_searched():
    why = "mechanism fixed to linear"
    lines = _console(_searched_model("linear", scores={"laplace": {"bic": 10.0}},
                                     mlp={"searched": False, "skipped_because": why, "hidden_units": 120}))
    assert lines[1] == f"MLP mechanism: not searched ({why})"
    assert sum("MLP" in line for line in lines) == 1 and "linear SEM" in lines[0]
    # A thresholded-W export (no search) names no model at all.
    assert _console({"noise": None, "mechanism": None, "directions": "thresholded W (no search)"})[0] == "edges: 1"
