"""jaxcausal: learn causal graphs from time series and tabular data with JAX."""
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
