"""Increasing acyclicity pressure as an optax-style (init, update) pair with NamedTuple state.

An augmented Lagrangian on h(W): the loss adds alpha * h + rho / 2 * h^2. After each inner solve
(`steps_per_update` optimiser steps; the epoch function decides when one is due) the multiplier
takes a dual-ascent step (alpha += rho * h) and, when h has not fallen below `h_progress` times the
best value so far, rho grows geometrically (NOTEARS' rule with a fixed inner budget). The state is a pytree of float32 scalars, so it jits, vmaps
over a population and checkpoints like optimiser state.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PressureState(NamedTuple):
    alpha: jax.Array  # multiplier
    rho: jax.Array  # quadratic weight
    h_ref: jax.Array  # best h reached so far


def pressure_init(cfg) -> PressureState:
    """cfg: DagConfig."""
    return PressureState(jnp.float32(0.0), jnp.float32(cfg.rho_init), jnp.float32(jnp.inf))


def pressure_update(state: PressureState, h: jax.Array, cfg) -> PressureState:
    """One epoch's update given h of the current parameters."""
    h = jnp.where(jnp.isfinite(h), h, state.h_ref)  # a non-finite h never moves the pressure
    # Once h is below tolerance the pressure holds still: growing it further only amplifies noise.
    active = h > cfg.h_tol
    alpha = jnp.where(active, state.alpha + state.rho * h, state.alpha)
    stalled = (h > cfg.h_progress * state.h_ref) & active
    rho = jnp.where(stalled, jnp.minimum(state.rho * cfg.rho_growth, cfg.rho_max), state.rho)
    h_ref = jnp.where(stalled, state.h_ref, h)
    return PressureState(alpha.astype(jnp.float32), rho.astype(jnp.float32), h_ref.astype(jnp.float32))
