"""Shared fixtures and strict settings: the smoke config, tiny data, a PRNG key, runners for the CLI.

Strict JAX settings for every test: implicit rank promotion is an error (a broadcast between arrays
of different rank must be written out), and pyproject's filterwarnings turns warnings into errors.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

# Before numpy loads its OpenBLAS: BLAS threads fight XLA's and the other tests' for the 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Tests check behaviour, not speed: at XLA's lowest backend optimisation level an epoch program
# compiles ~3x faster and runs ~1.5x slower. Every number a test compares is computed under these
# flags (CLI subprocesses inherit them); a developer's own choice of the level wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcausal import config as config_lib  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def xla_flags(devices: int | None = None, optimized: bool = False) -> str:
    """This session's XLA_FLAGS for a subprocess, with `devices` host CPU devices (XLA's default: one)
    and, if `optimized`, XLA's default backend optimisation level instead of the tests' level 0."""
    drop = ("xla_force_host_platform_device_count",) + (("xla_backend_optimization_level",) if optimized else ())
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not any(d in f for d in drop)]
    return " ".join(flags + ([f"--xla_force_host_platform_device_count={devices}"] if devices else []))

# One compilation cache per test session, shared with the CLI subprocesses (through the
# environment): identical programs compile once, and no run reads a cache warmed before it.
# A pytest started inside a test session inherits the directory; only the process that made it removes it.
MADE_XLA_CACHE = "JAXCAUSAL_CACHE_DIR" not in os.environ
XLA_CACHE = os.environ.setdefault("JAXCAUSAL_CACHE_DIR", tempfile.mkdtemp(prefix="jaxcausal-test-xla-"))
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    if MADE_XLA_CACHE:  # only the one made here, never a cache the environment named
        shutil.rmtree(XLA_CACHE, ignore_errors=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_RUN = os.path.join(ROOT, "..", "shared", "tools", "check_run.py")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def smoke_config():
    return config_lib.load_toml("smoke")


def write_static_npz(path, *, seed: int = 11, n_windows: int = 256, truth: bool = True) -> str:
    """The tiny dataset the training tests share: static (N, 5) Laplace data on a 5-edge DAG."""
    from jaxcausal.data import simulate
    ds = simulate(seed=seed, d=5, n_edges=5, noise="laplace", n_windows=n_windows)
    np.savez(path, X=ds.x[:, 0, :], **({"adjacency": ds.truth} if truth else {}))
    return str(path)


@pytest.fixture(scope="session")
def static_npz(tmp_path_factory) -> str:
    """write_static_npz with its defaults, written once per session; treat it as read-only."""
    return write_static_npz(tmp_path_factory.mktemp("static") / "static.npz")


def run_cli(*args: str, module: str = "jaxcausal.train", timeout: float = 300, env=None):
    """Run `python -m module args...` in a subprocess; returns CompletedProcess (text).
    Only for what needs a real process: signals, SIGKILL, the process's exit code."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a CLI entry point in this process as `python -m` would: (exit code, stdout, stderr)."""
    from jaxcausal import cli
    capsys.readouterr()  # drop what earlier steps of the test printed
    try:
        code = cli.run(main, list(argv))
    except SystemExit as stop:  # argparse usage errors and --help
        code = stop.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_log(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "training_log.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_run(run_dir: str) -> subprocess.CompletedProcess:
    if not os.path.isfile(CHECK_RUN):
        pytest.skip("shared/tools/check_run.py is not beside the checkout")
    return subprocess.run([sys.executable, CHECK_RUN, run_dir], capture_output=True, text=True)
