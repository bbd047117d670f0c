"""Data for jaxcausal: the Dataset type, the synthetic generator, file loaders and preparation."""

from jaxcausal.data.dataset import Dataset, default_names, fold_missing
from jaxcausal.graphs import find_cycle, is_dag, topological_order
from jaxcausal.data.io import load_data, load_truth, truth_from_matrix
from jaxcausal.data.prep import Standardizer, split_windows, subset
from jaxcausal.data.synthetic import (
    BUILTIN, GRAPH_TYPES, MECHANISMS, NOISE_TYPES, builtin_dataset, random_dag, simulate,
)

__all__ = [
    "BUILTIN", "GRAPH_TYPES", "MECHANISMS", "NOISE_TYPES",
    "Dataset", "Standardizer",
    "builtin_dataset", "default_names", "find_cycle", "fold_missing", "is_dag", "load_data", "load_truth",
    "random_dag", "simulate", "split_windows", "subset", "topological_order", "truth_from_matrix",
]
