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

When an inner solve ends: after `steps_per_update` optimiser steps (`stage_end = "steps"`), or, on
the path with `stage_end = "converged"`, as soon as W has settled: `stage_patience` epochs in a row
whose relative change ||S_end - S_start||_F / ||S_end||_F of the edge scores is below `stage_tol`,
with `steps_per_update` steps as the cap. A converged last stage ends the run (`stage_clock`).
The trained W only seeds the order search, so a solve need not run past the point where W stops
moving. The state is a pytree of scalars, so it jits, vmaps over a population and checkpoints like
optimiser state (the convergence counters included, so a resumed run ends its stages as the
uninterrupted one does).
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
    stage_steps: jax.Array  # int32: optimiser steps since the current stage began
    calm_epochs: jax.Array  # int32: epochs in a row, in this stage, whose change of W was below stage_tol


def pressure_init(cfg, h_weight: jax.Array | float) -> PressureState:
    """cfg: DagConfig; h_weight: the path's alpha (lambda_recon / D)."""
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    counters = (jnp.int32(0), jnp.int32(0), jnp.int32(0))
    if cfg.schedule == "path":
        return PressureState(f(h_weight), f(0.0), f(jnp.inf), f(1.0), *counters)
    return PressureState(f(0.0), f(cfg.rho_init), f(jnp.inf), f(1.0), *counters)


def converges(cfg) -> bool:
    """Do stages end on convergence (the path with stage_end = "converged"), not on a step count?"""
    return cfg.schedule == "path" and cfg.stage_end == "converged"


def relative_change(before_DxD: jax.Array, after_DxD: jax.Array) -> jax.Array:
    """||after - before||_F / ||after||_F (1 when both are zero: an empty W has not settled)."""
    norm = jnp.sqrt(jnp.sum(after_DxD**2))
    change = jnp.sqrt(jnp.sum((after_DxD - before_DxD) ** 2))
    return jnp.where(norm > 0, change / jnp.maximum(norm, 1e-30), 1.0)


def stage_clock(state: PressureState, cfg, *, step_before: jax.Array, steps: int,
                change: jax.Array) -> tuple[PressureState, jax.Array, jax.Array]:
    """After an epoch of `steps` optimiser steps that began at global step `step_before` and moved
    the edge scores by `change` (relative_change): (state with its counters advanced, is an inner
    solve complete (the pressure moves), has the last stage converged (the run may end))."""
    stage_steps = state.stage_steps + steps
    if not converges(cfg):
        due = ((step_before + steps) // cfg.steps_per_update) > (step_before // cfg.steps_per_update)
        return state._replace(stage_steps=stage_steps), due, jnp.asarray(False)
    calm = jnp.where(change < cfg.stage_tol, state.calm_epochs + 1, 0).astype(jnp.int32)
    settled = calm >= cfg.stage_patience
    last = final_stage(state, cfg)
    due = (settled | (stage_steps >= cfg.steps_per_update)) & ~last
    return state._replace(stage_steps=stage_steps, calm_epochs=calm), due, settled & last


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
        moved = stage != state.stage  # a new stage counts its own steps and calm epochs
        zero = jnp.int32(0)
        return state._replace(mu=mu.astype(jnp.float32), stage=stage,
                              stage_steps=jnp.where(moved, zero, state.stage_steps),
                              calm_epochs=jnp.where(moved, zero, state.calm_epochs))
    h = jnp.where(jnp.isfinite(h), h, state.h_ref)  # a non-finite h never moves the pressure
    # Once h is below tolerance the pressure holds still: growing it further only amplifies noise.
    active = h > cfg.h_tol
    alpha = jnp.where(active, state.alpha + state.rho * h, state.alpha)
    stalled = (h > cfg.h_progress * state.h_ref) & active
    rho = jnp.where(stalled, jnp.minimum(state.rho * cfg.rho_growth, cfg.rho_max), state.rho)
    h_ref = jnp.where(stalled, state.h_ref, h)
    return state._replace(alpha=alpha.astype(jnp.float32), rho=rho.astype(jnp.float32),
                          h_ref=h_ref.astype(jnp.float32), stage=stage)
