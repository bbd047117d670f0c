"""The epoch's shuffled batches (steps.epoch_batches)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcausal.steps import epoch_batches


def _one_permutation_per_pass(key, n_train, n_batches, batch_size):
    """The reference: pass p is the permutation of fold_in(key, p), passes concatenated and cut."""
    passes = -(-n_batches * batch_size // n_train)
    keys = [jax.random.fold_in(key, p) for p in range(passes)] if passes > 1 else [key]
    order = np.concatenate([np.asarray(jax.random.permutation(k, n_train)) for k in keys])
    return order[: n_batches * batch_size].reshape(n_batches, batch_size)


@pytest.mark.parametrize("n_train, n_batches, batch_size", [(800, 50, 800), (64, 50, 8), (1638, 25, 64), (7, 3, 5)])
def test_batches_are_whole_shuffled_passes_equal_to_the_reference(key, n_train, n_batches, batch_size):
    got = np.asarray(jax.jit(epoch_batches, static_argnums=(1, 2, 3))(key, n_train, n_batches, batch_size))
    assert got.shape == (n_batches, batch_size)
    np.testing.assert_array_equal(got, _one_permutation_per_pass(key, n_train, n_batches, batch_size))
    flat = got.reshape(-1)
    for start in range(0, len(flat) - n_train + 1, n_train):  # every full pass visits each row once
        assert sorted(flat[start:start + n_train].tolist()) == list(range(n_train))
    assert not jnp.array_equal(got, epoch_batches(jax.random.fold_in(key, 1), n_train, n_batches, batch_size))
