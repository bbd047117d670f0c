"""jaxcausal: learn causal graphs from time series and tabular data with JAX."""
from jaxcausal.config import Config
from jaxcausal.training import train_and_evaluate

__version__ = "0.1.0"
__all__ = ["Config", "train_and_evaluate", "__version__"]
