"""Independent host-side work (bootstrap replicates) shared with this machine's other cores.

The search is numpy on one thread (OpenBLAS is pinned to one, `__init__`), so on a machine with more
than one core a long list of replicates is split between this process and fresh worker
interpreters. Workers are plain `python -c` processes, not multiprocessing's: those re-import the
caller's `__main__`, which re-runs a user's unguarded script. A worker imports only numpy and the
function's module (never jax), takes the caller's sys.path and (fn, items) as one pickle on stdin and returns the results as
one pickle; its own prints go to stderr. Results are bit-identical to computing them here: the
same numpy, one thread, and each item carries its own seed.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from typing import Any, Callable

WORTH_S = 1.5  # starting a worker costs ~0.3 s of one core (interpreter and numpy): split only longer work
_WORKER = "import jaxcausal.parallel as p; p._serve()"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def map_items(fn: Callable[[Any], Any], items, workers: int | None = None) -> list:
    """[fn(item) for item in items], in order. fn must pickle (a module-level function or a
    functools.partial of one). workers None: the first item runs here, and when the rest would take
    longer than WORTH_S they are split over this process and cores() - 1 workers; an int forces
    that many processes in all (this one included)."""
    items = list(items)
    if not items:
        return []
    out = []
    if workers is None:
        t = time.perf_counter()
        out.append(fn(items[0]))
        items = items[1:]
        workers = cores() if (time.perf_counter() - t) * len(items) > WORTH_S else 1
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return out + [fn(item) for item in items]
    shares = [items[w::workers] for w in range(workers)]
    procs = [_start(fn, share) for share in shares[1:]]
    try:
        mine = [fn(item) for item in shares[0]]
        theirs = [_collect(proc) for proc in procs]
    finally:
        for proc in procs:  # after an error here or in one worker, the others are not waited for
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
    results = [None] * len(items)
    for w, share in enumerate([mine, *theirs]):
        results[w::workers] = share
    return out + results


def _start(fn, share) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        # sys.path first, so the function's module is found where it was found here
        work = pickle.dumps((fn, share), protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(pickle.dumps((sys.path, work), protocol=pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
    except BrokenPipeError:  # it died starting; _collect reports its exit code
        pass
    return proc


def _collect(proc: subprocess.Popen) -> list:
    payload = proc.stdout.read()
    proc.wait()
    proc.stdout.close()
    if proc.returncode != 0 or not payload:
        raise RuntimeError(f"a worker process exited with code {proc.returncode} before returning its results")
    ok, value = pickle.loads(payload)
    if not ok:
        raise value
    return value


def _serve() -> None:
    """A worker's body: read (fn, items), write (True, results) or (False, exception)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it kills its workers
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the work prints goes to stderr, not into the result pipe
    path, work = pickle.loads(sys.stdin.buffer.read())
    sys.path[:] = path
    fn, items = pickle.loads(work)
    try:
        reply = (True, [fn(item) for item in items])
    except Exception as e:  # noqa: BLE001 (handed back to the caller, which raises it)
        reply = (False, e)
    try:
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 (an exception that does not pickle)
        payload = pickle.dumps((False, RuntimeError(f"in a worker process: {e!r}")))
    try:
        out.write(payload)
        out.close()
    except BrokenPipeError:  # the caller is gone (killed): nobody wants the results
        pass
