"""One population across several processes or hosts: `jax.distributed`, set up from the sweep's flags.

    python -m jaxcausal.sweep ... --coordinator HOST:PORT --num-processes N --process-id I
    python -m jaxcausal.sweep ... --distributed        # under SLURM / Open MPI: JAX detects all three

`initialize` runs before anything touches a JAX backend; afterwards `jax.devices()` lists every
process's devices, so `population.layout` builds the same 1-D "pop" mesh over all of them and the
member axis is split across processes exactly as it is split across local devices. On CPU the
cross-process collectives are gloo's (TCP), unless `JAX_CPU_COLLECTIVES_IMPLEMENTATION` says otherwise.

Every process runs the same program on the same host data; process 0 alone writes files. Host work
that splits into independent pieces (the bootstrap's replicates) is shared out by `spread`. The
helpers below keep the processes in step: an InputError on one process is raised on all
(`agreed`), so none is left waiting in a collective for a process that has already exited.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxcausal import parallel
from jaxcausal.errors import InputError

# jax reads this variable itself; --coordinator overrides it.
COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
# Process 0 writes the graph files and plots after the shared search while the others wait at exit;
# JAX's default (300 s) would fail them on a slow write.
SHUTDOWN_TIMEOUT_S = 3600


class Options(NamedTuple):
    """What `initialize` passes to `jax.distributed.initialize`; None = let JAX detect it."""

    enabled: bool
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("across processes or hosts (jax.distributed; process 0 writes the files)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help=f"address of process 0's coordinator, the same for every process "
                            f"(default ${COORDINATOR_ENV})")
    group.add_argument("--num-processes", metavar="N", help="number of processes in the run")
    group.add_argument("--process-id", metavar="I", help="this process's index, 0 .. N-1")
    group.add_argument("--distributed", action="store_true", default=None,
                       help="join a jax.distributed run; values not given are detected by JAX "
                            "(SLURM, Open MPI, Kubernetes, Cloud TPU)")


def options(args: argparse.Namespace) -> Options:
    """Validate the flags (one-line InputError naming the flag); no JAX is loaded."""
    flags = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    enabled = bool(args.distributed) or any(v is not None for v in flags.values())
    if not enabled:
        return Options(False)
    where, coordinator = "--coordinator", args.coordinator
    if coordinator is None and os.environ.get(COORDINATOR_ENV):
        where, coordinator = f"${COORDINATOR_ENV}", os.environ[COORDINATOR_ENV]
    if coordinator is not None:
        check_address(coordinator, where)
    count = _integer("--num-processes", args.num_processes, minimum=1)
    index = _integer("--process-id", args.process_id, minimum=0)
    if count is not None and index is not None and index >= count:
        raise InputError(f"--process-id {index} is out of range for --num-processes {count} "
                         f"(ids are 0 .. {count - 1})")
    return Options(True, coordinator, count, index)


def check_address(text: str, where: str) -> None:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host.strip("[]"):
        raise InputError(f"{where}: {text!r} is not HOST:PORT (e.g. {where} 10.0.0.1:12345)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{where}: port {port!r} of {text!r} is not a number in 1 .. 65535")


def _integer(flag: str, text: str | None, *, minimum: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{flag}: {text!r} is not an integer") from None
    if value < minimum:
        raise InputError(f"{flag}: must be >= {minimum}, got {value}")
    return value


def initialize(opts: Options) -> None:
    """Join the run (no-op when not enabled). Must come before any JAX computation."""
    if not opts.enabled:
        return
    import jax
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU cross-process collectives
    try:
        jax.distributed.initialize(opts.coordinator, opts.num_processes, opts.process_id,
                                   shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except ValueError as e:  # JAX found no value for a setting and detected no cluster
        raise InputError(f"jax.distributed: {str(e).rstrip('.')} and no cluster (SLURM, Open MPI) was detected; "
                         "give --coordinator HOST:PORT, --num-processes N and --process-id I") from None
    # An unreachable coordinator is not caught here: after its timeout, JAX aborts the process itself.


def process_count() -> int:
    if "jax" not in sys.modules:  # numpy-only callers (the search) need not load jax to learn this
        return 1
    import jax
    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_primary() -> bool:
    """True on the process that writes files: process 0, or the only one."""
    import jax
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def gather_ints(value: int) -> np.ndarray:
    """(processes,) int32: every process's `value`, on every process. A collective."""
    if process_count() == 1:
        return np.asarray([value], np.int32)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.int32(value))).reshape(-1)


def agreed(fn: Callable[[], Any], *, everywhere: bool = True) -> Any:
    """`fn()` on every process (`everywhere`) or on process 0 only. An InputError on any process
    is raised on all of them: the one that failed raises its own, the others name it."""
    error, result = None, None
    if everywhere or is_primary():
        try:
            result = fn()
        except InputError as e:
            error = e
    failed = np.flatnonzero(gather_ints(error is not None))
    if error is not None:
        raise error
    if failed.size:
        raise InputError(f"process {int(failed[0])} stopped with bad input (its message says why)")
    return result


def spread(fn: Callable[[int], Any], count: int, local_map: Callable | None = None) -> list:
    """[fn(0), ..., fn(count - 1)] on every process, process p computing the k with k % P == p.
    Every result must be a pytree of numpy arrays with the same structure and shapes. A collective.
    local_map(fn, ks): how a process computes its own share (default: in order, here)."""
    local_map = local_map or parallel.serial
    processes = process_count()
    if processes == 1 or count == 0:
        return local_map(fn, range(count))
    import jax
    from jax.experimental import multihost_utils
    # A process with no share (count < P) computes one anyway: its shapes are needed, its values never read.
    ks = range(jax.process_index(), count, processes) or [jax.process_index() % count]
    mine = agreed(lambda: local_map(fn, ks))
    per = -(-count // processes)
    mine += [mine[0]] * (per - len(mine))  # padding, never read, so every process sends the same shapes
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *mine)
    every = jax.tree.map(np.asarray, multihost_utils.process_allgather(stacked))  # leaves (P, per, ...)
    return [jax.tree.map(lambda a: a[k % processes, k // processes], every) for k in range(count)]  # noqa: B023
