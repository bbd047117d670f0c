"""Increasing acyclicity pressure as an optax-style (init, update) pair with NamedTuple state.

Two schedules, both moving once per inner solve (`steps_per_update` optimiser steps; the epoch
function decides when one is due):

path (default, DAGMA's central path): the loss is mu * score + alpha * h with alpha fixed and the
  score weight mu falling by `mu_factor` after each inner solve, for `path_stages` solves; the last
  stage runs until early stopping. Starting with a weak penalty lets the score choose edges and
  directions before acyclicity is enforced; each stage starts from the previous solution.
  alpha = lambda_recon / D puts h on the scale of the summed per-variable fit (DAGMA's weighting).
lagrangian (NOTEARS' augmented Lagrangian): the loss adds alpha * h + rho / 2 * h^2; the multiplier
  takes a dual-ascent step (alpha += rho * h) and, when h has not fallen below `h_progress` times
  the best value so far, rho grows geometrically.

The state is a pytree of scalars, so it jits, vmaps over a population and checkpoints like
optimiser state.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class PressureState(NamedTuple):
    alpha: jax.Array  # weight of h (path: fixed; lagrangian: the multiplier)
    rho: jax.Array  # quadratic weight (lagrangian only)
    h_ref: jax.Array  # best h reached so far (lagrangian only)
    mu: jax.Array  # weight of the score terms (path: falls stage by stage; lagrangian: 1)
    stage: jax.Array  # int32: inner solves completed, capped at the last stage


def pressure_init(cfg, h_weight: jax.Array | float) -> PressureState:
    """cfg: DagConfig; h_weight: the path's alpha (lambda_recon / D)."""
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    if cfg.schedule == "path":
        return PressureState(f(h_weight), f(0.0), f(jnp.inf), f(1.0), jnp.int32(0))
    return PressureState(f(0.0), f(cfg.rho_init), f(jnp.inf), f(1.0), jnp.int32(0))


def final_stage(state: PressureState, cfg) -> jax.Array:
    """True once the schedule has reached its last stage: only then is the graph a candidate answer."""
    if cfg.schedule == "path":
        return state.stage >= cfg.path_stages - 1
    return jnp.asarray(True)


def pressure_update(state: PressureState, h: jax.Array, cfg) -> PressureState:
    """The update after one inner solve, given h of the current parameters."""
    stage = jnp.minimum(state.stage + 1, max(cfg.path_stages - 1, 0)).astype(jnp.int32)
    if cfg.schedule == "path":
        mu = jnp.asarray(cfg.mu_factor, jnp.float32) ** stage.astype(jnp.float32)
        return state._replace(mu=mu.astype(jnp.float32), stage=stage)
    h = jnp.where(jnp.isfinite(h), h, state.h_ref)  # a non-finite h never moves the pressure
    # Once h is below tolerance the pressure holds still: growing it further only amplifies noise.
    active = h > cfg.h_tol
    alpha = jnp.where(active, state.alpha + state.rho * h, state.alpha)
    stalled = (h > cfg.h_progress * state.h_ref) & active
    rho = jnp.where(stalled, jnp.minimum(state.rho * cfg.rho_growth, cfg.rho_max), state.rho)
    h_ref = jnp.where(stalled, state.h_ref, h)
    return PressureState(alpha.astype(jnp.float32), rho.astype(jnp.float32), h_ref.astype(jnp.float32),
                         state.mu, stage)
