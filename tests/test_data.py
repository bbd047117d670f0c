"""jaxcausal.data: generator, loaders, truth validation, split and standardisation."""

import json

import numpy as np
import pytest

from jaxcausal.data import (
    BUILTIN, Dataset, Standardizer, builtin_dataset, find_cycle, is_dag, load_data, load_truth, random_dag,
    simulate, split_windows, subset,
)
from jaxcausal.errors import InputError

NAMES = ("a", "b", "c")


# ---------------------------------------------------------------- generator

@pytest.mark.parametrize("graph", ["er", "sf"])
@pytest.mark.parametrize("d, n_edges", [(1, 0), (5, 4), (8, 16), (12, 30)])
def test_random_dag_is_dag_with_requested_edges(graph, d, n_edges):
    dag = random_dag(d, n_edges, graph, np.random.default_rng(0))
    assert dag.shape == (d, d) and dag.dtype == np.int8
    assert set(np.unique(dag)) <= {0, 1} and not np.diag(dag).any()
    assert is_dag(dag)
    assert dag.sum() == n_edges


def test_random_dag_refuses_impossible_requests():
    with pytest.raises(InputError, match="edges"):
        random_dag(4, 7, "er", np.random.default_rng(0))
    with pytest.raises(InputError, match="graph type"):
        random_dag(4, 2, "tree", np.random.default_rng(0))


def test_find_cycle_follows_edge_direction():
    adj = np.zeros((4, 4))
    adj[0, 1] = adj[1, 2] = adj[2, 0] = adj[2, 3] = 1
    cycle = find_cycle(adj)
    assert sorted(cycle) == [0, 1, 2]
    assert all(adj[i, j] for i, j in zip(cycle, cycle[1:] + cycle[:1]))
    assert find_cycle(np.triu(np.ones((4, 4)), 1)) is None


@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
@pytest.mark.parametrize("noise", ["gaussian", "laplace", "uniform", "gumbel", "exponential"])
def test_simulate_static_shapes_and_truth(mechanism, noise):
    data = simulate(seed=0, d=5, n_windows=40, mechanism=mechanism, noise=noise)
    assert data.x.shape == data.mask.shape == (40, 1, 5) and data.is_static
    assert data.x.dtype == data.mask.dtype == np.float32 and np.isfinite(data.x).all()
    assert data.truth.dtype == np.int8 and data.truth.sum() == 10 and is_dag(data.truth)
    assert data.truth_lagged is None and data.names == ("x0", "x1", "x2", "x3", "x4")


@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
def test_simulate_time_series_is_stable_and_has_lag_truth(mechanism):
    # Heavy weights and strong AR would explode without the stability rescale.
    data = simulate(seed=3, d=6, n_windows=30, window=20, mechanism=mechanism, autoregressive=0.99,
                    lag_edges=4, weight_range=(1.5, 2.0))
    assert data.x.shape == (30, 20, 6) and not data.is_static
    assert np.isfinite(data.x).all() and np.abs(data.x).max() < 1e6
    assert data.truth_lagged.shape == (1, 6, 6)
    assert np.diag(data.truth_lagged[0]).all()  # autoregressive effects are lag edges
    off_diagonal = data.truth_lagged[0] * (1 - np.eye(6, dtype=np.int8))
    assert off_diagonal.sum() == 4


@pytest.mark.parametrize("noise", ["gaussian", "laplace", "uniform", "gumbel", "exponential"])
def test_noise_is_standardised(noise):
    data = simulate(seed=1, d=3, n_edges=0, n_windows=20000, noise=noise, noise_scale=2.0)
    x = data.x[:, 0].astype(np.float64)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.1)
    np.testing.assert_allclose(x.std(0), 2.0, rtol=0.05)


def test_simulate_is_deterministic_by_seed():
    kwargs = dict(d=4, n_windows=10, window=5, mechanism="mlp", missing_fraction=0.1)
    a, b, c = simulate(seed=7, **kwargs), simulate(seed=7, **kwargs), simulate(seed=8, **kwargs)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.x, c.x)


def test_simulate_missing_fraction_folds_into_mask():
    data = simulate(seed=0, d=4, n_windows=500, missing_fraction=0.25)
    assert abs(1 - data.mask.mean() - 0.25) < 0.03
    assert (data.x[data.mask == 0] == 0).all()


def test_simulate_refuses_bad_arguments():
    for kwargs in [dict(noise="cauchy"), dict(mechanism="gp"), dict(noise_scale=0.0), dict(missing_fraction=1.0),
                   dict(weight_range=(2.0, 1.0)), dict(window=0), dict(window=4, lag_edges=100)]:
        with pytest.raises(InputError):
            simulate(seed=0, d=4, n_windows=5, **kwargs)


def test_builtin_dataset_contract():
    data = builtin_dataset()
    assert data.x.shape == (BUILTIN["n_windows"], 32, 10) and data.source == "builtin"
    assert data.truth.sum() == 13 and is_dag(data.truth)
    assert data.truth_lagged.shape == (1, 10, 10)
    assert data.mask.all()
    assert data.x.min() >= 0  # raw, sensor-like scale: never clipped, never negative
    medians = np.median(data.x.reshape(-1, 10), axis=0)
    assert (medians > 100).all() and (medians < 5000).all()
    np.testing.assert_array_equal(builtin_dataset(1).x, builtin_dataset(1).x)


# ---------------------------------------------------------------- loaders

def _series(n=40, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _write_csv(path, text):
    path.write_text(text)
    return path


def test_npz_round_trip_with_mask_names_adjacency(tmp_path):
    x = _series(24).reshape(4, 6, 3)
    mask = np.ones_like(x)
    mask[0, 0, 1] = 0
    adjacency = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    path = tmp_path / "d.npz"
    np.savez(path, X=x, mask=mask, adjacency=adjacency, names=np.array(NAMES))
    data = load_data(path)
    assert data.x.shape == (4, 6, 3) and data.names == NAMES and data.source == str(path)
    assert data.mask[0, 0, 1] == 0 and data.x[0, 0, 1] == 0
    np.testing.assert_allclose(data.x[data.mask == 1], x[mask == 1].astype(np.float32))
    np.testing.assert_array_equal(data.truth, adjacency)
    assert data.warnings == ()


def test_npy_static_integer_data(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.arange(30, dtype=np.int64).reshape(10, 3) ** 2)
    data = load_data(path)
    assert data.x.shape == (10, 1, 3) and data.x.dtype == np.float32 and data.is_static
    assert data.names == ("x0", "x1", "x2") and data.truth is None


def test_nan_and_inf_fold_into_mask(tmp_path):
    x = _series(12)
    x[2, 0], x[5, 2] = np.nan, np.inf
    path = tmp_path / "d.npy"
    np.save(path, x)
    data = load_data(path)
    assert data.mask[2, 0, 0] == 0 and data.mask[5, 0, 2] == 0 and data.mask.sum() == 12 * 3 - 2
    assert np.isfinite(data.x).all() and data.x[2, 0, 0] == 0


def test_large_values_are_fine(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, 1e6 + _series(50))
    data = load_data(path)
    stats = Standardizer.fit(data.x, data.mask)
    z = stats.apply(data.x, data.mask)
    assert np.isfinite(z).all() and abs(z.std() - 1) < 0.05


def test_csv_missing_cells_and_header(tmp_path):
    path = _write_csv(tmp_path / "d.csv", "a,b,c\n1,2,3\n4,,6\nnan,NA,9\n10,11,12.5\n")
    data = load_data(path)
    assert data.names == NAMES and data.x.shape == (4, 1, 3)
    np.testing.assert_array_equal(data.mask[:, 0], [[1, 1, 1], [1, 0, 1], [0, 0, 1], [1, 1, 1]])
    assert data.x[3, 0, 2] == 12.5


def test_window_and_stride_cut_one_series(tmp_path):
    x = np.arange(30, dtype=float).reshape(10, 3)
    x[:, 1] **= 2
    path = tmp_path / "s.csv"
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    data = load_data(path, window=4)
    assert data.x.shape == (2, 4, 3)
    np.testing.assert_array_equal(data.x[1, 0], x[4])
    data = load_data(path, window=4, stride=2)
    assert data.x.shape == (4, 4, 3)
    np.testing.assert_array_equal(data.x[:, 0, 0], x[[0, 2, 4, 6], 0])


@pytest.mark.parametrize("kind, match", [
    ("missing", "not found"), ("empty", "empty"), ("suffix", "unknown data file type"),
    ("no_x", "no array 'X'"), ("rank1", "rank 1"), ("rank4", "rank 4"), ("strings", "non-numeric"),
    ("mask_shape", "mask has shape"), ("mask_values", "only 0"), ("all_missing", "'x1' have no observed"),
    ("constant", "'x2' are constant"), ("cell", "line 3, column 'b'"), ("numeric_header", "header"),
    ("long_window", "longer than the series"), ("windowed", "already windowed"), ("ragged", "line 3 has 2"),
    ("names", "names"), ("adjacency", "shape"), ("pickled", "Python objects"), ("blank", "blank lines"),
])
def test_load_data_errors_name_the_file(tmp_path, kind, match):
    path = tmp_path / ("d.csv" if kind in ("cell", "numeric_header", "ragged", "empty", "blank") else "d.npz")
    x = _series(8)
    kwargs = {}
    if kind == "missing":
        path = tmp_path / "nope.npz"
    elif kind == "empty":
        path.write_text("")
    elif kind == "blank":
        path.write_text("\n  \n")
    elif kind == "suffix":
        path = tmp_path / "d.parquet"
        path.write_text("x")
    elif kind == "no_x":
        np.savez(path, data=x)
    elif kind in ("rank1", "rank4"):
        np.savez(path, X=np.zeros((3,) * int(kind[-1])))
    elif kind == "strings":
        np.savez(path, X=np.array([["a", "b"], ["c", "d"]]))
    elif kind == "mask_shape":
        np.savez(path, X=x, mask=np.ones((8, 2)))
    elif kind == "mask_values":
        np.savez(path, X=x, mask=np.full_like(x, 0.5))
    elif kind == "all_missing":
        x[:, 1] = np.nan
        np.savez(path, X=x)
    elif kind == "constant":
        x[:, 2] = 0.1
        np.savez(path, X=x)
    elif kind == "cell":
        _write_csv(path, "a,b\n1,2\n3,oops\n")
    elif kind == "numeric_header":
        _write_csv(path, "1,2\n3,4\n")
    elif kind == "ragged":
        _write_csv(path, "a,b,c\n1,2,3\n4,5\n")
    elif kind in ("long_window", "windowed"):
        np.savez(path, X=x if kind == "long_window" else x.reshape(2, 4, 1, 3)[:, :, 0])
        kwargs = dict(window=9)
    elif kind == "names":
        np.savez(path, X=x, names=np.array(["a", "b"]))
    elif kind == "adjacency":
        np.savez(path, X=x, adjacency=np.zeros((2, 2)))
    elif kind == "pickled":
        np.savez(path, X=x, names=np.array(["a", 1, None], dtype=object))
    with pytest.raises(InputError, match=match) as info:
        load_data(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_window_longer_than_series_has_zero_windows(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, _series(5))
    with pytest.raises(InputError, match="window 6 is longer"):
        load_data(path, window=6)


# ---------------------------------------------------------------- ground truth

CHAIN = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.int8)


def test_truth_formats_agree(tmp_path):
    np.save(tmp_path / "t.npy", CHAIN)
    np.savetxt(tmp_path / "plain.csv", CHAIN, delimiter=",", fmt="%d")
    _write_csv(tmp_path / "header.csv", "c,a,b\n0,0,0\n0,0,1\n1,0,0\n")  # header reorders rows and columns
    _write_csv(tmp_path / "labelled.csv", ",a,b,c\na,0,1,0\nb,0,0,1\nc,0,0,0\n")
    _write_csv(tmp_path / "edges.csv", "cause,effect,weight\na,b,0.5\nb,c,-1.2\n")
    for name in ("t.npy", "plain.csv", "header.csv", "labelled.csv", "edges.csv"):
        truth, warnings = load_truth(tmp_path / name, NAMES)
        np.testing.assert_array_equal(truth, CHAIN, err_msg=name)
        assert truth.dtype == np.int8 and warnings == [], name


def test_truth_warnings_binarise_self_loops_cycles(tmp_path):
    weighted = np.array([[0.7, -1.5, 0], [0, 0, 2.0], [0.3, 0, 0]])
    np.save(tmp_path / "w.npy", weighted)
    truth, warnings = load_truth(tmp_path / "w.npy", NAMES)
    np.testing.assert_array_equal(truth, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    text = " | ".join(warnings)
    assert "binarised" in text and "self-loops on a" in text
    assert "cycle (" in text and "scoring directed edges as given" in text


@pytest.mark.parametrize("content, match", [
    ("0,1\n0,0\n", r"shape \(2, 2\) but the data has 3"),
    ("cause,effect\na,z\nq,b\n", "'z', 'q'"),
    ("0,1,0\n0,x,1\n0,0,0\n", "line 2, column '2'"),
    ("a,b,d\n0,1,0\n0,0,1\n0,0,0\n", "unknown: d"),
])
def test_truth_errors_name_the_file(tmp_path, content, match):
    path = _write_csv(tmp_path / "t.csv", content)
    with pytest.raises(InputError, match=match) as info:
        load_truth(path, NAMES)
    assert str(path) in str(info.value)


def test_npz_adjacency_shares_truth_validation(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=_series(8), adjacency=np.array([[1, 2, 0], [0, 0, 1], [0, 0, 0]]))
    data = load_data(path)
    np.testing.assert_array_equal(data.truth, CHAIN)
    assert any("binarised" in w for w in data.warnings) and any("self-loops" in w for w in data.warnings)


# ---------------------------------------------------------------- split and standardisation

def test_split_is_seeded_disjoint_and_complete():
    train, val = split_windows(50, val_fraction=0.2, seed=3)
    again = split_windows(50, val_fraction=0.2, seed=3)
    other = split_windows(50, val_fraction=0.2, seed=4)
    assert len(val) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, val])) == list(range(50))
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, other[1])


@pytest.mark.parametrize("n, fraction", [(1, 0.2), (2, 0.1), (10, 0.99), (10, 0.0)])
def test_split_refuses_empty_side(n, fraction):
    with pytest.raises(InputError, match="fraction"):
        split_windows(n, val_fraction=fraction, seed=0)


def test_standardizer_uses_train_statistics_only():
    data = simulate(seed=0, d=4, n_windows=60, window=5, raw_scale=True, missing_fraction=0.1)
    train_idx, val_idx = split_windows(data.n_windows, seed=0)
    train, val = subset(data, train_idx), subset(data, val_idx)
    assert train.n_windows == 48 and val.n_windows == 12 and train.names == data.names
    stats = Standardizer.fit(train.x, train.mask)
    z = stats.apply(train.x, train.mask).astype(np.float64)
    observed = train.mask.astype(bool)
    for j in range(4):
        column = z[..., j][observed[..., j]]
        assert abs(column.mean()) < 1e-4 and abs(column.std() - 1) < 1e-4
    assert (z[~observed] == 0).all()
    full = Standardizer.fit(data.x, data.mask)
    assert not np.allclose(stats.mean, full.mean)  # validation windows did not leak in
    restored = Standardizer.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(restored.apply(val.x, val.mask), stats.apply(val.x, val.mask))


def test_standardizer_global_and_constant_split():
    x = np.stack([np.arange(6.0), 10 * np.arange(6.0)], axis=-1)[None]  # (1, 6, 2)
    mask = np.ones_like(x)
    stats = Standardizer.fit(x, mask, mode="global")
    assert stats.std[0] == stats.std[1]
    mask[..., 1] = 0
    with pytest.raises(InputError, match="'v1'"):
        Standardizer.fit(x, mask, names=("v0", "v1"))


def test_dataset_refuses_inconsistent_arrays():
    x = np.zeros((2, 3, 4), dtype=np.float32)
    with pytest.raises(InputError, match="mask"):
        Dataset(x=x, mask=np.ones((2, 3, 3), dtype=np.float32), names=("a", "b", "c", "d"))
    with pytest.raises(InputError, match="names"):
        Dataset.from_array(x, names=("a",))
    data = Dataset.from_array(np.full((5, 2), np.nan))
    assert data.mask.sum() == 0 and data.x.shape == (5, 1, 2)


# ---------------------------------------------------------------- choosing columns (--columns/--drop/--time-col)

SHOP = "t,store,a,b,c\n3,north,1,2,3\n1,south,4,5,7\n2,north,7,1,9\n"


def test_columns_keep_the_given_order_and_drop_removes(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text(SHOP)
    data = load_data(path, columns="c, a", drop="")
    assert data.names == ("c", "a")
    np.testing.assert_array_equal(data.x[:, 0, :], [[3, 1], [7, 4], [9, 7]])
    data = load_data(path, drop=["t", "store"])
    assert data.names == ("a", "b", "c") and data.x[0, 0, 2] == 3


@pytest.mark.parametrize("times", [["3", "1", "2"], ["2024-03-01", "2024-01-01T06:00", "2024-02-01"]])
def test_time_col_sorts_rows_then_leaves_the_column_out(tmp_path, times):
    rows = ["t,store,a,b"] + [f"{t},s,{v},{10 * v + 1}" for t, v in zip(times, (3, 1, 2))]
    path = tmp_path / "series.csv"
    path.write_text("\n".join(rows) + "\n")
    data = load_data(path, drop="store", time_col="t")
    assert data.names == ("a", "b")
    np.testing.assert_array_equal(data.x[:, 0, 0], [1, 2, 3])  # sorted by t, not by file order
    np.testing.assert_array_equal(data.x[:, 0, 1], [11, 21, 31])


def test_time_col_sorts_before_windowing(tmp_path):
    t = np.arange(10)[::-1]  # the file lists the series backwards
    path = tmp_path / "backwards.csv"
    np.savetxt(path, np.stack([t, t * 2.0 + 1, (t % 3) * 1.0], axis=1), delimiter=",", header="t,a,b",
               comments="")
    data = load_data(path, time_col="t", window=4)
    assert data.x.shape == (2, 4, 2) and data.rows == 10 and data.rows_unused == 2
    np.testing.assert_array_equal(data.x[0, :, 0], [1, 3, 5, 7])


def test_column_flags_refuse_unknown_names_and_bad_times(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text(SHOP)
    with pytest.raises(InputError, match=r"no column named 'sales'.*t, store, a, b, c"):
        load_data(path, columns="a,sales")
    with pytest.raises(InputError, match="more than once"):
        load_data(path, columns="a,a,b")
    with pytest.raises(InputError, match="column 'store'.*--drop store"):
        load_data(path, drop="t")
    with pytest.raises(InputError, match="also in --columns"):
        load_data(path, columns="t,a,b", time_col="t")
    path.write_text("t,a,b\n1,1,2\nsoon,3,4\n")
    with pytest.raises(InputError, match="line 3, time column 't': 'soon'"):
        load_data(path, time_col="t")


def test_columns_apply_to_npz_names_mask_and_truth(tmp_path):
    x = np.arange(30.0).reshape(10, 3) ** 1.5
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    np.savez(tmp_path / "d.npz", X=x, names=np.array(["p", "q", "r"]), adjacency=truth,
             mask=np.ones_like(x))
    data = load_data(tmp_path / "d.npz", columns="r,q")
    assert data.names == ("r", "q")
    np.testing.assert_array_equal(data.truth, [[0, 0], [1, 0]])  # q -> r survives, reindexed
    np.testing.assert_array_equal(data.x[:, 0, 0], x[:, 2].astype(np.float32))


def test_describe_is_one_line_with_rows_windows_variables_missing_and_split(tmp_path):
    from jaxcausal import config as config_lib, prepare
    rng = np.random.default_rng(0)
    x = rng.laplace(size=(3000, 10))
    x[5, 2] = np.nan
    x[7, 4] = np.nan
    np.save(tmp_path / "x.npy", x)
    cfg = config_lib.replace(config_lib.Config(), {"data": str(tmp_path / "x.npy"), "window": 32})
    prepared = prepare.prepare(cfg)
    line = prepared.describe()
    assert "\n" not in line
    assert line.startswith(f"data: {tmp_path / 'x.npy'}: 3000 rows -> 93 windows of 32 steps (24 rows dropped), "
                           "10 variables, 2 missing cells")
    n_val = round(93 * 0.2)
    assert line.endswith(f"{93 - n_val} training / {n_val} validation windows")
    static = prepare.prepare(config_lib.replace(cfg, {"window": 0}))
    assert ": 3000 rows, 10 variables, 2 missing cells;" in static.describe()
    assert "2048 windows of 32 steps, 10 variables, 0 missing cells" in prepare.prepare(config_lib.Config()).describe()
