"""jaxcausal: learn causal graphs from time series and tabular data with JAX.

The public names are imported on first use, so `import jaxcausal.graphs` (or the data generator, or
the config schema) does not pay for jax, flax, optax and orbax.
"""
import importlib
import os

# OpenBLAS threads fight XLA's for the cores (D = 50 epoch 1.4x slower; benchmarks/README.md); set before scipy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# XLA:CPU's older kernel emitter compiles the epoch program ~20% faster, with the same numbers and
# epoch times (docs/benchmarks.md); read when jax starts its backend, and a user's own choice wins.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Config": "jaxcausal.config",
    "train_and_evaluate": "jaxcausal.training",
    "load": "jaxcausal.evaluate",
    "fit": "jaxcausal.api",
    "Result": "jaxcausal.api",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jaxcausal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})
