"""Host-side work shared with worker processes: the same results, in order, as computing them here."""
from __future__ import annotations

import functools
import os
import sys

import numpy as np
import pytest

from jaxcausal import parallel, structure
from jaxcausal.data import simulate
from jaxcausal.errors import InputError


def _replicate_args():
    ds = simulate(seed=4, d=6, noise="laplace", n_windows=400, n_edges=6)
    return functools.partial(structure._replicate, ds.x, ds.mask, 0, 20000, 2.0, None, None, "laplace",
                             list(range(6)), 3)


def test_replicates_in_worker_processes_equal_those_computed_here():
    replicate = _replicate_args()
    here = [replicate(k) for k in range(5)]
    shared = parallel.map_items(replicate, range(5), workers=2)  # items 1 and 3 run in a worker
    assert len(shared) == 5
    for a, b in zip(here, shared):
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), name


def _fails_on_odd(k):
    if k % 2:
        raise InputError(f"item {k} is bad")
    return k


def _worker_modules(_):
    return "jax" in sys.modules, os.getpid()


def test_an_error_in_a_worker_is_raised_here_and_workers_never_import_jax():
    with pytest.raises(InputError, match="item 1 is bad"):
        parallel.map_items(_fails_on_odd, range(2), workers=2)
    (_, pid_here), (has_jax, pid_there) = parallel.map_items(_worker_modules, range(2), workers=2)
    assert pid_there != pid_here and not has_jax


def test_short_work_stays_in_this_process():
    assert parallel.map_items(_worker_modules, range(3)) == [(("jax" in sys.modules), os.getpid())] * 3
