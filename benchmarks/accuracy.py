"""Accuracy benchmark: jaxcausal's default settings against peers on the same generated data.

    python benchmarks/accuracy.py                      # quick suite, 1 seed (minutes on 2 cores)
    python benchmarks/accuracy.py --suite full --seeds 3
    python benchmarks/accuracy.py --cases er2-d20-linear-gaussian-std-static --seeds 1

Data come from `jaxcausal.data.simulate` with seeds 1000+ (the tests use small seeds). Every case
is run on the data as generated ("raw") or with each column standardised first ("std"); jaxcausal
standardises internally either way, so its answer does not depend on the column scales. jaxcausal
runs label-free: the truth is never given to the trainer (early stopping on validation loss, the
documented |W| > 0.1 rule); F1 is the exported graph's, "oracle-threshold F1" the best of the 21
thresholds on the final weights. Raw-scale cases also run the equal-variance option
(`--fit gauss_ev --standardize global`, method "jaxcausal-ev"). Peers
(DAGMA linear, NOTEARS from gCastle, PC from causal-learn) run when installed
(`pip install -e ".[bench]"`), on the same matrix (time series flattened to rows, lags ignored).
Writes benchmarks/results/accuracy.json and accuracy.md; prints the table.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # DAGMA's progress bars would bury the table

from machine_info import machine

from jaxcausal import config as config_lib
from jaxcausal import metrics as metrics_lib
from jaxcausal.data import simulate
from jaxcausal.training import train_and_evaluate

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SEED_BASE = 1000  # tests use seeds < 100


@dataclasses.dataclass(frozen=True)
class Case:
    graph: str = "er"
    d: int = 20
    degree: int = 2
    mechanism: str = "linear"
    noise: str = "gaussian"
    scale: str = "std"  # raw | std
    window: int = 1  # 1 = static samples; > 1 = time series with lag-1 effects
    n: int = 1000  # samples (static) or time steps in all (series: n_windows = n // window)

    @property
    def name(self) -> str:
        kind = "static" if self.window == 1 else f"ts{self.window}"
        return f"{self.graph}{self.degree}-d{self.d}-{self.mechanism}-{self.noise}-{self.scale}-{kind}"


def suite(name: str) -> list[Case]:
    if name == "quick":
        return [Case(d=20, scale="raw"), Case(d=50, scale="raw"), Case(d=20), Case(d=50), Case(d=20, noise="laplace"),
                Case(graph="sf", d=20, noise="laplace"), Case(d=10, mechanism="mlp", noise="laplace"),
                Case(d=10, window=32, n=32 * 512, noise="laplace"), Case(d=20, window=32, n=32 * 512)]
    cases = []
    for graph in ("er", "sf"):
        for d in (10, 20, 50, 100):
            for noise in ("gaussian", "laplace"):
                for scale in ("raw", "std"):
                    cases.append(Case(graph=graph, d=d, noise=noise, scale=scale))
        for noise in ("gaussian", "laplace"):
            cases.append(Case(graph=graph, d=10, mechanism="mlp", noise=noise))
            cases.append(Case(graph=graph, d=20, window=32, n=32 * 512, noise=noise))
    return cases


# The documented option for data whose columns share one unit (equal noise variances are then a
# testable assumption): a Gaussian equal-variance fit on one common scale. Run on raw-scale cases.
EV_OPTION = {"standardize": "global", "fit": "gauss_ev"}


def generate(case: Case, seed: int):
    ds = simulate(seed=seed, d=case.d, n_edges=case.degree * case.d if case.graph == "er" else None,
                  graph=case.graph, mechanism=case.mechanism, noise=case.noise,
                  n_windows=max(case.n // case.window, 8), window=case.window)
    x = ds.x.astype(np.float64)
    if case.scale == "std":
        x = (x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1))
    return x.astype(np.float32), ds.truth, ds.truth_lagged


def score(pred_scores: np.ndarray, truth: np.ndarray, threshold: float = 0.0) -> dict:
    m = metrics_lib.edge_metrics(scores=np.asarray(pred_scores, np.float32), truth=truth.astype(np.float32),
                                 threshold=np.float32(threshold))
    out = {k: float(m[k]) for k in ("f1", "shd", "precision", "recall", "edge_count")}
    out["auprc"] = float(metrics_lib.auprc(scores=np.abs(pred_scores), truth=truth))
    return out


def lagged_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of lag-1 edges, diagonal (autoregressive) entries included."""
    tp = float((pred & truth).sum())
    return 2 * tp / max(pred.sum() + truth.sum(), 1)


def oracle_f1(weights: np.ndarray, truth: np.ndarray) -> float:
    """Best F1 over the 21 thresholds on scores scaled to [0, 1] (needs the truth; for reference only)."""
    scores = np.abs(weights) / max(float(np.abs(weights).max()), 1e-12)
    return max(score(scores > t, truth, 0.5)["f1"] for t in metrics_lib.THRESHOLDS)


def run_jaxcausal(case: Case, x: np.ndarray, truth: np.ndarray, workdir: str,
                  truth_lagged: np.ndarray | None = None, overrides: dict | None = None) -> dict:
    """One label-free run: the trainer never sees the truth (early stopping and the exported graph
    use validation loss and the documented threshold); the truth only scores the result."""
    path = os.path.join(workdir, "data.npz")
    np.savez(path, X=x if case.window > 1 else x[:, 0, :])
    settings = {"data": path, "out": os.path.join(workdir, "run"), "overwrite": True, "quiet": True}
    if case.mechanism == "mlp":
        settings["sem"] = "mlp"
    cfg = config_lib.replace(config_lib.Config(), dict(settings, **(overrides or {})))
    t = time.perf_counter()
    _, summary = train_and_evaluate(cfg)
    wall = time.perf_counter() - t
    weights = np.load(os.path.join(workdir, "run", "weights.npy"))
    exported = np.zeros_like(weights)
    for e in summary["graph"]["edges"]:
        exported[int(e["cause"][1:]), int(e["effect"][1:])] = 1.0
    result = score(exported, truth)
    result["auprc"] = score(np.abs(weights), truth)["auprc"]
    result.update(oracle_f1=oracle_f1(weights, truth), label_free_f1=result["f1"], epochs=summary["epochs_run"],
                  wall_s=wall)
    lag_path = os.path.join(workdir, "run", "graph_lagged.csv")
    if truth_lagged is not None and os.path.isfile(lag_path):
        lagged = np.zeros(truth_lagged.shape[1:], bool)
        with open(lag_path) as f:
            for row in csv.DictReader(f):
                if row["lag"] == "1":
                    lagged[int(row["cause"][1:]), int(row["effect"][1:])] = True
        result["lagged_f1"] = lagged_f1(lagged, truth_lagged[0] > 0)
    return result


def run_peers(x2d: np.ndarray, truth: np.ndarray, peers: set[str], notears_max_d: int) -> dict:
    """Each requested, installed peer on the (rows, D) matrix; absent packages are skipped."""
    results = {}
    if x2d.shape[1] > notears_max_d:
        peers = peers - {"notears"}
    try:
        if "dagma" not in peers:
            raise ImportError
        from dagma.linear import DagmaLinear
        t = time.perf_counter()
        w = DagmaLinear(loss_type="l2").fit(x2d.astype(np.float64), lambda1=0.02)
        results["dagma"] = dict(score(np.abs(w) > 0.3, truth, 0.5), wall_s=time.perf_counter() - t)
    except ImportError:
        pass
    try:
        if "notears" not in peers:
            raise ImportError
        from castle.algorithms import Notears
        t = time.perf_counter()
        model = Notears()
        model.learn(x2d.astype(np.float64))
        results["notears"] = dict(score(np.asarray(model.causal_matrix), truth, 0.5), wall_s=time.perf_counter() - t)
    except ImportError:
        pass
    try:
        if "pc" not in peers:
            raise ImportError
        from causallearn.search.ConstraintBased.PC import pc
        t = time.perf_counter()
        g = pc(x2d.astype(np.float64), show_progress=False).G.graph
        # causal-learn: g[j, i] = 1 and g[i, j] = -1 means i -> j; -1/-1 is undirected (both directions).
        adj = ((g.T == 1) & (g == -1)) | ((g == -1) & (g.T == -1))
        results["pc"] = dict(score(adj.astype(np.float32), truth, 0.5), wall_s=time.perf_counter() - t)
    except ImportError:
        pass
    return results


def table(rows: list[dict]) -> str:
    lines = ["| case | method | F1 | oracle-threshold F1 | SHD | AUPRC | edges (true) | lag-1 F1 | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    opt = lambda r, k: f"{r[k]:.2f}" if k in r else "—"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['case']} | {r['method']} | {r['f1']:.2f} | {opt(r, 'oracle_f1')} | {r['shd']:.1f} | "
                     f"{r['auprc']:.2f} | {r['edge_count']:.0f} ({r['true_edges']}) | {opt(r, 'lagged_f1')} | "
                     f"{r['wall_s']:.1f} |")
    return "\n".join(lines)


def aggregate(per_seed: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    out = []
    for (case, method), rs in groups.items():
        agg = {"case": case, "method": method, "seeds": len(rs), "true_edges": rs[0]["true_edges"]}
        for k in ("f1", "shd", "auprc", "edge_count", "wall_s", "oracle_f1", "label_free_f1", "lagged_f1"):
            if k in rs[0]:
                agg[k] = float(np.mean([r[k] for r in rs]))
        out.append(agg)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("quick", "full"), default="quick")
    p.add_argument("--cases", default="", help="comma-separated case names (from the suite) to run")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--peers", default="dagma,notears,pc", help="peers to run when installed ('' for none)")
    p.add_argument("--notears-max-d", type=int, default=20,
                   help="skip NOTEARS above this many variables (it takes minutes per case on 2 cores)")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    cases = suite(args.suite)
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c.name in wanted]
    per_seed = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases:
            for k in range(args.seeds):
                seed = SEED_BASE + k
                x, truth, truth_lagged = generate(case, seed)
                base = {"case": case.name, "seed": seed, "true_edges": int(truth.sum())}
                variants = [("jaxcausal", {})] + ([("jaxcausal-ev", EV_OPTION)] if case.scale == "raw" else [])
                for method, overrides in variants:
                    r = run_jaxcausal(case, x, truth, workdir, truth_lagged, overrides)
                    per_seed.append(dict(base, method=method, **r))
                    print(f"{case.name} seed {seed}: {method} F1 {r['f1']:.3f} (oracle threshold {r['oracle_f1']:.3f}) "
                          f"{r['wall_s']:.1f} s", flush=True)
                if args.peers:
                    for method, pr in run_peers(x.reshape(-1, x.shape[-1]), truth, set(args.peers.split(",")),
                                                   args.notears_max_d).items():
                        per_seed.append(dict(base, method=method, **pr))
                        print(f"{case.name} seed {seed}: {method} F1 {pr['f1']:.3f} {pr['wall_s']:.1f} s", flush=True)
    rows = aggregate(per_seed)
    os.makedirs(args.out, exist_ok=True)
    report = {"machine": machine(), "suite": args.suite, "seeds": args.seeds, "results": rows, "per_seed": per_seed,
              "config": config_lib.to_dict(config_lib.Config())}
    with open(os.path.join(args.out, "accuracy.json"), "w") as f:
        json.dump(report, f, indent=2)
    md = table(rows)
    with open(os.path.join(args.out, "accuracy.md"), "w") as f:
        f.write(f"Machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores; "
                f"suite {args.suite}, {args.seeds} seed(s)\n\n{md}\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
