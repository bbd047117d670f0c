"""Numerical faults: a non-finite loss or gradient skips the step (counted), and a run of them stops
training cleanly with the last good parameters checkpointed. Logged JSON stays strict.

Faults are injected in-process by wrapping the real loss that `jaxcausal.training.build` uses:
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

from jaxcausal import checkpoint, config as config_lib, training
from jaxcausal.data import simulate
from jaxcausal.prepare import prepare

from conftest import read_log

REAL_MAKE_LOSS_FN = training.make_loss_fn


@pytest.fixture
def tiny_config(tmp_path):
    """80 static windows of 5 variables: 64 train = 4 batches of 16, 16 validation."""
    ds = simulate(seed=5, d=5, n_edges=5, noise="laplace", n_windows=80)
    path = str(tmp_path / "tiny.npz")
    np.savez(path, X=ds.x[:, 0, :], adjacency=ds.truth)
    return config_lib.replace(config_lib.Config(), dict(
        data=path, epochs=3, batch_size=16, patience=0, quiet=True, out=str(tmp_path / "run")))


def inject(monkeypatch, poison):
    """Make `training.build` use the real loss passed through `poison(loss, params, batch, weights)`."""
    def make_loss_fn(*args, **kwargs):
        real = REAL_MAKE_LOSS_FN(*args, **kwargs)

        def loss_fn(params, batch, weights):
            loss, aux = real(params, batch, weights)
            return poison(loss, params, batch, weights), aux
        return loss_fn
    monkeypatch.setattr(training, "make_loss_fn", make_loss_fn)


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
    state, summary = training.train_and_evaluate(tiny_config)
    rows = strict_rows(os.path.join(tiny_config.train.out, "training_log.jsonl"))
    assert [r["nonfinite_steps"] for r in rows] == [1, 1, 1]  # 64 windows in 4 full batches: once an epoch
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert summary["stop_reason"] == "max_epochs" and summary["nonfinite_steps"] == 3
    assert "exit_code" not in summary
    assert int(state.nonfinite_run) == 0  # the good steps after each skip reset the consecutive count
    assert np.isfinite(np.asarray(state.params["w"])).all()


def test_consecutive_nonfinite_steps_stop_cleanly_with_last_good_checkpoint(monkeypatch, tiny_config, capsys):
    # Batches of 8: 64 training windows make 8 steps an epoch, 16 validation windows one batch of 16.
    cfg = config_lib.replace(tiny_config, {"epochs": 5, "max_nonfinite": 3, "batch_size": 8})
    inject(monkeypatch, nan_loss_from_step(8, batch_size=8))  # epoch 1 clean, every later step NaN
    state, summary = training.train_and_evaluate(cfg)
    run = cfg.train.out

    assert summary["stop_reason"] == "nonfinite" and summary["exit_code"] == 2
    assert summary["epochs_run"] == 2 and summary["nonfinite_steps"] == 8
    errors = [line for line in capsys.readouterr().err.splitlines() if "non-finite" in line]
    assert len(errors) == 1 and "8 consecutive non-finite steps" in errors[0] and "epoch 2" in errors[0]

    rows = strict_rows(os.path.join(run, "training_log.jsonl"))
    assert [r["nonfinite_steps"] for r in rows] == [0, 8]
    assert np.isfinite(rows[0]["train_loss"]) and np.isfinite(rows[1]["val_loss"])
    assert rows[1]["train_loss"] is None  # no finite step in epoch 2: null in the log, never NaN or 0
    assert strict_file(os.path.join(run, "summary.json"))["stop_reason"] == "nonfinite"
    assert read_log(run) == rows

    # Skipped steps leave params and optimiser state (Adam moments, counts, plateau scale) untouched,
    # so the checkpoint of the stopped epoch holds exactly the last good state: epoch 1's.
    template = training.build(cfg).init_state()
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
    assert int(latest.nonfinite_run) == 8
