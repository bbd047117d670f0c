"""One timed subprocess with a timeout, shared by the peer runner and the jaxcausal CLI runner."""
from __future__ import annotations

import subprocess
import time


def timed_run(cmd: list[str], *, timeout_s: float, env: dict) -> tuple[subprocess.CompletedProcess | None, float]:
    """(the finished process, or None when it timed out; its wall time in seconds)."""
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t
    return proc, time.perf_counter() - t
