"""The run directory: its guard, lock, config.json, log and signals; disk faults as one line.

`prepare_output_dir` refuses to write over a user's results; `write_config` writes config.json;
`open_log` opens training_log.jsonl (cut back to the restored epoch on resume); `SignalStop` turns
SIGINT/SIGTERM into "finish this epoch, save, exit".

`RunLock(run_dir)` holds an exclusive `fcntl.flock` on `run_dir/.lock` for as long as a run writes
there. The kernel drops the lock when its process dies, however it dies, so a lock that can be
taken but whose file still names a holder was left by a killed process: it is taken over with a
warning. A second process on the same directory (a new run, or a --resume while a run is going)
is refused with one line naming the holder's pid and host.

Inside the lock, a write that fails because the disk is full or read-only (ENOSPC, EDQUOT, EROFS;
orbax and tensorstore report them in several wrappers) becomes `WriteError`: one line, exit 2.
Checkpoints are written to a temporary directory and renamed when complete, so the last complete
checkpoint stays valid and `--resume` continues once space is back.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading

from jaxcausal import config as config_lib, reporting
from jaxcausal.errors import InputError

RUN_FILES = ("config.json", "training_log.jsonl", "summary.json", "graph.csv", "weights.npy",
             "weights_lagged.npy", "graph_lagged.csv", "graph.dot", "graph.png", "training.png", "checkpoints",
             "evaluation")
EXIT_SIGNAL_BASE = 128  # interrupted runs exit with 128 + signal number (130 SIGINT, 143 SIGTERM)

LOCK_NAME = ".lock"
DISK_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
               errno.EROFS: "Read-only file system"}
DISK_MESSAGES = tuple(DISK_ERRNOS.values())


class WriteError(InputError):
    """A run directory cannot be written (disk full, quota, read-only); reaches users as one line, exit 2."""


def disk_fault(exc: BaseException | None) -> OSError | None:
    """The disk-full / read-only OSError behind `exc` (its causes and contexts included), else None.

    tensorstore reports ENOSPC as a ValueError with the OS message in its text, hence the text match.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return exc
        text = str(exc)
        for code, message in DISK_ERRNOS.items():
            if message in text:
                return OSError(code, message)
        exc = exc.__cause__ or exc.__context__
    return None


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


class RunLock:
    """Exclusive use of a run directory (created if missing) for the `with` block.

    warn: prints one-line warnings (a stale lock taken over). resume_hint: the command that
    continues the run, named when a disk fault stops it.
    """

    def __init__(self, run_dir: str, *, warn=None, resume_hint: str | None = None):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.resume_hint = resume_hint or f"python -m jaxcausal.train --resume {run_dir}"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if os.path.exists(self.run_dir) and not os.path.isdir(self.run_dir):
            raise InputError(f"{self.run_dir}: --out exists and is not a directory")
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._cannot_write(err, "cannot create the run directory's lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise InputError(f"{self.run_dir}: another jaxcausal process is using this run directory "
                             f"({_describe(holder)}); wait for it to finish, or choose another --out") from None
        except OSError as err:  # a filesystem without locks (some network mounts): run, but say so
            os.close(fd)
            self.warn(f"WARNING: {self.run_dir}: cannot lock the run directory ({err.strerror or err}); "
                      "make sure no other run writes there")
            return self
        self._fd = fd
        stale = self._read(fd)
        if stale:  # a clean release empties the file: its content was left by a process that died
            self.warn(f"WARNING: {self.run_dir}: took over the stale lock of {_describe(stale)} "
                      "(that process is gone, killed?)")
        try:
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as err:
            self._release()
            raise self._cannot_write(err, "cannot write the lock file") from None
        return self

    def __exit__(self, typ, exc, tb) -> bool:
        self._release()
        if exc is None or isinstance(exc, InputError):
            return False
        fault = disk_fault(exc)
        if fault is not None:
            raise self._cannot_write(fault, "stopped: cannot write") from None
        return False

    def _cannot_write(self, err: OSError, what: str) -> WriteError:
        where = err.filename if isinstance(err.filename, str) else self.run_dir
        reason = err.strerror or DISK_ERRNOS.get(err.errno, str(err))
        if err.errno in DISK_ERRNOS:
            steps = self.complete_checkpoints()
            kept = (f"the last complete checkpoint (epoch {steps[-1]}) is kept" if steps else
                    "no checkpoint was complete yet, so a resume starts again from epoch 0")
            fix = f"{kept}; free space (or make the disk writable), then continue with: {self.resume_hint}"
        else:
            fix = "check the path and its permissions"
        return WriteError(f"{where}: {what} ({reason}); {fix}")

    def complete_checkpoints(self) -> list[int]:
        """Epochs with a complete checkpoint: orbax renames a step's temporary directory to its number last."""
        try:
            names = os.listdir(os.path.join(self.run_dir, "checkpoints"))
        except OSError:
            return []
        return sorted(int(name) for name in names if name.isdigit())

    def _release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # empty = released cleanly; needs no free space
        except OSError:
            pass  # read-only now: the next holder sees a stale record and warns, which is harmless
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            return json.loads(text) if text else {}
        except (OSError, ValueError):
            return {"pid": "?", "host": "?"}


def require_checkpoints(path: str) -> None:
    """One line when a run's checkpoints directory is missing (evaluate checks it before jax loads)."""
    if not os.path.isdir(path):
        raise InputError(f"{os.path.abspath(path)}: no such checkpoints directory (is the run directory right?)")


def default_run_dir() -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = os.path.join("runs", stamp), 1
    while os.path.exists(path):
        path, k = os.path.join("runs", f"{stamp}-{k}"), k + 1
    return path


def prepare_output_dir(out: str, overwrite: bool, *, files=RUN_FILES, what: str = "run directory",
                       alternatives: str | None = None, clear: bool = True) -> None:
    """Refuse a directory that holds any of `files` unless --overwrite; with `clear`, remove them and
    create the directory. Shared by train runs and sweeps, so both protect a user's results alike."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: --out exists and is not a directory")
    existing = [f for f in files if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        fix = alternatives or f"continue it with --resume {out}, choose another --out, or pass --overwrite"
        raise InputError(f"{out}: {what} already holds {', '.join(existing)}; {fix}")
    if not clear:
        return
    for f in existing:
        path = os.path.join(out, f)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(out, exist_ok=True)


def check_resumable(saved: config_lib.Config, new: config_lib.Config, run_dir: str) -> None:
    """Refuse a --resume that changes a setting the schema does not mark resumable."""
    a, b = config_lib.to_dict(saved), config_lib.to_dict(new)
    diff = [f"{name} {a[s][name]!r} -> {b[s][name]!r}" for s in a for name in a[s]
            if a[s][name] != b[s][name] and name not in config_lib.RESUMABLE]
    if diff:
        raise InputError(f"{run_dir}: cannot resume with a different configuration ({'; '.join(diff)}); "
                         f"start a new run with --out instead")


def versions() -> dict[str, str]:
    import flax
    import jax
    import numpy as np
    import optax
    import orbax.checkpoint
    return {"python": sys.version.split()[0], "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax-checkpoint": orbax.checkpoint.__version__,
            "numpy": np.__version__}


def write_config(run_dir: str, setup, *, resumed_from_epoch: int | None = None, **extra) -> None:
    """config.json: the resolved config, versions, device and data statistics of `setup` (an Experiment)."""
    import jax
    reporting.write_json(os.path.join(run_dir, "config.json"), {
        "config": config_lib.to_dict(setup.cfg), "versions": versions(),
        "device": str(jax.devices()[0]), "platform": jax.default_backend(),
        "data": setup.prepared.stats(), "batch_size": setup.batch_size, "steps_per_epoch": setup.n_batches,
        "resumed_from_epoch": resumed_from_epoch, **extra})


def open_log(path: str, keep_epochs: int | None, health: reporting.HealthMonitor) -> reporting.JsonlLog:
    """The epoch log, opened for appending; on resume cut back to `keep_epochs`.

    Lines after the restored checkpoint are dropped (those epochs run again), as is a last line
    cut short by a kill. The kept lines are replayed into `health` so its verdicts span the run.
    """
    if keep_epochs is not None and os.path.exists(path):
        kept = []
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if row.get("epoch", 0) <= keep_epochs:
                    kept.append(row)
        for row in kept:
            health.check(row)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.writelines(reporting.dumps(row) + "\n" for row in kept)
        os.replace(tmp, path)
    return reporting.JsonlLog(path)


class SignalStop:
    """SIGINT/SIGTERM set a flag; the loop finishes the current epoch, saves and exits.

    The first signal puts the previous handlers back, so a second one acts at once (Ctrl-C:
    KeyboardInterrupt, SIGTERM: termination); the last complete checkpoint stays valid either way.
    """

    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal.signal needs the main thread
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()

    def _restore(self):
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
        self._old = {}

    def __exit__(self, *exc):
        self._restore()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""
