"""Checkpoint save and restore times of the whole TrainState, for the default model at D = 10 and D = 100.

For each D the default config (linear SEM, one lag, latent blocks) is built on synthetic windows of
32 steps (the built-in dataset at D = 10), its train state filled with random values, and then
  - save call:  `Checkpoints.save` as the training loop pays it (host copy, digest, orbax dispatch);
  - save total: the save call plus `wait()` until the step is committed on disk;
  - restore:    `Checkpoints.restore` of the latest step into the state's structure (digest checked);
each repeated and reported as the median; plus the state's size in memory and on disk. Then the
cost in a real run: `train_and_evaluate` on the built-in dataset for --train-epochs epochs with a
checkpoint every epoch (the default) and every 10 epochs, compared by the summary's train_time.
Prints JSON and a short table; writes benchmarks/results/checkpoint_time.json.

    python benchmarks/checkpoint_time.py [--repeats 9] [--train-epochs 30] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from machine_info import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import jaxcausal  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402

from jaxcausal import checkpoint, config as config_lib  # noqa: E402
from jaxcausal.data import simulate  # noqa: E402
from jaxcausal.experiment import build  # noqa: E402
from jaxcausal.results import checkpoint_meta  # noqa: E402
from jaxcausal.rundir import versions  # noqa: E402
from jaxcausal.training import train_and_evaluate  # noqa: E402

DEFAULT_OUT = os.path.join(HERE, "results", "checkpoint_time.json")


def setup_for(d: int, tmp: str):
    overrides = {"quiet": True}
    if d != 10:  # D = 10 is the built-in dataset
        ds = simulate(seed=0, d=d, noise="laplace", n_windows=256, window=32, raw_scale=True)
        overrides["data"] = os.path.join(tmp, f"d{d}.npz")
        np.savez(overrides["data"], X=ds.x, adjacency=ds.truth)
    return build(config_lib.replace(config_lib.Config(), overrides), warn=lambda msg: None)


def random_state(setup):
    """The initial state with every float leaf replaced by random values (zeros compress unfairly well)."""
    rng = np.random.default_rng(0)
    state = setup.init_state()
    return jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(a.dtype)
                        if np.issubdtype(a.dtype, np.floating) else a, state)


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def measure(d: int, repeats: int, tmp: str) -> dict:
    setup = setup_for(d, tmp)
    state = random_state(setup)
    meta = checkpoint_meta(setup, state)
    ckpts = checkpoint.Checkpoints(os.path.join(tmp, f"ckpt{d}"), keep=2)
    calls, totals, restores = [], [], []
    for step in range(1, repeats + 2):  # the first round warms up orbax and is not counted
        t = time.perf_counter()
        ckpts.save(step, state, meta, metric=None)
        t_call = time.perf_counter()
        ckpts.wait()
        t_done = time.perf_counter()
        restored, _, restored_step = ckpts.restore(state)
        t_restored = time.perf_counter()
        assert restored_step == step
        if step > 1:
            calls.append(t_call - t)
            totals.append(t_done - t)
            restores.append(t_restored - t_done)
    leaves = jax.tree.leaves(state)
    result = {
        "d": d, "params": int(sum(np.size(a) for a in jax.tree.leaves(state.params))),
        "state_bytes": int(sum(np.asarray(a).nbytes for a in leaves)),
        "disk_bytes": disk_bytes(os.path.join(tmp, f"ckpt{d}", str(repeats + 1))),
        "save_call_ms": 1e3 * statistics.median(calls), "save_total_ms": 1e3 * statistics.median(totals),
        "restore_ms": 1e3 * statistics.median(restores), "repeats": repeats,
    }
    ckpts.close()
    return result


def train_cost(epochs: int, tmp: str) -> list[dict]:
    """train_time of the default run with a checkpoint every epoch and every 10 epochs."""
    rows = []
    for every in (1, 10):
        cfg = config_lib.replace(config_lib.Config(), {
            "quiet": True, "epochs": epochs, "patience": 0, "checkpoint_every": every,
            "out": os.path.join(tmp, f"run_every{every}")})
        _, summary = train_and_evaluate(cfg)
        rows.append({"checkpoint_every": every, "epochs": epochs, "train_time_s": summary["train_time"],
                     "per_epoch_ms": 1e3 * summary["train_time"] / epochs})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--dims", type=int, nargs="+", default=[10, 100])
    p.add_argument("--train-epochs", type=int, default=30, help="0 skips the training comparison")
    p.add_argument("--out", default=DEFAULT_OUT)
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(d, args.repeats, tmp) for d in args.dims]
        training = train_cost(args.train_epochs, tmp) if args.train_epochs else []
    report = {
        "benchmark": "checkpoint_time",
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                    "device": str(jax.devices()[0]),
                    "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "versions": versions(), "results": results, "training": training,
    }
    print(json.dumps(report, indent=2))
    print(f"\n{'D':>4} {'params':>8} {'state KiB':>10} {'disk KiB':>9} {'save call ms':>13} "
          f"{'save total ms':>14} {'restore ms':>11}")
    for r in results:
        print(f"{r['d']:>4} {r['params']:>8} {r['state_bytes'] / 1024:>10.1f} {r['disk_bytes'] / 1024:>9.1f} "
              f"{r['save_call_ms']:>13.1f} {r['save_total_ms']:>14.1f} {r['restore_ms']:>11.1f}")
    for r in training:
        print(f"built-in data, {r['epochs']} epochs, checkpoint every {r['checkpoint_every']:>2}: "
              f"train_time {r['train_time_s']:.2f} s ({r['per_epoch_ms']:.0f} ms/epoch)")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
