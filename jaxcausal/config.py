"""One configuration schema: nested frozen dataclasses, TOML presets and command-line flags.

Every leaf field is also a flag (`lambda_sparse` -> `--lambda-sparse`), so leaf names are unique
across sections. Presets in `configs/*.toml` override only what differs from these defaults.
Unknown keys, wrong types and out-of-range values raise `InputError` with one line.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import tomllib
import typing
from typing import Any

from jaxcausal.errors import InputError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str = ""  # .npz / .npy / .csv file; "" = the built-in synthetic dataset
    truth: str = ""  # ground-truth graph file (D x D matrix or cause,effect edge list)
    window: int = 0  # cut a long (rows = time steps) series into windows of this length; 0 = as stored
    stride: int = 0  # step between window starts; 0 = window (no overlap)
    val_fraction: float = 0.2  # fraction of windows held out for validation
    standardize: str = "column"  # column: per variable (the original) | global: one common scale | none
    builtin_seed: int = 0  # seed of the built-in dataset's generator
    columns: str = ""  # CSV: comma-separated variable columns to keep, in this order; "" = all
    drop: str = ""  # CSV: comma-separated columns to drop (ids, categories)
    time_col: str = ""  # CSV: sort rows by this column, then drop it from the variables


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    sem: str = "linear"  # linear: X_hat = X W | mlp: one small MLP per variable, edge score = first-layer norm
    hidden: int = 16  # hidden units per variable of the MLP SEM
    max_lag: int = 1  # lagged parents X_{t-1..t-L} for time-series windows (0: instantaneous only)
    latent_dim: int = 4  # width of each latent block z_s, z_n, z_b
    background: bool = True  # z_b adds a per-window constant offset (time series only, never for T=1)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    fit: str = "laplace_nv"  # data-fit term: mse | gauss_ev | gauss_nv | laplace_nv (see losses.fit_term)
    # Small weights keep gradient norms below the clip (1.0) so clipping stays a guard against spikes;
    # Adam's steps do not depend on the overall scale. Ratios are what matter: sparse / recon = 0.05.
    lambda_recon: float = 0.02
    lambda_sparse: float = 1e-3  # on the L1 per variable, sum |W| / D: 0.05 per edge relative to the fit (lags share it)
    lambda_acyclic: float = 0.0  # fixed weight on h(W); the pressure schedule ([dag]) does the real work
    lambda_disen: float = 1e-4
    penalty: str = "trace_power"  # trace_power | expm | logdet


@dataclasses.dataclass(frozen=True)
class DagConfig:
    """Increasing acyclicity pressure (see jaxcausal/pressure.py), updated after each inner solve."""

    schedule: str = "path"  # path: DAGMA-style falling score weight | lagrangian: NOTEARS augmented Lagrangian
    steps_per_update: int = 1000  # optimiser steps between pressure updates (one inner solve)
    mu_factor: float = 0.1  # path: score weight multiplied by this after each inner solve
    path_stages: int = 4  # path: score weights 1, mu_factor, ..., mu_factor**(stages-1); the last runs on
    rho_init: float = 2e-4  # lagrangian: initial quadratic weight
    rho_growth: float = 3.0  # lagrangian: rho *= growth after an inner solve where h fell by less than h_progress
    rho_max: float = 1e6  # lagrangian
    h_progress: float = 0.25  # lagrangian: required fraction: h_new < h_progress * h_old, else rho grows
    h_tol: float = 1e-7  # h below this counts as a DAG: no further pressure increase


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-3  # the original's 5e-4 moves W too slowly for the acyclicity path (README)
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 3  # epochs
    plateau_cooldown: int = 1  # epochs
    max_nonfinite: int = 20  # consecutive non-finite steps before training stops


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 0  # windows per batch; 0 = about 2048 rows (time steps): 64 windows of 32, or all rows of small static data
    min_steps_per_epoch: int = 50  # an epoch is one pass over the training windows, repeated up to this many steps
    seed: int = 1337
    patience: int = 20  # early stopping: epochs without improvement of val F1 (val loss without truth)
    min_epochs: int = 0  # never stop early before this epoch
    graph_threshold: float = 0.1  # label-free rule: keep edges with |standardised effect| above this
    refine: str = "hill_climb"  # hill_climb: refine the exported DAG on a Gaussian BIC (linear SEM) | none
    out: str = ""  # run directory; "" = runs/<timestamp>
    overwrite: bool = False  # allow writing into an existing, non-empty run directory
    checkpoint_every: int = 1  # epochs between checkpoints
    keep_checkpoints: int = 2  # latest checkpoints kept besides the best one
    quiet: bool = False  # no per-epoch console lines


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    dag: DagConfig = DagConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
CHOICES = {
    "standardize": ("column", "global", "none"),
    "schedule": ("path", "lagrangian"),
    "refine": ("hill_climb", "none"),
    "sem": ("linear", "mlp"),
    "penalty": ("trace_power", "expm", "logdet"),
    "fit": ("mse", "gauss_ev", "gauss_nv", "laplace_nv"),
}
POSITIVE = {"lr", "clip_norm", "rho_max", "epochs", "plateau_factor",
            "hidden", "latent_dim", "checkpoint_every", "steps_per_update", "keep_checkpoints", "max_nonfinite",
            "rho_growth", "path_stages", "mu_factor", "min_steps_per_epoch"}
NON_NEGATIVE = {"lambda_recon", "lambda_sparse", "lambda_acyclic", "lambda_disen", "weight_decay",
                "max_lag", "patience", "min_epochs", "plateau_patience", "plateau_cooldown",
                "window", "stride", "h_tol", "batch_size", "graph_threshold", "rho_init"}
UNIT_INTERVAL = {"val_fraction", "mu_factor", "h_progress", "graph_threshold", "plateau_factor"}
SEEDS = {"seed", "builtin_seed"}
INT32_MAX = 2**31 - 1  # counters, seeds and sizes live in int32 arrays on the device


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def leaf_fields() -> dict[str, tuple[str, type]]:
    """Map every leaf field name to (section, python type)."""
    leaves = {}
    for section, cls in _section_classes().items():
        for name, typ in typing.get_type_hints(cls).items():
            assert name not in leaves, f"leaf name {name} is not unique"
            leaves[name] = (section, typ)
    return leaves


def _coerce(name: str, typ: type, value: Any, where: str) -> Any:
    """Check one value against its field type, converting ints to floats where a float is due."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    raise InputError(f"{where}: '{name}' must be {typ.__name__}, got {value!r}")


def validate(config: Config, where: str = "config") -> Config:
    """Range and choice checks on every leaf; raises InputError naming the field."""
    for section in SECTIONS:
        for name, value in dataclasses.asdict(getattr(config, section)).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{where}: '{name}' must be finite, got {value}")
            if name in CHOICES and value not in CHOICES[name]:
                raise InputError(f"{where}: '{name}' must be one of {', '.join(CHOICES[name])}, got {value!r}")
            if name in POSITIVE and value <= 0:
                raise InputError(f"{where}: '{name}' must be > 0, got {value}")
            if name in NON_NEGATIVE and value < 0:
                raise InputError(f"{where}: '{name}' must be >= 0, got {value}")
            if name in UNIT_INTERVAL and not 0 <= value <= 1:
                raise InputError(f"{where}: '{name}' must lie in [0, 1], got {value}")
            if name in SEEDS and not 0 <= value <= INT32_MAX:
                raise InputError(f"{where}: '{name}' must be an integer in [0, {INT32_MAX}], got {value}")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT32_MAX:
                raise InputError(f"{where}: '{name}' is too large ({value}); the limit is {INT32_MAX}")
    if not 0 < config.data.val_fraction < 1:
        raise InputError(f"{where}: 'val_fraction' must lie strictly between 0 and 1, got {config.data.val_fraction}")
    if config.dag.rho_growth < 1:
        raise InputError(f"{where}: 'rho_growth' must be >= 1, got {config.dag.rho_growth}")
    return config


def replace(config: Config, overrides: dict[str, Any], where: str = "flags") -> Config:
    """Return config with leaf overrides {leaf_name: value} applied and checked."""
    leaves = leaf_fields()
    per_section: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        if name not in leaves:
            if name in SECTIONS:
                raise InputError(f"{where}: '{name}' is a section; write its settings under [{name}]")
            raise InputError(f"{where}: unknown setting '{name}'{_suggest(name, leaves)} "
                             "(see python -m jaxcausal.train --help)")
        section, typ = leaves[name]
        per_section.setdefault(section, {})[name] = _coerce(name, typ, value, where)
    for section, values in per_section.items():
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})
    return validate(config, where)


def flatten_toml(table: dict[str, Any], path: str) -> dict[str, Any]:
    """Accept both `[section] key = v` and top-level `key = v`; reject unknown sections and keys."""
    flat: dict[str, Any] = {}
    leaves = leaf_fields()
    for key, value in table.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise InputError(f"{path}: unknown section [{key}] (valid: {', '.join(SECTIONS)})")
            for name, inner in value.items():
                if name in leaves and leaves[name][0] != key:
                    raise InputError(f"{path}: key '{name}' belongs in [{leaves[name][0]}], not [{key}]")
                if name not in leaves:
                    section_keys = [n for n, (s, _) in leaves.items() if s == key]
                    raise InputError(f"{path}: unknown key '{name}' in [{key}]{_suggest(name, section_keys)} "
                                     f"(valid: {', '.join(section_keys)})")
                flat[name] = inner
        else:
            flat[key] = value
    return flat


def load_toml(path: str, base: Config | None = None) -> Config:
    """Read a preset: a path, or a bare preset name from the package's configs/ directory."""
    resolved = resolve_preset(path)
    try:
        with open(resolved, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{resolved}: not valid TOML ({e})") from None
    except UnicodeDecodeError:
        raise InputError(f"{resolved}: not a UTF-8 text file; a config file is TOML text") from None
    except OSError as e:
        raise InputError(f"{resolved}: cannot read config file ({e.strerror})") from None
    return replace(base or Config(), flatten_toml(table, resolved), where=resolved)


def preset_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def resolve_preset(path: str) -> str:
    if os.path.isfile(path):
        return path
    candidate = os.path.join(preset_dir(), f"{path}.toml")
    if os.sep not in path and not path.endswith(".toml") and os.path.isfile(candidate):
        return candidate
    presets = sorted(p[:-5] for p in os.listdir(preset_dir()) if p.endswith(".toml")) if os.path.isdir(preset_dir()) else []
    raise InputError(f"{path}: config file not found (give a path to a .toml file or a preset: {', '.join(presets)})")


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(table: dict[str, Any], where: str = "config.json") -> Config:
    return replace(Config(), flatten_toml(table, where), where=where)


def fingerprint(config: Config) -> str:
    return json.dumps(to_dict(config), sort_keys=True)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--leaf-name` flag per config field; defaults are None so only given flags override."""
    for name, (section, typ) in leaf_fields().items():
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            parser.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                                help=f"[{section}]")
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=typ.__name__.upper(),
                                help=f"[{section}]")


def from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Config = defaults <- --config FILE <- flags."""
    config = base or Config()
    if getattr(args, "config", None):
        config = load_toml(args.config, config)
    overrides = {name: getattr(args, name) for name in leaf_fields() if getattr(args, name, None) is not None}
    return replace(config, overrides, where="command line")
