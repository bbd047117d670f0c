"""The Python API: fit() on arrays and DataFrames, Result, DOT/GraphML export and the figures."""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from jaxcausal import cli, formats, train
from jaxcausal.api import Result, fit, load_result
from jaxcausal.data import simulate
from jaxcausal.errors import InputError

from conftest import check_run

NAMES = ["rain", "soil moisture", "growth", "yield", "price"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"


def _static_data() -> np.ndarray:
    return simulate(seed=11, d=5, n_edges=5, noise="laplace", n_windows=200).x[:, 0, :]


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """One smoke fit with named variables and out=: a DataFrame when pandas is installed."""
    out = str(tmp_path_factory.mktemp("api") / "run")
    x = _static_data()
    try:
        import pandas as pd
    except ImportError:
        return fit(x, names=NAMES, config="smoke", out=out), False
    return fit(pd.DataFrame(x, columns=NAMES), config="smoke", out=out), True


def _graph_csv(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "graph.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _handmade_run(tmp_path) -> str:
    """A run directory in the full contract: orientation and confidence columns, lagged edges."""
    run = tmp_path / "handmade"
    run.mkdir()
    (run / "graph.csv").write_text("cause,effect,weight,orientation,confidence\n"
                                   "a,b,0.8,directed,0.9\nc,b,-0.5,undirected,0.6\n")
    (run / "graph_lagged.csv").write_text("cause,effect,lag,weight\na,a,1,0.4\nb,c,2,0.3\n")
    (run / "config.json").write_text(json.dumps({"data": {"names": ["a", "b", "c"], "shape": [10, 8, 3]},
                                                 "config": {"model": {"max_lag": 2}}}))
    (run / "summary.json").write_text(json.dumps({"best_epoch": 2, "model": {"noise": "laplace"}}))
    (run / "training_log.jsonl").write_text("".join(json.dumps(
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "h": 10.0 ** -e, "edge_count": e}) + "\n"
        for e in (1, 2, 3)))
    return str(run)


def test_fit_keeps_the_names_and_writes_a_valid_run_directory(named_run):
    result, _ = named_run
    rows = _graph_csv(result.run_dir)
    assert rows, "the smoke fit found no edge"
    assert {r["cause"] for r in rows} | {r["effect"] for r in rows} <= set(NAMES)
    assert result.names == tuple(NAMES)
    assert [(e["cause"], e["effect"]) for e in result.edges if e["lag"] == 0] == \
        [(r["cause"], r["effect"]) for r in rows]
    assert os.path.isfile(os.path.join(result.run_dir, "data.npz"))  # evaluate / --resume can rebuild it
    assert check_run(result.run_dir).returncode == 0


def test_a_dataframe_carries_its_columns_into_networkx(named_run):
    nx = pytest.importorskip("networkx")
    result, from_frame = named_run
    if not from_frame:
        pytest.skip("pandas is not installed")
    graph = result.to_networkx()
    assert isinstance(graph, nx.DiGraph)
    assert list(graph.nodes) == NAMES
    expected = {(e["cause"], e["effect"]) for e in result.edges if e["lag"] == 0}
    assert set(graph.edges) == expected
    for e in result.edges:
        assert graph.edges[e["cause"], e["effect"]]["weight"] == e["weight"]


def test_adjacency_rows_cause_columns_and_undirected_edges_are_symmetric(tmp_path):
    result = Result.from_run_dir(_handmade_run(tmp_path))
    assert result.names == ("a", "b", "c")
    np.testing.assert_allclose(result.adjacency, [[0, 0.8, 0], [0, 0, -0.5], [0, -0.5, 0]])
    assert result.lagged.shape == (2, 3, 3)
    assert result.lagged[0, 0, 0] == 0.4 and result.lagged[1, 1, 2] == 0.3
    assert np.count_nonzero(result.lagged) == 2
    assert [e["confidence"] for e in result.edges] == [0.9, 0.6, None, None]
    assert result.model == {"noise": "laplace"}
    assert load_result(result.run_dir).edges == result.edges


def test_a_graph_csv_without_orientation_reads_as_directed(named_run):
    result, _ = named_run
    assert "orientation" in result.edges[0]
    if "orientation" not in _graph_csv(result.run_dir)[0]:  # today's engine: cause,effect,weight only
        assert {e["orientation"] for e in result.edges} == {"directed"}
    directed = [e for e in result.edges if e["lag"] == 0 and e["orientation"] == "directed"]
    for e in directed:
        i, j = NAMES.index(e["cause"]), NAMES.index(e["effect"])
        assert result.adjacency[i, j] == pytest.approx(e["weight"])


def test_dot_and_graphml_exports_parse(tmp_path):
    result = Result.from_run_dir(_handmade_run(tmp_path))
    dot = result.to_dot()
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert '"a" -> "b" [' in dot
    assert '"c" -> "b" [' in dot and "dir=none" in dot.split('"c" -> "b"')[1].splitlines()[0]
    assert "style=dashed" in dot.split('"b" -> "c"')[1].splitlines()[0]
    path = str(tmp_path / "graph.graphml")
    result.save_graphml(path)
    graph = ET.parse(path).getroot().find(f"{GRAPHML}graph")
    assert [n.get("id") for n in graph.findall(f"{GRAPHML}node")] == ["a", "b", "c"]
    edges = graph.findall(f"{GRAPHML}edge")
    assert [(e.get("source"), e.get("target")) for e in edges] == [("a", "b"), ("c", "b"), ("a", "a"), ("b", "c")]
    assert [e.get("directed") for e in edges] == [None, "false", None, None]
    lags = [{d.get("key"): d.text for d in e.findall(f"{GRAPHML}data")}.get("lag") for e in edges]
    assert lags == ["0", "0", "1", "2"]


def test_graphml_reads_back_in_networkx(tmp_path, named_run):
    nx = pytest.importorskip("networkx")
    result, _ = named_run
    path = str(tmp_path / "g.graphml")
    result.save_graphml(path)
    graph = nx.read_graphml(path)
    assert list(graph.nodes) == list(result.names)
    assert graph.number_of_edges() == len(result.edges)


def test_plots_render_png_with_agg_and_leave_the_backend_alone(tmp_path, named_run):
    matplotlib = pytest.importorskip("matplotlib")
    backend = matplotlib.get_backend()
    for result in (named_run[0], Result.from_run_dir(_handmade_run(tmp_path))):
        graph_png, training_png = tmp_path / "graph.png", tmp_path / "training.png"
        result.plot(str(graph_png))
        result.plot_training(str(training_png))
        assert graph_png.read_bytes()[:8] == PNG_MAGIC
        assert training_png.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.get_backend() == backend


def test_run_visuals_write_dot_and_plots_or_say_how_to_get_them(tmp_path, monkeypatch):
    run_dir = _handmade_run(tmp_path)
    has_matplotlib = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        has_matplotlib = False
    message = formats.write_run_visuals(run_dir)
    assert os.path.isfile(os.path.join(run_dir, "graph.dot"))
    if has_matplotlib:
        assert message is None
        for name in ("graph.png", "training.png"):
            with open(os.path.join(run_dir, name), "rb") as f:
                assert f.read(8) == PNG_MAGIC
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    os.remove(os.path.join(run_dir, "graph.dot"))
    message = formats.write_run_visuals(run_dir)
    assert 'pip install "jaxcausal[plot]"' in message and "\n" not in message
    assert os.path.isfile(os.path.join(run_dir, "graph.dot"))


def test_to_networkx_without_networkx_names_the_extra(tmp_path, monkeypatch):
    result = Result.from_run_dir(_handmade_run(tmp_path))
    monkeypatch.setitem(sys.modules, "networkx", None)
    with pytest.raises(ImportError, match=r"jaxcausal\[networkx\]"):
        result.to_networkx()


def test_fit_gives_the_cli_graph_on_a_windowed_series(tmp_path, monkeypatch):
    series = simulate(seed=3, d=4, n_edges=3, noise="laplace", n_windows=1, window=480).x[0]  # (480, 4)
    path = str(tmp_path / "series.npy")
    np.save(path, series)
    cli_run = str(tmp_path / "cli")
    assert cli.run(train.main, ["--config", "smoke", "--data", path, "--window", "12", "--out", cli_run,
                                "--quiet"]) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = fit(series, window=12, config="smoke")
    assert result.run_dir is None and os.listdir(scratch) == []  # the temporary run is removed
    assert result.edges == load_result(cli_run).edges
    assert any(e["lag"] for e in result.edges) and result.lagged.shape == (1, 4, 4)


@pytest.mark.parametrize("x, names, overrides, expected", [
    (np.zeros(10), None, {}, r"X: has shape \(10,\)"),
    (np.array([["a", "b"], ["c", "d"]]), None, {}, "non-numeric"),
    (np.ones((8, 3)), ["a", "b"], {}, "need 3 distinct"),
    (np.ones((8, 3)), ["a", "a", "b"], {}, "need 3 distinct"),
    (np.ones((8, 3)), None, {"epoch": 3}, "unknown setting 'epoch'.*'epochs'"),
    (np.ones((8, 3)), None, {"data": "x.npz"}, "'data' is not an option"),
    (np.ones((8, 3)), None, {"lr": -1.0}, "'lr' must be > 0"),
])
def test_bad_input_is_one_input_error_line(x, names, overrides, expected):
    with pytest.raises(InputError, match=expected) as err:
        fit(x, names=names, **overrides)
    assert "\n" not in str(err.value)


def test_engine_errors_name_x_not_the_temporary_file():
    x = _static_data()
    x[:, 2] = 7.0  # a constant column: refused when the data are loaded, before any training
    with pytest.raises(InputError) as err:
        fit(x, config="smoke")
    assert str(err.value).startswith("X") and "jaxcausal-fit-" not in str(err.value)


def test_a_dataframe_with_a_text_column_is_refused_by_name():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"t": ["mon", "tue", "wed"], "a": [1.0, 2.0, 3.0], "b": [2.0, 1.0, 0.0]})
    with pytest.raises(InputError, match="column.* t are not numeric"):
        fit(frame)


def test_fit_refuses_an_out_directory_that_holds_a_run(named_run):
    result, _ = named_run
    with pytest.raises(InputError, match="overwrite=True"):
        fit(_static_data(), names=NAMES, config="smoke", out=result.run_dir)


def test_a_jaxcausal_folder_in_the_working_directory_does_not_hide_the_package(tmp_path):
    """From a clone's parent folder the clone (no __init__.py) must not shadow the installed package."""
    import importlib.metadata
    import subprocess
    try:
        importlib.metadata.distribution("jaxcausal")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("jaxcausal is not installed (pip install -e .)")
    (tmp_path / "jaxcausal").mkdir()
    done = subprocess.run([sys.executable, "-c", "import jaxcausal; print(jaxcausal.__file__, callable(jaxcausal.load))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"reinstall with pip install -e . ({done.stderr.strip().splitlines()[-1:]})"
    file, load_ok = done.stdout.split()
    assert load_ok == "True" and os.path.basename(os.path.dirname(file)) == "jaxcausal"
