"""The machine a benchmark ran on, shared by every script in benchmarks/."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """CPU model and count, platform, load at start, and the JAX backend."""
    import jax
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_at_start": list(os.getloadavg()),
            "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "devices": len(jax.devices())}
