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


def _data():
    return simulate(seed=4, d=6, noise="laplace", n_windows=400, n_edges=6)


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert np.array_equal(a[name], b[name]), name
        elif isinstance(a[name], dict):
            _assert_same(a[name], b[name])
        elif name != "seconds":  # wall times
            assert a[name] == b[name], name


def test_replicates_in_worker_processes_equal_those_computed_here():
    ds = _data()
    replicate = functools.partial(structure._replicate, ds.x, ds.mask, 0, 20000, 2.0, None, None, "laplace",
                                  list(range(6)), 3)
    here = [replicate(k) for k in range(5)]
    with parallel.Workers(2) as workers:
        shared = workers.map(replicate, range(5))  # items 1 and 3 run in a worker
    assert len(shared) == 5
    for a, b in zip(here, shared):
        _assert_same(a, b)


def test_the_whole_search_split_over_workers_equals_the_search_here(monkeypatch):
    ds = _data()
    kw = dict(n_lags=0, bootstrap=3, seed=2)
    monkeypatch.setattr(parallel, "WORTH_S", float("inf"))
    here = structure.choose_graph(ds.x, ds.mask, **kw)
    monkeypatch.setattr(parallel, "WORTH_S", 0.0)  # restarts, the other noise models and the replicates
    started = []
    monkeypatch.setattr(parallel.Workers, "_started", lambda self, n, f=parallel.Workers._started:
                        started.append(n) or f(self, n))
    shared = structure.choose_graph(ds.x, ds.mask, **kw)
    assert started  # the split did happen
    _assert_same(here, shared)


def _fails_on_odd(k):
    if k % 2:
        raise InputError(f"item {k} is bad")
    return k


def _worker_modules(_):
    return "jax" in sys.modules, os.getpid()


def test_an_error_in_a_worker_is_raised_here_and_workers_never_import_jax():
    with pytest.raises(InputError, match="item 1 is bad"):
        with parallel.Workers(2) as workers:
            workers.map(_fails_on_odd, range(2))
    with parallel.Workers(2) as workers:
        (_, pid_here), (has_jax, pid_there) = workers.map(_worker_modules, range(2))
        assert pid_there != pid_here and not has_jax
        assert workers.map(_worker_modules, range(2))[1][1] == pid_there  # one worker serves every map


def test_short_work_stays_in_this_process():
    with parallel.Workers() as workers:
        assert workers.map_long(_worker_modules, range(3)) == [(("jax" in sys.modules), os.getpid())] * 3
        assert not workers.started


def _dies_in_a_worker(parent_pid, item):
    if os.getpid() != parent_pid:
        os._exit(3)  # as a worker killed for memory would end
    return item, os.getpid()


def test_a_worker_that_dies_or_cannot_start_only_costs_time(monkeypatch):
    here = os.getpid()
    with parallel.Workers(2) as workers:
        assert workers.map(functools.partial(_dies_in_a_worker, here), range(4)) == [(k, here) for k in range(4)]
        assert not workers.started and workers.map(_worker_modules, range(2))[1][1] == here  # no new worker
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with parallel.Workers(2) as workers:
        assert workers.map(_worker_modules, range(3)) == [(("jax" in sys.modules), here)] * 3


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_caller_killed_with_sigkill_takes_its_workers_along():
    import signal
    import subprocess
    import time
    code = ("import time; from jaxcausal import parallel; w = parallel.Workers(2); "
            "print(w._started(1)[0].pid, flush=True); w.map(time.sleep, [0, 60])")
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(caller.stdout.readline())
    time.sleep(0.5)  # the worker is asleep in its 60 s item
    assert _alive(worker)
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    caller.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)
