"""The in-memory dataset every other module consumes, and the small graph helpers around it.

Shapes: N windows of T time steps over D variables; static data is stored with T = 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxcausal.errors import InputError


def default_names(d: int) -> tuple[str, ...]:
    """Variable names "x0".."x{d-1}" used when a file or generator gives none."""
    return tuple(f"x{j}" for j in range(d))


def fold_missing(x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fold NaN/Inf of `x` into the mask and zero the missing entries.

    x: any real array (...); mask: same shape, nonzero = observed, or None (all observed).
    Returns (x float32 with 0.0 where missing, mask float32 of 0/1), both shaped like x.
    """
    x64 = np.asarray(x, dtype=np.float64)
    observed = np.isfinite(x64)
    if mask is not None:
        observed &= np.asarray(mask) != 0
    # Zero before the cast: a NaN times a zero mask is still NaN downstream.
    x32 = np.where(observed, x64, 0.0).astype(np.float32)
    return x32, observed.astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Windows of multivariate data with a missingness mask and optional ground truth.

    x: (N, T, D) float32, missing entries 0.0 (never NaN). mask: (N, T, D) float32, 1 observed.
    names: D variable names. truth: (D, D) int8 0/1, [i, j] = 1 means i -> j (instantaneous).
    truth_lagged: (L, D, D) int8, [l-1, i, j] = 1 means x_{t-l, i} -> x_{t, j} (generator only).
    source: file path or generator description. warnings: notes from loading (e.g. a binarised
    weighted truth) for the caller to show once. rows, rows_unused, missing_cells: what the file
    held before windowing, for `jaxcausal.prepare.Prepared.describe`.
    """

    x: np.ndarray
    mask: np.ndarray
    names: tuple[str, ...]
    truth: np.ndarray | None = None
    truth_lagged: np.ndarray | None = None
    source: str = ""
    warnings: tuple[str, ...] = ()
    rows: int | None = None  # rows (time steps) of the file before it was cut into windows; None = not cut
    rows_unused: int = 0  # of those, rows in no window (the tail after the last full window)
    missing_cells: int | None = None  # missing cells in the file as read; None = count them in mask

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        where = f"dataset {self.source or '(unnamed)'}"
        x, mask = self.x, self.mask
        if not (isinstance(x, np.ndarray) and x.ndim == 3 and x.dtype == np.float32):
            raise InputError(f"{where}: x must be a float32 (N, T, D) array, got {_describe(x)}; "
                             "build it with Dataset.from_array")
        if not (isinstance(mask, np.ndarray) and mask.shape == x.shape and mask.dtype == np.float32):
            raise InputError(f"{where}: mask must be float32 of shape {x.shape}, got {_describe(mask)}")
        if not np.isin(mask, (0.0, 1.0)).all():
            raise InputError(f"{where}: mask must hold only 0 and 1")
        if not np.isfinite(x).all() or (x[mask == 0] != 0).any():
            raise InputError(f"{where}: x must be finite with 0.0 at missing entries; "
                             "build it with Dataset.from_array, which folds NaN/Inf into the mask")
        d = x.shape[2]
        if len(self.names) != d or len(set(self.names)) != d:
            raise InputError(f"{where}: need {d} distinct variable names, got {list(self.names)}")
        _check_graph(where, "truth", self.truth, (d, d))
        if self.truth_lagged is not None:
            _check_graph(where, "truth_lagged", self.truth_lagged, (len(self.truth_lagged), d, d))

    @classmethod
    def from_array(cls, x: np.ndarray, *, mask: np.ndarray | None = None,
                   names: Sequence[str] | None = None, **fields) -> Dataset:
        """Build from x (N, D) static or (N, T, D), folding NaN/Inf (and mask == 0) into the mask.

        fields: truth, truth_lagged, source, warnings as in the class.
        """
        x = np.asarray(x)
        if x.ndim == 2:  # static samples are windows of one time step
            x = x[:, None, :]
            mask = None if mask is None else np.asarray(mask)[:, None, :]
        x32, mask32 = fold_missing(x, mask)
        names = default_names(x32.shape[-1]) if names is None else names
        return cls(x=x32, mask=mask32, names=names, **fields)

    @property
    def n_windows(self) -> int:
        return self.x.shape[0]

    @property
    def window(self) -> int:
        return self.x.shape[1]

    @property
    def n_vars(self) -> int:
        return self.x.shape[2]

    @property
    def is_static(self) -> bool:
        return self.window == 1

    def __repr__(self) -> str:
        n_edges = None if self.truth is None else int(self.truth.sum())
        return (f"Dataset(N={self.n_windows}, T={self.window}, D={self.n_vars}, "
                f"observed={float(self.mask.mean()):.3f}, truth_edges={n_edges}, source={self.source!r})")


def _describe(a) -> str:
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__


def _check_graph(where: str, field: str, graph, shape: tuple[int, ...]) -> None:
    if graph is None:
        return
    if not (isinstance(graph, np.ndarray) and graph.dtype == np.int8 and graph.shape == shape
            and np.isin(graph, (0, 1)).all()):
        raise InputError(f"{where}: {field} must be an int8 0/1 array of shape {shape}, got {_describe(graph)}")
