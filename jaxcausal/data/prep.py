"""Preparing a Dataset for training: window-level split and masked standardisation.

The statistics come from the training split only and are applied unchanged to validation data,
so no validation information leaks into the inputs; they travel with the checkpoint as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxcausal.data.dataset import Dataset, default_names
from jaxcausal.errors import InputError

MODES = ("column", "global", "none")


@dataclasses.dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-variable affine map z = (x - mean) / std. mean, std: (D,) float32, std > 0."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        if mean.ndim != 1 or std.shape != mean.shape or not (np.isfinite(mean).all() and (std > 0).all()):
            raise InputError(f"standardizer needs finite mean and positive std of one shape (D,), "
                             f"got {mean.shape} and {std.shape}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, x: np.ndarray, mask: np.ndarray, *, mode: str = "column",
            names: Sequence[str] | None = None) -> Standardizer:
        """Masked statistics of x (N, T, D) over axes (sample, time), computed in float64.

        mode 'column': per-variable mean and std (the original system). 'global': per-variable
        mean, one pooled std for all variables (keeps their relative scales). 'none': identity.
        names (D,) only label errors: a column without observed values, or constant, in this split.
        """
        if mode not in MODES:
            raise InputError(f"standardize mode {mode!r} is unknown; use one of {', '.join(MODES)}")
        d = x.shape[-1]
        if mode == "none":
            return cls(mean=np.zeros(d), std=np.ones(d))
        names = default_names(d) if names is None else tuple(names)
        observed = np.asarray(mask).reshape(-1, d) != 0
        values = np.where(observed, np.asarray(x, dtype=np.float64).reshape(observed.shape), 0.0)
        count = observed.sum(axis=0)
        if (count == 0).any():
            raise InputError(f"the training split has no observed values of {_listed(names, count == 0)}; "
                             "drop the variable or use more training windows")
        mean = values.sum(axis=0) / count
        # Two-pass variance: raw values near 1e6 would lose every digit in E[x^2] - E[x]^2.
        squares = np.where(observed, (values - mean) ** 2, 0.0).sum(axis=0)
        if mode == "global":
            std = np.full(d, np.sqrt(squares.sum() / count.sum()))
        else:
            std = np.sqrt(squares / count)
        if not (std > 0).all():
            raise InputError(f"{_listed(names, ~(std > 0))} is constant over the training split; "
                             "drop the variable or use more training windows")
        return cls(mean=mean, std=std)

    def apply(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of x (..., D); missing entries (mask == 0) stay exactly 0."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return np.where(np.asarray(mask) != 0, z, 0.0).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Standardizer:
        try:
            return cls(mean=np.asarray(data["mean"], dtype=np.float64), std=np.asarray(data["std"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"stored standardizer is malformed ({err!r}); expected {{'mean': [...], 'std': [...]}}") \
                from None


def split_windows(n_windows: int, *, val_fraction: float = 0.2, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded window-level split: (train_idx, val_idx), disjoint, each sorted, int64.

    round(n_windows * val_fraction) windows go to validation.
    """
    if not 0 < val_fraction < 1:
        raise InputError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    n_val = int(round(n_windows * val_fraction))
    if n_val < 1 or n_val >= n_windows:
        raise InputError(f"{n_windows} window(s) with val_fraction {val_fraction} leave "
                         f"{n_windows - n_val} training and {n_val} validation windows; need at least one of each "
                         "(use more data, a shorter --window, or another --val-fraction)")
    order = np.random.default_rng(seed).permutation(n_windows)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def subset(dataset: Dataset, idx: np.ndarray) -> Dataset:
    """The windows idx (K,) of a dataset, everything else (names, truth, source) unchanged."""
    idx = np.asarray(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or \
            (len(idx) and not (0 <= idx.min() and idx.max() < dataset.n_windows)):
        raise InputError(f"window indices must be a 1-D integer array within 0..{dataset.n_windows - 1}")
    return dataclasses.replace(dataset, x=dataset.x[idx], mask=dataset.mask[idx])


def _listed(names: Sequence[str], selected: np.ndarray) -> str:
    return "variable(s) " + ", ".join(repr(names[j]) for j in np.flatnonzero(selected))
