"""What checkpoints cost a real run, through the public API, for the default model at D = 10 and D = 100.

For each D (the built-in dataset at D = 10; the same generator's windows of 32 steps at D = 100),
`jaxcausal.fit` trains --train-epochs epochs (early stopping off) three times in this process, with
a checkpoint every epoch, every 10 epochs and at the automatic cadence (`checkpoint_every=0`, the
default: saves cost at most ~5% of training). Reported per run: the summary's train_time and its
per-epoch figure; per D: the cost of one save, (train_time every 1 - train_time every 10) / (saves
every 1 - saves every 10), and the automatic cadence's overhead over every 10; the train state's
size in memory (`jaxcausal.experiment.build(cfg).init_state()`) and a checkpoint's size on disk.
The first run at each D compiles (through the persistent cache) and is repeated once untimed
first. Prints JSON and a short table; writes benchmarks/results/checkpoint_time.json.

    python benchmarks/checkpoint_time.py [--train-epochs 30] [--dims 10 100] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

import numpy as np

from machine_info import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import jaxcausal  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402

import jaxcausal  # noqa: E402
from epoch_time import package_versions  # noqa: E402
from jaxcausal import config as config_lib  # noqa: E402
from jaxcausal.data import builtin_dataset, simulate  # noqa: E402
from jaxcausal.experiment import build  # noqa: E402

DEFAULT_OUT = os.path.join(HERE, "results", "checkpoint_time.json")
CADENCES = (1, 10, 0)  # checkpoint_every: each epoch, every 10, automatic


def data_for(d: int) -> np.ndarray:
    """(N, T, D) windows: the built-in dataset at D = 10, the generator's Laplace ER2 windows otherwise."""
    ds = builtin_dataset() if d == 10 else simulate(seed=0, d=d, noise="laplace", n_windows=256, window=32,
                                                    raw_scale=True)
    return np.asarray(ds.x)


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def state_bytes(x: np.ndarray, tmp: str) -> tuple[int, int]:
    """(parameter count, bytes of the whole train state) of the default experiment on x."""
    path = os.path.join(tmp, "x.npz")
    np.savez(path, X=x)
    state = build(config_lib.replace(config_lib.Config(), {"data": path, "quiet": True}),
                  warn=lambda msg: None).init_state()
    return (int(sum(np.size(a) for a in jax.tree.leaves(state.params))),
            int(sum(np.asarray(a).nbytes for a in jax.tree.leaves(state))))


def measure(d: int, epochs: int, tmp: str) -> dict:
    x = data_for(d)
    params, nbytes = state_bytes(x, tmp)
    runs = []
    for k, every in enumerate((CADENCES[0],) + CADENCES):  # the first run warms the compile cache, untimed
        out = os.path.join(tmp, f"d{d}_run{k}")
        result = jaxcausal.fit(x, out=out, epochs=epochs, patience=0, checkpoint_every=every)
        if k == 0:
            continue
        ckpt_dir = os.path.join(out, "checkpoints")
        steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
        runs.append({"checkpoint_every": every, "epochs": result.summary["epochs_run"],
                     "train_time_s": result.summary["train_time"],
                     "per_epoch_ms": 1e3 * result.summary["train_time"] / result.summary["epochs_run"],
                     "kept_steps": steps, "checkpoint_disk_bytes": disk_bytes(os.path.join(ckpt_dir, str(steps[-1])))})
    by = {r["checkpoint_every"]: r for r in runs}
    saves_1, saves_10 = by[1]["epochs"], -(-by[10]["epochs"] // 10)
    per_save = (by[1]["train_time_s"] - by[10]["train_time_s"]) / max(saves_1 - saves_10, 1)
    return {"d": d, "params": params, "state_bytes": nbytes, "disk_bytes": by[1]["checkpoint_disk_bytes"],
            "save_cost_ms": 1e3 * per_save,
            "auto_overhead_vs_every10": by[0]["train_time_s"] / by[10]["train_time_s"] - 1.0, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[10, 100])
    p.add_argument("--train-epochs", type=int, default=30)
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(d, args.train_epochs, tmp) for d in args.dims]
    report = {
        "benchmark": "checkpoint_time",
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "device": str(jax.devices()[0]),
                    "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "versions": package_versions(), "results": results,
    }
    print(json.dumps(report, indent=2))
    print(f"\n{'D':>4} {'params':>8} {'state KiB':>10} {'disk KiB':>9} {'save ms':>8} "
          + " ".join(f"{'every ' + (str(e) if e else 'auto') + ' ms/ep':>16}" for e in CADENCES))
    for r in results:
        per = {q["checkpoint_every"]: q["per_epoch_ms"] for q in r["runs"]}
        print(f"{r['d']:>4} {r['params']:>8} {r['state_bytes'] / 1024:>10.1f} {r['disk_bytes'] / 1024:>9.1f} "
              f"{r['save_cost_ms']:>8.1f} " + " ".join(f"{per[e]:>16.1f}" for e in CADENCES))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
