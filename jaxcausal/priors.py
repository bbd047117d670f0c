"""Prior knowledge: forbidden and required edges and tiers, read from files, as design masks.

`--forbid FILE` / `--require FILE`: CSV with header `cause,effect` or `cause,effect,lag`, using the
data's variable names; lag 0 or empty = contemporaneous (x_{t, cause} -> x_{t, effect}), lag l >= 1
= x_{t-l, cause} -> x_{t, effect}. `--tiers FILE`: CSV with header `variable,tier` (integer tiers,
lower = earlier); no contemporaneous edge may go from a later tier to an earlier one. Variables not
listed are unconstrained; lagged edges point forward in time and are never restricted by tiers.

The result is a pair of (A, D) masks over A = D + L*D design columns (the D variables at time t,
then their lag-1 copies, lag-2 copies, ...): allowed[i, j] = column i may be a parent of variable j,
required[i, j] = it must be. Training multiplies W and the lag matrices by `allowed` (model.py);
the search never proposes a forbidden parent and never drops a required one (search.py).
Every contradiction is an InputError of one line naming the file(s). numpy only.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import numpy as np

from jaxcausal.data.io import read_csv_rows
from jaxcausal.errors import InputError
from jaxcausal.graphs import find_cycle

EDGE_HEADERS = (("cause", "effect"), ("cause", "effect", "lag"))
TIER_HEADER = ("variable", "tier")


@dataclasses.dataclass(frozen=True)
class Edge:
    cause: int
    effect: int
    lag: int
    where: str  # "FILE line N", for messages


@dataclasses.dataclass(frozen=True)
class Priors:
    """Prior knowledge for D variables with L lags. allowed / required: (D + L*D, D) bool."""

    allowed: np.ndarray
    required: np.ndarray
    n_forbidden: int
    n_required: int
    n_tiers: int

    def as_search_priors(self) -> dict:
        """The {"allowed", "required"} dict `export.graph_report(priors=...)` takes."""
        return {"allowed": self.allowed, "required": self.required}

    def describe(self) -> str:
        """One console line: what is enforced."""
        parts = [f"{self.n_forbidden} forbidden", f"{self.n_required} required edge(s)"]
        if self.n_tiers:
            parts.append(f"{self.n_tiers} tiers")
        blocked = int((~self.allowed).sum() - self.allowed.shape[1])  # the D self-loops are always off
        return f"prior knowledge: {', '.join(parts)}; {blocked} parent slot(s) closed"


def fingerprint(priors: Priors | None) -> str:
    """sha256 of the allowed and required masks ("none" without priors): of what is enforced, not of the
    file names, so a resume after a prior file was edited is refused."""
    if priors is None:
        return "none"
    h = hashlib.sha256()
    for mask in (priors.allowed, priors.required):
        h.update(repr(mask.shape).encode())
        h.update(np.ascontiguousarray(mask, dtype=bool).tobytes())
    return h.hexdigest()[:16]


def _read_rows(path: str, flag: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows as (line number, stripped cells); missing or unreadable files as one line."""
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "not found"
        raise InputError(f"{path}: {flag} file {what}")
    try:
        return read_csv_rows(path)
    except InputError as err:
        raise InputError(f"{flag}: {err}") from None
    except OSError as err:
        raise InputError(f"{path}: {flag} file cannot be read ({err.strerror})") from None


def _index(path: str, line: int, name: str, index: dict[str, int]) -> int:
    if name not in index:
        shown = ", ".join(list(index)[:12]) + (", ..." if len(index) > 12 else "")
        raise InputError(f"{path}: line {line}: unknown variable '{name}' (the data's variables: {shown})")
    return index[name]


def read_edges(path: str, names: Sequence[str], n_lags: int, *, flag: str) -> list[Edge]:
    """Edges of a `cause,effect[,lag]` CSV, checked against the names and the model's lags."""
    rows = _read_rows(path, flag)
    header = tuple(cell.lower() for cell in rows[0][1]) if rows else ()
    if header not in EDGE_HEADERS:
        raise InputError(f"{path}: {flag} needs a CSV header 'cause,effect' or 'cause,effect,lag', "
                         f"got {','.join(rows[0][1]) if rows else 'an empty file'!r}")
    index = {str(n): k for k, n in enumerate(names)}
    edges = []
    for line, cells in rows[1:]:
        if len(cells) not in (2, len(header)):
            raise InputError(f"{path}: line {line} has {len(cells)} cells; expected {','.join(header)}")
        cause, effect = (_index(path, line, cells[k], index) for k in (0, 1))
        lag = _lag(path, line, cells[2] if len(cells) > 2 else "", n_lags)
        if lag == 0 and cause == effect:
            raise InputError(f"{path}: line {line}: {cells[0]} -> {cells[1]} at lag 0 is a self-loop; "
                             "only lagged self-edges (lag >= 1) exist")
        edges.append(Edge(cause, effect, lag, f"{path} line {line}"))
    return edges


def _lag(path: str, line: int, cell: str, n_lags: int) -> int:
    if cell == "":
        return 0
    try:
        lag = int(cell)
    except ValueError:
        lag = -1
    if lag < 0:
        raise InputError(f"{path}: line {line}: lag {cell!r} is not a whole number >= 0 (0 or empty = contemporaneous)")
    if lag > n_lags:
        have = ("the model has no lags (static data, windows of length 1, or --max-lag 0)" if n_lags == 0
                else f"the model has lags 1..{n_lags} (--max-lag, at most the window length - 1)")
        raise InputError(f"{path}: line {line}: lag {lag} is larger than the model's max lag: {have}")
    return lag


def read_tiers(path: str, names: Sequence[str]) -> np.ndarray:
    """(D,) tier of each variable from a `variable,tier` CSV; variables not listed get -1 (free)."""
    rows = _read_rows(path, "--tiers")
    header = tuple(cell.lower() for cell in rows[0][1]) if rows else ()
    if header != TIER_HEADER:
        got = ",".join(rows[0][1]) if rows else "an empty file"
        raise InputError(f"{path}: --tiers needs a CSV with header 'variable,tier' and one 'name,integer' line per "
                         f"variable (lists of names per line are not accepted), got {got!r}")
    index = {str(n): k for k, n in enumerate(names)}
    tiers = np.full(len(names), -1, np.int64)
    for line, cells in rows[1:]:
        if len(cells) != 2:
            raise InputError(f"{path}: line {line} has {len(cells)} cells; expected variable,tier "
                             "(one variable per line)")
        k = _index(path, line, cells[0], index)
        try:
            tier = int(cells[1])
        except ValueError:
            tier = -1
        if tier < 0:
            raise InputError(f"{path}: line {line}: tier {cells[1]!r} of {cells[0]} is not a whole number >= 0")
        if tiers[k] >= 0 and tiers[k] != tier:
            raise InputError(f"{path}: line {line}: {cells[0]} is listed in tiers {tiers[k]} and {tier}")
        tiers[k] = tier
    return tiers


def build(names: Sequence[str], n_lags: int, *, forbid: str = "", require: str = "",
          tiers: str = "") -> Priors | None:
    """The masks for D = len(names) variables and L = n_lags lags; None when no file is given."""
    if not (forbid or require or tiers):
        return None
    d = len(names)
    forbidden = read_edges(forbid, names, n_lags, flag="--forbid") if forbid else []
    required = read_edges(require, names, n_lags, flag="--require") if require else []
    tier = read_tiers(tiers, names) if tiers else np.full(d, -1, np.int64)
    allowed_AxD = np.ones((d + n_lags * d, d), bool)
    allowed_AxD[np.arange(d), np.arange(d)] = False
    # Contemporaneous i -> j is closed when i sits in a later tier than j (both listed).
    listed = tier >= 0
    allowed_AxD[:d] &= ~(listed[:, None] & listed[None, :] & (tier[:, None] > tier[None, :]))
    by_tiers = ~allowed_AxD.copy()
    for e in forbidden:
        allowed_AxD[d * e.lag + e.cause, e.effect] = False
    required_AxD = np.zeros_like(allowed_AxD)
    forbid_at = {(e.cause, e.effect, e.lag): e.where for e in forbidden}
    for e in required:
        shown = _edge_name(names, e)
        if (e.cause, e.effect, e.lag) in forbid_at:
            raise InputError(f"{e.where}: {shown} is required, but {forbid_at[e.cause, e.effect, e.lag]} "
                             "forbids it; remove it from one of the files")
        if by_tiers[d * e.lag + e.cause, e.effect]:
            raise InputError(f"{e.where}: {shown} is required, but {tiers} puts {names[e.cause]} in tier "
                             f"{tier[e.cause]}, after {names[e.effect]} in tier {tier[e.effect]}; no edge may "
                             "go from a later tier to an earlier one")
        required_AxD[d * e.lag + e.cause, e.effect] = True
    cycle = find_cycle(required_AxD[:d])
    if cycle is not None:
        shown = " -> ".join(str(names[k]) for k in cycle + cycle[:1])
        raise InputError(f"{require}: the required contemporaneous edges form a cycle ({shown}); "
                         "a causal graph has none, remove one of them")
    return Priors(allowed_AxD, required_AxD, len(forbidden), len(required), len(set(tier[listed].tolist())))


def _edge_name(names: Sequence[str], e: Edge) -> str:
    edge = f"{names[e.cause]} -> {names[e.effect]}"
    return edge if e.lag == 0 else f"{edge} at lag {e.lag}"


def from_config(data_cfg, names: Sequence[str], n_lags: int) -> Priors | None:
    """`build` from a DataConfig's forbid / require / tiers paths."""
    return build(names, n_lags, forbid=data_cfg.forbid, require=data_cfg.require, tiers=data_cfg.tiers)


def lag_masks(allowed_AxD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an (D + L*D, D) mask into the (D, D) contemporaneous and (L, D, D) lagged masks."""
    d = allowed_AxD.shape[1]
    return allowed_AxD[:d], allowed_AxD[d:].reshape(-1, d, d)
