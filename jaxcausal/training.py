"""The host side of training: `train_and_evaluate(config, ...)` -> (final state, summary).

The host wakes once per epoch: one compiled call trains, validates and updates the schedules;
then metrics cross to the host once, are logged, checked for health and checkpointed.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcausal import checkpoint, config as config_lib, export, priors as priors_lib, reporting, rundir
from jaxcausal.errors import InputError
from jaxcausal.losses import make_loss_fn
from jaxcausal.model import build_model
from jaxcausal.optim import build_optimizer
from jaxcausal.prepare import Prepared, prepare
from jaxcausal.steps import TrainData, TrainState, early_stopper, init_state, make_epoch_fn

RUN_FILES = ("config.json", "training_log.jsonl", "summary.json", "graph.csv", "weights.npy",
             "weights_lagged.npy", "graph_lagged.csv", "graph.dot", "graph.png", "training.png", "checkpoints",
             "evaluation")
RESUMABLE = config_lib.RESUMABLE  # settings that may change on --resume, marked in the schema
EXIT_NONFINITE = 2  # like bad input: the run stopped on a numerical fault (see README, Troubleshooting)
EXIT_SIGNAL_BASE = 128  # interrupted runs exit with 128 + signal number (130 SIGINT, 143 SIGTERM)


@dataclasses.dataclass
class Setup:
    """Everything built from a config and a dataset, shared by training, evaluation and sweeps."""

    cfg: config_lib.Config
    prepared: Prepared
    model: Any
    loss_fn: Any
    optimizer: Any
    batch_size: int
    n_batches: int
    priors: priors_lib.Priors | None = None  # --forbid / --require / --tiers as design masks

    @property
    def has_truth(self) -> bool:
        return self.prepared.truth is not None

    def train_data(self) -> TrainData:
        p = self.prepared
        d = p.x_train.shape[-1]
        truth = np.zeros((d, d), np.float32) if p.truth is None else p.truth.astype(np.float32)
        return TrainData(*(jnp.asarray(a) for a in (p.x_train, p.m_train, p.x_val, p.m_val, truth)))

    def init_state(self) -> TrainState:
        sample = jnp.asarray(self.prepared.x_train[: self.batch_size])
        return init_state(self.model, self.optimizer, self.cfg, sample, self.cfg.train.seed)

    def epoch_fn(self):
        return make_epoch_fn(self.model, self.loss_fn, self.optimizer, self.cfg, n_batches=self.n_batches,
                             batch_size=self.batch_size, has_truth=self.has_truth)


ROWS_PER_BATCH = 2048  # the automatic batch: 64 windows of 32 steps; full batch for static data up to 2048 rows


def build(cfg: config_lib.Config, prepared: Prepared | None = None, warn=print) -> Setup:
    prepared = prepared or prepare(cfg)
    n_train, window, d = prepared.x_train.shape
    batch_size = cfg.train.batch_size or min(max(1, ROWS_PER_BATCH // window), n_train)
    if n_train < batch_size:
        warn(f"WARNING: only {n_train} training windows, fewer than --batch-size {batch_size}; "
             f"using batches of {n_train}")
        batch_size = n_train
    # Small (e.g. static) datasets pass over the data several times per epoch, so an epoch is never
    # a handful of steps and the host's per-epoch work (validation, logging, checkpoint) stays cheap.
    n_batches = max(n_train // batch_size, cfg.train.min_steps_per_epoch)
    model = build_model(cfg.model, d, window)
    # Read with the data, so a bad prior file fails before any run directory is touched.
    priors = priors_lib.from_config(cfg.data, prepared.dataset.names, model.max_lag)
    if priors is not None:
        if priors.n_required and cfg.search.graph_search != "order":
            raise InputError(f"{cfg.data.require}: required edges are enforced by the order search; "
                             "use --graph-search order (the default) with --require")
        model = build_model(cfg.model, d, window, priors.allowed)  # forbidden weights held at zero
    return Setup(cfg, prepared, model, make_loss_fn(model, cfg.loss.penalty, cfg.loss.fit),
                 build_optimizer(cfg.optim, n_batches), batch_size, n_batches, priors)


def short_of_path(setup: Setup) -> str | None:
    """A warning when the run ends before the acyclicity path's last stage, else None."""
    cfg = setup.cfg
    if cfg.dag.schedule != "path":
        return None
    # The stage moves at most once per epoch, at its end; the first epoch trained in the last stage
    # is the first candidate for best epoch and early stopping.
    changes = cfg.dag.path_stages - 1
    first_final = max(changes, -(-changes * cfg.dag.steps_per_update // setup.n_batches)) + 1
    if cfg.train.epochs >= first_final:
        return None
    return (f"WARNING: --epochs {cfg.train.epochs} ends before the acyclicity path's last stage (epoch {first_final} "
            f"at {setup.n_batches} steps per epoch); no epoch can be selected as best and the final state is "
            "exported (raise --epochs or lower --steps-per-update / --path-stages)")


def default_run_dir() -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = os.path.join("runs", stamp), 1
    while os.path.exists(path):
        path, k = os.path.join("runs", f"{stamp}-{k}"), k + 1
    return path


def prepare_output_dir(out: str, overwrite: bool, *, files=RUN_FILES, what: str = "run directory",
                       alternatives: str | None = None, clear: bool = True) -> None:
    """Refuse a directory that holds any of `files` unless --overwrite; with `clear`, remove them and
    create the directory. Shared by train runs and sweeps, so both protect a user's results alike."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: --out exists and is not a directory")
    existing = [f for f in files if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        fix = alternatives or f"continue it with --resume {out}, choose another --out, or pass --overwrite"
        raise InputError(f"{out}: {what} already holds {', '.join(existing)}; {fix}")
    if not clear:
        return
    for f in existing:
        path = os.path.join(out, f)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(out, exist_ok=True)


def check_resumable(saved: config_lib.Config, new: config_lib.Config, run_dir: str) -> None:
    a, b = config_lib.to_dict(saved), config_lib.to_dict(new)
    diff = [f"{name} {a[s][name]!r} -> {b[s][name]!r}" for s in a for name in a[s]
            if a[s][name] != b[s][name] and name not in RESUMABLE]
    if diff:
        raise InputError(f"{run_dir}: cannot resume with a different configuration ({'; '.join(diff)}); "
                         f"start a new run with --out instead")


def versions() -> dict[str, str]:
    import flax
    import optax
    import orbax.checkpoint
    return {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__}


class SignalStop:
    """SIGINT/SIGTERM set a flag; the loop finishes the current epoch, saves and exits.

    The first signal puts the previous handlers back, so a second one acts at once (Ctrl-C:
    KeyboardInterrupt, SIGTERM: termination); the last complete checkpoint stays valid either way.
    """

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal.signal needs the main thread
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()

    def _restore(self):
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
        self._old = {}

    def __exit__(self, *exc):
        self._restore()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def epoch_row(out: dict, state_epoch: int, setup: Setup, epoch_time: float) -> dict:
    """One training_log.jsonl line from the epoch's metrics (already on the host)."""
    comps = out["components"]
    row = {
        "epoch": state_epoch,
        "train_loss": out["train_loss"],
        "train_loss_components": {k: comps[k] for k in ("recon", "sparse", "acyclic", "disen", "sparse_lag",
                                                          "acyclic_weighted")},
        "val_loss": out["val_loss"],
        "val_recon": out["val_aux"]["recon"],
        "val_f1": None, "val_shd": None, "precision": None, "recall": None,
        "edge_count": int(np.sum(out["scores"] > setup.cfg.train.graph_threshold)),
        "true_edge_count": None, "best_threshold": None,
        "grad_clip_ratio": out["grad_clip_ratio"],
        "max_grad_norm": out["max_grad_norm"],
        "learning_rate": out["learning_rate"],
        "h": out["h"], "rho": out["rho"], "alpha": out["alpha"], "mu": out["mu"], "stage": int(out["stage"]),
        "eligible": bool(out["eligible"]),
        "nonfinite_steps": int(out["nonfinite_steps"]),
        "epoch_time": epoch_time,
    }
    if setup.has_truth:
        i, sweep = int(out["best_index"]), out["sweep"]
        from jaxcausal.metrics import THRESHOLDS
        row.update(val_f1=sweep["f1"][i], val_shd=sweep["shd"][i], precision=sweep["precision"][i],
                   recall=sweep["recall"][i], edge_count=int(sweep["edge_count"][i]),
                   true_edge_count=int(setup.prepared.truth.sum()), best_threshold=float(THRESHOLDS[i]))
    return reporting.clean(row)


def checkpoint_meta(setup: Setup, state: TrainState, stop_reason: str | None = None) -> dict:
    """What travels with every checkpoint besides the state (the state digest is added on save)."""
    return reporting.clean({
        "epoch": int(state.epoch), "best_epoch": int(state.early.best_epoch),
        "config": config_lib.to_dict(setup.cfg), "config_fingerprint": config_lib.fingerprint(setup.cfg),
        "data_fingerprint": setup.prepared.fingerprint, "data_shape": list(setup.prepared.dataset.x.shape),
        "standardizer": setup.prepared.standardizer.to_dict(), "stop_reason": stop_reason,
    })


def train_and_evaluate(cfg: config_lib.Config, *, resume: str | None = None,
                       stream=None) -> tuple[TrainState, dict]:
    """Train (or continue the run in `resume`) and write the run directory. Returns (state, summary).

    An interrupted run (SIGINT/SIGTERM) finishes its epoch, saves and returns a summary with
    `exit_code` 128 + signal number; `--resume` continues it bit-identically.
    """
    say = (lambda *a: None) if cfg.train.quiet else (lambda *a: print(*a, file=stream or sys.stdout, flush=True))
    warn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    run_dir = resume or cfg.train.out or default_run_dir()
    use_compile_cache(cfg.train.compile_cache)  # before anything compiles: JAX reads it once
    setup = build(cfg, warn=warn)  # data first: bad input never creates or clears a run directory
    say(setup.prepared.describe())
    if setup.priors is not None:
        say(setup.priors.describe())
    # One process per run directory, locked before anything in it is cleared (jaxcausal/rundir.py).
    with rundir.RunLock(run_dir, warn=warn):
        return _train_locked(cfg, setup, run_dir, resume, say, warn)


def _train_locked(cfg: config_lib.Config, setup: Setup, run_dir: str, resume: str | None,
                  say, warn) -> tuple[TrainState, dict]:
    """The body of `train_and_evaluate`, run while this process holds the run directory's lock."""
    if not resume:
        prepare_output_dir(run_dir, cfg.train.overwrite)
    for w in setup.prepared.warnings:
        warn(f"WARNING: {w}")
    ckpts = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), keep=cfg.train.keep_checkpoints)
    health = reporting.HealthMonitor(quiet=True)
    with SignalStop() as stop, ckpts.closed_on_error():
        if resume:
            state = resume_state(setup, ckpts, run_dir)
            say(f"Resuming {run_dir} from epoch {int(state.epoch)}")
        else:
            state = setup.init_state()
        short = short_of_path(setup)
        if short:
            warn(short)
        reporting.write_json(os.path.join(run_dir, "config.json"), {
            "config": config_lib.to_dict(cfg), "versions": versions(),
            "device": str(jax.devices()[0]), "platform": jax.default_backend(),
            "data": setup.prepared.stats(), "batch_size": setup.batch_size, "steps_per_epoch": setup.n_batches,
            "resumed_from_epoch": int(state.epoch) if resume else None})
        log = open_log(os.path.join(run_dir, "training_log.jsonl"), int(state.epoch) if resume else None, health)
        health.quiet = cfg.train.quiet
        data = setup.train_data()
        t0 = time.perf_counter()
        say("compiling the epoch program" + (" (cached after the first run)" if cfg.train.compile_cache else ""))
        epoch_fn = jax.jit(setup.epoch_fn(), donate_argnums=0).lower(state, data).compile()
        compile_time = time.perf_counter() - t0
        stop_reason = "early_stopping" if bool(state.early.stopped) else None
        cadence = checkpoint.Cadence(ckpts, cfg.train.checkpoint_every)
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
            cadence.epoch(epoch, state, improved=bool(out["improved"]), metric=float(out["checkpoint_metric"]),
                          final=stop_reason is not None or epoch >= cfg.train.epochs,
                          meta=lambda s: checkpoint_meta(setup, s))
        cadence.flush(state, meta=lambda s: checkpoint_meta(setup, s))
        log.close()
        ckpts.wait()
    train_time = time.perf_counter() - start
    stop_reason = stop_reason or "max_epochs"
    hint = f"python -m jaxcausal.train --resume {run_dir}"
    if stop_reason == "interrupted" and epochs_run == 0:
        ckpts.close()
        warn(f"Interrupted by {stop.name} before an epoch finished; nothing new to save. Continue with: {hint}")
        return state, {"stop_reason": stop_reason, "exit_code": EXIT_SIGNAL_BASE + stop.signum}
    summary = finish_run(setup, ckpts, run_dir, state, stop_reason, health, compile_time, train_time, say,
                         best_state=cadence.best_state(int(state.early.best_epoch)))
    ckpts.close()
    if stop_reason == "interrupted":
        warn(f"Interrupted by {stop.name} after epoch {int(state.epoch)}; checkpoint saved, log flushed. "
             f"Continue with: {hint}")
        summary["exit_code"] = EXIT_SIGNAL_BASE + stop.signum
    else:
        if stop_reason == "nonfinite":  # outputs are written, but the run failed: scripts must notice
            summary["exit_code"] = EXIT_NONFINITE
        say(f"Done: {summary['stop_reason']} after epoch {summary['epochs_run']}; best epoch {summary['best_epoch']}"
            + (f", val F1 {summary['best']['val_f1']:.4f}" if setup.has_truth else "")
            + f"; {len(summary['graph']['edges'])} edges in {run_dir}/graph.csv")
    return state, summary


def resume_state(setup: Setup, ckpts: checkpoint.Checkpoints, run_dir: str) -> TrainState:
    """The latest readable checkpoint, refused unless it was made from the same data and config.

    Unreadable newer checkpoints are deleted (their epochs run again). A run killed before its
    first checkpoint was complete starts again from epoch 0, which is the same trajectory.
    """
    steps = ckpts.steps()
    if steps:
        state, meta, step = ckpts.restore(jax.eval_shape(setup.init_state))
    else:
        with open(os.path.join(run_dir, "config.json")) as f:
            meta = {"data_fingerprint": json.load(f)["data"]["fingerprint"], "config": config_lib.to_dict(setup.cfg)}
        state, step = setup.init_state(), 0
        print(f"WARNING: {run_dir} has no complete checkpoint (stopped before the first save finished); "
              f"starting again from epoch 0", file=sys.stderr, flush=True)
    if meta.get("data_fingerprint") != setup.prepared.fingerprint:
        raise InputError(f"{run_dir}: the data differ from the run's (fingerprint {meta.get('data_fingerprint')} "
                         f"vs {setup.prepared.fingerprint}); resume with the original --data/--truth")
    check_resumable(config_lib.from_dict(meta["config"], where=f"{run_dir} checkpoint"), setup.cfg, run_dir)
    for skipped in [s for s in steps if s > step]:  # unreadable, and in the way of saving that epoch again
        ckpts.delete(skipped)
        print(f"WARNING: deleted unreadable checkpoint {ckpts.directory}/{skipped}; epochs after {step} run again",
              file=sys.stderr, flush=True)
    # patience / min_epochs may change on resume: re-apply the epoch function's stopping rule.
    stopped = early_stopper(setup.cfg).should_stop(state.early, state.epoch)
    return state.replace(early=state.early._replace(stopped=jnp.asarray(stopped)))


def open_log(path: str, keep_epochs: int | None, health: reporting.HealthMonitor) -> reporting.JsonlLog:
    """The epoch log, opened for appending; on resume cut back to `keep_epochs`.

    Lines after the restored checkpoint are dropped (those epochs run again), as is a last line
    cut short by a kill. The kept lines are replayed into `health` so its verdicts span the run.
    """
    if keep_epochs is not None and os.path.exists(path):
        kept = []
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if row.get("epoch", 0) <= keep_epochs:
                    kept.append(row)
        for row in kept:
            health.check(row)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.writelines(reporting.dumps(row) + "\n" for row in kept)
        os.replace(tmp, path)
    return reporting.JsonlLog(path)


def restore_best(setup: Setup, ckpts: checkpoint.Checkpoints, state: TrainState) -> tuple[TrainState, int]:
    """The checkpoint of the best epoch; the given state, with a warning, if it cannot be read."""
    best = int(state.early.best_epoch)
    if best < 1:  # no epoch ever had a finite metric
        return state, int(state.epoch)
    if best == int(state.epoch):
        return state, best
    try:
        restored, _, step = ckpts.restore(state, step=best)
        return restored, step
    except InputError:
        print(f"WARNING: the best checkpoint (epoch {best}) is not readable; exporting the final state "
              f"(epoch {int(state.epoch)})", file=sys.stderr, flush=True)
        return state, int(state.epoch)


def raw_train_windows(setup: Setup) -> tuple[np.ndarray, np.ndarray]:
    """The training windows on the data's own scale (the search's equal-variance model needs it)."""
    p = setup.prepared
    x = p.x_train * p.standardizer.std + p.standardizer.mean
    return np.where(p.m_train != 0, x, 0.0), p.m_train


def graph_report(setup: Setup, params, progress=None) -> dict:
    """`export.graph_report` for this setup: searched on its raw-scale training split (linear SEM)."""
    return export.graph_report(setup.model, params, setup.prepared.truth, setup.cfg.train.graph_threshold,
                               windows=raw_train_windows(setup), search_cfg=setup.cfg.search, progress=progress,
                               seed=setup.cfg.train.seed,
                               priors=None if setup.priors is None else setup.priors.as_search_priors())


def finish_run(setup: Setup, ckpts, run_dir: str, state: TrainState, stop_reason: str,
               health: reporting.HealthMonitor, compile_time: float, train_time: float, say=print,
               best_state: TrainState | None = None) -> dict:
    """Export the best epoch's graph and write summary.json; `state` is read, never changed.
    best_state: the best epoch's state when still in memory, else it is restored from `ckpts`."""
    if best_state is not None:
        best_epoch = int(state.early.best_epoch)
    else:
        best_state, best_epoch = restore_best(setup, ckpts, state)
    t0 = time.perf_counter()
    report = graph_report(setup, best_state.params, progress=say)
    search_time = time.perf_counter() - t0
    names = list(setup.prepared.dataset.names)
    export.write_graph_files(run_dir, report, names)
    from jaxcausal import formats  # matplotlib, when installed, loads only here
    visuals_note = formats.write_run_visuals(run_dir)
    summary = summarize(setup, report, best_epoch, state, stop_reason)
    summary.update(health=health.verdicts(), compile_time=compile_time, train_time=train_time,
                   timings={"compile": compile_time, "train": train_time, "search": search_time,
                            "bootstrap": (report.get("bootstrap") or {}).get("seconds"),
                            "write": time.perf_counter() - t0 - search_time})
    reporting.write_json(os.path.join(run_dir, "summary.json"), summary)
    for line in export.console_summary(report, names):
        say(line)
    if visuals_note:
        say(visuals_note)
    return summary


def use_compile_cache(enabled: bool) -> None:
    """Point JAX's persistent compilation cache at $JAXCAUSAL_CACHE_DIR (default: the per-user
    cache directory), so a second run with the same shapes loads its programs instead of compiling."""
    if not enabled:
        return
    path = os.environ.get("JAXCAUSAL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "jaxcausal", "xla")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        print(f"WARNING: compile cache {path} unusable ({e.strerror}); compiling without it", file=sys.stderr)
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def summarize(setup: Setup, report: dict, best_epoch: int, state: TrainState, stop_reason: str) -> dict:
    names = list(setup.prepared.dataset.names)
    edges = [dict(zip(("cause", "effect", "weight", "orientation", "confidence"), r))
             for r in export.edge_rows(report, names)]
    summary = {
        "best_epoch": best_epoch, "epochs_run": int(state.epoch), "stop_reason": stop_reason,
        "nonfinite_steps": int(state.nonfinite_total),
        "graph": {"rule": report["rule"], "edges": edges,
                  "lagged_edges": [dict(zip(("cause", "effect", "lag", "weight", "confidence"), r))
                                   for r in export.lagged_rows(report, names)],
                  # its time lives in timings, so a restored run reproduces the graph entry exactly
                  "bootstrap": {k: v for k, v in report["bootstrap"].items() if k != "seconds"}
                  if "bootstrap" in report else None},
        "model": report["model"],
        "threshold_table": export.threshold_table(report),
    }
    if "sweep" in report:
        i, sweep = report["best_index"], report["sweep"]
        summary["best"] = {"val_f1": float(sweep["f1"][i]), "val_shd": float(sweep["shd"][i]),
                           "precision": float(sweep["precision"][i]), "recall": float(sweep["recall"][i]),
                           "edge_count": int(sweep["edge_count"][i]), "best_threshold": report["best_threshold"],
                           "true_edge_count": int(setup.prepared.truth.sum()), "auprc": report["auprc"]}
        summary["exported"] = report["exported"]
    return reporting.clean(summary)
