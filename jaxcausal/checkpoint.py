"""The one module that talks to orbax: save, keep latest-K plus best, restore with fallback.

A checkpoint is one step directory (step = epochs completed) holding two items:
  state - the whole TrainState pytree (params, optax state with the plateau scale and counters,
          acyclicity pressure, early-stopping state, step, epoch, raw PRNG key data, counters);
  meta  - JSON: the resolved config, fingerprints of config and data, the standardisation
          statistics, the best epoch so far and a SHA-256 digest of the state's bytes.
orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it when complete, so a save
killed midway never shows up as a step; such leftovers are deleted when a writer opens the
directory. A step whose files were damaged later fails to restore, or fails the digest check,
and is skipped, loudly, in favour of the previous one.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxcausal import program_cache, rundir
from jaxcausal.errors import InputError

TMP_SUFFIX = ".orbax-checkpoint-tmp"
# orbax warnings that this module triggers by design (a step saved without a metric; read-only use).
_EXPECTED_WARNINGS = ("did not provide metrics", "read only", "read_only=True")


class _QuietExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # A full or read-only disk is reported once, as one line, by rundir.RunLock; orbax's
        # background threads would otherwise log a traceback per failed write.
        if rundir.disk_fault(record.exc_info[1] if record.exc_info else None) is not None:
            return False
        return not any(text in record.getMessage() for text in _EXPECTED_WARNINGS + rundir.DISK_MESSAGES)


_QUIET_EXPECTED = _QuietExpected()


def _ranking(metrics: dict) -> tuple[float, float]:
    # Higher metric first; ties go to the earlier epoch, as early stopping's strict improvement.
    return metrics["metric"], -metrics["epoch"]


def state_digest(tree) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _abstract(template):
    """ShapeDtypeStructs on the default device, from arrays or from `jax.eval_shape` output."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=device), template)


class Checkpoints:
    """Latest `keep` checkpoints plus the best one by the monitored metric (higher is better)."""

    def __init__(self, directory: str, keep: int = 2, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        # Added here, not on import, so importing the package leaves the global absl logger alone.
        logging.getLogger("absl").addFilter(_QUIET_EXPECTED)  # a no-op once added
        if read_only:
            rundir.require_checkpoints(self.directory)
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=keep),
            pp.BestN(get_metric_fn=_ranking, n=1, keep_checkpoints_without_metrics=False),
        ])
        if not read_only:  # leftovers of saves killed midway; never listed as steps, removed right away
            for name in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
                if TMP_SUFFIX in name:
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        # best_fn makes orbax write each step's metrics to disk, so the best survives a resume.
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=_ranking, best_mode="max",
            create=not read_only, read_only=read_only, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, epoch: int, state, meta: dict[str, Any], metric: float | None) -> None:
        """Start an asynchronous save of `state` after `epoch`; a NaN or missing metric never ranks best.

        The state is copied to host memory first, so the next (donating) epoch cannot touch it.
        """
        host = jax.tree.map(np.array, jax.device_get(state))
        meta = dict(meta, state_digest=state_digest(host))
        metrics = None
        if metric is not None and math.isfinite(metric):
            metrics = {"metric": float(metric), "epoch": float(epoch)}
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)), metrics=metrics, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def delete(self, step: int) -> None:
        self.manager.delete(step)

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def restore(self, template, step: int | None = None) -> tuple[Any, dict, int]:
        """Restore `step` (default: the latest readable one) into `template`'s structure.

        template: a pytree of arrays or of ShapeDtypeStructs (`jax.eval_shape`). Without `step`,
        an unreadable or damaged checkpoint is skipped with a warning naming it and the previous
        one is tried. Returns (state, meta, step).
        """
        abstract = _abstract(template)
        candidates = [step] if step is not None else list(reversed(self.steps()))
        if not candidates:
            raise InputError(f"{self.directory}: no complete checkpoint to restore")
        problems = []
        for s in candidates:
            try:
                restored = self.manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                host, meta = jax.device_get(restored["state"]), dict(restored["meta"])
                if meta.get("state_digest") not in (None, state_digest(host)):
                    raise ValueError("state bytes differ from the digest stored at save time")
                # Uncommitted arrays, as a fresh state's: the epoch compiles to the same program.
                return jax.tree.map(jnp.asarray, host), meta, s
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, loudly
                first_line = (str(e).strip().splitlines() or [""])[0][:200]
                problem = f"{type(e).__name__}: {first_line}"
                problems.append(f"step {s} ({problem})")
                if step is None:
                    print(f"WARNING: skipping unreadable checkpoint {self.directory}/{s} ({problem})",
                          file=sys.stderr, flush=True)
        raise InputError(f"{self.directory}: no readable checkpoint: {'; '.join(problems)}")

    def read_meta(self, step: int | None = None) -> tuple[dict, int]:
        """The JSON metadata of `step` (default: the latest readable one), without the state."""
        candidates = [step] if step is not None else list(reversed(self.steps()))
        for s in candidates:
            try:
                meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                return dict(meta), s
            except Exception as e:  # noqa: BLE001
                print(f"WARNING: skipping unreadable checkpoint metadata {self.directory}/{s} "
                      f"({type(e).__name__})", file=sys.stderr, flush=True)
        raise InputError(f"{self.directory}: no readable checkpoint")

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    @contextlib.contextmanager
    def closed_on_error(self):
        """Close (finishing any save in flight) when the block raises, then re-raise."""
        try:
            yield self
        except BaseException:
            self.close()
            raise


# One program, not one per leaf.
_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), compiler_options=program_cache.ONE_SHOT)


class Cadence:
    """When a training run saves, so that checkpoints cost at most `budget` of its training time.

    Every epoch reports itself with `epoch(...)`. A new best epoch is copied on the device (cheap,
    asynchronous) rather than saved; a save writes that copy first when it is not on disk yet,
    then the current state, so every checkpoint's best epoch is itself on disk. Saves happen
    every `every` epochs, or with `every` = 0 when the time since the last save is at least
    (last save's blocking cost) / budget; and at the end of the run, however it ends (`flush`).
    A kill loses at most the epochs since the last save; they run again on resume.
    """

    FIRST_COST_GUESS = 0.05  # seconds; the first save is due after ~1 s of training

    def __init__(self, ckpts: Checkpoints, meta: Callable[[Any], dict], every: int = 0, budget: float = 0.05):
        """meta(state): the JSON metadata saved with `state`."""
        self.ckpts, self.meta, self.every, self.budget = ckpts, meta, every, budget
        self.cost, self.last_end = self.FIRST_COST_GUESS, time.perf_counter()
        self.best: tuple[int, Any, float] | None = None  # (epoch, device copy of the state, metric)
        self.saved_best = -1
        self.last: tuple[int, float] | None = None  # (epoch, metric) of the last epoch reported
        self.saved_epoch = -1

    def epoch(self, epoch: int, state, *, improved: bool, metric: float) -> None:
        """After each epoch: keep a new best on the device, save when due."""
        if improved:
            self.best = (epoch, _copy(state), metric)  # the next epoch donates `state`
        self.last = (epoch, metric)
        due = (epoch % self.every == 0) if self.every else \
            time.perf_counter() - self.last_end >= self.cost / self.budget
        if due:
            self._save(epoch, state, metric)

    def flush(self, state) -> None:
        """At the end of a run (its last epoch, early stopping, a fault, a signal): save the last
        reported epoch (`state`) unless it is on disk already."""
        if self.last is not None and self.last[0] != self.saved_epoch:
            epoch, metric = self.last
            self._save(epoch, state, metric)

    def _save(self, epoch: int, state, metric: float) -> None:
        t = time.perf_counter()
        if self.best is not None and self.saved_best < self.best[0] < epoch:
            best_epoch, best_state, best_metric = self.best
            self.ckpts.save(best_epoch, best_state, self.meta(best_state), best_metric)
        self.saved_best = self.best[0] if self.best is not None else -1
        self.ckpts.save(epoch, state, self.meta(state), metric)
        self.saved_epoch = epoch
        self.last_end = time.perf_counter()
        self.cost = self.last_end - t

    def best_state(self, best_epoch: int):
        """The device copy of `best_epoch`'s state, or None when this process did not train it."""
        return self.best[1] if self.best is not None and self.best[0] == best_epoch else None
