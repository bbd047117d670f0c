"""The run's figures drawn by a child process while the graph is searched (formats.RunVisuals)."""
from __future__ import annotations

import json

import pytest

from jaxcausal import formats


def _log(run_dir, epochs: int = 3) -> None:
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "h": 10.0 ** -e, "edge_count": 3,
             "true_edge_count": None} for e in range(1, epochs + 1)]
    (run_dir / "training_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _graph(run_dir) -> None:
    (run_dir / "graph.csv").write_text("cause,effect,weight,orientation\na,b,0.8,directed\nb,c,-0.5,undirected\n")


def test_the_child_draws_training_png_first_and_graph_png_once_told(tmp_path):
    pytest.importorskip("matplotlib")
    _log(tmp_path)
    with formats.RunVisuals(str(tmp_path), best_epoch=2) as visuals:
        assert visuals.child is not None
        _graph(tmp_path)  # what the search writes before finish()
        assert visuals.finish() is None
    assert visuals.child.returncode == 0
    for name in ("graph.dot", "graph.png", "training.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "a" in (tmp_path / "graph.dot").read_text()


def test_a_failing_child_is_one_line_and_a_run_that_ends_without_a_graph_leaves_no_child(tmp_path):
    pytest.importorskip("matplotlib")
    _log(tmp_path)
    with formats.RunVisuals(str(tmp_path), best_epoch=None) as visuals:
        pass  # the search raised: no finish()
    assert visuals.child.poll() is not None
    assert not (tmp_path / "graph.png").exists()

    _graph(tmp_path)
    (tmp_path / "graph.png").mkdir()  # the child cannot save the figure there
    with formats.RunVisuals(str(tmp_path), best_epoch=1) as visuals:
        note = visuals.finish()
    assert note is not None and note.startswith("graph.dot written; could not draw the plots ("), note
    assert "\n" not in note and "graph.png" in note
    assert (tmp_path / "graph.dot").exists()


def test_plots_off_writes_graph_dot_only_and_starts_no_child(tmp_path):
    _log(tmp_path)
    _graph(tmp_path)
    with formats.RunVisuals(str(tmp_path), best_epoch=1, plots=False) as visuals:
        assert visuals.child is None
        assert visuals.finish() is None
    assert (tmp_path / "graph.dot").exists()
    assert not (tmp_path / "graph.png").exists() and not (tmp_path / "training.png").exists()
