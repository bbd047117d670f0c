"""Compile time and epoch time of the built-in dataset's epoch program, XLA:CPU's two kernel emitters.

Each measurement is a fresh interpreter (the emitter is read when jax starts its backend) that
lowers and compiles the epoch once, then times 6 epochs; the two settings alternate, medians
reported. `python benchmarks/compile_time.py [--repeats 3]` writes results/compile_time.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from machine_info import machine

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = r"""
import json, time
import jax, numpy as np
from jaxcausal import config as config_lib
cfg = config_lib.load_toml("default")
from jaxcausal.experiment import build
from jaxcausal.prepare import prepare
setup = build(cfg, prepare(cfg), warn=print)
state, data = setup.init_state(), setup.train_data()
lowered = jax.jit(setup.epoch_fn()).lower(state, data)
t = time.perf_counter(); epoch = lowered.compile(); compile_s = time.perf_counter() - t
times = []
for _ in range(6):
    t = time.perf_counter(); state, out = epoch(state, data); jax.block_until_ready(out); times.append(time.perf_counter() - t)
print(json.dumps({"compile_s": compile_s, "epoch_s": float(np.median(times[1:])), "train_loss": float(out["train_loss"])}))
"""
SETTINGS = {"legacy emitter (default)": "--xla_cpu_use_fusion_emitters=false",
            "fusion emitters (XLA's default)": "--xla_cpu_use_fusion_emitters=true"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    runs = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, flag in SETTINGS.items():
            env = dict(os.environ, XLA_FLAGS=flag)
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {name: {k: statistics.median(r[k] for r in rs) for k in ("compile_s", "epoch_s")} |
            {"train_loss": sorted({r["train_loss"] for r in rs})} for name, rs in runs.items()}
    m = machine()
    machine_s = f"{m['cpu']}, {m['cpu_count']} cores, load average {[round(x, 2) for x in m['load_average_at_start']]} at start"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compile_time.json"), "w") as f:
        json.dump({"machine": m, "repeats": args.repeats, "medians": rows, "runs": runs}, f, indent=1)
    lines = [f"Machine: {machine_s}; built-in dataset, epoch program, median of {args.repeats} fresh processes", "",
             "| XLA:CPU kernels | compile s | epoch s | train loss after 6 epochs |", "|---|---|---|---|"]
    lines += [f"| {n} | {r['compile_s']:.2f} | {r['epoch_s']:.4f} | {', '.join(map(str, r['train_loss']))} |"
              for n, r in rows.items()]
    with open(os.path.join(args.out, "compile_time.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
