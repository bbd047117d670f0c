"""From a config to device-ready arrays: load, attach ground truth, split, standardise.

Before anything trains, the data must be able to fit the model: at least 2 variables, and enough
complete rows in the training split for every variable's regression (see `check_rows`).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from jaxcausal import data as data_lib
from jaxcausal.errors import InputError


@dataclasses.dataclass(frozen=True)
class Prepared:
    dataset: data_lib.Dataset  # as loaded (raw scale)
    standardizer: data_lib.Standardizer
    x_train: np.ndarray  # (N_train, T, D) standardised, missing = 0
    m_train: np.ndarray
    x_val: np.ndarray
    m_val: np.ndarray
    truth: np.ndarray | None  # (D, D) 0/1
    fingerprint: str  # of X, mask and truth: a resume on other data is refused
    warnings: tuple[str, ...] = ()

    def stats(self) -> dict:
        ds = self.dataset
        return {
            "source": ds.source, "shape": list(ds.x.shape), "names": list(ds.names),
            "n_train": int(self.x_train.shape[0]), "n_val": int(self.x_val.shape[0]),
            "missing_fraction": float(1.0 - ds.mask.mean()),
            "true_edge_count": None if self.truth is None else int(self.truth.sum()),
            "standardizer": self.standardizer.to_dict(), "fingerprint": self.fingerprint,
        }

    def describe(self) -> str:
        """One console line: rows, windows, variables, missing cells, rows left out, the split."""
        ds = self.dataset
        n, t, d = ds.x.shape
        unit = "rows" if t == 1 else "windows"
        if ds.rows is not None:
            shape = f"{ds.rows} rows -> {n} windows of {t} steps ({ds.rows_unused} rows dropped)"
        elif t == 1:
            shape = f"{n} rows"
        else:
            shape = f"{n} windows of {t} steps"
        missing = int((ds.mask == 0).sum()) if ds.missing_cells is None else ds.missing_cells
        return (f"data: {ds.source or 'data'}: {shape}, {d} variables, {missing} missing cells; "
                f"{self.x_train.shape[0]} training / {self.x_val.shape[0]} validation {unit}")


def load_dataset(data_cfg) -> tuple[data_lib.Dataset, np.ndarray | None, list[str]]:
    """The dataset and its ground truth (from --truth, else from the file); cfg: DataConfig."""
    warnings: list[str] = []
    if data_cfg.data:
        dataset = data_lib.load_data(data_cfg.data, window=data_cfg.window or None,
                                     stride=data_cfg.stride or None, columns=data_cfg.columns,
                                     drop=data_cfg.drop, time_col=data_cfg.time_col)
    else:
        if data_cfg.window or data_cfg.stride:
            raise InputError("--window/--stride apply to a --data file; the built-in dataset is already windowed")
        if data_cfg.columns or data_cfg.drop or data_cfg.time_col:
            raise InputError("--columns/--drop/--time-col apply to a --data file, not the built-in dataset")
        dataset = data_lib.builtin_dataset(seed=data_cfg.builtin_seed)
    truth = dataset.truth
    warnings.extend(dataset.warnings)
    if data_cfg.truth:
        truth, truth_warnings = data_lib.load_truth(data_cfg.truth, dataset.names)
        warnings.extend(truth_warnings)
    return dataset, truth, list(warnings)


def fingerprint(dataset: data_lib.Dataset, truth: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in (dataset.x, dataset.mask) + (() if truth is None else (truth,)):
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()[:16]


# Below this many training rows per coefficient of a variable's regression, the graph is mostly noise.
ROWS_PER_PARAMETER_WARNING = 10


def complete_rows(mask: np.ndarray, lags: int) -> int:
    """Rows usable by every regression: all D observed, and the `lags` steps before it too. mask: (N, T, D)."""
    observed = np.asarray(mask).reshape(mask.shape[0], mask.shape[1], -1).all(axis=-1)  # (N, T)
    usable = observed[:, lags:].copy()
    for lag in range(1, lags + 1):
        usable &= observed[:, lags - lag: observed.shape[1] - lag]
    return int(usable.sum())


def rows_needed(d: int, lags: int) -> int:
    """Complete rows a regression of each variable on the D - 1 others and L*D lagged values needs:
    more rows than coefficients, plus one for the mean. The search holds data to the same rule."""
    return (d - 1) + lags * d + 2


def check_rows(where: str, mask_train: np.ndarray, n_rows: int, d: int, lags: int) -> str | None:
    """Refuse data too small for the model; a warning (or None) when it is small for its parameters.

    mask_train: (N_train, T, D) of the training split; n_rows: rows of the whole data set.
    """
    if d < 2:
        raise InputError(f"{where}: {d} variable; need at least 2 variables to learn a graph")
    regressors = (d - 1) + lags * d
    needed = rows_needed(d, lags)  # a residual variance (the BIC score, the noise model) for each
    have = complete_rows(mask_train, lags)
    lagged = f" plus {lags * d} lagged values" if lags else ""
    if have < needed:
        raise InputError(f"{where}: only {have} complete rows in the training split ({n_rows} rows in all, some held "
                         f"out for validation); {d} variables need at least {needed} (each variable is regressed on "
                         f"up to {d - 1} others{lagged}); use more data, fewer variables (--columns/--drop)"
                         + (" or --max-lag 0" if lags else ""))
    if have < ROWS_PER_PARAMETER_WARNING * regressors:
        return (f"{where}: {have} complete training rows for up to {regressors} coefficients per variable "
                f"({have / regressors:.1f} rows per coefficient, below {ROWS_PER_PARAMETER_WARNING}); "
                "the graph may be unreliable: use more data or fewer variables")
    return None


def prepare(cfg) -> Prepared:
    """cfg: the full Config."""
    dataset, truth, warnings = load_dataset(cfg.data)
    # The split and the statistics see only windows, not the file: name it (and the shape) here.
    where = f"{dataset.source or 'data'} (shape {tuple(dataset.x.shape)}, N x T x D)"
    n_windows, window, d = dataset.x.shape
    lags = min(cfg.model.max_lag, window - 1) if window > 1 else 0  # as model.build_model
    if d < 2:  # up front: nothing below makes sense for one variable
        check_rows(where, dataset.mask, n_windows * window, d, lags)
    try:
        train_idx, val_idx = data_lib.split_windows(dataset.n_windows, val_fraction=cfg.data.val_fraction,
                                                    seed=cfg.train.seed)
        train, val = data_lib.subset(dataset, train_idx), data_lib.subset(dataset, val_idx)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    small = check_rows(where, train.mask, n_windows * window, d, lags)  # before statistics of too few rows
    if small:
        warnings.append(small)
    try:
        scaler = data_lib.Standardizer.fit(train.x, train.mask, mode=cfg.data.standardize, names=dataset.names)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    x_train = scaler.apply(train.x, train.mask)
    x_val = scaler.apply(val.x, val.mask)
    return Prepared(dataset, scaler, x_train, train.mask, x_val, val.mask,
                    None if truth is None else np.asarray(truth, np.int8),
                    fingerprint(dataset, truth), tuple(warnings))
