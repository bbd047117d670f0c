"""A second run in a fresh process with the same shapes compiles nothing: it loads every program."""
from __future__ import annotations

import os

from conftest import run_cli, write_static_npz


def _entries(cache_dir: str) -> set[str]:
    return {f for f in os.listdir(cache_dir) if not f.startswith(".")} if os.path.isdir(cache_dir) else set()


def test_second_process_with_the_same_shapes_adds_no_compiled_program(tmp_path):
    data = write_static_npz(str(tmp_path / "x.npz"), n_windows=128, truth=False)
    cache = str(tmp_path / "xla")
    env = dict(os.environ, JAXCAUSAL_CACHE_DIR=cache)
    args = ["--config", "smoke", "--epochs", "1", "--data", data, "--quiet"]
    first = run_cli(*args, "--out", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    compiled = _entries(cache)
    assert compiled, "the first run wrote no compiled program to the cache"
    second = run_cli(*args, "--out", str(tmp_path / "b"), env=env)
    assert second.returncode == 0, second.stderr
    assert _entries(cache) == compiled  # every program came from the cache
