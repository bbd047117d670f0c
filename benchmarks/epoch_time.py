"""Epoch time of jaxcausal against the PyTorch reference (benchmarks/torch_reference.py).

For each D: N windows of T = 32 steps (the built-in dataset at D = 10, the same generator at other
D), batch 64, the default config (linear SEM, laplace_nv fit, trace_power penalty). Times
  - jaxcausal: compile of the epoch (separately), then one epoch = one compiled call (train scan,
    validation, schedules) plus the per-epoch metrics transfer to the host, as `train_and_evaluate`;
  - torch: one epoch of the reference (eager batches, clip, AdamW, validation loop, plateau step);
  - value and gradient of every acyclicity penalty form alone, and at --penalty-dim the epoch with
    each form (chosen through the config), the penalty's share of it estimated as (steps + 1) x its
    value-and-gradient time / the epoch time (one evaluation per training step, one in validation);
  - the FLOP rate of the jaxcausal epoch at --flop-dim, against a large matmul timed in the same run.
jaxcausal and torch epochs are interleaved (one of each per round) so both see the same machine
load; medians are reported, ratios are of medians. Prints a table and whether each speedup target
is met (TARGETS, issue #12: 8x at D = 10, 5x at D = 50, 3x at D = 200), and writes JSON. Uses the
public API only: `jaxcausal.experiment.build`, `jaxcausal.config`, `jaxcausal.data`, and the
read-only penalty lookup `jaxcausal.acyclicity.get_penalty`.

    pip install -e ".[bench]" && python benchmarks/epoch_time.py
    python benchmarks/epoch_time.py --quick          # tiny smoke run (seconds)
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from large_d import random_w, value_grad_ms
from machine_info import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import jaxcausal  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxcausal import acyclicity, config as config_lib  # noqa: E402
from jaxcausal.data import simulate  # noqa: E402
from jaxcausal.experiment import build  # noqa: E402

try:
    sys.path.insert(0, HERE)
    import torch  # noqa: E402

    import torch_reference  # noqa: E402
except ImportError:
    torch = torch_reference = None

DEFAULT_OUT = os.path.join(HERE, "results", "epoch_time.json")
TARGETS = {10: 8.0, 50: 5.0, 200: 3.0}  # issue #12: jaxcausal's epoch this many times faster than eager torch
LossBatch = collections.namedtuple("LossBatch", "x mask")  # the loss function's batch argument, (B, T, D) each


def package_versions() -> dict:
    """Python and the installed versions of the packages the timings depend on."""
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def median_ms(times) -> float:
    return 1e3 * statistics.median(times)


def timed(fn, *args):
    # A pause first: worker threads the other framework left spinning (OpenMP, XLA's pool) go idle
    # instead of competing with the timed call for the 2 cores.
    time.sleep(0.05)
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def run_epoch(epoch_fn, state, data):
    """One compiled epoch and its metrics on the host, as `train_and_evaluate` runs it."""
    state, out = epoch_fn(state, data)
    return state, jax.device_get(out)


def make_experiment(d: int, n_windows: int, batch_size: int, tmp: str, builtin: bool, **overrides):
    """The default Experiment on synthetic data (the built-in dataset when `builtin`); overrides: config fields."""
    # One pass per epoch on both sides (the torch reference's epoch), whatever min_steps_per_epoch is.
    overrides = {"quiet": True, "batch_size": batch_size, "min_steps_per_epoch": 1, **overrides}
    if not builtin:
        path = os.path.join(tmp, f"d{d}.npz")
        if not os.path.exists(path):
            ds = simulate(seed=0, d=d, noise="laplace", n_windows=n_windows, window=32, raw_scale=True)
            np.savez(path, X=ds.x, adjacency=ds.truth)
        overrides["data"] = path
    return build(config_lib.replace(config_lib.Config(), overrides), warn=lambda msg: None)


def penalty_forms() -> tuple[str, ...]:
    """The acyclicity penalties a user can choose: the config schema's choices for `penalty`."""
    (field,) = [f for f in dataclasses.fields(config_lib.LossConfig) if f.name == "penalty"]
    return tuple(field.metadata["choices"])


def flops_of(stage) -> float:
    """XLA's FLOP count of a lowered or compiled computation (a scan body counts once)."""
    analysis = stage.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def step_flops(exp, state) -> float:
    """FLOPs of one training step (the body of the epoch's scan): loss, gradient, optimiser update."""
    weights, pressure_state = state.lambdas, state.pressure
    x = jnp.asarray(exp.prepared.x_train[: exp.batch_size])

    def step(params, opt_state, batch):
        (loss, aux), grads = jax.value_and_grad(exp.loss_fn, has_aux=True)(params, batch, weights, pressure_state)
        updates, opt_state = exp.optimizer.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)

    # The lowered (pre-optimisation) HLO's count: within 0.5% of the compiled one, without a compile.
    return flops_of(jax.jit(step).lower(state.params, state.opt_state, LossBatch(x, jnp.ones_like(x))))


def matmul_rate(n: int):
    """(function timing one n x n float32 matmul in seconds, flops of it)."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()

    def run():
        time.sleep(0.05)
        t = time.perf_counter()
        mm(a, b).block_until_ready()
        return time.perf_counter() - t

    return run, 2.0 * n**3


def agreement(exp, params, dims) -> dict:
    """Loss terms and gradients of both implementations on one batch, random parameters; and every
    penalty form on a random W at each D."""
    agree = torch_reference.check_agreement(exp, params=params, batch_size=exp.batch_size)
    agree["penalties"] = {d: torch_reference.check_penalties(d, penalty_forms()) for d in dims}
    worst = {name: max(abs(a - b) / max(abs(a), 1e-12) for a, b in (p[name] for p in agree["penalties"].values()))
             for name in next(iter(agree["penalties"].values()))}
    agree["penalty_max_rel_err"] = worst
    print(f"loss agreement at D={exp.prepared.x_train.shape[-1]} (random params, 10% masked, alpha "
          f"{agree['alpha']:.1f}, rho {agree['rho']:.1f}): max relative error {agree['max_rel_err']:.1e} over "
          f"{len(agree['terms'])} terms, {agree['grad_max_rel_err']:.1e} over gradients; penalties on a random W "
          f"at D={dims}: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()), flush=True)
    return agree


def penalty_in_epoch(d: int, row: dict, args, tmp: str) -> dict:
    """The real epoch with each penalty form (the config's `penalty`), timed in interleaved rounds, and
    the penalty's estimated share of it: (steps + 1) evaluations of its value and gradient alone."""
    forms = [config_lib.Config().loss.penalty] if args.quick else list(penalty_forms())
    epochs, states, data = {}, {}, None
    for name in forms:
        exp = make_experiment(d, args.windows, args.batch_size, tmp, False, penalty=name)
        state, data = exp.init_state(), exp.train_data()
        epochs[name] = jax.jit(exp.epoch_fn(), donate_argnums=0).lower(state, data).compile()
        states[name], _ = epochs[name](state, data)  # warm-up
    times = {name: [] for name in epochs}
    for _ in range(args.epochs):
        for name, fn in epochs.items():
            (states[name], _), dt = timed(run_epoch, fn, states[name], data)
            times[name].append(dt)
    ms = {name: median_ms(t) for name, t in times.items()}
    steps = row["n_batches"] + 1
    return {"penalty_epoch_ms": ms,
            "penalty_share_estimate": {name: steps * row["penalty_ms"][name] / ms[name] for name in forms}}


def pick_torch_threads(trainer, choices: list[int]) -> tuple[int, dict]:
    """Warm up, then time one epoch per torch thread count and keep the fastest (conservative: on a
    busy 2-core machine torch's default OpenMP threads can be 10x slower than one thread)."""
    trainer.epoch()  # warm-up
    probe = {}
    for n in choices:
        torch.set_num_threads(n)
        probe[n] = 1e3 * timed(trainer.epoch)[1]
    best = min(probe, key=probe.get)
    torch.set_num_threads(best)
    return best, probe


def bench_dim(d: int, args, tmp: str) -> dict:
    builtin = d == 10 and args.windows == 2048 and not args.quick
    exp = make_experiment(d, args.windows, args.batch_size, tmp, builtin)
    n_train, window, _ = exp.prepared.x_train.shape
    row = {"d": d, "n_windows": int(n_train + exp.prepared.x_val.shape[0]), "n_train": int(n_train),
           "n_val": int(exp.prepared.x_val.shape[0]), "window": int(window),
           "batch_size": exp.batch_size, "n_batches": exp.n_batches,
           "data": "builtin" if builtin else "simulate(seed=0, noise=laplace, ER2, raw_scale)"}
    state, data = exp.init_state(), exp.train_data()
    if torch is not None and not args.no_torch and d == args.dims[0] and not args.quick:
        row["agreement"] = agreement(exp, state.params, args.dims)

    # jaxcausal: compile once (timed on its own), then epochs as train_and_evaluate runs them.
    t = time.perf_counter()
    epoch_fn = jax.jit(exp.epoch_fn(), donate_argnums=0).lower(state, data).compile()
    row["jax_compile_s"] = time.perf_counter() - t
    state, _ = run_epoch(epoch_fn, state, data)  # warm-up
    trainer = torch_reference.TorchTrainer.from_experiment(exp) if torch is not None and not args.no_torch else None
    if trainer is not None:
        row["torch_threads"], row["torch_probe_ms"] = pick_torch_threads(trainer, args.torch_threads)
    jax_times, torch_times = [], []
    mm_run, mm_flops = matmul_rate(args.matmul_n) if d == args.flop_dim else (None, 0.0)
    mm_times = []
    for _ in range(args.epochs):
        (state, _), dt = timed(run_epoch, epoch_fn, state, data)
        jax_times.append(dt)
        if mm_run is not None:
            mm_times.append(mm_run())
        if trainer is not None:
            torch_times.append(timed(trainer.epoch)[1])
    row.update(jax_epoch_ms=median_ms(jax_times), jax_epoch_min_ms=1e3 * min(jax_times),
               jax_epoch_all_ms=[1e3 * t for t in jax_times])
    if trainer is not None:
        speedup = statistics.median(torch_times) / statistics.median(jax_times)
        row.update(torch_epoch_ms=median_ms(torch_times), torch_epoch_min_ms=1e3 * min(torch_times),
                   torch_epoch_all_ms=[1e3 * t for t in torch_times], speedup_epoch=speedup,
                   speedup_epoch_min=min(torch_times) / min(jax_times))
        if d in TARGETS:
            row.update(target_speedup=TARGETS[d], target_met=bool(speedup >= TARGETS[d]))

    # Acyclicity penalties alone: value and gradient of one (D, D) W, as in every training step.
    w = random_w(d)
    row["penalty_ms"] = {name: value_grad_ms(acyclicity.get_penalty(name), w, args.penalty_reps)
                         for name in penalty_forms()}
    if d == args.penalty_dim:
        row.update(penalty_in_epoch(d, row, args, tmp))

    if mm_run is not None:
        step = step_flops(exp, state)
        epoch_flops = flops_of(epoch_fn) + (exp.n_batches - 1) * step
        # Cross-check: the model's matmuls alone (x W and x_lag W_lag, forward and weight gradient).
        b, t_, dd = exp.batch_size, window, d
        matmul_only = exp.n_batches * 4 * 2.0 * b * t_ * dd * dd
        epoch_rate = epoch_flops / statistics.median(jax_times)
        mm_rate = mm_flops / statistics.median(mm_times)
        row["flops"] = {"epoch_flops": epoch_flops, "step_flops": step, "epoch_cost_analysis_flops": flops_of(epoch_fn),
                        "model_matmul_flops": matmul_only, "epoch_gflops_per_s": epoch_rate / 1e9,
                        "matmul_n": args.matmul_n, "matmul_gflops_per_s": mm_rate / 1e9,
                        "fraction_of_matmul_rate": epoch_rate / mm_rate}
    return row


def print_table(rows: list[dict], has_torch: bool) -> None:
    print()
    print("| D | windows (train) | batches | jax compile s | jax epoch ms | torch epoch ms (threads) | speedup | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = (f"{r['target_speedup']:.0f}x: {'met' if r['target_met'] else 'MISSED'}"
                  if "target_met" in r else "-")
        tt = (f"{r['torch_epoch_ms']:.1f} ({r['torch_threads']}) | {r['speedup_epoch']:.1f}x | {target}"
              if has_torch else "- | - | -")
        print(f"| {r['d']} | {r['n_windows']} ({r['n_train']}) | {r['n_batches']} | {r['jax_compile_s']:.1f} | "
              f"{r['jax_epoch_ms']:.1f} | {tt} |")
    print()
    forms = list(rows[0]["penalty_ms"])
    print("| D | " + " | ".join(f"{f} value+grad ms" for f in forms) + " |")
    print("|---|" + "---|" * len(forms))
    for r in rows:
        print(f"| {r['d']} | " + " | ".join(f"{r['penalty_ms'][f]:.3f}" for f in forms) + " |")
    for r in rows:
        if "penalty_share_estimate" in r:
            ms = r["penalty_epoch_ms"]
            print(f"\nD={r['d']} epoch with each penalty ({r['n_batches'] + 1} evaluations of it per epoch): " + "; ".join(
                f"{f} {ms[f]:.1f} ms, penalty ~{100 * share:.1f}% of the epoch"
                for f, share in r["penalty_share_estimate"].items()))
    for r in rows:
        if "flops" in r:
            f = r["flops"]
            print(f"\nD={r['d']} epoch: {f['epoch_flops'] / 1e9:.3f} GFLOP (XLA cost analysis, scan body x "
                  f"{r['n_batches']}) in {r['jax_epoch_ms']:.1f} ms = {f['epoch_gflops_per_s']:.1f} GFLOP/s; "
                  f"{f['matmul_n']}^2 matmul {f['matmul_gflops_per_s']:.1f} GFLOP/s; "
                  f"fraction {100 * f['fraction_of_matmul_rate']:.1f}%")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="jaxcausal vs PyTorch reference: epoch time")
    p.add_argument("--dims", type=int, nargs="+", default=[10, 50, 100, 200])
    p.add_argument("--windows", type=int, default=2048, help="windows per dataset (20%% go to validation)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=7, help="timed epochs per framework (after one warm-up)")
    p.add_argument("--penalty-reps", type=int, default=30)
    p.add_argument("--flop-dim", type=int, default=50, help="D whose epoch FLOP rate is measured")
    p.add_argument("--penalty-dim", type=int, default=200, help="D whose epoch is timed with each penalty form")
    p.add_argument("--matmul-n", type=int, default=1024, help="size of the reference matmul")
    p.add_argument("--no-torch", action="store_true", help="time jaxcausal only")
    p.add_argument("--torch-threads", type=int, nargs="+", default=None,
                   help="torch thread counts to try per D, fastest kept (default: torch's default and 1)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: D=5, 64 windows, batch 16, no agreement check (torch_reference.py --quick has it)")
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output file")
    args = p.parse_args(argv)
    if args.quick:
        args.dims, args.windows, args.batch_size, args.flop_dim, args.penalty_dim = [5], 64, 16, 5, 5
        args.epochs, args.penalty_reps, args.matmul_n = 2, 3, 128

    has_torch = torch is not None and not args.no_torch
    if has_torch and args.torch_threads is None:
        args.torch_threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    if torch is None and not args.no_torch:
        print("torch is not installed (pip install -e \".[bench]\"): timing jaxcausal only")
    info = {
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "device": str(jax.devices()[0]), "backend": jax.default_backend(),
        "versions": dict(package_versions(), torch=torch.__version__ if has_torch else None,
                         torch_default_threads=torch.get_num_threads() if has_torch else None),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "config": "defaults (linear SEM, fit laplace_nv, penalty trace_power, lr 5e-3), float32",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.dims:
            t = time.perf_counter()
            rows.append(bench_dim(d, args, tmp))
            print(f"D={d}: done in {time.perf_counter() - t:.0f} s", flush=True)
    info["agreement"] = rows[0].pop("agreement", None)
    info["results"] = rows
    info["machine"]["loadavg_end"] = list(os.getloadavg())
    print_table(rows, has_torch)
    for r in rows:
        if "target_met" in r:
            print(f"target D={r['d']}: >= {r['target_speedup']:.0f}x eager torch: "
                  f"{'met' if r['target_met'] else 'NOT met'} ({r['speedup_epoch']:.1f}x)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
