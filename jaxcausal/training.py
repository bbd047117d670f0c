"""The host side of training: `train_and_evaluate(config, ...)` -> (final state, summary).

The host wakes once per epoch: one compiled call trains, validates and updates the schedules;
then metrics cross to the host once, are logged, checked for health and checkpointed.
Building the experiment lives in `experiment`, the run directory in `rundir`, what a run writes
in `results`.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

from jaxcausal import checkpoint, config as config_lib, priors as priors_lib, reporting, rundir
from jaxcausal.errors import InputError
from jaxcausal.experiment import Experiment, build, use_compile_cache
from jaxcausal.prepare import Prepared, prepare
from jaxcausal.results import checkpoint_meta, epoch_row, finish_run
from jaxcausal.steps import TrainState, early_stopper

EXIT_NONFINITE = 2  # like bad input: the run stopped on a numerical fault (see README, Troubleshooting)


def train_and_evaluate(cfg: config_lib.Config, *, resume: str | None = None, stream=None,
                       prepared: Prepared | None = None) -> tuple[TrainState, dict]:
    """Train (or continue the run in `resume`) and write the run directory. Returns (state, summary).

    An interrupted run (SIGINT/SIGTERM) finishes its epoch, saves and returns a summary with
    `exit_code` 128 + signal number; `--resume` continues it bit-identically. prepared: the data,
    already read and described (the CLI does it before jax loads, so its summary comes first).
    """
    say = (lambda *a: None) if cfg.train.quiet else (lambda *a: print(*a, file=stream or sys.stdout, flush=True))
    warn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    run_dir = resume or cfg.train.out or rundir.default_run_dir()
    use_compile_cache(cfg.train.compile_cache)  # before anything compiles: JAX reads it once
    if prepared is None:  # data first: bad input never creates or clears a run directory
        prepared = prepare(cfg)
        say(prepared.describe())
    setup = build(cfg, prepared, warn=warn)
    if setup.priors is not None:
        say(setup.priors.describe())
    # One process per run directory, locked before anything in it is cleared (jaxcausal/rundir.py).
    with rundir.RunLock(run_dir, warn=warn):
        return _train_locked(cfg, setup, run_dir, resume, say, warn)


def _train_locked(cfg: config_lib.Config, setup: Experiment, run_dir: str, resume: str | None,
                  say, warn) -> tuple[TrainState, dict]:
    """The body of `train_and_evaluate`, run while this process holds the run directory's lock."""
    if not resume:
        rundir.prepare_output_dir(run_dir, cfg.train.overwrite)
    for w in setup.prepared.warnings:
        warn(f"WARNING: {w}")
    ckpts = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), keep=cfg.train.keep_checkpoints)
    health = reporting.HealthMonitor(quiet=True)
    with rundir.SignalStop() as stop, ckpts.closed_on_error():
        if resume:
            state = resume_state(setup, ckpts, run_dir)
            say(f"Resuming {run_dir} from epoch {int(state.epoch)}")
        else:
            state = setup.init_state()
        short = setup.short_of_path()
        if short:
            warn(short)
        rundir.write_config(run_dir, setup, resumed_from_epoch=int(state.epoch) if resume else None)
        log = rundir.open_log(os.path.join(run_dir, "training_log.jsonl"), int(state.epoch) if resume else None, health)
        health.quiet = cfg.train.quiet
        data = setup.train_data()
        t0 = time.perf_counter()
        say("compiling the epoch program" + (" (cached after the first run)" if cfg.train.compile_cache else ""))
        epoch_fn = setup.compiled_epoch(state, data)
        compile_time = time.perf_counter() - t0
        stop_reason = "early_stopping" if bool(state.early.stopped) else None
        cadence = checkpoint.Cadence(ckpts, functools.partial(checkpoint_meta, setup), cfg.train.checkpoint_every)
        epochs_run, start = 0, time.perf_counter()
        while stop_reason is None and int(state.epoch) < cfg.train.epochs:
            if stop.signum is not None:  # signalled before this process finished an epoch
                stop_reason = "interrupted"
                break
            t = time.perf_counter()
            state, out = epoch_fn(state, data)
            out = jax.device_get(out)
            epochs_run += 1
            row = epoch_row(out, int(state.epoch), setup, time.perf_counter() - t)
            log.write(row)
            say(reporting.console_line(row, cfg.train.epochs, bool(out["improved"])))
            health.check(row)
            epoch = int(state.epoch)
            if bool(state.early.stopped):
                stop_reason = "early_stopping"
            elif int(state.nonfinite_run) >= cfg.optim.max_nonfinite:
                stop_reason = "nonfinite"
                warn(f"ERROR: {int(state.nonfinite_run)} consecutive non-finite steps (NaN/Inf loss or gradient, "
                     f"limit --max-nonfinite {cfg.optim.max_nonfinite}) at epoch {epoch}, step {int(state.step)}; "
                     f"stopped with the last good parameters, checkpointed in {run_dir}/checkpoints "
                     f"(lower --lr or check the data for extreme values)")
            elif stop.signum is not None and epoch < cfg.train.epochs:
                stop_reason = "interrupted"
            cadence.epoch(epoch, state, improved=bool(out["improved"]), metric=float(out["checkpoint_metric"]))
        cadence.flush(state)  # however the loop ended, its last epoch is on disk
        log.close()
        ckpts.wait()
    train_time = time.perf_counter() - start
    stop_reason = stop_reason or "max_epochs"
    hint = f"python -m jaxcausal.train --resume {run_dir}"
    if stop_reason == "interrupted" and epochs_run == 0:
        ckpts.close()
        warn(f"Interrupted by {stop.name} before an epoch finished; nothing new to save. Continue with: {hint}")
        return state, {"stop_reason": stop_reason, "exit_code": rundir.EXIT_SIGNAL_BASE + stop.signum}
    summary = finish_run(setup, ckpts, run_dir, state, stop_reason, health, compile_time, train_time, say,
                         best_state=cadence.best_state(int(state.early.best_epoch)))
    ckpts.close()
    if stop_reason == "interrupted":
        warn(f"Interrupted by {stop.name} after epoch {int(state.epoch)}; checkpoint saved, log flushed. "
             f"Continue with: {hint}")
        summary["exit_code"] = rundir.EXIT_SIGNAL_BASE + stop.signum
    else:
        if stop_reason == "nonfinite":  # outputs are written, but the run failed: scripts must notice
            summary["exit_code"] = EXIT_NONFINITE
        say(f"Done: {summary['stop_reason']} after epoch {summary['epochs_run']}; best epoch {summary['best_epoch']}"
            + (f", val F1 {summary['best']['val_f1']:.4f}" if setup.has_truth else "")
            + f"; {len(summary['graph']['edges'])} edges in {run_dir}/graph.csv")
    return state, summary


def resume_state(setup: Experiment, ckpts: checkpoint.Checkpoints, run_dir: str) -> TrainState:
    """The latest readable checkpoint, refused unless it was made from the same data and config.

    Unreadable newer checkpoints are deleted (their epochs run again). A run killed before its
    first checkpoint was complete starts again from epoch 0, which is the same trajectory.
    """
    steps = ckpts.steps()
    if steps:
        state, meta, step = ckpts.restore(setup.state_template())
    else:
        with open(os.path.join(run_dir, "config.json")) as f:
            meta = {"data_fingerprint": json.load(f)["data"]["fingerprint"], "config": config_lib.to_dict(setup.cfg)}
        state, step = setup.init_state(), 0
        print(f"WARNING: {run_dir} has no complete checkpoint (stopped before the first save finished); "
              f"starting again from epoch 0", file=sys.stderr, flush=True)
    if meta.get("data_fingerprint") != setup.prepared.fingerprint:
        raise InputError(f"{run_dir}: the data differ from the run's (fingerprint {meta.get('data_fingerprint')} "
                         f"vs {setup.prepared.fingerprint}); resume with the original --data/--truth")
    # Checkpoints from before priors were fingerprinted carry none; they are taken as made without priors.
    if steps and meta.get("priors_fingerprint", "none") != priors_lib.fingerprint(setup.priors):
        raise InputError(f"{run_dir}: the prior knowledge differs from the run's (--forbid/--require/--tiers "
                         f"files changed since it started); resume with the original files or start a new run")
    rundir.check_resumable(config_lib.from_dict(meta["config"], where=f"{run_dir} checkpoint"), setup.cfg, run_dir)
    for skipped in [s for s in steps if s > step]:  # unreadable, and in the way of saving that epoch again
        ckpts.delete(skipped)
        print(f"WARNING: deleted unreadable checkpoint {ckpts.directory}/{skipped}; epochs after {step} run again",
              file=sys.stderr, flush=True)
    # patience / min_epochs may change on resume: re-apply the epoch function's stopping rule.
    stopped = early_stopper(setup.cfg).should_stop(state.early, state.epoch)
    return state.replace(early=state.early._replace(stopped=jnp.asarray(stopped)))
