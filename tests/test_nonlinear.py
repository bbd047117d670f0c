"""The MLP mechanism of the order search and its place in the label-free model choice (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from jaxcausal import cpdag, graphs, nonlinear, search, structure
from jaxcausal.data import simulate
from jaxcausal.errors import InputError


def _static(seed, *, mechanism="mlp", noise="gaussian", d=6, n=600):
    return simulate(seed=seed, d=d, mechanism=mechanism, noise=noise, n_windows=n)


def test_without_hidden_units_the_local_fit_is_the_linear_score():
    # Nested models: on data where the hidden units do not pay, the MLP fit is the linear fit.
    ds = _static(3, mechanism="linear", d=5)
    z = ds.x[:, 0, :].astype(np.float64)
    linear = search.make_design(z, 5)
    mlp = nonlinear.make_mlp_design(z, 5)
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0]):
        lin_state = search.state_from_order(linear, order, "gauss_nv")
        mlp_state = search.state_from_order(mlp, order, "gauss_nv")
        assert np.allclose(mlp_state.score, lin_state.score, rtol=1e-9, atol=1e-6)
        assert [p.tolist() for p in mlp_state.parents] == [p.tolist() for p in lin_state.parents]
        assert search.param_count(mlp, mlp_state) == search.edge_count(lin_state)


@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_data_pick_the_mlp_and_its_dag(seed):
    ds = _static(seed)
    out = structure.choose_graph(ds.x, ds.mask, n_lags=0)
    model = out["model"]
    assert (model["noise"], model["mechanism"], model["directions"]) == ("gauss_nv", "mlp", "identified")
    scores = model["scores"]
    assert scores[structure.MLP]["bic"] < min(scores[m]["bic"] for m in search.NOISES)
    pdag = out["orientation"]
    assert graphs.is_dag(pdag) and not (pdag & pdag.T).any()  # every edge directed
    assert cpdag.compare(pred=pdag, true=ds.truth)["f1"] >= 0.75
    weights = out["coefficients"][pdag != 0]  # unique variance shares
    assert ((weights > 0) & (weights <= 1)).all() and (out["coefficients"][pdag == 0] == 0).all()


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_linear_data_keep_the_linear_mechanism(noise):
    for seed in (0, 1):
        ds = _static(seed, mechanism="linear", noise=noise)
        model = structure.choose_graph(ds.x, ds.mask, n_lags=0)["model"]
        assert model["mechanism"] == "linear"
        assert model["noise"] == ("laplace" if noise == "laplace" else "gauss_ev")
        if model["mlp"]["searched"]:
            assert model["scores"][structure.MLP]["bic"] > model["scores"][model["noise"]]["bic"]
        else:  # not worth a search: its fits on the linear order already lose
            assert "do not beat the best linear model" in model["mlp"]["skipped_because"]


def test_priors_are_enforced_under_the_mlp_score():
    ds = _static(2, d=6)
    truth = ds.truth.astype(bool)
    i, j = map(int, np.argwhere(truth)[0])
    allowed = np.ones((6, 6), bool)
    allowed[i, j] = False  # forbid a true edge
    free = [(a, b) for a in range(6) for b in range(6) if a != b and not truth[a, b] and not truth[b, a]]
    required = np.zeros((6, 6), bool)
    required[free[0]] = True  # require an absent one
    out = structure.choose_graph(ds.x, ds.mask, n_lags=0, mechanism="mlp", allowed=allowed, required=required)
    assert out["model"]["mechanism"] == "mlp"
    dag = out["orientation"] != 0
    assert not dag[i, j] and dag[free[0]] and graphs.is_dag(dag)


def test_time_series_keep_the_linear_mechanism_and_say_why():
    ds = simulate(seed=0, d=4, n_windows=60, window=8, mechanism="mlp")
    model = structure.choose_graph(ds.x, ds.mask, n_lags=1)["model"]
    assert model["mechanism"] == "linear" and not model["mlp"]["searched"]
    assert "time series" in model["mlp"]["skipped_because"]
    assert structure.MLP not in model["scores"]
    with pytest.raises(InputError, match="time series"):
        structure.choose_graph(ds.x, ds.mask, n_lags=1, mechanism="mlp")
    with pytest.raises(InputError, match="unknown"):
        structure.choose_graph(ds.x, ds.mask, n_lags=1, mechanism="gp")


def _report_under(mechanism: str, ds) -> dict:
    """export.graph_report with the search section's --mechanism, as a run's end calls it."""
    import jax
    from jaxcausal import config as config_lib, export
    from jaxcausal.model import CausalSEM
    d = ds.x.shape[-1]
    sem = CausalSEM(n_vars=d, max_lag=0)
    params = sem.init(jax.random.key(0), np.zeros((2, 1, d), np.float32))["params"]
    cfg = config_lib.replace(config_lib.Config(), {"mechanism": mechanism})
    return export.graph_report(sem, params, None, cfg.train.graph_threshold, windows=(ds.x, ds.mask),
                               search_cfg=cfg.search)


def test_mechanism_setting_forces_linear_or_mlp():
    ds = _static(0, d=5, n=400)  # tiny MLP data, on which auto picks the MLP
    linear = _report_under("linear", ds)
    model = linear["model"]
    assert model["mechanism"] == "linear" and structure.MLP not in model["scores"]
    assert model["mlp"] == {"searched": False, "skipped_because": "mechanism fixed to linear",
                            "hidden_units": nonlinear.HIDDEN}
    assert "linear SEM" in linear["rule"]
    model = _report_under("mlp", ds)["model"]  # the MLP alone is searched: no linear candidate to lose to
    assert (model["mechanism"], model["noise"], model["choice"]) == ("mlp", "gauss_nv", "fixed")
    assert list(model["scores"]) == [structure.MLP]
