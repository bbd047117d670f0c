"""The accuracy benchmark's cases: generated data with a known graph, and the Sachs protein data.

Generated data come from `jaxcausal.data.simulate` (n = 1000 rows static, weights +-[0.5, 2]) with
seeds SEED_BASE + k. Scales: "std" = each column standardised; "raw" = as simulated (every noise
variance 1, so the equal-variance model holds on the shared scale); "sensor" = the generator's
raw_scale (offset and scale per variable, like the built-in dataset).
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import io
import os
import subprocess
import sys
import zipfile

import numpy as np

SEED_BASE = 7100  # our own seeds: tests use < 100, the old benchmark 1000+
ROWS = 1000
WINDOWS, WINDOW = 200, 32

# The Sachs data as cdt (Causal Discovery Toolbox) ships them: a wheel on PyPI, read without
# installing cdt (its dependencies would pull another torch).
SACHS_PACKAGE, SACHS_VERSION = "cdt", "0.6.0"
SACHS_DATA = "cdt/data/resources/cyto_full_data.csv"
SACHS_TRUTH = "cdt/data/resources/cyto_full_target.csv"
WHEEL_DIR = os.environ.get("JAXCAUSAL_BENCH_WHEELS", os.path.expanduser("~/.cache/jaxcausal-bench/wheels"))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    d: int = 20
    graph: str = "er"
    degree: int = 2  # expected edges per variable: n_edges = degree * d
    mechanism: str = "linear"
    noise: str = "gaussian"
    scale: str = "std"  # std | raw | sensor
    series: bool = False  # True: WINDOWS windows of WINDOW steps with lag-1 effects

    @property
    def seeded(self) -> bool:
        return self.name != "sachs"


def _case(name: str, **kw) -> Case:
    return Case(name=name, **kw)


CASES = [
    _case("gauss-er2-d20-std", d=20), _case("gauss-er2-d50-std", d=50), _case("gauss-er2-d100-std", d=100),
    _case("gauss-er2-d20-raw", d=20, scale="raw"), _case("gauss-er2-d50-raw", d=50, scale="raw"),
    _case("gauss-sf2-d30-raw", d=30, graph="sf", scale="raw"),
    _case("laplace-er2-d20-std", d=20, noise="laplace"), _case("laplace-er2-d100-std", d=100, noise="laplace"),
    _case("laplace-sf2-d50-std", d=50, graph="sf", noise="laplace"),
    _case("mlp-er2-d10-raw", d=10, mechanism="mlp", scale="raw"),
    _case("svar-gauss-er1-d10", d=10, degree=1, scale="sensor", series=True),
    _case("svar-gauss-er1-d20", d=20, degree=1, scale="sensor", series=True),
    _case("svar-laplace-er2-d20", d=20, noise="laplace", scale="sensor", series=True),
    _case("sachs", d=11, scale="raw"),
]
QUICK = ("gauss-er2-d20-std", "gauss-er2-d20-raw", "laplace-er2-d20-std", "svar-gauss-er1-d10", "sachs")
BY_NAME = {c.name: c for c in CASES}


def suite(name: str) -> list[Case]:
    return [BY_NAME[n] for n in QUICK] if name == "quick" else list(CASES)


@dataclasses.dataclass
class CaseData:
    x: np.ndarray  # (N, T, D) float64; T = 1 for static samples
    truth: np.ndarray  # (D, D) int8, [i, j] = 1: i -> j
    truth_lagged: np.ndarray | None  # (D, D) int8 lag-1 edges (autoregressive diagonal included)
    names: tuple[str, ...]
    source: str


def generate(case: Case, seed: int) -> CaseData:
    if case.name == "sachs":
        return load_sachs()
    from jaxcausal.data import simulate
    windows, window = (WINDOWS, WINDOW) if case.series else (ROWS, 1)
    ds = simulate(seed=seed, d=case.d, n_edges=case.degree * case.d, graph=case.graph, mechanism=case.mechanism,
                  noise=case.noise, n_windows=windows, window=window, weight_range=(0.5, 2.0),
                  raw_scale=case.scale == "sensor")
    x = np.asarray(ds.x, np.float64)
    if case.scale == "std":
        x = (x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1))
    lagged = None if ds.truth_lagged is None else np.asarray(ds.truth_lagged[0], np.int8)
    return CaseData(x=x, truth=np.asarray(ds.truth, np.int8), truth_lagged=lagged,
                    names=tuple(ds.names), source=ds.source)


def _sachs_wheel() -> str:
    """Path of the cdt wheel, downloaded once with pip (no dependencies, nothing installed)."""
    pattern = os.path.join(WHEEL_DIR, f"{SACHS_PACKAGE}-{SACHS_VERSION}-*.whl")
    found = glob.glob(pattern)
    if not found:
        os.makedirs(WHEEL_DIR, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", f"{SACHS_PACKAGE}=={SACHS_VERSION}", "--no-deps",
                        "-q", "-d", WHEEL_DIR], check=True)
        found = glob.glob(pattern)
    return found[0]


def load_sachs() -> CaseData:
    """7466 rows x 11 proteins (raw concentrations) and cdt's consensus graph of 18 edges."""
    wheel = _sachs_wheel()
    with zipfile.ZipFile(wheel) as z:
        data = z.read(SACHS_DATA).decode()
        target = z.read(SACHS_TRUTH).decode()
    rows = list(csv.reader(io.StringIO(data)))
    names = tuple(rows[0])
    x = np.array(rows[1:], np.float64)[:, None, :]
    index = {n: k for k, n in enumerate(names)}
    truth = np.zeros((len(names),) * 2, np.int8)
    for row in list(csv.reader(io.StringIO(target)))[1:]:
        truth[index[row[0]], index[row[1]]] = 1
    source = f"{SACHS_PACKAGE} {SACHS_VERSION} wheel: {SACHS_DATA} ({x.shape[0]} rows), {SACHS_TRUTH} ({truth.sum()} edges)"
    return CaseData(x=x, truth=truth, truth_lagged=None, names=names, source=source)
