"""Choosing the variables of a data file: --columns, --drop and --time-col.

`--columns a,b,c` keeps those columns in that order, `--drop t,store` removes those, and
`--time-col t` sorts the rows by t (numbers or ISO dates) and then leaves t out of the variables.
A name the file does not have is refused with one line listing the columns it does have.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import numpy as np

from jaxcausal.errors import InputError

SHOWN_COLUMNS = 40  # the unknown-name message lists at most this many of the file's columns


def parse_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'a, b,c' or ['a', 'b', 'c'] -> ('a', 'b', 'c'); None or '' -> ()."""
    if not text:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(item.strip() for item in items if item.strip())


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which of a file's columns become variables (`keep`, in order) and which one orders the rows."""

    columns: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    time_col: str = ""

    @classmethod
    def from_flags(cls, columns=None, drop=None, time_col=None) -> Selection:
        return cls(parse_names(columns), parse_names(drop), (time_col or "").strip())

    @property
    def active(self) -> bool:
        return bool(self.columns or self.drop or self.time_col)

    def resolve(self, path: str, header: Sequence[str]) -> tuple[list[int], int | None]:
        """(indices of the kept columns in `header`, index of the time column or None)."""
        header = list(header)
        for flag, names in (("--columns", self.columns), ("--drop", self.drop)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise InputError(f"{path}: {flag} names {', '.join(repeated)} more than once; list each column once")
        asked = [*self.columns, *self.drop, *([self.time_col] if self.time_col else [])]
        unknown = [name for name in dict.fromkeys(asked) if name not in header]
        if unknown:
            shown = ", ".join(header[:SHOWN_COLUMNS]) + (f", ... ({len(header)} in all)"
                                                         if len(header) > SHOWN_COLUMNS else "")
            raise InputError(f"{path}: no column named {', '.join(map(repr, unknown))}; the file's columns are: "
                             f"{shown}")
        if self.time_col and self.time_col in self.columns:
            raise InputError(f"{path}: --time-col {self.time_col} is also in --columns; a time column orders "
                             "the rows and is not a variable, so leave it out of --columns")
        chosen = list(self.columns) or header
        keep = [header.index(name) for name in chosen if name not in self.drop and name != self.time_col]
        if not keep:
            raise InputError(f"{path}: --columns/--drop/--time-col leave no variables; keep at least 2 columns")
        return keep, (header.index(self.time_col) if self.time_col else None)


def time_order(path: str, column: str, cells: Sequence[tuple[int, str]]) -> np.ndarray:
    """The stable order of rows by their time cells: all numbers, or all ISO 8601 dates/times.

    cells: (line number, text) per row. Returns the row indices in time order, int64.
    """
    values = np.empty(len(cells))
    as_dates = False
    for r, (line, text) in enumerate(cells):
        if not as_dates:
            try:
                values[r] = float(text)
                if np.isnan(values[r]):
                    raise InputError(f"{path}: line {line}, time column '{column}' is empty or NaN; every row "
                                     "needs a time")
                continue
            except ValueError:
                if r:  # earlier rows were numbers: mixing numbers and dates has no order
                    raise InputError(f"{path}: line {line}, time column '{column}': {text!r} is not a number "
                                     "like the rows before it; use one format for the whole column") from None
                as_dates = True
        values[r] = _timestamp(path, column, line, text)
    return np.argsort(values, kind="stable")


def _timestamp(path: str, column: str, line: int, text: str) -> float:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{path}: line {line}, time column '{column}': {text!r} is neither a number nor an ISO "
                         "date (e.g. 2024-01-31 or 2024-01-31T12:00:00); fix the cell or choose another "
                         "--time-col") from None
    if moment.tzinfo is None:  # naive times are compared as given: read them as UTC
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def select_array(path: str, x: np.ndarray, mask: np.ndarray | None, adjacency: np.ndarray | None,
                 names: Sequence[str], selection: Selection):
    """Apply a selection to a loaded (N, D) or (N, T, D) array and what travels with it.

    Returns (x, mask, adjacency, names), the rows sorted by the time column for (N, D) data.
    """
    keep, time_index = selection.resolve(path, names)
    if time_index is not None:
        if x.ndim != 2:
            raise InputError(f"{path}: --time-col needs rows of time steps (N, D), but X has shape {x.shape}; "
                             "it is already windowed")
        times = x[:, time_index]
        if not np.isfinite(times).all() or (mask is not None and not mask[:, time_index].all()):
            raise InputError(f"{path}: time column '{names[time_index]}' has missing values; every row needs a time")
        order = np.argsort(times, kind="stable")
        x, mask = x[order], (None if mask is None else mask[order])
    x = x[..., keep]
    mask = None if mask is None else mask[..., keep]
    if adjacency is not None and np.shape(adjacency) == (len(names), len(names)):
        adjacency = np.asarray(adjacency)[np.ix_(keep, keep)]  # other shapes: truth_from_matrix names them
    return x, mask, adjacency, tuple(names[j] for j in keep)
