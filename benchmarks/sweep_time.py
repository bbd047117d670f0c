"""The lambda grid as one population vs one process per grid point, end to end.

    python benchmarks/sweep_time.py [--lambda-sparse 1e-5,1e-4,1e-3] [--lambda-acyclic 1e-7,1e-6,1e-5]
                                    [--epochs N] [--agreement]

(a) one `python -m jaxcausal.sweep` process training the 3 x 3 grid as a vmapped population;
(b) nine `python -m jaxcausal.train` processes, one per grid point, run one after another.
Both on the built-in dataset at the default epoch count (early stopping on), wall time measured
around each process. Each sweep member is also checked against its single run (best epoch, val
F1). With --agreement, sweeps on a few simulated datasets record whether the label-free selection
picks the member that the val-F1 oracle picks. Writes benchmarks/results/sweep_time.json and prints
a short table. Uses only the command line (the public interface).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from machine_info import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(ROOT, "benchmarks", "results", "sweep_time.json")

# Datasets for the selection-agreement check: jaxcausal.data.simulate arguments.
AGREEMENT_DATA = {
    "er_static_laplace": dict(seed=1, d=10, graph="er", noise="laplace", n_windows=2000),
    "sf_series_laplace": dict(seed=2, d=10, graph="sf", noise="laplace", n_windows=512, window=16),
    "er_static_gumbel": dict(seed=3, d=8, graph="er", noise="gumbel", n_windows=2000),
    "er_static_gaussian": dict(seed=4, d=10, graph="er", noise="gaussian", n_windows=2000),
}
AGREEMENT_GRID = ["--lambda-sparse", "0.002,0.01,0.05", "--lambda-acyclic", "0,1e-3,1e-2"]


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one `python -m ...` process. CPU time is the
    figure to trust when other jobs share the cores; wall time is what the user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def source_digest() -> str:
    """Hash of the package source: a run whose code changed midway compares different programs."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(ROOT, "jaxcausal", "**", "*.py"), recursive=True)
                       + glob.glob(os.path.join(ROOT, "configs", "*.toml"))):
        with open(path, "rb") as f:
            h.update(path.encode() + f.read())
    return h.hexdigest()[:16]


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def time_grid(sparse: list[str], acyclic: list[str], extra: list[str], work: str) -> dict:
    sweep_dir = os.path.join(work, "sweep")
    sweep_wall, sweep_cpu = timed(["jaxcausal.sweep", "--lambda-sparse", ",".join(sparse), "--lambda-acyclic",
                                   ",".join(acyclic), "--out", sweep_dir, "--quiet", *extra])
    sweep = load(os.path.join(sweep_dir, "sweep.json"))
    runs, train_total, train_cpu = [], 0.0, 0.0
    for k, (s, a) in enumerate(itertools.product(sparse, acyclic)):
        run_dir = os.path.join(work, f"train_{k}")
        wall, cpu = timed(["jaxcausal.train", "--lambda-sparse", s, "--lambda-acyclic", a, "--out", run_dir,
                           "--quiet", *extra])
        train_total += wall
        train_cpu += cpu
        summary = load(os.path.join(run_dir, "summary.json"))
        member = next(m for m in sweep["members"]
                      if m["lambda_sparse"] == float(s) and m["lambda_acyclic"] == float(a))
        runs.append({"lambda_sparse": float(s), "lambda_acyclic": float(a), "wall_s": wall, "cpu_s": cpu,
                     "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
                     "val_f1": (summary.get("best") or {}).get("val_f1"),
                     "sweep_best_epoch": member["best_epoch"], "sweep_val_f1": member["val_f1"],
                     "matches_sweep": member["best_epoch"] == summary["best_epoch"]
                     and abs((member["val_f1"] or 0) - ((summary.get("best") or {}).get("val_f1") or 0)) < 1e-4})
    return {"sweep_wall_s": sweep_wall, "train_wall_s": train_total, "speedup": train_total / sweep_wall,
            "sweep_cpu_s": sweep_cpu, "train_cpu_s": train_cpu, "speedup_cpu": train_cpu / sweep_cpu,
            "sweep_epochs_run": sweep["epochs_run"], "sweep_compile_s": sweep["compile_time"],
            "sweep_train_loop_s": sweep["train_time"], "sweep_selection": sweep["selection"],
            "members_matching_single_runs": sum(r["matches_sweep"] for r in runs), "train_runs": runs}


def agreement(work: str, extra: list[str]) -> list[dict]:
    import numpy as np
    sys.path.insert(0, ROOT)
    from jaxcausal.data import simulate
    rows = []
    for name, kwargs in AGREEMENT_DATA.items():
        ds = simulate(**kwargs)
        path = os.path.join(work, f"{name}.npz")
        np.savez(path, X=ds.x[:, 0, :] if ds.x.shape[1] == 1 else ds.x, adjacency=ds.truth)
        out = os.path.join(work, f"agree_{name}")
        wall, _ = timed(["jaxcausal.sweep", "--data", path, *AGREEMENT_GRID, "--out", out, "--quiet", *extra])
        sweep = load(os.path.join(out, "sweep.json"))
        sel, members = sweep["selection"], sweep["members"]
        rows.append({"dataset": name, "simulate": kwargs, "wall_s": wall,
                     "oracle_member": sel["oracle_member"], "label_free_member": sel["label_free_member"],
                     "agree": sel["label_free_equals_oracle"], "tie": sel["label_free_ties_oracle"],
                     "oracle_val_f1": members[sel["oracle_member"]]["val_f1"],
                     "label_free_val_f1": members[sel["label_free_member"]]["val_f1"],
                     "worst_val_f1": min(m["val_f1"] for m in members)})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--lambda-sparse", default="1e-5,1e-4,1e-3")
    p.add_argument("--lambda-acyclic", default="1e-7,1e-6,1e-5")
    p.add_argument("--epochs", type=int, default=None, help="default: the config's epoch count")
    p.add_argument("--agreement", action="store_true", help="also check label-free vs F1 selection")
    p.add_argument("--json", default=RESULT)
    args = p.parse_args()
    extra = [] if args.epochs is None else ["--epochs", str(args.epochs)]
    sparse, acyclic = args.lambda_sparse.split(","), args.lambda_acyclic.split(",")
    info = machine()
    digest = source_digest()
    with tempfile.TemporaryDirectory(prefix="sweep_time_") as work:
        result = {"benchmark": "sweep_time", "machine": info,
                  "grid": {"lambda_sparse": [float(v) for v in sparse], "lambda_acyclic": [float(v) for v in acyclic]},
                  "epochs": args.epochs or "config default", "dataset": "built-in",
                  **time_grid(sparse, acyclic, extra, work)}
        if args.agreement:
            result["selection_agreement"] = agreement(work, extra)
    info["load_average_at_end"] = list(os.getloadavg())
    result["source_digest"] = digest
    result["source_changed_during_run"] = source_digest() != digest
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    n = len(result["train_runs"])
    print(f"{'run':<40} {'wall time':>10} {'CPU time':>10}")
    print(f"{'(a) one jaxcausal.sweep process':<40} {result['sweep_wall_s']:>9.1f}s {result['sweep_cpu_s']:>9.1f}s")
    print(f"{f'(b) {n} jaxcausal.train processes':<40} {result['train_wall_s']:>9.1f}s {result['train_cpu_s']:>9.1f}s")
    print(f"{'speedup (b) / (a)':<40} {result['speedup']:>9.2f}x {result['speedup_cpu']:>9.2f}x")
    print(f"load average (1 min) at start / end: {info['load_average_at_start'][0]:.1f} / "
          f"{info['load_average_at_end'][0]:.1f} on {info['cpu_count']} cores")
    print(f"sweep: {result['sweep_epochs_run']} epochs, compile {result['sweep_compile_s']:.1f}s; "
          f"members matching their single run: {result['members_matching_single_runs']}/{n}")
    for row in result.get("selection_agreement", []):
        print(f"selection {row['dataset']:<22} oracle {row['oracle_member']} (F1 {row['oracle_val_f1']:.3f}) "
              f"label-free {row['label_free_member']} (F1 {row['label_free_val_f1']:.3f}) "
              f"{'same member' if row['agree'] else 'tie' if row['tie'] else 'differ'}")
    if result["source_changed_during_run"]:
        print("WARNING: the package source changed while the benchmark ran; (a) and (b) may differ in code")
    print(f"-> {os.path.relpath(args.json, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
