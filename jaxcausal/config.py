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


INT32_MAX = 2**31 - 1  # counters, seeds and sizes live in int32 arrays on the device
# Allowed-value rules: name -> (test, the phrase after "must" in the error and the help line).
RULES = {
    "positive": (lambda v: v > 0, "be > 0"),
    "non_negative": (lambda v: v >= 0, "be >= 0"),
    "unit_interval": (lambda v: 0 <= v <= 1, "lie in [0, 1]"),
    "open_unit_interval": (lambda v: 0 < v < 1, "lie strictly between 0 and 1"),
    "at_least_one": (lambda v: v >= 1, "be >= 1"),
    "seed": (lambda v: 0 <= v <= INT32_MAX, f"be an integer in [0, {INT32_MAX}]"),
}


def setting(default: Any, help: str, *, choices: tuple[str, ...] = (), rules: tuple[str, ...] = (),
            resumable: bool = False, metavar: str = "") -> Any:
    """A config field with its schema: one help line, allowed choices or range rules, and whether
    it may change on --resume (only settings that leave the epochs already run unchanged may)."""
    assert all(r in RULES for r in rules), rules
    assert not choices or default in choices, (default, choices)
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": tuple(choices), "rules": tuple(rules), "resumable": resumable, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str = setting("", ".npz / .npy / .csv data file; empty = the built-in synthetic dataset", metavar="FILE")
    truth: str = setting("", "ground-truth graph file: a D x D matrix (.npy/.csv) or a cause,effect edge-list CSV",
                         metavar="FILE")
    window: int = setting(0, "cut one long series (rows = time steps) into windows of this length; 0 = as stored",
                          rules=("non_negative",))
    stride: int = setting(0, "step between window starts; 0 = the window length (no overlap)",
                          rules=("non_negative",))
    val_fraction: float = setting(0.2, "fraction of windows held out for validation (seeded split)",
                                  rules=("open_unit_interval",))
    standardize: str = setting("column", "input scaling: column = per variable, global = one common scale, none",
                               choices=("column", "global", "none"))
    builtin_seed: int = setting(0, "seed of the built-in dataset's generator", rules=("seed",))
    columns: str = setting("", "CSV: comma-separated variable columns to keep, in this order; empty = all",
                           metavar="A,B,...")
    drop: str = setting("", "CSV: comma-separated columns to drop (ids, categories)", metavar="A,B,...")
    time_col: str = setting("", "CSV: sort rows by this column, then drop it from the variables",
                            metavar="COLUMN")
    forbid: str = setting("", "prior knowledge: CSV cause,effect[,lag] of edges that must not appear "
                          "(lag 0 or empty = contemporaneous); see docs/priors.md", metavar="FILE")
    require: str = setting("", "prior knowledge: CSV cause,effect[,lag] of edges that must appear",
                           metavar="FILE")
    tiers: str = setting("", "prior knowledge: CSV variable,tier (integers); no contemporaneous edge from a "
                         "later tier to an earlier one", metavar="FILE")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    sem: str = setting("linear", "structural model: linear (X_hat = X W) or mlp (one small MLP per variable)",
                       choices=("linear", "mlp"))
    hidden: int = setting(16, "hidden units per variable of the MLP SEM", rules=("positive",))
    max_lag: int = setting(1, "lagged parents X[t-1..t-L] for time-series windows; 0 = instantaneous only",
                           rules=("non_negative",))
    latent_dim: int = setting(4, "width of each latent block z_s, z_n, z_b", rules=("positive",))
    background: bool = setting(True, "z_b adds a per-window constant offset (time series only, never for T = 1)")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    fit: str = setting("laplace_nv", "data-fit term: mse, Gaussian with equal (gauss_ev) or per-variable "
                       "(gauss_nv) variances, Laplace per variable (laplace_nv)",
                       choices=("mse", "gauss_ev", "gauss_nv", "laplace_nv"))
    # Small weights keep gradient norms below the clip (1.0) so clipping stays a guard against spikes;
    # Adam's steps do not depend on the overall scale. Ratios are what matter: sparse / recon = 0.05.
    lambda_recon: float = setting(0.02, "weight of the data-fit term", rules=("non_negative",))
    lambda_sparse: float = setting(1e-3, "weight of the L1 term sum |W| / D (lags share it)",
                                   rules=("non_negative",))
    lambda_acyclic: float = setting(0.0, "fixed weight on the acyclicity penalty h(W), added to the --schedule",
                                    rules=("non_negative",))
    lambda_disen: float = setting(1e-4, "weight of the disentanglement term between latent blocks",
                                  rules=("non_negative",))
    penalty: str = setting("trace_power", "acyclicity penalty h(W)", choices=("trace_power", "expm", "logdet"))


@dataclasses.dataclass(frozen=True)
class DagConfig:
    """Increasing acyclicity pressure (see jaxcausal/pressure.py), updated after each inner solve."""

    schedule: str = setting("path", "acyclicity pressure: path = DAGMA-style falling score weight, "
                            "lagrangian = NOTEARS augmented Lagrangian", choices=("path", "lagrangian"))
    # 100 (was 1000, then 250): the trained W only starts the order search, whose graph was the same at
    # every budget measured (benchmarks/results/budget.md: six cases, 2-3 seeds) while training got shorter.
    steps_per_update: int = setting(100, "optimiser steps of one inner solve (with --stage-end converged: at most)",
                                    rules=("positive",))
    # converged: the last stage, which otherwise runs out the early-stopping patience, ends once W has settled.
    stage_end: str = setting("converged", "path: an inner solve ends once W has settled (converged; a settled "
                             "last stage ends the run), at the latest after --steps-per-update steps; steps: "
                             "always after --steps-per-update steps", choices=("converged", "steps"))
    stage_tol: float = setting(0.01, "path, stage_end converged: W has settled when an epoch changes the edge "
                               "scores by less than this, relative (Frobenius norm)", rules=("positive",))
    stage_patience: int = setting(2, "path, stage_end converged: epochs in a row below --stage-tol that end "
                                  "a stage", rules=("positive",))
    mu_factor: float = setting(0.1, "path: score weight multiplied by this after each inner solve",
                               rules=("positive", "unit_interval"))
    path_stages: int = setting(4, "path: score weights 1, mu_factor, ..., mu_factor**(stages-1); the last runs on",
                               rules=("positive",))
    rho_init: float = setting(2e-4, "lagrangian: initial quadratic weight", rules=("non_negative",))
    rho_growth: float = setting(3.0, "lagrangian: rho *= this after an inner solve where h fell too little",
                                rules=("at_least_one",))
    rho_max: float = setting(1e6, "lagrangian: upper bound of rho", rules=("positive",))
    h_progress: float = setting(0.25, "lagrangian: rho grows unless h_new < h_progress * h_old",
                                rules=("unit_interval",))
    h_tol: float = setting(1e-7, "h below this counts as a DAG: no further pressure increase",
                           rules=("non_negative",))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    # The original's 5e-4 moves W too slowly for the acyclicity path.
    lr: float = setting(5e-3, "AdamW learning rate", rules=("positive",))
    weight_decay: float = setting(1e-4, "AdamW weight decay", rules=("non_negative",))
    clip_norm: float = setting(1.0, "clip gradients to this global norm", rules=("positive",))
    plateau_factor: float = setting(0.5, "learning rate multiplied by this on a plateau of the training loss",
                                    rules=("positive", "unit_interval"))
    plateau_patience: int = setting(3, "epochs without improvement before the plateau cut",
                                    rules=("non_negative",))
    plateau_cooldown: int = setting(1, "epochs after a plateau cut before the next can start",
                                    rules=("non_negative",))
    max_nonfinite: int = setting(20, "consecutive non-finite (skipped) steps before training stops",
                                 rules=("positive",), resumable=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(200, "maximum number of epochs", rules=("positive",), resumable=True)
    batch_size: int = setting(0, "windows per batch; 0 = about 2048 rows (64 windows of 32, or all rows of "
                              "small static data)", rules=("non_negative",))
    min_steps_per_epoch: int = setting(50, "an epoch is one pass over the training windows, repeated up to "
                                       "this many steps", rules=("positive",))
    seed: int = setting(1337, "seed of the split, the initialisation and the shuffling", rules=("seed",))
    patience: int = setting(10, "early stopping: epochs without improvement of val F1 (val loss without "
                            "truth); 0 = off", rules=("non_negative",), resumable=True)
    min_epochs: int = setting(0, "never stop early before this epoch", rules=("non_negative",), resumable=True)
    graph_threshold: float = setting(0.1, "label-free rule: keep edges with |standardised effect| above this",
                                     rules=("unit_interval",), resumable=True)
    out: str = setting("", "run directory; empty = runs/<timestamp>", resumable=True, metavar="DIR")
    overwrite: bool = setting(False, "allow writing into an existing, non-empty run directory", resumable=True)
    checkpoint_every: int = setting(0, "epochs between checkpoints; 0 (default): automatic, at most 5% of the "
                                    "training time (the end, signals and faults always save)", rules=("non_negative",),
                                    resumable=True)
    keep_checkpoints: int = setting(2, "latest checkpoints kept besides the best one", rules=("positive",),
                                    resumable=True)
    quiet: bool = setting(False, "no per-epoch console lines", resumable=True)
    plots: bool = setting(True, "draw graph.png and training.png into the run directory when matplotlib is "
                          "installed (graph.dot is always written)", resumable=True)
    compile_cache: bool = setting(True, "keep compiled programs in $JAXCAUSAL_CACHE_DIR (default: the per-user "
                                  "cache directory), so a second run with the same shapes skips compiling",
                                  resumable=True)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The exported graph: a search over causal orders, started from the trained model (structure.py)."""

    graph_search: str = setting("order", "order: best-order search started from the trained W, under the noise "
                                "model the data choose; threshold: W thresholded (the original system)",
                                choices=("order", "threshold"), resumable=True)
    noise: str = setting("auto", "noise model of the search: auto = lowest BIC of gauss_ev (one variance), "
                         "gauss_nv (a variance per variable: CPDAG output), laplace",
                         choices=("auto", "gauss_ev", "gauss_nv", "laplace"), resumable=True)
    mechanism: str = setting("auto", "mechanism of the search: auto = linear or, on static data up to 30 "
                             "variables, an MLP of the parents (gauss_nv noise) when its BIC is lower; linear; "
                             "mlp (static data, up to 30 variables, --noise auto or gauss_nv)",
                             choices=("auto", "linear", "mlp"), resumable=True)
    penalty_discount: float = setting(2.0, "BIC penalty per parent, in units of log(n)/2", rules=("positive",),
                                      resumable=True)
    search_rows: int = setting(20000, "rows the search uses at most (evenly spaced complete rows)",
                               rules=("positive",), resumable=True)
    bootstrap: int = setting(0, "bootstrap replicates (windows or rows resampled), each searched under the chosen "
                             "model, giving every edge a confidence; 0 = off", rules=("non_negative",), resumable=True)
    stable_threshold: float = setting(0.0, "with --bootstrap: export only the edges at least this confident "
                                      "(stability selection); 0 = export the full-data graph",
                                      rules=("unit_interval",), resumable=True)

    def __post_init__(self):
        # Fail before training, not at the search: the MLP candidate is scored with gauss_nv noise.
        if self.mechanism == "mlp" and self.noise in ("gauss_ev", "laplace"):
            raise InputError(f"'mechanism' mlp is searched with gauss_nv noise, but 'noise' is {self.noise}; "
                             "use --noise auto or gauss_nv, or --mechanism linear")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    dag: DagConfig = DagConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def schema() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every leaf field name -> (section, its dataclass Field, whose metadata holds the schema)."""
    leaves: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default):
            assert f.name not in leaves, f"leaf name {f.name} is not unique"
            leaves[f.name] = (section.name, f)
    return leaves


def _with_rule(rule: str) -> frozenset[str]:
    return frozenset(name for name, (_, f) in schema().items() if rule in f.metadata["rules"])


# Views of the schema, for code that asks one question of it.
CHOICES = {name: f.metadata["choices"] for name, (_, f) in schema().items() if f.metadata["choices"]}
POSITIVE = _with_rule("positive")
NON_NEGATIVE = _with_rule("non_negative")
UNIT_INTERVAL = _with_rule("unit_interval")
SEEDS = _with_rule("seed")
RESUMABLE = frozenset(name for name, (_, f) in schema().items() if f.metadata["resumable"])
LAMBDA_FIELDS = tuple(f.name for f in dataclasses.fields(LossConfig) if f.name.startswith("lambda_"))


def leaf_fields() -> dict[str, tuple[str, type]]:
    """Map every leaf field name to (section, python type): the schema's fields with resolved annotations."""
    hints = {section: typing.get_type_hints(type(getattr(Config(), section))) for section in SECTIONS}
    return {name: (section, hints[section][name]) for name, (section, _) in schema().items()}


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
    fields = schema()
    for section in SECTIONS:
        for name, value in dataclasses.asdict(getattr(config, section)).items():
            meta = fields[name][1].metadata
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{where}: '{name}' must be finite, got {value}")
            if meta["choices"] and value not in meta["choices"]:
                raise InputError(f"{where}: '{name}' must be one of {', '.join(meta['choices'])}, got {value!r}")
            for rule in meta["rules"]:
                test, phrase = RULES[rule]
                if not test(value):
                    raise InputError(f"{where}: '{name}' must {phrase}, got {value}")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT32_MAX:
                raise InputError(f"{where}: '{name}' is too large ({value}); the limit is {INT32_MAX}")
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


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return '""' if value == "" else str(value)


def describe(name: str) -> str:
    """One help line for a leaf field: its meaning, default, allowed values and --resume rule."""
    _, f = schema()[name]
    meta = f.metadata
    parts = [f"default {_shown(f.default)}"]
    if meta["choices"]:
        parts.append(f"one of {', '.join(meta['choices'])}")
    parts += [RULES[rule][1].split(" ", 1)[1] for rule in meta["rules"]]  # "be > 0" -> "> 0"
    if meta["resumable"]:
        parts.append("may change on --resume")
    return f"{meta['help']} ({'; '.join(parts)})"


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one `--leaf-name` flag per config field, grouped by section, with help from the schema;
    defaults are None so only given flags override."""
    groups: dict[str, Any] = {}
    for name, (section, typ) in leaf_fields().items():
        if section not in groups:
            groups[section] = parser.add_argument_group(f"[{section}] settings (also TOML keys)")
        flag = "--" + name.replace("_", "-")
        text = describe(name).replace("%", "%%")  # argparse %-formats help strings
        if typ is bool:
            groups[section].add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                                         help=text)
        else:
            choices = CHOICES.get(name)
            metavar = schema()[name][1].metadata["metavar"] or (
                "{" + ",".join(choices) + "}" if choices else typ.__name__.upper())
            groups[section].add_argument(flag, dest=name, default=None, metavar=metavar, help=text)


def from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Config = defaults <- --config FILE <- flags."""
    config = base or Config()
    if getattr(args, "config", None):
        config = load_toml(args.config, config)
    overrides = {name: getattr(args, name) for name in leaf_fields() if getattr(args, name, None) is not None}
    return replace(config, overrides, where="command line")
