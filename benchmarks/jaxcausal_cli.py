"""jaxcausal as a user runs it: the public CLI in a fresh process, default settings, no ground truth.

The data go to an .npz with X (and names) but no `adjacency`, so nothing of the truth reaches the
trainer; the graph is read back from the run directory's CSV files.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile

import numpy as np

from timed_run import timed_run

TIMEOUT_S = 600.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")


def save_npz(path: str, x: np.ndarray, names) -> None:
    """X as (N, D) for static samples (T = 1), (N, T, D) windows otherwise; names as strings."""
    np.savez(path, X=x[:, 0, :] if x.shape[1] == 1 else x, names=np.array(list(names), dtype=str))


def read_graph(run_dir: str, names) -> tuple[np.ndarray, np.ndarray | None]:
    """graph.csv -> (D, D) int8 PDAG (undirected: both entries); graph_lagged.csv -> lag-1 (D, D)."""
    index = {n: k for k, n in enumerate(names)}
    d = len(names)
    pdag = np.zeros((d, d), np.int8)
    with open(os.path.join(run_dir, "graph.csv"), newline="") as f:
        for row in csv.DictReader(f):
            i, j = index[row["cause"]], index[row["effect"]]
            pdag[i, j] = 1
            if row.get("orientation", "directed") == "undirected":  # today's code has no such column
                pdag[j, i] = 1
    lag_path = os.path.join(run_dir, "graph_lagged.csv")
    if not os.path.isfile(lag_path):
        return pdag, None
    lagged = np.zeros((d, d), np.int8)
    with open(lag_path, newline="") as f:
        for row in csv.DictReader(f):
            if int(row["lag"]) == 1:
                lagged[index[row["cause"]], index[row["effect"]]] = 1
    return pdag, lagged


def run_cli(x: np.ndarray | None, names, *, workdir: str | None = None, extra_args=(), env: dict | None = None,
            timeout_s: float = TIMEOUT_S) -> dict:
    """`python -m jaxcausal.train --data FILE --out DIR --quiet` on x (N, T, D); x None: no --data,
    the built-in dataset, as `python -m jaxcausal.train` runs it (its truth then reaches the trainer).

    Returns status, wall_s (the whole process), pdag, lagged, model and timings (summary.json's
    entries, None when absent), and the run directory."""
    own_tmp = tempfile.TemporaryDirectory() if workdir is None else None
    workdir = own_tmp.name if own_tmp else workdir
    try:
        data, run_dir = os.path.join(workdir, "data.npz"), os.path.join(workdir, "run")
        data_args = []
        if x is not None:
            save_npz(data, x, names)
            data_args = ["--data", data]
        # 2 threads, the package default: the benchmark's own thread settings must not leak in.
        child_env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        child_env.update(env or {})
        cmd = [sys.executable, "-m", "jaxcausal.train", *data_args, "--out", run_dir, "--quiet", *extra_args]
        proc, wall = timed_run(cmd, timeout_s=timeout_s, env=child_env)
        if proc is None:
            return {"status": "timeout", "wall_s": wall}
        if proc.returncode != 0:
            tail = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1][:300]
            return {"status": f"error (exit {proc.returncode}): {tail}", "wall_s": wall}
        pdag, lagged = read_graph(run_dir, names)
        summary = {}
        summary_path = os.path.join(run_dir, "summary.json")
        if os.path.isfile(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        return {"status": "ok", "wall_s": wall, "pdag": pdag, "lagged": lagged,
                "model": summary.get("model"), "timings": summary.get("timings"),
                "epochs": summary.get("epochs_run"), "stdout_tail": proc.stdout[-400:]}
    finally:
        if own_tmp:
            own_tmp.cleanup()
