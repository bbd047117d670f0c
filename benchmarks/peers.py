"""The public peers of the accuracy benchmark, each run alone in a one-thread subprocess.

    python benchmarks/peers.py --peer boss --data IN.npz --out OUT.npz     # what run_peer() starts

IN.npz holds x (N, T, D) float64 (T = 1: static samples). OUT.npz gets `pdag` (D, D) int8 in our
convention ([i, j] = 1: i -> j; both [i, j] and [j, i]: undirected), `lagged` (D, D) int8 (lag-1
edges, time-series peers only) and `fit_s`, the peer's own fit time. This file imports only numpy
at the top, so it also runs under the second environment of requirements-peers.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from timed_run import timed_run

STATIC_PEERS = ("boss", "grasp", "directlingam", "dagma", "xges")
SERIES_PEERS = ("pcmciplus", "varlingam", "varlingam_windows")
PACKAGE_OF = {"boss": "causal-learn", "grasp": "causal-learn", "directlingam": "lingam", "dagma": "dagma",
              "xges": "xges", "pcmciplus": "tigramite", "varlingam": "lingam", "varlingam_windows": "lingam"}
BIC_PENALTY = 2.0  # causal-learn's lambda_value for BOSS and GRaSP, as in issue 11's table
PCMCI_TAU_MAX = 1
TIMEOUT_S = 600.0
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
# xges (numpy < 2) and lingam 1.13 (scipy <= 1.13.1) cannot share jax's environment: when this
# interpreter lacks them they run from a second one (requirements-peers.txt, see README).
PEERS_PYTHON = os.environ.get("JAXCAUSAL_PEERS_PYTHON",
                              os.path.expanduser("~/.cache/jaxcausal-bench/peers-venv/bin/python"))
IMPORT_NAME = {"causal-learn": "causallearn", "lingam": "lingam", "dagma": "dagma", "xges": "xges",
               "tigramite": "tigramite"}


def causallearn_to_pdag(g: np.ndarray) -> np.ndarray:
    """causal-learn GeneralGraph.graph -> our PDAG: g[j, i] == 1 and g[i, j] == -1 means i -> j;
    -1 at both ends is undirected (any other mark pair, e.g. <->, also counts as undirected)."""
    tail, head = g == -1, g == 1
    directed = tail & head.T  # [i, j]: tail at i, arrowhead at j
    undirected = (g != 0) & (g.T != 0) & ~directed & ~directed.T
    return (directed | undirected).astype(np.int8)


def lingam_to_ours(b: np.ndarray) -> np.ndarray:
    """lingam's adjacency_matrix_ is [effect, cause]: the transpose of ours."""
    return (np.abs(np.asarray(b)).T > 0).astype(np.int8)


def tigramite_to_pdag(graph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tigramite graph (D, D, tau_max + 1) of strings -> (contemporaneous PDAG, lag-1 edges).

    '-->' at [i, j, tau]: i(t - tau) -> j(t). 'o-o' (unoriented) and 'x-x' (conflicting) are
    undirected: the skeleton edge is there, its direction is not given."""
    d = graph.shape[0]
    pdag = np.zeros((d, d), np.int8)
    for i in range(d):
        for j in range(d):
            mark = graph[i, j, 0]
            if mark == "-->":
                pdag[i, j] = 1
            elif mark in ("o-o", "x-x"):
                pdag[i, j] = pdag[j, i] = 1
    lagged = (graph[:, :, 1] == "-->").astype(np.int8) if graph.shape[2] > 1 else np.zeros((d, d), np.int8)
    return pdag, lagged


def lag_pairs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(previous, current) rows of every step inside a window: no pair crosses a window boundary."""
    d = x.shape[-1]
    return x[:, :-1].reshape(-1, d), x[:, 1:].reshape(-1, d)


def fit_boss(x):
    from causallearn.search.PermutationBased.BOSS import boss
    g = boss(x[:, 0], score_func="local_score_BIC_from_cov", parameters={"lambda_value": BIC_PENALTY}, verbose=False)
    return causallearn_to_pdag(g.graph), None


def fit_grasp(x):
    from causallearn.search.PermutationBased.GRaSP import grasp
    g = grasp(x[:, 0], score_func="local_score_BIC_from_cov", parameters={"lambda_value": BIC_PENALTY}, verbose=False)
    return causallearn_to_pdag(g.graph), None


def fit_directlingam(x):
    import lingam
    return lingam_to_ours(lingam.DirectLiNGAM().fit(x[:, 0]).adjacency_matrix_), None


def fit_dagma(x):
    from dagma.linear import DagmaLinear
    w = DagmaLinear(loss_type="l2").fit(x[:, 0], lambda1=0.02)  # its README's settings (w_threshold 0.3)
    return (w != 0).astype(np.int8), None


def fit_xges(x):
    from xges import XGES
    model = XGES()
    model.fit(x[:, 0], verbose=0)
    return model.get_pdag().to_adjacency_matrix().astype(np.int8), None


def fit_pcmciplus(x):
    from tigramite.data_processing import DataFrame
    from tigramite.independence_tests.parcorr import ParCorr
    from tigramite.pcmci import PCMCI
    # 'multiple' mode: each window is its own dataset, so no lag pair spans two windows.
    frame = DataFrame({k: w for k, w in enumerate(x)}, analysis_mode="multiple")
    results = PCMCI(dataframe=frame, cond_ind_test=ParCorr(), verbosity=0).run_pcmciplus(
        tau_min=0, tau_max=PCMCI_TAU_MAX)
    return tigramite_to_pdag(results["graph"])


def fit_varlingam(x):
    import lingam
    # lingam's VARLiNGAM takes one series: the windows are concatenated, so 1 in 32 lag pairs crosses
    # a window boundary. That is how a user would call it; the window-aware variant is below.
    model = lingam.VARLiNGAM(lags=1, criterion=None).fit(x.reshape(-1, x.shape[-1]))
    b0, b1 = model.adjacency_matrices_
    return lingam_to_ours(b0), lingam_to_ours(b1)


def fit_varlingam_windows(x):
    """Two-step VARLiNGAM within windows: least-squares VAR(1) on lag pairs inside each window, then
    DirectLiNGAM on its residuals; lag-1 edges by lingam's adaptive lasso given the found parents."""
    import lingam
    from lingam.utils import predict_adaptive_lasso
    prev, cur = lag_pairs(x)
    prev_c, cur_c = prev - prev.mean(axis=0), cur - cur.mean(axis=0)
    transition, *_ = np.linalg.lstsq(prev_c, cur_c, rcond=None)  # cur ~ prev @ transition
    b0 = lingam.DirectLiNGAM().fit(cur_c - prev_c @ transition).adjacency_matrix_
    pdag = lingam_to_ours(b0)
    d = x.shape[-1]
    design = np.hstack([cur_c, prev_c])  # columns 0..d-1: x_t, d..2d-1: x_{t-1}
    lagged = np.zeros((d, d), np.int8)
    for j in range(d):
        predictors = [int(i) for i in np.flatnonzero(pdag[:, j])] + [d + i for i in range(d)]
        coef = predict_adaptive_lasso(design, predictors, j)
        lagged[:, j] = np.abs(coef[-d:]) > 0
    return pdag, lagged


FITS = {name: globals()[f"fit_{name}"] for name in STATIC_PEERS + SERIES_PEERS}


def applies(peer: str, *, series: bool) -> bool:
    return peer in (SERIES_PEERS if series else STATIC_PEERS)


def python_for(peer: str) -> str:
    """This interpreter if it has the peer's package (xges needs numpy < 2: never here), else PEERS_PYTHON."""
    import importlib.util
    name = IMPORT_NAME[PACKAGE_OF[peer]]
    if peer != "xges" and importlib.util.find_spec(name) is not None:
        return sys.executable
    return PEERS_PYTHON


def version_of(peer: str) -> str | None:
    """The installed version of the peer's package (in the environment it runs from), or None."""
    package = PACKAGE_OF[peer]
    python = python_for(peer)
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_peer(peer: str, x: np.ndarray, *, timeout_s: float = TIMEOUT_S) -> dict:
    """Fit one peer on x (N, T, D) in a fresh one-thread process. Returns pdag, lagged (or None),
    fit_s, wall_s (the process, imports included) and status ('ok', 'timeout', 'error: ...')."""
    python = python_for(peer)
    if not os.path.exists(python):
        return {"status": f"not installed: {python} missing (see benchmarks/README.md)"}
    env = dict(os.environ, **ONE_THREAD, TQDM_DISABLE="1")
    with tempfile.TemporaryDirectory() as tmp:
        data, out = os.path.join(tmp, "data.npz"), os.path.join(tmp, "out.npz")
        np.savez(data, x=np.asarray(x, np.float64))
        cmd = [python, os.path.abspath(__file__), "--peer", peer, "--data", data, "--out", out]
        proc, wall = timed_run(cmd, timeout_s=timeout_s, env=env)
        if proc is None:
            return {"status": "timeout", "wall_s": wall}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return {"status": f"error: {tail}", "wall_s": wall}
        with np.load(out) as f:
            lagged = f["lagged"] if "lagged" in f.files else None
            return {"status": "ok", "pdag": f["pdag"].astype(np.int8), "lagged": lagged,
                    "fit_s": float(f["fit_s"]), "wall_s": wall}


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Fit one peer (used by run_peer)")
    p.add_argument("--peer", choices=sorted(FITS), required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with np.load(args.data) as f:
        x = f["x"]
    t = time.perf_counter()
    pdag, lagged = FITS[args.peer](x)
    fit_s = time.perf_counter() - t
    extra = {} if lagged is None else {"lagged": np.asarray(lagged, np.int8)}
    np.savez(args.out, pdag=np.asarray(pdag, np.int8), fit_s=fit_s, **extra)
    print(json.dumps({"peer": args.peer, "fit_s": fit_s}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
