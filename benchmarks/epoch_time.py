"""Epoch time of jaxcausal against the PyTorch reference (benchmarks/torch_reference.py).

For each D: N windows of T = 32 steps (the built-in dataset at D = 10, the same generator at other
D), batch 64, the default config (linear SEM, laplace_nv fit, trace_power penalty). Times
  - jaxcausal: compile of the epoch (separately), then one epoch = one compiled call (train scan,
    validation, schedules) plus the per-epoch metrics transfer to the host, as `train_and_evaluate`;
  - torch: one epoch of the reference (eager batches, clip, AdamW, validation loop, plateau step);
  - one validation sweep (loss on the validation split + the 21-threshold sweep) of each;
  - value and gradient of every acyclicity penalty form alone, and at --penalty-dim the epoch with
    each form against the epoch with a zero penalty (the penalty's share of the epoch);
  - the FLOP rate of the jaxcausal epoch at --flop-dim, against a large matmul timed in the same run.
jaxcausal and torch epochs are interleaved (one of each per round) so both see the same machine
load; medians are reported, ratios are of medians. Prints a table and writes JSON.

    pip install -e ".[bench]" && python benchmarks/epoch_time.py
    python benchmarks/epoch_time.py --quick          # tiny smoke run (seconds)
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
import unittest.mock

import numpy as np

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
from jaxcausal.losses import Batch, make_loss_fn  # noqa: E402
from jaxcausal.prepare import prepare  # noqa: E402
from jaxcausal.steps import make_epoch_fn, make_eval_fn  # noqa: E402
from jaxcausal.experiment import build  # noqa: E402
from jaxcausal.rundir import versions  # noqa: E402

try:
    sys.path.insert(0, HERE)
    import torch  # noqa: E402

    import torch_reference  # noqa: E402
except ImportError:
    torch = torch_reference = None

DEFAULT_OUT = os.path.join(HERE, "results", "epoch_time.json")


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


def make_setup(d: int, n_windows: int, batch_size: int, tmp: str, builtin: bool):
    """A jaxcausal Setup on synthetic data (the built-in dataset when `builtin`)."""
    # One pass per epoch on both sides (the torch reference's epoch), whatever min_steps_per_epoch is.
    overrides = {"quiet": True, "batch_size": batch_size, "min_steps_per_epoch": 1}
    if not builtin:
        ds = simulate(seed=0, d=d, noise="laplace", n_windows=n_windows, window=32, raw_scale=True)
        path = os.path.join(tmp, f"d{d}.npz")
        np.savez(path, X=ds.x, adjacency=ds.truth)
        overrides["data"] = path
    cfg = config_lib.replace(config_lib.Config(), overrides)
    return build(cfg, prepare(cfg), warn=lambda msg: None)


def make_trainer(setup):
    cfg, p = setup.cfg, setup.prepared
    return torch_reference.TorchTrainer(
        p.x_train, p.m_train, p.x_val, p.m_val, p.truth,
        lambdas={"recon": cfg.loss.lambda_recon, "sparse": cfg.loss.lambda_sparse,
                 "acyclic": cfg.loss.lambda_acyclic, "disen": cfg.loss.lambda_disen},
        lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, clip_norm=cfg.optim.clip_norm,
        batch_size=setup.batch_size, fit=cfg.loss.fit, penalty=cfg.loss.penalty, max_lag=cfg.model.max_lag,
        latent_dim=cfg.model.latent_dim, seed=cfg.train.seed,
        dag={k: getattr(cfg.dag, k) for k in ("rho_init", "rho_growth", "rho_max", "h_progress", "h_tol")})


def flops_of(stage) -> float:
    """XLA's FLOP count of a lowered or compiled computation (a scan body counts once)."""
    analysis = stage.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


def step_flops(setup, state) -> float:
    """FLOPs of one training step (the body of the epoch's scan): loss, gradient, optimiser update."""
    weights, pressure_state = state.lambdas, state.pressure
    x = jnp.asarray(setup.prepared.x_train[: setup.batch_size])

    def step(params, opt_state, batch):
        (loss, aux), grads = jax.value_and_grad(setup.loss_fn, has_aux=True)(params, batch, weights, pressure_state)
        updates, opt_state = setup.optimizer.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)

    # The lowered (pre-optimisation) HLO's count: within 0.5% of the compiled one, without a compile.
    return flops_of(jax.jit(step).lower(state.params, state.opt_state, Batch(x, jnp.ones_like(x))))


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


def agreement(setup, params, dims) -> dict:
    """Loss terms and gradients of both implementations on one batch, random parameters; and every
    penalty form on a random W at each D."""
    agree = torch_reference.check_agreement(setup, params=params, batch_size=setup.batch_size)
    agree["penalties"] = {d: torch_reference.check_penalties(d) for d in dims}
    worst = {name: max(abs(a - b) / max(abs(a), 1e-12) for a, b in (p[name] for p in agree["penalties"].values()))
             for name in next(iter(agree["penalties"].values()))}
    agree["penalty_max_rel_err"] = worst
    print(f"loss agreement at D={setup.prepared.x_train.shape[-1]} (random params, 10% masked, alpha "
          f"{agree['alpha']:.1f}, rho {agree['rho']:.1f}): max relative error {agree['max_rel_err']:.1e} over "
          f"{len(agree['terms'])} terms, {agree['grad_max_rel_err']:.1e} over gradients; penalties on a random W "
          f"at D={dims}: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()), flush=True)
    return agree


def penalty_in_epoch(setup, data, args) -> dict:
    """The penalty's share of the real epoch: the compiled epoch with each penalty form, and with
    a zero penalty, timed in interleaved rounds; share = (t_form - t_zero) / t_form."""
    forms = [setup.cfg.loss.penalty] if args.quick else list(acyclicity.PENALTIES)
    # No public hook for a custom penalty: register a zero stand-in only while the losses are built
    # (patch.dict restores the registry even on error).
    zero = {"_zero": lambda w_DxD: 0.0 * jnp.sum(w_DxD)}
    with unittest.mock.patch.dict(acyclicity.PENALTIES, zero):
        loss_fns = {name: make_loss_fn(setup.model, name, setup.cfg.loss.fit) for name in forms + ["_zero"]}
    epochs, states = {}, {}
    for name, loss_fn in loss_fns.items():
        fn = make_epoch_fn(setup.model, loss_fn, setup.optimizer, setup.cfg, n_batches=setup.n_batches,
                           batch_size=setup.batch_size, has_truth=setup.has_truth)
        state = jax.jit(setup.init_state)()
        epochs[name] = jax.jit(fn, donate_argnums=0).lower(state, data).compile()
        states[name], _ = epochs[name](state, data)  # warm-up
    times = {name: [] for name in epochs}
    for _ in range(args.epochs):
        for name, fn in epochs.items():
            (states[name], _), dt = timed(run_epoch, fn, states[name], data)
            times[name].append(dt)
    ms = {name: median_ms(t) for name, t in times.items()}
    return {"penalty_epoch_ms": ms,
            "penalty_share": {name: (ms[name] - ms["_zero"]) / ms[name] for name in forms}}


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
    setup = make_setup(d, args.windows, args.batch_size, tmp, builtin)
    n_train, window, _ = setup.prepared.x_train.shape
    row = {"d": d, "n_windows": int(n_train + setup.prepared.x_val.shape[0]), "n_train": int(n_train),
           "n_val": int(setup.prepared.x_val.shape[0]), "window": int(window),
           "batch_size": setup.batch_size, "n_batches": setup.n_batches,
           "data": "builtin" if builtin else "simulate(seed=0, noise=laplace, ER2, raw_scale)"}
    state, data = jax.jit(setup.init_state)(), setup.train_data()  # same values as eager, faster
    if torch is not None and not args.no_torch and d == args.dims[0] and not args.quick:
        row["agreement"] = agreement(setup, state.params, args.dims)

    # jaxcausal: compile once (timed on its own), then epochs as train_and_evaluate runs them.
    t = time.perf_counter()
    epoch_fn = jax.jit(setup.epoch_fn(), donate_argnums=0).lower(state, data).compile()
    row["jax_compile_s"] = time.perf_counter() - t
    evaluate = jax.jit(make_eval_fn(setup.model, setup.loss_fn, setup.has_truth))

    def jax_validate(state):
        return jax.device_get(evaluate(state.params, state.lambdas, state.pressure, data.x_val, data.m_val, data.truth))

    state, _ = run_epoch(epoch_fn, state, data)  # warm-up
    jax_validate(state)
    trainer = make_trainer(setup) if torch is not None and not args.no_torch else None
    if trainer is not None:
        row["torch_threads"], row["torch_probe_ms"] = pick_torch_threads(trainer, args.torch_threads)
    jax_times, torch_times, jax_val, torch_val = [], [], [], []
    mm_run, mm_flops = matmul_rate(args.matmul_n) if d == args.flop_dim else (None, 0.0)
    mm_times = []
    for _ in range(args.epochs):
        (state, _), dt = timed(run_epoch, epoch_fn, state, data)
        jax_times.append(dt)
        if mm_run is not None:
            mm_times.append(mm_run())
        if trainer is not None:
            torch_times.append(timed(trainer.epoch)[1])
    for _ in range(args.val_reps):
        jax_val.append(timed(jax_validate, state)[1])
        if trainer is not None:
            torch_val.append(timed(trainer.validate)[1])
    row.update(jax_epoch_ms=median_ms(jax_times), jax_epoch_min_ms=1e3 * min(jax_times),
               jax_val_ms=median_ms(jax_val), jax_epoch_all_ms=[1e3 * t for t in jax_times])
    if trainer is not None:
        row.update(torch_epoch_ms=median_ms(torch_times), torch_epoch_min_ms=1e3 * min(torch_times),
                   torch_val_ms=median_ms(torch_val), torch_epoch_all_ms=[1e3 * t for t in torch_times],
                   speedup_epoch=statistics.median(torch_times) / statistics.median(jax_times),
                   speedup_epoch_min=min(torch_times) / min(jax_times),
                   speedup_val=statistics.median(torch_val) / statistics.median(jax_val))

    # Acyclicity penalties alone: value and gradient of one (D, D) W, as in every training step.
    w = np.random.default_rng(0).normal(0.0, 0.3, (d, d)).astype(np.float32) * (1 - np.eye(d, dtype=np.float32))
    w = jnp.asarray(w)
    row["penalty_ms"] = {}
    for name, fn in acyclicity.PENALTIES.items():
        vg = jax.jit(jax.value_and_grad(fn))
        jax.block_until_ready(vg(w))
        times = []
        for _ in range(args.penalty_reps):
            t = time.perf_counter()
            jax.block_until_ready(vg(w))
            times.append(time.perf_counter() - t)
        row["penalty_ms"][name] = median_ms(times)
    if d == args.penalty_dim:
        row.update(penalty_in_epoch(setup, data, args))

    if mm_run is not None:
        step = step_flops(setup, state)
        epoch_flops = flops_of(epoch_fn) + (setup.n_batches - 1) * step
        # Cross-check: the model's matmuls alone (x W and x_lag W_lag, forward and weight gradient).
        b, t_, dd = setup.batch_size, window, d
        matmul_only = setup.n_batches * 4 * 2.0 * b * t_ * dd * dd
        epoch_rate = epoch_flops / statistics.median(jax_times)
        mm_rate = mm_flops / statistics.median(mm_times)
        row["flops"] = {"epoch_flops": epoch_flops, "step_flops": step, "epoch_cost_analysis_flops": flops_of(epoch_fn),
                        "model_matmul_flops": matmul_only, "epoch_gflops_per_s": epoch_rate / 1e9,
                        "matmul_n": args.matmul_n, "matmul_gflops_per_s": mm_rate / 1e9,
                        "fraction_of_matmul_rate": epoch_rate / mm_rate}
    return row


def print_table(rows: list[dict], has_torch: bool) -> None:
    print()
    print("| D | windows (train) | batches | jax compile s | jax epoch ms | torch epoch ms (threads) | speedup | "
          "jax val ms | torch val ms | val speedup |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tt = (f"{r['torch_epoch_ms']:.1f} ({r['torch_threads']}) | {r['speedup_epoch']:.1f}x | {r['jax_val_ms']:.2f} | "
              f"{r['torch_val_ms']:.2f} | {r['speedup_val']:.1f}x") if has_torch else \
            f"- | - | {r['jax_val_ms']:.2f} | - | -"
        print(f"| {r['d']} | {r['n_windows']} ({r['n_train']}) | {r['n_batches']} | {r['jax_compile_s']:.1f} | "
              f"{r['jax_epoch_ms']:.1f} | {tt} |")
    print()
    forms = list(rows[0]["penalty_ms"])
    print("| D | " + " | ".join(f"{f} value+grad ms" for f in forms) + " |")
    print("|---|" + "---|" * len(forms))
    for r in rows:
        print(f"| {r['d']} | " + " | ".join(f"{r['penalty_ms'][f]:.3f}" for f in forms) + " |")
    for r in rows:
        if "penalty_share" in r:
            ms = r["penalty_epoch_ms"]
            print(f"\nD={r['d']} epoch with each penalty (zero penalty: {ms['_zero']:.1f} ms): " + "; ".join(
                f"{f} {ms[f]:.1f} ms, penalty {100 * share:.1f}% of the epoch" for f, share in r["penalty_share"].items()))
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
    p.add_argument("--val-reps", type=int, default=7)
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
        args.epochs, args.val_reps, args.penalty_reps, args.matmul_n = 2, 2, 3, 128

    has_torch = torch is not None and not args.no_torch
    if has_torch and args.torch_threads is None:
        args.torch_threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    if torch is None and not args.no_torch:
        print("torch is not installed (pip install -e \".[bench]\"): timing jaxcausal only")
    info = {
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": list(os.getloadavg())},
        "device": str(jax.devices()[0]), "backend": jax.default_backend(),
        "versions": dict(versions(), torch=torch.__version__ if has_torch else None,
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
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
