"""The one module that talks to orbax: save, keep latest-K plus best, restore with fallback.

A checkpoint is one step directory (step = epochs completed) holding two items:
  state - the whole TrainState pytree (params, optax state with the plateau scale and counters,
          acyclicity pressure, early-stopping state, step, epoch, raw PRNG key data, counters);
  meta  - JSON: the resolved config, fingerprints of config and data, the standardisation
          statistics, the monitored metric and the best epoch so far.
orbax writes into a temporary directory and renames it when complete, so a killed save leaves no
half checkpoint in the step list; `cleanup_tmp_directories` removes such leftovers on open.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxcausal.errors import InputError


def _ranking(metrics: dict) -> float:
    # Ties go to the earlier epoch, matching early stopping's strict improvement rule.
    return metrics["metric"] - 1e-9 * metrics["epoch"]


class Checkpoints:
    """Latest `keep` checkpoints plus the best one by the monitored metric (higher is better)."""

    def __init__(self, directory: str, keep: int = 2, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(n=keep),
            pp.BestN(get_metric_fn=_ranking, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, cleanup_tmp_directories=not read_only, create=not read_only,
            read_only=read_only, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def save(self, epoch: int, state, meta: dict[str, Any], metric: float | None) -> None:
        """Start an asynchronous save; a NaN or missing metric never ranks as best."""
        metrics = None
        if metric is not None and math.isfinite(metric):
            metrics = {"metric": float(metric), "epoch": float(epoch)}
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics, force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, template, step: int | None = None) -> tuple[Any, dict, int]:
        """Restore `step` (default: the latest readable one) against `template`'s structure.

        Falls back to earlier checkpoints when one cannot be read, warning about each skipped.
        Returns (state, meta, step).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        candidates = [step] if step is not None else list(reversed(self.steps()))
        if not candidates:
            raise InputError(f"{self.directory}: no complete checkpoint to restore")
        for s in candidates:
            try:
                restored = self.manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                return restored["state"], dict(restored["meta"]), s
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped, loudly
                print(f"WARNING: skipping unreadable checkpoint {self.directory}/{s} "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200]})", file=sys.stderr)
        raise InputError(f"{self.directory}: no readable checkpoint among steps {candidates}")

    def read_meta(self, step: int | None = None) -> tuple[dict, int]:
        """The JSON metadata of `step` (default latest readable), without touching the state."""
        candidates = [step] if step is not None else list(reversed(self.steps()))
        for s in candidates:
            try:
                meta = self.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                return dict(meta), s
            except Exception as e:  # noqa: BLE001
                print(f"WARNING: skipping unreadable checkpoint {self.directory}/{s} "
                      f"({type(e).__name__})", file=sys.stderr)
        raise InputError(f"{self.directory}: no readable checkpoint")

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
