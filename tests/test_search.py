"""The order search and the label-free model choice (numpy; no training involved)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jaxcausal import cpdag, graphs, search, structure
from jaxcausal.data import simulate


def _rows(seed, *, d=6, noise="gaussian", n=600, window=1, noise_scale=1.0, n_edges=None):
    ds = simulate(seed=seed, d=d, noise=noise, n_windows=n, window=window, noise_scale=noise_scale,
                  n_edges=n_edges)
    return ds


def _dag_of(design, state):
    coef, _ = search.adjacency(design, state)
    return coef != 0


@pytest.mark.parametrize("noise", search.NOISES)
def test_search_returns_a_dag_no_worse_than_its_start(noise):
    rng = np.random.default_rng(0)
    for seed in range(4):
        ds = _rows(seed, d=7, noise="laplace")
        design = search.make_design(ds.x[:, 0, :], 7)
        start = list(rng.permutation(7))
        begin = search.state_from_order(design, start, noise)
        end = search.best_order_search(design, start, noise)
        assert graphs.is_dag(_dag_of(design, end))
        assert end.total <= begin.total + 1e-9
        # The state's parents always precede their child in its order.
        pos = {v: i for i, v in enumerate(end.order)}
        assert all(pos[int(p)] < pos[j] for j in range(7) for p in end.parents[j])


def test_local_scores_match_a_plain_least_squares_reference():
    ds = _rows(3, d=5)
    z = ds.x[:, 0, :].astype(np.float64)
    design = search.make_design(z, 5, penalty_discount=1.0)
    zc = z - z.mean(axis=0)
    state = search.state_from_order(design, [0, 1, 2, 3, 4], "gauss_nv")
    for j in range(5):
        pa = state.parents[j]
        coef = np.linalg.lstsq(zc[:, pa], zc[:, j], rcond=None)[0] if len(pa) else np.zeros(0)
        rss = np.mean((zc[:, j] - zc[:, pa] @ coef) ** 2)
        assert np.allclose(state.coef[j], coef, atol=1e-8)
        assert state.score[j] == pytest.approx(0.5 * len(z) * np.log(rss) + 0.5 * np.log(len(z)) * len(pa))


def test_recovers_the_class_of_an_easy_gaussian_graph():
    ds = _rows(1, d=8, n=2000, n_edges=10)
    design = search.make_design(ds.x[:, 0, :], 8)
    state = search.search(design, [list(range(8)), list(range(8))[::-1]], "gauss_nv")
    found = cpdag.cpdag_from_dag(_dag_of(design, state))
    assert np.array_equal(found, cpdag.cpdag_from_dag(ds.truth))


def _choice(ds, **kw):
    out = structure.choose_graph(ds.x, ds.mask, n_lags=1, **kw)
    return out["model"]["noise"], out


@pytest.mark.parametrize("seed", [0, 1])
def test_model_choice_picks_the_generating_noise_model(seed):
    # Equal noise variances on the data's own scale: the equal-variance model, and the DAG itself.
    ev = _rows(seed, d=8, n=1500, n_edges=10)
    chosen, out = _choice(ev)
    assert chosen == "gauss_ev"
    assert np.array_equal(out["orientation"] != 0, ev.truth != 0)
    # The same data with every variable rescaled: per-variable Gaussian, exported as a CPDAG.
    scales = np.random.default_rng(seed).uniform(0.2, 5.0, 8)
    nv = _rows(seed, d=8, n=1500, n_edges=10)
    nv = dataclasses.replace(nv, x=(nv.x * scales).astype(np.float32))
    chosen, out = _choice(nv)
    assert chosen == "gauss_nv"
    assert out["model"]["directions"].startswith("equivalence class")
    assert np.array_equal(out["orientation"], cpdag.cpdag_from_dag(nv.truth))
    # Heavy-tailed noise: Laplace, with every direction right.
    lap = _rows(seed, d=8, n=1500, n_edges=10, noise="laplace", noise_scale=np.random.default_rng(seed).uniform(0.5, 2, 8))
    chosen, out = _choice(lap)
    assert chosen == "laplace"
    assert np.array_equal(out["orientation"] != 0, lap.truth != 0)


def test_a_lagged_parent_orients_the_contemporaneous_edge():
    # x_{t-1} -> y_t <- z_t with x and z unrelated at t: the v-structure orients z -> y, which a
    # static CPDAG of the single edge z - y would leave undirected.
    rng = np.random.default_rng(0)
    n_win, t = 400, 16
    x = rng.standard_normal((n_win, t))
    z = rng.standard_normal((n_win, t)) * 1.7
    y = np.zeros((n_win, t))
    y[:, 1:] = 0.9 * x[:, :-1] + 0.8 * z[:, 1:] + rng.standard_normal((n_win, t - 1)) * 0.6
    data = np.stack([x, z, y], axis=-1)[:, 1:]
    out = structure.choose_graph(data, np.ones_like(data), n_lags=1, noise="gauss_nv")
    pdag, lag = out["orientation"], out["lagged_coefficients"]
    assert lag[0, 0, 2] != 0  # x_{t-1} -> y_t found
    assert pdag[1, 2] == 1 and pdag[2, 1] == 0  # z -> y directed
    assert pdag.sum() == 1


def test_prior_knowledge_is_enforced_exactly():
    ds = _rows(2, d=6, n=800)
    truth = ds.truth.astype(bool)
    i, j = map(int, np.argwhere(truth)[0])
    allowed = np.ones((6, 6), bool)
    allowed[i, j] = False  # forbid a true edge
    required = np.zeros((6, 6), bool)
    free = [(a, b) for a in range(6) for b in range(6) if a != b and not truth[a, b] and not truth[b, a]]
    ra, rb = free[0]
    required[ra, rb] = True  # require an absent one
    design = search.make_design(ds.x[:, 0, :], 6, allowed=allowed, required=required)
    for start in ([0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]):
        for noise in search.NOISES:
            dag = _dag_of(design, search.search(design, [start], noise))
            assert not dag[i, j] and dag[ra, rb] and graphs.is_dag(dag)


def test_too_few_rows_give_no_search_and_say_so():
    said = []
    ds = _rows(0, d=6, n=6)
    assert structure.choose_graph(ds.x, ds.mask, n_lags=0, progress=said.append) is None
    assert said == ["search: skipped, 6 complete rows for 6 design columns (it needs 7); the graph is thresholded W"]


def test_rows_just_above_the_columns_are_searched():
    # As prepare admits them (prepare.rows_needed): d = 1000 with n = 2000 (1600 training rows) once
    # fell below the 2 rows per column the search used to ask.
    ds = _rows(0, d=6, n=7)
    assert structure.choose_graph(ds.x, ds.mask, n_lags=0) is not None


def test_bootstrap_confidence_and_stability_selection():
    ds = _rows(4, d=6, n=800, noise="laplace", n_edges=6)
    kw = dict(n_lags=0, noise="laplace", bootstrap=6, seed=3)
    out = structure.choose_graph(ds.x, ds.mask, **kw)
    again = structure.choose_graph(ds.x, ds.mask, **kw)
    assert np.array_equal(out["confidence"], again["confidence"])  # seeded replicates
    conf, pdag = out["confidence"], out["orientation"] != 0
    assert ((conf >= 0) & (conf <= 1)).all() and (conf[~pdag] == 0).all()
    assert out["bootstrap"]["replicates"] == 6
    # A strong, clean graph: every true edge is found in (nearly) every replicate.
    assert (conf[ds.truth != 0] >= 5 / 6).all()
    stable = structure.choose_graph(ds.x, ds.mask, **kw, stable_threshold=0.99)
    kept = stable["orientation"] != 0
    assert graphs.is_dag(kept)
    assert (stable["confidence"][kept] >= 0.99).all()
    assert kept.sum() <= pdag.sum()


def test_a_relocation_lands_on_the_best_position_found_by_refitting_every_order():
    ds = _rows(5, d=6, n=600)
    design = search.make_design(ds.x[:, 0, :], 6)
    state = search.state_from_order(design, [5, 3, 1, 0, 2, 4], "gauss_nv")
    for v in range(6):
        rest = [w for w in state.order if w != v]
        totals = [search.state_from_order(design, rest[:k] + [v] + rest[k:], "gauss_nv").total for k in range(6)]
        before = state.total
        moved = search.relocate(design, state, v, "gauss_nv", 1.0)
        if moved:  # the incremental totals agree with refitting the whole new order
            assert state.total == pytest.approx(min(totals), rel=1e-9, abs=1e-6)
            assert state.total == pytest.approx(search.state_from_order(design, state.order, "gauss_nv").total,
                                                rel=1e-9, abs=1e-6)
        else:
            assert min(totals) >= before - 1e-6 * max(1.0, abs(before))
    assert state.moves > 0  # the start was not optimal: some relocation was checked against the refit


def test_each_start_is_searched_as_if_alone():
    # Fits depend in their last bits on the batch they were computed in: a start searched after
    # others must not reuse their cached fits, or its answer would depend on where it ran.
    ds = _rows(3, d=10, n=500, n_edges=20)
    design = search.make_design(ds.x[:, 0, :], 10)
    starts = structure.restarts(list(range(10)), 10, 0)
    after_others = [search.search_from(design, s, noise="gauss_nv") for s in starts]
    alone = [search.search_from(search.make_design(ds.x[:, 0, :], 10), s, noise="gauss_nv") for s in starts]
    assert [(s.total, s.order) for s in after_others] == [(s.total, s.order) for s in alone]
