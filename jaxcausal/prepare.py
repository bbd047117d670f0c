"""From a config to device-ready arrays: load, attach ground truth, split, standardise."""
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


def load_dataset(data_cfg) -> tuple[data_lib.Dataset, np.ndarray | None, list[str]]:
    """The dataset and its ground truth (from --truth, else from the file); cfg: DataConfig."""
    warnings: list[str] = []
    if data_cfg.data:
        dataset = data_lib.load_data(data_cfg.data, window=data_cfg.window or None,
                                     stride=data_cfg.stride or None)
    else:
        if data_cfg.window or data_cfg.stride:
            raise InputError("--window/--stride apply to a --data file; the built-in dataset is already windowed")
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


def prepare(cfg) -> Prepared:
    """cfg: the full Config."""
    dataset, truth, warnings = load_dataset(cfg.data)
    # The split and the statistics see only windows, not the file: name it (and the shape) here.
    where = f"{dataset.source or 'data'} (shape {tuple(dataset.x.shape)}, N x T x D)"
    try:
        train_idx, val_idx = data_lib.split_windows(dataset.n_windows, val_fraction=cfg.data.val_fraction,
                                                    seed=cfg.train.seed)
        train, val = data_lib.subset(dataset, train_idx), data_lib.subset(dataset, val_idx)
        scaler = data_lib.Standardizer.fit(train.x, train.mask, mode=cfg.data.standardize, names=dataset.names)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    x_train = scaler.apply(train.x, train.mask)
    x_val = scaler.apply(val.x, val.mask)
    return Prepared(dataset, scaler, x_train, train.mask, x_val, val.mask,
                    None if truth is None else np.asarray(truth, np.int8),
                    fingerprint(dataset, truth), tuple(warnings))
