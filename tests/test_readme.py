"""The README's examples, run as written: its ```python blocks and the commands of its ```bash blocks.

In a temporary directory holding the example files the README names (samples.npy, sensors.csv,
truth.csv), each ```python block is executed and each `python -m jaxcausal.<tool> ...` or
`python -c ...` command runs in this process through `cli.run(main, argv)`, in README order, and
must exit 0. `pip` and `pytest` commands are not run; any other command fails the test, so nothing
the README shows goes unchecked.

Training at the default settings takes 30-60 s per run on 2 CPU cores, so `fit` gets
`config="smoke"` and train commands get `--config smoke`; the graph search after training runs in
full either way. JAXCAUSAL_README_FULL=1 runs everything exactly as written (several minutes).
"""
from __future__ import annotations

import csv
import importlib
import io
import os
import re
import shlex
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

import jaxcausal
from jaxcausal import api, cli
from jaxcausal.data import simulate

from conftest import check_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
FULL = os.environ.get("JAXCAUSAL_README_FULL") == "1"
# The graph the quick start's own code draws (a -> b -> c -> d <- a; f alone), which the README says it finds.
QUICKSTART_EDGES = {("a", "b"), ("b", "c"), ("a", "d"), ("c", "d")}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def readme_blocks(language: str) -> list[str]:
    with open(README) as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def readme_commands() -> list[list[str]]:
    """Every command of the ```bash blocks, comments stripped, `a && b` split into a and b."""
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


def write_example_files(folder) -> dict:
    """The README's example inputs: static Laplace rows, a shuffled time-stamped CSV series, a truth."""
    static = simulate(seed=3, d=5, n_edges=5, noise="laplace", n_windows=500)
    np.save(os.path.join(folder, "samples.npy"), static.x[:, 0, :])
    with open(os.path.join(folder, "truth.csv"), "w") as f:
        f.write("cause,effect\n" + "".join(f"x{i},x{j}\n" for i, j in zip(*np.nonzero(static.truth))))
    series = simulate(seed=4, d=4, n_edges=4, noise="laplace", window=32, n_windows=40)
    rows = series.x.reshape(-1, 4)
    start = np.datetime64("2024-01-01T00:00")
    with open(os.path.join(folder, "sensors.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", "site", "inflow", "level", "outflow", "pump"])
        for k in np.random.default_rng(0).permutation(len(rows)):  # --time-col must restore the order
            writer.writerow([start + np.timedelta64(int(k), "m"), "north", *rows[k].round(5)])
    return {"samples": static.truth}


@pytest.fixture
def readme_dir(tmp_path, monkeypatch):
    """A temporary working directory with the example files, and fit() on the smoke preset unless FULL."""
    monkeypatch.chdir(tmp_path)
    truths = write_example_files(tmp_path)
    if not FULL:
        full_fit = api.fit

        def smoke_fit(X, *, config=None, **kwargs):
            return full_fit(X, config="smoke" if config is None else config, **kwargs)

        monkeypatch.setattr(jaxcausal, "fit", smoke_fit)
    return tmp_path, truths


def test_readme_has_the_examples_this_test_runs():
    commands = readme_commands()
    first = readme_blocks("bash")[0].splitlines()
    assert first[0].startswith("pip install -e . && python -m jaxcausal.train")
    assert first[1].startswith('pip install -e ".[dev]" && python -m pytest -q')
    assert sum(c[:2] == ["python", "-m"] and c[2].startswith("jaxcausal.") for c in commands) >= 5
    assert any(c[:2] == ["python", "-c"] for c in commands)
    assert len(readme_blocks("python")) >= 1


def test_python_blocks_run(readme_dir, monkeypatch):
    folder, _ = readme_dir
    plotted = []
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # without the plot extra, check the call; test_api draws the figures
        monkeypatch.setattr(api.Result, "plot", lambda self, path=None, **kw: plotted.append(path))
    for block in readme_blocks("python"):
        namespace: dict = {}
        with redirect_stdout(io.StringIO()) as printed:
            exec(compile(block, "README.md", "exec"), namespace)
        assert printed.getvalue().strip(), "a README example prints nothing"
    r = namespace["r"]  # the quick start's Result
    assert r.names == ("a", "b", "c", "d", "f")
    assert r.adjacency.shape == (5, 5)
    assert {(e["cause"], e["effect"]) for e in r.edges} == QUICKSTART_EDGES
    assert {e["orientation"] for e in r.edges} == {"directed"}
    for cause, effect in QUICKSTART_EDGES:  # adjacency[i, j] != 0 means names[i] -> names[j]
        assert r.adjacency[r.names.index(cause), r.names.index(effect)] != 0
        assert r.adjacency[r.names.index(effect), r.names.index(cause)] == 0
    assert r.model["noise"] == "laplace"
    if plotted:
        assert plotted == ["graph.png"]
    else:
        with open(folder / "graph.png", "rb") as f:
            assert f.read(8) == PNG_MAGIC


def _run(command: list[str], capfd, monkeypatch) -> tuple[int, str]:
    """One README command in this process: (exit code, what it printed on stdout and stderr)."""
    from jaxcausal import training
    # train_and_evaluate's `stream=sys.stdout` default is bound when training is first imported
    # (an earlier test's capture); hand it this test's stdout.
    monkeypatch.setitem(training.train_and_evaluate.__kwdefaults__, "stream", sys.stdout)
    capfd.readouterr()
    if command[:2] == ["python", "-c"]:
        exec(compile(command[2], "<README python -c>", "exec"), {})
        return 0, "".join(capfd.readouterr())
    assert command[:2] == ["python", "-m"] and command[2].startswith("jaxcausal."), \
        f"README command not covered by tests/test_readme.py: {shlex.join(command)}"
    argv = command[3:]
    if not FULL and command[2] in ("jaxcausal.train", "jaxcausal.sweep") and "--config" not in argv \
            and "--resume" not in argv:
        argv = [*argv, "--config", "smoke", "--plots"]  # the README's runs draw their figures
    main = importlib.import_module(command[2]).main
    try:
        code = cli.run(main, argv)
    except SystemExit as stop:  # argparse errors
        code = stop.code
    return int(code or 0), "".join(capfd.readouterr())


def _run_dirs(folder) -> set:
    runs = folder / "runs"
    return {str(runs / n) for n in os.listdir(runs)} if runs.is_dir() else set()


def _graph(run_dir) -> tuple[list[str], set]:
    """graph.csv's header and its (cause, effect) pairs."""
    with open(os.path.join(run_dir, "graph.csv"), newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], {(r[0], r[1]) for r in rows[1:]}


def test_cli_commands_run(readme_dir, capfd, monkeypatch):
    folder, truths = readme_dir
    ran = []  # (command, its run directory or None, what it printed)
    for command in readme_commands():
        if command[0] == "pip" or command[:3] == ["python", "-m", "pytest"]:
            continue
        before = _run_dirs(folder)
        code, text = _run(command, capfd, monkeypatch)
        assert code == 0, f"{shlex.join(command)} exited {code}:\n{text[-2000:]}"
        if "--out" in command:
            run_dir = str(folder / command[command.index("--out") + 1])
        else:
            new = _run_dirs(folder) - before
            run_dir = new.pop() if len(new) == 1 else None
        ran.append((command, run_dir, text))
    trained = [(c, d, t) for c, d, t in ran if c[:3] == ["python", "-m", "jaxcausal.train"]]
    assert trained and all(d is not None for _, d, _ in trained)
    for _, run_dir, _ in trained:  # each run directory in the contract (files, fields, DAG output)
        result = check_run(run_dir)
        assert result.returncode == 0, result.stdout + result.stderr
    assert any("--out" not in c for c, _, _ in trained), "the defaults' runs/<timestamp> is not exercised"

    # The CSV series: sorted by --time-col, --drop'ed, windowed; the README's run-directory table.
    command, series_run, text = next(r for r in trained if "sensors.csv" in r[0])
    assert "windows of 32" in text  # the console says how the rows became windows
    header, edges = _graph(series_run)
    assert header[:4] == ["cause", "effect", "weight", "orientation"]
    assert {v for e in edges for v in e} <= {"inflow", "level", "outflow", "pump"}
    for name in ("graph.csv", "graph_lagged.csv", "summary.json", "graph.dot", "config.json",
                 "training_log.jsonl", "weights.npy", "checkpoints"):
        assert os.path.exists(os.path.join(series_run, name)), name
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        for name in ("graph.png", "training.png"):
            with open(os.path.join(series_run, name), "rb") as f:
                assert f.read(8) == PNG_MAGIC, name

    # evaluate --truth scores graph.csv and leaves it as it was; trained without the truth, it is the true graph.
    command, _, text = next(r for r in ran if r[0][:3] == ["python", "-m", "jaxcausal.evaluate"] and "--truth" in r[0])
    run_dir = str(folder / command[3])
    assert _graph(os.path.join(run_dir, "evaluation")) == _graph(run_dir)
    assert _graph(run_dir)[1] == {(f"x{i}", f"x{j}") for i, j in zip(*np.nonzero(truths["samples"]))}
    assert "F1 1.0000" in text
    # --bootstrap adds the confidence column.
    _, boot_run, _ = next(r for r in trained if "--bootstrap" in r[0])
    assert _graph(boot_run)[0][-1] == "confidence"
    # python -c prints the first edges of the fit.
    assert any(c[:2] == ["python", "-c"] and "'cause'" in t for c, _, t in ran)
