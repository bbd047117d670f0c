"""jaxcausal: learn causal graphs from time series and tabular data with JAX."""
import os

# jax runs CPU LAPACK (slogdet's LU and the triangular solves of its gradient) through scipy's
# OpenBLAS, which threads even a 50 x 50 solve and then fights XLA's own threads for the cores: the
# D = 50 epoch ran 1.4x slower on 2 idle cores, ~7x on busy ones (benchmarks/README.md). One thread
# gives bit-identical results. OpenBLAS reads this when scipy loads it, on jax's first LAPACK call,
# so it is set here, before anything in the package can import scipy; a value the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from jaxcausal.config import Config
from jaxcausal.training import train_and_evaluate

__version__ = "0.1.0"
__all__ = ["Config", "load", "train_and_evaluate", "__version__"]


def load(run_dir: str, *, data: str | None = None, truth: str | None = None, epoch: int | None = None):
    """A trained run at its best epoch (or `epoch`): `.model`, `.params`, `.standardizer`, `.config`, `.graph`.

    See `jaxcausal.evaluate.load`; imported here on first use so that `python -m jaxcausal.evaluate`
    does not find its own module already loaded.
    """
    from jaxcausal.evaluate import load as load_run
    return load_run(run_dir, data=data, truth=truth, epoch=epoch)
