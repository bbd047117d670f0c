"""An experiment built from a config: the prepared data, the model, the loss, the optimiser and
the compiled functions that train, search and sweep share.

    exp = build(cfg)                 # reads and checks the data; never touches a run directory
    state, data = exp.init_state(), exp.train_data()
    epoch = jax.jit(exp.epoch_fn(), donate_argnums=0)
    state, metrics = epoch(state, data)

This is the public building block under `train_and_evaluate`, the sweep and the benchmarks.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any

import jax
import numpy as np

from jaxcausal import config as config_lib, export, priors as priors_lib, program_cache, structure
from jaxcausal.errors import InputError
from jaxcausal.losses import make_loss_fn
from jaxcausal.model import build_model
from jaxcausal.optim import build_optimizer
from jaxcausal.prepare import Prepared, prepare
from jaxcausal.steps import TrainData, TrainState, init_state, make_epoch_fn

ROWS_PER_BATCH = 2048  # the automatic batch: 64 windows of 32 steps; full batch for static data up to 2048 rows


@dataclasses.dataclass
class Experiment:
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
        # device_put, not jnp.asarray: the latter compiles a `stage` program per array shape.
        return TrainData(*jax.device_put((p.x_train, p.m_train, p.x_val, p.m_val, truth)))

    def init_state(self) -> TrainState:
        """The fresh state of `cfg.train.seed`: one compiled program, not one per array it builds."""
        return self._init_jit(*self._init_args())

    def state_template(self) -> TrainState:
        """ShapeDtypeStructs of `init_state()` for a restore. `jax.eval_shape(init_state)` is refused:
        a jit with compiler options runs only at the top level, so this traces the function itself."""
        return jax.eval_shape(self._init, *self._init_args())

    @functools.cached_property
    def _init(self):
        return functools.partial(init_state, self.model, self.optimizer, self.cfg)

    @functools.cached_property
    def _init_jit(self):
        return jax.jit(self._init, compiler_options=program_cache.ONE_SHOT)

    def _init_args(self) -> tuple:
        return jax.device_put(self.prepared.x_train[: self.batch_size]), self.cfg.train.seed

    def epoch_fn(self):
        return make_epoch_fn(self.model, self.loss_fn, self.optimizer, self.cfg, n_batches=self.n_batches,
                             batch_size=self.batch_size, has_truth=self.has_truth)

    def compiled_epoch(self, state: TrainState, data: TrainData):
        """`jax.jit(epoch_fn(), donate_argnums=0)` compiled for these shapes; with the compile cache on,
        the traced program itself is cached too (program_cache.py), so a warm run skips tracing."""
        cache_dir = program_cache.directory() if self.cfg.train.compile_cache else None
        allowed = b"" if self.priors is None else np.asarray(self.priors.allowed).tobytes()
        extra = allowed + bytes([self.has_truth]) + np.asarray([self.n_batches, self.batch_size]).tobytes()
        # The data section reaches the program only through shapes, truth and priors (in the key already).
        settings = {name: value for section, fields in config_lib.to_dict(self.cfg).items() if section != "data"
                    for name, value in fields.items()}
        return program_cache.compiled_epoch(self.epoch_fn(), state, data, cache_dir, settings, extra)

    def raw_train_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """The training windows on the data's own scale (the search's equal-variance model needs it)."""
        p = self.prepared
        x = p.x_train * p.standardizer.std + p.standardizer.mean
        return np.where(p.m_train != 0, x, 0.0), p.m_train

    def search_graph(self, params, progress=None) -> dict:
        """The exported graph of `params`: the order search on the raw-scale training split."""
        return export.graph_report(self.model, params, self.prepared.truth, self.cfg.train.graph_threshold,
                                   windows=self.raw_train_windows(), search_cfg=self.cfg.search, progress=progress,
                                   seed=self.cfg.train.seed,
                                   priors=None if self.priors is None else self.priors.as_search_priors())

    def short_of_path(self) -> str | None:
        """A warning when the run ends before the acyclicity path's last stage, else None."""
        cfg = self.cfg
        if cfg.dag.schedule != "path":
            return None
        # The stage moves at most once per epoch, at its end; the first epoch trained in the last stage
        # is the first candidate for best epoch and early stopping.
        changes = cfg.dag.path_stages - 1
        first_final = max(changes, -(-changes * cfg.dag.steps_per_update // self.n_batches)) + 1
        if cfg.train.epochs >= first_final:
            return None
        return (f"WARNING: --epochs {cfg.train.epochs} ends before the acyclicity path's last stage (epoch "
                f"{first_final} at {self.n_batches} steps per epoch); no epoch can be selected as best and the "
                "final state is exported (raise --epochs or lower --steps-per-update / --path-stages)")


def build(cfg: config_lib.Config, prepared: Prepared | None = None, warn=print) -> Experiment:
    """Read and check the data (unless `prepared` is given), then build the model around its shapes."""
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
    if cfg.search.mechanism == "mlp":  # refused before training, not after it
        why = structure.mlp_skipped(cfg.search.noise, "mlp", d, model.max_lag)
        if why:
            raise InputError(f"{prepared.dataset.source}: --mechanism mlp cannot be searched here ({why}); "
                             "use --mechanism linear or auto")
    return Experiment(cfg, prepared, model, make_loss_fn(model, cfg.loss.penalty, cfg.loss.fit),
                      build_optimizer(cfg.optim, n_batches), batch_size, n_batches, priors)


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
