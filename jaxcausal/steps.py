"""The whole training state as one pytree, and one epoch as one pure function.

`make_epoch_fn` returns `epoch(state, data) -> (state, metrics)`: a shuffled `lax.scan` over the
training batches, the acyclicity-pressure update, the 21-threshold validation table and the
early-stopping update, with no host round trip; `metrics["checkpoint_metric"]` is what the host
ranks checkpoints by. A member whose early stopping has fired is frozen, so the same function
serves one run (`jit`) and a population (`jit(vmap)`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcausal import early_stopping
from jaxcausal import metrics as metrics_lib
from jaxcausal import pressure
from jaxcausal.losses import Batch, LossWeights
from jaxcausal.model import CausalSEM, edge_scores
from jaxcausal.optim import plateau_scale


class TrainData(NamedTuple):
    x_train: jax.Array  # (N_train, T, D)
    m_train: jax.Array
    x_val: jax.Array  # (N_val, T, D)
    m_val: jax.Array
    truth: jax.Array  # (D, D) float32 0/1; zeros when there is no ground truth


@flax.struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    lambdas: LossWeights  # the fixed loss weights; the acyclicity pressure's weights are in `pressure`
    pressure: pressure.PressureState
    early: early_stopping.EarlyStoppingState
    step: jax.Array
    epoch: jax.Array  # epochs completed
    key: jax.Array  # raw uint32 PRNG key data
    nonfinite_run: jax.Array  # consecutive non-finite steps
    nonfinite_total: jax.Array


def tree_where(cond, on_true, on_false):
    """`on_true` if the scalar `cond` else `on_false`, as a branch: XLA compiles a kernel for each
    select of a per-leaf `where` (~10 ms each, most of the epoch's compile) and none for a branch
    that passes its operand on. Under vmap (a population) JAX turns it back into those selects."""
    return jax.lax.cond(cond, lambda a, b: a, lambda a, b: b, on_true, on_false)


def init_state(model: CausalSEM, optimizer: optax.GradientTransformation, cfg, sample_x: jax.Array,
               seed: int, lambdas: LossWeights | None = None) -> TrainState:
    """Fresh state; `sample_x` (B, T, D) fixes the shapes. cfg: the full Config."""
    key = jax.random.key(seed)
    init_key, train_key = jax.random.split(key)
    params = model.init(init_key, sample_x)["params"]
    i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
    lambdas = lambdas if lambdas is not None else LossWeights.create(cfg.loss)
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        lambdas=lambdas,
        # The path's h weight puts h on the scale of the fit summed over the D variables.
        pressure=pressure.pressure_init(cfg.dag, lambdas.recon * jnp.float32(1.0 / sample_x.shape[-1])),
        early=early_stopper(cfg).init(),
        step=i32(0), epoch=i32(0),
        key=jax.random.key_data(train_key),
        nonfinite_run=i32(0), nonfinite_total=i32(0),
    )


def early_stopper(cfg) -> early_stopping.EarlyStopping:
    """The run's early-stopping rule (cfg: the full Config)."""
    return early_stopping.early_stopping(cfg.train.patience, cfg.train.min_epochs)


def make_eval_fn(model: CausalSEM, loss_fn: Callable, has_truth: bool) -> Callable:
    """`evaluate(params, weights, pressure_state, x, m, truth) -> dict`: loss, scores and the threshold table."""
    thresholds = np.asarray(metrics_lib.THRESHOLDS, np.float32)  # a constant of the program, not an eager op

    def evaluate(params, weights: LossWeights, pressure_state: pressure.PressureState, x, m, truth):
        loss, aux = loss_fn(params, Batch(x, m), weights, pressure_state)
        scores = edge_scores(model, params)
        out = {"val_loss": loss, "val_aux": aux, "scores": scores}
        if has_truth:
            table = metrics_lib.threshold_table(scores=metrics_lib.scale_scores(scores), truth=truth,
                                                thresholds=thresholds)
            out["thresholds"] = table
            out["best_index"] = metrics_lib.best_threshold_index(table["f1"])
        return out

    return evaluate


class StepRule(NamedTuple):
    """What one optimiser step needs besides the state and the batch (static within a run)."""

    loss_fn: Callable  # loss_fn(params, batch, weights, pressure_state) -> (loss, aux)
    optimizer: optax.GradientTransformation
    clip_norm: float
    path: bool  # the acyclicity path (else the lagrangian schedule)


class StepCarry(NamedTuple):
    params: Any
    opt_state: Any
    nonfinite_run: jax.Array
    nonfinite_total: jax.Array


def train_step(carry: StepCarry, batch: Batch, weights: LossWeights, pressure_state: pressure.PressureState,
               rule: StepRule) -> tuple[StepCarry, dict]:
    """One optimiser step; a non-finite loss or gradient leaves parameters and optimiser state untouched."""
    (loss, aux), grads = jax.value_and_grad(rule.loss_fn, has_aux=True)(carry.params, batch, weights, pressure_state)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if rule.path:  # the plateau watches this inner solve's objective (score + h / mu), fixed within a stage
        watched = loss / pressure_state.mu
    else:  # the lagrangian's terms rise by design: watch the fit alone
        watched = aux["recon_weighted"] + aux["sparse_weighted"] + aux["disen_weighted"]
    updates, new_opt_state = rule.optimizer.update(grads, carry.opt_state, carry.params, value=watched)
    new_params = optax.apply_updates(carry.params, updates)
    params, opt_state = tree_where(finite, (new_params, new_opt_state), (carry.params, carry.opt_state))
    carry = StepCarry(params=params, opt_state=opt_state,
                      nonfinite_run=jnp.where(finite, 0, carry.nonfinite_run + 1),
                      nonfinite_total=carry.nonfinite_total + (~finite).astype(jnp.int32))
    return carry, {"loss": loss, "aux": aux, "clipped": grad_norm > rule.clip_norm, "finite": finite,
                   "grad_norm": grad_norm}


def epoch_batches(key: jax.Array, n_train: int, n_batches: int, batch_size: int) -> jax.Array:
    """(n_batches, batch_size) row indices: shuffled passes over the training rows, as many as needed."""
    passes = -(-n_batches * batch_size // n_train)
    if passes > 1:  # one batched sort: a Python loop of permutations took 5 s to compile at 50 passes
        order = jax.vmap(lambda p: jax.random.permutation(jax.random.fold_in(key, p), n_train))(
            jnp.arange(passes)).reshape(-1)
    else:
        order = jax.random.permutation(key, n_train)
    return order[: n_batches * batch_size].reshape(n_batches, batch_size)


def train_epoch(state: TrainState, data: TrainData, rule: StepRule, n_batches: int,
                batch_size: int) -> tuple[TrainState, dict]:
    """`lax.scan(train_step)` over one epoch's shuffled batches -> (state, means over its finite steps)."""
    key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.epoch)
    batches = epoch_batches(key, data.x_train.shape[0], n_batches, batch_size)

    def step(carry, idx):
        return train_step(carry, Batch(data.x_train[idx], data.m_train[idx]), state.lambdas, state.pressure, rule)

    carry, per_step = jax.lax.scan(
        step, StepCarry(state.params, state.opt_state, state.nonfinite_run, state.nonfinite_total), batches)
    new_state = state.replace(params=carry.params, opt_state=carry.opt_state, nonfinite_run=carry.nonfinite_run,
                              nonfinite_total=carry.nonfinite_total, step=state.step + n_batches)
    return new_state, step_means(per_step)


def step_means(per_step: dict) -> dict:
    """The epoch's training metrics: means over finite steps only (NaN, logged as null, when none was)."""
    finite = per_step["finite"]
    n_finite = jnp.sum(finite)

    def mean(v):
        return jnp.where(n_finite > 0, jnp.sum(jnp.where(finite, v, 0.0)) / jnp.maximum(n_finite, 1), jnp.nan)
    return {
        "train_loss": mean(per_step["loss"]),
        "components": jax.tree.map(mean, per_step["aux"]),
        "grad_clip_ratio": jnp.mean(per_step["clipped"].astype(jnp.float32)),
        "max_grad_norm": jnp.max(jnp.where(finite, per_step["grad_norm"], 0.0)),
        "nonfinite_steps": jnp.sum(~finite),
    }


def make_epoch_fn(model: CausalSEM, loss_fn: Callable, optimizer: optax.GradientTransformation, cfg, *,
                  n_batches: int, batch_size: int, has_truth: bool) -> Callable:
    """Build `epoch(state, data) -> (state, metrics)`; cfg: the full Config (static values only)."""
    evaluate = make_eval_fn(model, loss_fn, has_truth)
    stopper = early_stopper(cfg)
    path = cfg.dag.schedule == "path"
    rule = StepRule(loss_fn, optimizer, cfg.optim.clip_norm, path)

    def epoch(state: TrainState, data: TrainData):
        trained, train_metrics = train_epoch(state, data, rule, n_batches, batch_size)
        val = evaluate(trained.params, trained.lambdas, trained.pressure, data.x_val, data.m_val, data.truth)
        trained, new_pressure, converged, change = advance_pressure(state, trained, val, model, optimizer, cfg,
                                                                    n_batches)
        epoch_no = state.epoch + 1
        metric = val["thresholds"]["f1"][val["best_index"]] if has_truth else -val["val_loss"]
        # Only epochs trained in the schedule's last stage are candidates (earlier graphs are not yet DAGs).
        eligible = pressure.final_stage(trained.pressure, cfg.dag)
        early, improved = stopper.update(trained.early, metric, epoch=epoch_no, eligible=eligible)
        # A converged last stage ends the run like early stopping (never before --min-epochs).
        early = early._replace(stopped=early.stopped | (converged & (epoch_no >= cfg.train.min_epochs)))
        new_state = trained.replace(pressure=new_pressure, early=early, epoch=epoch_no)
        # A member that had already stopped stays exactly as it was (population runs).
        new_state = tree_where(state.early.stopped, state, new_state)
        out = dict(train_metrics, **val, improved=improved & ~state.early.stopped, eligible=eligible,
                   h=val["val_aux"]["acyclic"],
                   # Epochs before the last stage never rank as best: NaN is never ranked (`Checkpoints.save`).
                   checkpoint_metric=jnp.where(eligible, metric, jnp.nan),
                   learning_rate=cfg.optim.lr * plateau_scale(new_state.opt_state),
                   rho=new_state.pressure.rho, alpha=new_state.pressure.alpha, mu=new_state.pressure.mu,
                   stage=new_state.pressure.stage, weight_change=change)
        return new_state, out

    return epoch


def advance_pressure(before: TrainState, trained: TrainState, val: dict, model: CausalSEM,
                     optimizer: optax.GradientTransformation, cfg, n_batches: int):
    """The acyclicity pressure after an epoch -> (trained with the stage clock advanced and, on a new
    stage of the path, a fresh optimiser; the next pressure; whether the last stage converged; the
    epoch's relative change of the edge scores)."""
    h = val["val_aux"]["acyclic"]
    # An inner solve ends after `steps_per_update` optimiser steps, so its pace does not depend on
    # how many batches an epoch happens to have, or (stage_end converged) once W stops moving.
    change = pressure.relative_change(edge_scores(model, before.params), val["scores"])
    clocked, due, converged = pressure.stage_clock(trained.pressure, cfg.dag, step_before=before.step,
                                                   steps=n_batches, change=change)
    trained = trained.replace(pressure=clocked)
    new_pressure = tree_where(due, pressure.pressure_update(clocked, h, cfg.dag), clocked)
    if cfg.dag.schedule == "path":
        # Each stage of the path is a new problem (the score weight fell tenfold): like DAGMA, it starts
        # a fresh optimiser, whose Adam moments and plateau statistics would otherwise stall it.
        new_stage = new_pressure.stage != clocked.stage
        trained = trained.replace(opt_state=tree_where(new_stage, optimizer.init(trained.params), trained.opt_state))
    return trained, new_pressure, converged, change
