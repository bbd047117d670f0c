"""Early stopping as an optax-style (init, update) pair with NamedTuple state.

The monitored metric is higher-is-better (val F1 with ground truth, -val_loss without). Only
`eligible` epochs (those trained in the acyclicity schedule's last stage) can improve it; the others
neither improve nor count against the patience. The state is a pytree of scalars, so it jits, vmaps
over a population and checkpoints with the rest of the TrainState.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class EarlyStoppingState(NamedTuple):
    best_metric: jax.Array  # float32; -inf until an eligible epoch had a finite metric
    best_epoch: jax.Array  # int32; -1 until then
    bad_epochs: jax.Array  # int32: eligible epochs since the last improvement
    stopped: jax.Array  # bool: patience exhausted


class EarlyStopping(NamedTuple):
    """`init() -> state`; `update(state, metric, *, epoch, eligible) -> (state, improved)`;
    `should_stop(state, epoch) -> bool`, the rule `update` applies (and a resumed run re-applies
    when --patience or --min-epochs changed)."""

    init: Callable[[], EarlyStoppingState]
    update: Callable[..., tuple[EarlyStoppingState, jax.Array]]
    should_stop: Callable[[EarlyStoppingState, jax.Array], jax.Array]


def early_stopping(patience: int, min_epochs: int) -> EarlyStopping:
    """Stop after `patience` eligible epochs without improvement, never before `min_epochs`
    epochs; `patience` 0 never stops."""

    def init() -> EarlyStoppingState:
        return EarlyStoppingState(jnp.float32(-jnp.inf), jnp.int32(-1), jnp.int32(0), jnp.asarray(False))

    def should_stop(state: EarlyStoppingState, epoch: jax.Array) -> jax.Array:
        return (state.bad_epochs >= patience) & (epoch >= min_epochs) & (patience > 0)

    def update(state: EarlyStoppingState, metric: jax.Array, *, epoch: jax.Array,
               eligible: jax.Array) -> tuple[EarlyStoppingState, jax.Array]:
        """`epoch`: epochs completed, this one included. A non-finite metric never improves."""
        improved = eligible & jnp.isfinite(metric) & (metric > state.best_metric)
        bad = jnp.where(improved | ~eligible, 0, state.bad_epochs + 1)
        new = EarlyStoppingState(
            best_metric=jnp.where(improved, metric, state.best_metric),
            best_epoch=jnp.where(improved, epoch, state.best_epoch),
            bad_epochs=bad,
            stopped=jnp.asarray(False))
        return new._replace(stopped=should_stop(new, epoch)), improved

    return EarlyStopping(init, update, should_stop)
