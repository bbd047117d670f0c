"""Independent host-side work (search restarts, noise models, bootstrap replicates) shared with this
machine's other cores.

The search is numpy on one thread (OpenBLAS is pinned to one, `__init__`), so on a machine with more
than one core independent pieces are split between this process and worker interpreters. Workers
are plain `python -c` processes, not multiprocessing's: those re-import the caller's `__main__`,
which re-runs a user's unguarded script. A worker imports only numpy and the function's module
(never jax), and lives for one `Workers` block: each `map` sends it (fn, items) as a length-prefixed
pickle on stdin and reads the results back the same way on stdout; the worker's own prints go to
stderr. Results are bit-identical to computing them here: the same numpy, one thread, and each item
carries its own seed.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable

WORTH_S = 1.0  # starting a worker costs ~0.3 s of one core (interpreter and numpy): split only longer work
_WORKER = "import jaxcausal.parallel as p; p._serve()"
_HEADER = struct.Struct("<Q")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class Workers:
    """Up to `processes - 1` worker interpreters (default: one per further core), started on first
    use and closed when the block ends. `processes=1` computes everything here."""

    def __init__(self, processes: int | None = None):
        self.processes = cores() if processes is None else max(1, processes)
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)

    @property
    def started(self) -> bool:
        """Whether a worker is running (a later map then costs no start-up)."""
        return bool(self._procs)

    def map(self, fn: Callable[[Any], Any], items) -> list:
        """[fn(item) for item in items] in order, split over this process and the workers. fn must
        pickle (a module-level function or a functools.partial of one). An exception fn raises in a
        worker is raised here; a worker that cannot start or dies (killed, out of memory) only costs
        time: its share is computed here, and so is everything after."""
        items = list(items)
        n = min(self.processes, len(items))
        if n <= 1:
            return serial(fn, items)
        shares = [items[w::n] for w in range(n)]
        try:
            procs = self._started(n - 1)
        except OSError:  # no interpreter to start (an embedded Python), or no processes left
            self.close(kill=True)
            self.processes = 1
            return serial(fn, items)
        try:
            # Sent from threads: a worker still starting reads nothing yet, and a message larger than
            # the pipe's buffer would hold this process back from its own share until it does.
            senders = [threading.Thread(target=_send, args=(proc.stdin, _dumps((fn, share))), daemon=True)
                       for proc, share in zip(procs, shares[1:])]
            for t in senders:
                t.start()
            results = [None] * len(items)
            results[0::n] = serial(fn, shares[0])
            for t in senders:
                t.join()
            for w, proc in enumerate(procs, start=1):
                try:
                    results[w::n] = _reply(proc)
                except _Lost:
                    results[w::n] = serial(fn, shares[w])
                    self.processes = 1
        except BaseException:
            self.close(kill=True)  # a worker may still be busy with a share nobody will read
            raise
        if self.processes == 1:
            self.close(kill=True)
        return results

    def map_long(self, fn: Callable[[Any], Any], items, later: int = 0) -> list:
        """`map`, but the first item runs here first, timed, and the rest are split only when they
        (and `later` items of about the same cost that later maps will bring) would take longer
        than WORTH_S."""
        items = list(items)
        if not items:
            return []
        t = time.perf_counter()
        first = fn(items[0])
        rest = items[1:]
        if not self.started and (time.perf_counter() - t) * (len(rest) + later) <= WORTH_S:
            return [first] + serial(fn, rest)
        return [first] + self.map(fn, rest)

    def _started(self, count: int) -> list[subprocess.Popen]:
        while len(self._procs) < count:
            proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(os.getpid())], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
            self._procs.append(proc)
            _send(proc.stdin, _dumps(sys.path))  # first, so the functions' modules are found where they were found here
        return self._procs[:count]

    def close(self, kill: bool = False) -> None:
        for proc in self._procs:
            if kill and proc.poll() is None:
                proc.kill()
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()  # end of input: the worker exits
                except OSError:
                    pass
            proc.wait()
        self._procs = []


def serial(fn: Callable[[Any], Any], items) -> list:
    """[fn(item) for item in items]: the in-process map the others default to."""
    return [fn(item) for item in items]


def _dumps(obj) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _send(pipe, data: bytes) -> None:
    try:
        pipe.write(_HEADER.pack(len(data)) + data)
        pipe.flush()
    except BrokenPipeError:  # it died; _reply reports its exit code
        pass


def _read(pipe) -> bytes | None:
    """One message's bytes; None at the end of input."""
    header = pipe.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = pipe.read(size)
    return data if len(data) == size else None


class _Lost(Exception):
    """A worker ended without answering."""


def _reply(proc: subprocess.Popen) -> list:
    data = _read(proc.stdout)
    if data is None:
        raise _Lost(f"a worker process exited with code {proc.wait()} before returning its results")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


def _die_with(parent: int) -> None:
    """A caller killed with SIGKILL takes its workers along (Linux), instead of leaving them to finish
    a share nobody will read; elsewhere a worker ends at the end of its current message."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def _serve() -> None:
    """A worker's body: read sys.path, then per message (fn, items), answer (True, results) or
    (False, exception); exit at the end of input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle: it kills its workers
    _die_with(int(sys.argv[1]))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the work prints goes to stderr, not into the result pipe
    inp = sys.stdin.buffer
    path = _read(inp)
    if path is None:
        return
    sys.path[:] = pickle.loads(path)
    while (work := _read(inp)) is not None:
        try:
            fn, items = pickle.loads(work)
            reply = _dumps((True, [fn(item) for item in items]))
        except Exception as e:  # noqa: BLE001 (handed back to the caller, which raises it)
            try:
                reply = _dumps((False, e))
            except Exception:  # noqa: BLE001 (an exception that does not pickle)
                reply = _dumps((False, RuntimeError(f"in a worker process: {e!r}")))
        _send(out, reply)
