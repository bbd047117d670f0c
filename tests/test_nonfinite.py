"""Numerical faults: a non-finite loss or gradient skips the step (counted), and a run of them stops
training cleanly with the last good parameters checkpointed. Logged JSON stays strict.

Faults are injected in-process by wrapping the real loss that `jaxcausal.experiment.build` uses:
NaN gradients on the steps that see one poisoned window (training recovers), and a NaN loss on
every training step from epoch 2 on (training stops with stop_reason "nonfinite").
"""
from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

from jaxcausal import checkpoint, config as config_lib, experiment, training
from jaxcausal.prepare import prepare

from conftest import read_log, write_static_npz

REAL_MAKE_LOSS_FN = experiment.make_loss_fn


@pytest.fixture
def tiny_config(tmp_path):
    """80 static windows of 5 variables: 64 train = 4 batches of 16, 16 validation.

    An epoch is max(one pass, --min-steps-per-epoch) steps: the default 50 steps would end epochs
    mid-pass, so the tests set the epoch length themselves."""
    path = write_static_npz(tmp_path / "tiny.npz", seed=5, n_windows=80)
    return config_lib.replace(config_lib.Config(), dict(
        data=path, epochs=3, batch_size=16, patience=0, quiet=True, out=str(tmp_path / "run")))


def inject(monkeypatch, poison):
    """Make `experiment.build` use the real loss passed through `poison(loss, params, batch, weights)`."""
    def make_loss_fn(*args, **kwargs):
        real = REAL_MAKE_LOSS_FN(*args, **kwargs)

        def loss_fn(params, batch, weights, pressure):
            loss, aux = real(params, batch, weights, pressure)
            return poison(loss, params, batch, weights), aux
        return loss_fn
    monkeypatch.setattr(experiment, "make_loss_fn", make_loss_fn)


@jax.custom_vjp
def nan_gradient_if(flag, x):
    """x unchanged going forward; a NaN gradient coming back when flag is set (finite loss, bad grad)."""
    return x


nan_gradient_if.defvjp(lambda flag, x: (x, flag), lambda flag, g: (None, jnp.where(flag, jnp.nan, g)))


def _refuse(constant):
    raise AssertionError(f"non-strict JSON constant {constant}")


def nan_loss_from_step(first_bad: int, batch_size: int):
    """A poison making the loss NaN on every training step from number `first_bad` (0-based) on.

    A host counter (an ordered callback, so it runs once per step in order) counts training steps;
    validation batches, told apart by their size, are left alone.
    """
    steps = itertools.count()

    def bad_now():
        return np.bool_(next(steps) >= first_bad)

    def poison(loss, params, batch, weights):
        if batch.x.shape[0] != batch_size:
            return loss
        bad = io_callback(bad_now, jax.ShapeDtypeStruct((), jnp.bool_), ordered=True)
        return jnp.where(bad, jnp.nan, loss)
    return poison


def strict_rows(path: str) -> list[dict]:
    """The lines of a .jsonl file, refusing NaN / Infinity as a strict JSON reader would."""
    with open(path) as f:
        return [json.loads(line, parse_constant=_refuse) for line in f if line.strip()]


def strict_file(path: str):
    with open(path) as f:
        return json.loads(f.read(), parse_constant=_refuse)


def assert_trees_equal(a, b):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), a, b)


def test_isolated_nonfinite_gradients_are_skipped_counted_and_training_recovers(monkeypatch, tiny_config):
    # One training window is "poisoned": every step whose batch holds it gets NaN gradients.
    x0 = np.sort(prepare(tiny_config).x_train[:, 0, 0])
    threshold = float((x0[-1] + x0[-2]) / 2)  # only the window with the largest x0 is above it
    inject(monkeypatch, lambda loss, params, batch, weights:
           nan_gradient_if(jnp.max(batch.x[:, 0, 0]) > threshold, loss))
    # Two whole shuffled passes an epoch (8 steps of 16 over 64 windows): each pass holds every window
    # once, so the poisoned window is in exactly `passes` batches an epoch.
    cfg = config_lib.replace(tiny_config, {"min_steps_per_epoch": 8})
    setup = experiment.build(cfg)
    passes = setup.n_batches * setup.batch_size // setup.prepared.x_train.shape[0]
    assert passes == 2 and setup.n_batches * setup.batch_size % setup.prepared.x_train.shape[0] == 0
    state, summary = training.train_and_evaluate(cfg)
    rows = strict_rows(os.path.join(cfg.train.out, "training_log.jsonl"))
    assert [r["nonfinite_steps"] for r in rows] == [passes] * cfg.train.epochs
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert summary["stop_reason"] == "max_epochs" and summary["nonfinite_steps"] == passes * cfg.train.epochs
    assert "exit_code" not in summary
    assert int(state.nonfinite_run) == 0  # the good steps after each skip reset the consecutive count
    assert np.isfinite(np.asarray(state.params["w"])).all()


def test_consecutive_nonfinite_steps_stop_cleanly_with_last_good_checkpoint(monkeypatch, tiny_config, capsys):
    # Batches of 8 (16 validation windows stay one batch of 16); the epoch keeps the default length
    # (--min-steps-per-epoch, several passes over the 64 training windows).
    cfg = config_lib.replace(tiny_config, {"epochs": 5, "max_nonfinite": 3, "batch_size": 8,
                                            "checkpoint_every": 1,  # epoch 1's checkpoint: the reference
                                            "steps_per_update": 250})  # no stage change in 2 epochs
    steps = experiment.build(cfg).n_batches
    assert steps == cfg.train.min_steps_per_epoch > 64 // 8
    assert 2 * steps < cfg.dag.steps_per_update  # no stage change (it re-initialises the optimiser) in 2 epochs
    inject(monkeypatch, nan_loss_from_step(steps, batch_size=8))  # epoch 1 clean, every later step NaN
    state, summary = training.train_and_evaluate(cfg)
    run = cfg.train.out

    assert summary["stop_reason"] == "nonfinite" and summary["exit_code"] == 2
    assert summary["epochs_run"] == 2 and summary["nonfinite_steps"] == steps
    errors = [line for line in capsys.readouterr().err.splitlines() if "non-finite" in line]
    assert len(errors) == 1 and f"{steps} consecutive non-finite steps" in errors[0] and "epoch 2" in errors[0]

    rows = strict_rows(os.path.join(run, "training_log.jsonl"))
    assert [r["nonfinite_steps"] for r in rows] == [0, steps]
    assert np.isfinite(rows[0]["train_loss"]) and np.isfinite(rows[1]["val_loss"])
    assert rows[1]["train_loss"] is None  # no finite step in epoch 2: null in the log, never NaN or 0
    assert strict_file(os.path.join(run, "summary.json"))["stop_reason"] == "nonfinite"
    assert read_log(run) == rows

    # Skipped steps leave params and optimiser state (Adam moments, counts, plateau scale) untouched,
    # so the checkpoint of the stopped epoch holds exactly the last good state: epoch 1's.
    template = experiment.build(cfg).init_state()
    ckpts = checkpoint.Checkpoints(os.path.join(run, "checkpoints"))
    try:
        latest, _, latest_step = ckpts.restore(template)
        good, _, good_step = ckpts.restore(template, step=1)
    finally:
        ckpts.close()
    assert (latest_step, good_step) == (2, 1)
    assert_trees_equal(latest.params, good.params)
    assert_trees_equal(latest.opt_state, good.opt_state)
    assert_trees_equal(state.params, good.params)
    assert int(latest.nonfinite_run) == steps
