"""The early-stopping pair against a plain-Python reference, one run and vmapped."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcausal.early_stopping import early_stopping


def reference(metrics, eligible, patience, min_epochs):
    """(best_epoch, stop epoch or None) by the rule written out in Python."""
    best, best_epoch, bad = -np.inf, -1, 0
    for epoch, (m, ok) in enumerate(zip(metrics, eligible), start=1):
        if ok and np.isfinite(m) and m > best:
            best, best_epoch, bad = m, epoch, 0
        elif ok:
            bad += 1
        else:
            bad = 0
        if patience > 0 and bad >= patience and epoch >= min_epochs:
            return best_epoch, epoch
    return best_epoch, None


def run(rule, metrics, eligible):
    state, stopped_at, update = rule.init(), None, jax.jit(rule.update)
    for epoch, (m, ok) in enumerate(zip(metrics, eligible), start=1):
        state, _ = update(state, jnp.float32(m), epoch=jnp.int32(epoch), eligible=jnp.asarray(ok))
        if bool(state.stopped):
            stopped_at = epoch
            break
    return int(state.best_epoch), stopped_at


def test_matches_the_reference_rule():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 12
        metrics = rng.choice([0.1, 0.2, 0.3, 0.4, np.nan], size=n)
        eligible = rng.random(n) > 0.2
        patience, min_epochs = int(rng.integers(0, 4)), int(rng.integers(0, 8))
        assert run(early_stopping(patience, min_epochs), metrics, eligible) == \
            reference(metrics, eligible, patience, min_epochs), (metrics, eligible, patience, min_epochs)


def test_ineligible_epochs_never_improve_nor_count():
    rule = early_stopping(patience=1, min_epochs=0)
    state, improved = rule.update(rule.init(), jnp.float32(0.9), epoch=jnp.int32(1), eligible=jnp.asarray(False))
    assert not bool(improved) and int(state.best_epoch) == -1 and int(state.bad_epochs) == 0
    assert not bool(state.stopped)


def test_should_stop_follows_a_changed_patience():
    state = early_stopping(2, 0).init()._replace(bad_epochs=jnp.int32(2))
    assert bool(early_stopping(2, 0).should_stop(state, jnp.int32(5)))
    assert not bool(early_stopping(3, 0).should_stop(state, jnp.int32(5)))  # raised on --resume
    assert not bool(early_stopping(2, 6).should_stop(state, jnp.int32(5)))  # min_epochs not reached
    assert not bool(early_stopping(0, 0).should_stop(state, jnp.int32(5)))  # patience 0: never


def test_vmaps_over_members():
    rule = early_stopping(patience=1, min_epochs=0)
    states = jax.vmap(lambda _: rule.init())(jnp.arange(3))
    metrics = jnp.asarray([0.5, jnp.nan, 0.7], jnp.float32)
    states, improved = jax.vmap(lambda s, m: rule.update(s, m, epoch=jnp.int32(1), eligible=jnp.asarray(True)))(
        states, metrics)
    np.testing.assert_array_equal(np.asarray(improved), [True, False, True])
    np.testing.assert_array_equal(np.asarray(states.stopped), [False, True, False])
