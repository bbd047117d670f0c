"""The acyclicity-pressure schedules: the path's falling score weight and the augmented Lagrangian,
as pure updates (against a plain numpy reference) and inside the compiled epoch (a stage change
starts a fresh optimiser)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcausal import config as config_lib, pressure
from jaxcausal.experiment import build

from conftest import write_static_npz

# A finite h that shrinks, one that stalls, a non-finite one, one below tolerance.
H_SEQUENCE = [0.5, 0.3, 0.29, float("nan"), 1e-9, 0.2]


def test_path_score_weight_falls_by_mu_factor_and_caps_at_the_last_stage():
    cfg = config_lib.DagConfig(schedule="path", mu_factor=0.1, path_stages=4)
    state = pressure.pressure_init(cfg, 0.25)
    assert (float(state.mu), int(state.stage), float(state.alpha), float(state.rho)) == (1.0, 0, 0.25, 0.0)
    assert not bool(pressure.final_stage(state, cfg))
    update = jax.jit(lambda s, h: pressure.pressure_update(s, h, cfg))
    for n, h in enumerate(H_SEQUENCE, start=1):
        state = update(state, jnp.float32(h))
        stage = min(n, cfg.path_stages - 1)
        assert int(state.stage) == stage and state.stage.dtype == jnp.int32
        np.testing.assert_allclose(float(state.mu), cfg.mu_factor**stage, rtol=1e-6)
        assert float(state.alpha) == 0.25 and float(state.rho) == 0.0  # h's weight stays fixed on the path
        assert bool(pressure.final_stage(state, cfg)) == (stage == cfg.path_stages - 1)


def test_path_update_vmaps_over_members_at_different_stages():
    cfg = config_lib.DagConfig(schedule="path", mu_factor=0.5, path_stages=3)
    one = pressure.pressure_init(cfg, 1.0)
    members = jax.tree.map(lambda a: jnp.stack([a, a, a]), one)._replace(stage=jnp.asarray([0, 1, 2], jnp.int32))
    after = jax.vmap(lambda s, h: pressure.pressure_update(s, h, cfg))(members, jnp.ones(3, jnp.float32))
    np.testing.assert_array_equal(np.asarray(after.stage), [1, 2, 2])
    np.testing.assert_allclose(np.asarray(after.mu), [0.5, 0.25, 0.25], rtol=1e-6)


def lagrangian_reference(h_sequence, cfg):
    """The augmented Lagrangian's updates in plain numpy float32 (the schedule before the path)."""
    f = np.float32
    alpha, rho, h_ref, out = f(0.0), f(cfg.rho_init), f(np.inf), []
    for h in map(f, h_sequence):
        h = h if np.isfinite(h) else h_ref
        active = h > cfg.h_tol
        if active:
            alpha = f(alpha + rho * h)
        stalled = active and h > f(cfg.h_progress) * h_ref
        if stalled:
            rho = f(min(rho * f(cfg.rho_growth), cfg.rho_max))
        else:
            h_ref = h
        out.append((alpha, rho, h_ref))
    return out


def test_lagrangian_schedule_is_the_augmented_lagrangian_with_unit_score_weight():
    cfg = config_lib.DagConfig(schedule="lagrangian", rho_init=2.0, rho_growth=3.0, rho_max=10.0)
    state = pressure.pressure_init(cfg, 123.0)  # the path's h weight plays no part here
    assert (float(state.alpha), float(state.rho), float(state.mu)) == (0.0, 2.0, 1.0)
    update = jax.jit(lambda s, h: pressure.pressure_update(s, h, cfg))
    for h, expected in zip(H_SEQUENCE, lagrangian_reference(H_SEQUENCE, cfg)):
        state = update(state, jnp.float32(h))
        np.testing.assert_allclose([float(state.alpha), float(state.rho), float(state.h_ref)], expected, rtol=1e-6)
        assert float(state.mu) == 1.0 and bool(pressure.final_stage(state, cfg))  # every epoch is a candidate
    assert float(state.rho) == cfg.rho_max  # stalls grew it up to the cap


def static_config(tmp_path, **overrides) -> config_lib.Config:
    """205 training windows of 5 variables in batches of 34: six steps an epoch."""
    path = write_static_npz(tmp_path / "static.npz")
    settings = dict(data=path, batch_size=34, min_steps_per_epoch=1, patience=0, quiet=True)
    return config_lib.replace(config_lib.Config(), dict(settings, **overrides))


def is_fresh(opt_state, optimizer, params) -> bool:
    """Is `opt_state` exactly the optimiser's initial state (Adam moments and count, plateau)?"""
    return all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(opt_state), jax.tree.leaves(optimizer.init(params))))


@pytest.mark.parametrize("schedule", ["path", "lagrangian"])
def test_a_stage_change_restarts_the_optimiser(tmp_path, schedule):
    # Pressure updates after every second epoch (12 steps); the path's last stage is its third.
    cfg = static_config(tmp_path, schedule=schedule, path_stages=3, steps_per_update=12, stage_end="steps")
    setup = build(cfg)
    assert setup.n_batches == 6
    state, data = setup.init_state(), setup.train_data()
    epoch = jax.jit(setup.epoch_fn())
    stages = []
    for n in range(1, 7):
        state, _ = epoch(state, data)
        stages.append(int(state.pressure.stage))
        np.testing.assert_allclose(float(state.pressure.mu),
                                   cfg.dag.mu_factor**stages[-1] if schedule == "path" else 1.0, rtol=1e-6)
        # Only the path restarts its optimiser, and only when the stage moved (not after the last one).
        restarted = schedule == "path" and n in (2, 4)
        assert is_fresh(state.opt_state, setup.optimizer, state.params) == restarted, (schedule, n)
    assert stages == [0, 1, 1, 2, 2, 2]
    assert epoch._cache_size() == 1  # the stage is data: one compiled epoch serves every stage


def test_automatic_batch_and_minimum_steps_per_epoch(tmp_path):
    cfg = static_config(tmp_path, batch_size=0, min_steps_per_epoch=50)
    setup = build(cfg)
    n_train = setup.prepared.x_train.shape[0]
    assert setup.batch_size == n_train  # small static data: full batch
    assert setup.n_batches == 50  # several passes over the data, so an epoch is never a single step
    one_pass = build(config_lib.replace(cfg, {"batch_size": 32, "min_steps_per_epoch": 1}))
    assert (one_pass.batch_size, one_pass.n_batches) == (32, n_train // 32)


def test_a_run_shorter_than_the_path_is_warned_about(smoke_config):
    from jaxcausal import config as config_lib
    from jaxcausal.experiment import build
    setup = build(smoke_config, warn=lambda msg: None)  # smoke: a stage change at the end of epoch 1
    assert setup.short_of_path() is None
    longer = config_lib.replace(smoke_config, {"path_stages": 4, "steps_per_update": 3 * setup.n_batches})
    message = build(longer, warn=lambda msg: None).short_of_path()
    assert message is not None and "--epochs 3 ends before" in message and "(epoch 10 " in message
    lagrangian = config_lib.replace(longer, {"schedule": "lagrangian"})
    assert build(lagrangian, warn=lambda msg: None).short_of_path() is None


def test_converged_stages_end_when_w_settles_and_the_cap_still_holds():
    cfg = config_lib.DagConfig(schedule="path", path_stages=3, stage_end="converged", stage_tol=0.01,
                               stage_patience=2, steps_per_update=40)
    clock = jax.jit(lambda s, step, change: pressure.stage_clock(s, cfg, step_before=step, steps=10, change=change))
    state = pressure.pressure_init(cfg, 1.0)
    # (change of W in the epoch, expected: pressure moves, run may end, stage after the epoch)
    plan = [(0.5, False, False, 0), (0.005, False, False, 0), (0.02, False, False, 0),  # a loud epoch resets
            (0.005, True, False, 1),  # the 4th epoch hits the 40-step cap though only one was calm
            (0.001, False, False, 1), (0.001, True, False, 2),  # two calm epochs end the stage early
            (0.3, False, False, 2), (0.001, False, False, 2), (0.001, False, True, 2)]  # last stage: ends the run
    for n, (change, due_expected, ends_expected, stage) in enumerate(plan):
        state, due, ends = clock(state, jnp.int32(10 * n), jnp.float32(change))
        assert (bool(due), bool(ends)) == (due_expected, ends_expected), n
        state = jax.tree.map(lambda new, old: jnp.where(due, new, old),
                             pressure.pressure_update(state, jnp.float32(0.1), cfg), state)
        assert int(state.stage) == stage, n
        if due:  # a new stage counts its own steps and calm epochs
            assert (int(state.stage_steps), int(state.calm_epochs)) == (0, 0)
    assert int(state.calm_epochs) == 2 and int(state.stage_steps) == 30


def test_fixed_stage_end_moves_on_step_boundaries_whatever_w_does():
    cfg = config_lib.DagConfig(schedule="path", path_stages=3, stage_end="steps", steps_per_update=25)
    state = pressure.pressure_init(cfg, 1.0)
    dues = []
    for n in range(6):  # epochs of 10 steps: boundaries 25 and 50 fall in the 3rd and 5th epochs
        state, due, ends = pressure.stage_clock(state, cfg, step_before=jnp.int32(10 * n), steps=10,
                                                change=jnp.float32(0.0))
        dues.append(bool(due))
        assert not bool(ends) and int(state.calm_epochs) == 0
    assert dues == [False, False, True, False, True, False]


def test_relative_change_of_the_edge_scores():
    before = jnp.asarray([[0.0, 1.0], [0.0, 0.0]], jnp.float32)
    after = jnp.asarray([[0.0, 0.0], [2.0, 0.0]], jnp.float32)
    np.testing.assert_allclose(float(pressure.relative_change(before, after)), np.sqrt(5.0) / 2.0, rtol=1e-6)
    assert float(pressure.relative_change(after, after)) == 0.0
    assert float(pressure.relative_change(before, jnp.zeros((2, 2)))) == 1.0  # an empty W has not settled


def test_converged_run_advances_a_stage_per_calm_epoch_and_stops_in_the_last(tmp_path):
    # A tolerance every epoch meets: one epoch per stage, and the first epoch of the last stage ends the run.
    cfg = static_config(tmp_path, path_stages=3, steps_per_update=1000, stage_end="converged", stage_tol=100.0,
                        stage_patience=1, epochs=10)
    setup = build(cfg)
    state, data = setup.init_state(), setup.train_data()
    epoch = jax.jit(setup.epoch_fn())
    stages, stopped = [], []
    for _ in range(4):
        state, out = epoch(state, data)
        stages.append(int(state.pressure.stage))
        stopped.append(bool(state.early.stopped))
        assert np.isfinite(float(out["weight_change"]))
    assert stages == [1, 2, 2, 2] and stopped == [False, False, True, True]
    assert int(state.epoch) == 3  # a stopped run stays frozen
    assert int(state.early.best_epoch) == 3  # the one epoch trained in the last stage is the answer


def test_converged_with_an_unreachable_tolerance_is_the_fixed_schedule(tmp_path):
    base = dict(path_stages=3, steps_per_update=12, epochs=8)
    runs = []
    for extra in ({"stage_end": "steps"}, {"stage_end": "converged", "stage_tol": 1e-30}):
        setup = build(static_config(tmp_path, **base, **extra))
        state, data = setup.init_state(), setup.train_data()
        epoch = jax.jit(setup.epoch_fn())
        for _ in range(base["epochs"]):
            state, _ = epoch(state, data)
        runs.append(state)
    fixed, converged = runs
    assert int(fixed.pressure.stage) == int(converged.pressure.stage) == 2
    for a, b in zip(jax.tree.leaves(fixed.params), jax.tree.leaves(converged.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_converged_stages_resume_bit_identically_through_a_checkpoint(tmp_path):
    # A tolerance met now and then (stages end early at different epochs), stopped before the stage
    # would end: the convergence counters must travel in the checkpoint for the resumed run to match.
    from jaxcausal import checkpoint
    cfg = static_config(tmp_path, path_stages=3, steps_per_update=30, stage_end="converged", stage_tol=0.4,
                        stage_patience=2, epochs=10)
    setup = build(cfg)
    data = setup.train_data()
    epoch = jax.jit(setup.epoch_fn())

    def run(state, n, stages=None):
        for _ in range(n):
            state, _ = epoch(state, data)
            if stages is not None:
                stages.append(int(state.pressure.stage))
        return state

    stages = []
    straight = run(setup.init_state(), 10, stages)
    # 6 steps an epoch: the 30-step cap would end stage 0 after epoch 5; W settled sooner.
    assert 0 < stages.index(1) < 4, stages
    first = run(setup.init_state(), stages.index(1))  # one epoch before the stage ends: a calm epoch counted
    assert int(first.pressure.calm_epochs) == 1
    ckpts = checkpoint.Checkpoints(str(tmp_path / "ckpt"))
    ckpts.save(int(first.epoch), first, {}, None)
    ckpts.wait()
    restored, _, _ = ckpts.restore(setup.state_template())
    ckpts.close()
    resumed = run(restored, 10 - int(first.epoch))
    assert checkpoint.state_digest(jax.device_get(resumed)) == checkpoint.state_digest(jax.device_get(straight))
    assert int(straight.pressure.stage) == 2
