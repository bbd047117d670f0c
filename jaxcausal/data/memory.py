"""Refusing arrays larger than memory from their .npy header, before anything is allocated.

A file whose header claims more than the machine can hold would otherwise be read until the
kernel kills the process (no message at all) or NumPy raises a bare MemoryError halfway.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib

import numpy as np

from jaxcausal.errors import InputError

GIB = 2.0 ** 30
# Loading keeps the array as stored plus float64 working copies, the float32 X and mask and
# boolean masks of it (jaxcausal.data.io._check_x, fold_missing): about 24 bytes per element on top.
WORKING_BYTES_PER_ELEMENT = 24


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:  # containers: the cgroup's limit, not the host's free memory, is what the kernel enforces
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                candidates.append(int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def read_npy_header(handle) -> tuple[tuple[int, ...], np.dtype] | None:
    """(shape, dtype) from an open .npy stream, which is left after the header; None if unreadable."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return None  # version 3 (UTF-8 field names) is rare; np.load still checks it
    except (ValueError, OSError, EOFError):
        return None  # not a .npy stream: the loader's own checks name the problem
    return tuple(int(n) for n in shape), np.dtype(dtype)


def check_fits(path: str, what: str, header: tuple[tuple[int, ...], np.dtype] | None,
               available: int | None = None) -> None:
    """Refuse, in one line naming the shape, an array whose loading would exceed available memory."""
    if header is None:
        return
    shape, dtype = header
    elements = math.prod(shape)
    stored = elements * dtype.itemsize
    needed = stored + elements * WORKING_BYTES_PER_ELEMENT
    available = available_memory() if available is None else available
    if available is None or needed <= available:
        return
    raise InputError(f"{path}: {what} has shape {shape} ({dtype}, {stored / GIB:.1f} GiB as stored) and needs "
                     f"about {needed / GIB:.1f} GiB of memory to load, more than the {available / GIB:.1f} GiB "
                     "available; use fewer rows or variables, or a machine with more memory")


def check_npy_file(path: str, what: str) -> None:
    with open(path, "rb") as handle:
        check_fits(path, what, read_npy_header(handle))


def check_npz_member(path: str, archive, key: str) -> None:
    """archive: an open np.lib.npyio.NpzFile; its member `key` is checked from the header alone."""
    try:
        with archive.zip.open(f"{key}.npy") as handle:
            header = read_npy_header(handle)
    except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error):
        return  # a damaged member: reading it names the problem
    check_fits(path, f"array '{key}'", header)
