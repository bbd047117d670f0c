"""Loading data (.npz / .npy / .csv) and ground-truth graphs, refusing bad input at the edge.

Every failure is an InputError whose one-line message names the file, the problem and the fix.
"""

from __future__ import annotations

import contextlib
import csv
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from jaxcausal.data import memory
from jaxcausal.data.columns import Selection, select_array, time_order
from jaxcausal.data.dataset import Dataset, default_names, fold_missing
from jaxcausal.graphs import find_cycle
from jaxcausal.errors import InputError

DATA_SUFFIXES = (".npz", ".npy", ".csv")
TRUTH_SUFFIXES = (".npy", ".csv", ".npz")
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})  # compared lower-cased


def load_data(path: str | os.PathLike, *, window: int | None = None, stride: int | None = None,
              columns: str | Sequence[str] | None = None, drop: str | Sequence[str] | None = None,
              time_col: str | None = None) -> Dataset:
    """Load X (N, D) static or (N, T, D) windows; optional mask, adjacency and names from .npz.

    window / stride (None or 0 = as stored / = window) cut a 2-D file whose rows are time steps
    into windows (N, window, D); windows overlap when stride < window, which leaks between a
    window-level train/validation split. NaN/Inf (and mask == 0) become missing entries.
    columns / drop (comma-separated names or sequences) choose the variables; time_col sorts the
    rows by that column (numbers, or ISO dates in a CSV) and leaves it out (see data/columns.py).
    """
    path, suffix = _existing_file(path, DATA_SUFFIXES, "data")
    selection = Selection.from_flags(columns, drop, time_col)
    with _reading(path, "data"):
        return _load_data(path, suffix, window, stride, selection)


def _load_data(path: str, suffix: str, window: int | None, stride: int | None, selection: Selection) -> Dataset:
    names, mask, adjacency = None, None, None
    if suffix == ".npz":
        x, mask, adjacency, names = _read_npz(path)
    elif suffix == ".npy":
        x = _read_npy(path, "X")
    else:
        x, names = _read_data_csv(path, selection)
    x, mask = _check_x(path, x, mask)
    names = default_names(x.shape[-1]) if names is None else names
    if selection.active and suffix != ".csv":  # the CSV reader selects before parsing numbers
        x, mask, adjacency, names = select_array(path, x, mask, adjacency, names, selection)
    if x.shape[-1] < 2:
        raise InputError(f"{path}: X has {x.shape[-1]} variable ({', '.join(names)}); need at least 2 variables "
                         "to learn a graph (check --columns/--drop, or that the file is comma-separated)")
    missing = int((~np.isfinite(x) if mask is None else ~np.isfinite(x) | ~mask).sum())
    rows = rows_unused = None
    if window or stride:
        rows = x.shape[0]
        x, mask = _cut_windows(path, x, mask, window, stride)
        covered = np.zeros(rows, bool)
        covered[(np.arange(x.shape[0]) * (stride or window))[:, None] + np.arange(window)] = True
        rows_unused = int(rows - covered.sum())
    if x.ndim == 2:
        x, mask = x[:, None, :], (None if mask is None else mask[:, None, :])
    x32, mask32 = fold_missing(x, mask)
    _check_columns(path, x32, mask32, names)
    truth, warnings = (None, []) if adjacency is None else truth_from_matrix(path, adjacency, names)
    return Dataset(x=x32, mask=mask32, names=names, truth=truth, source=path, warnings=tuple(warnings),
                   rows=rows, rows_unused=rows_unused or 0, missing_cells=missing)


def load_truth(path: str | os.PathLike, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Ground truth (D, D) int8 ([i, j] = 1 means i -> j) for the data's variables, plus warnings.

    Accepts a D x D matrix (.npy, .npz key 'adjacency', .csv with or without a header of names)
    or an edge-list .csv with header `cause,effect` (extra columns such as weight are ignored).
    """
    path, suffix = _existing_file(path, TRUTH_SUFFIXES, "truth")
    with _reading(path, "truth"):
        return _load_truth(path, suffix, tuple(names))


def _load_truth(path: str, suffix: str, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    if suffix == ".npy":
        matrix = _read_npy(path, "the ground-truth matrix")
    elif suffix == ".npz":
        with _open_npz(path) as archive:
            matrix = _read_npz_key(path, archive, "adjacency", required=True)
    else:
        rows = read_csv_rows(path)
        if not rows:
            raise InputError(f"{path}: truth file has no rows; give a D x D 0/1 matrix or a cause,effect edge list")
        if [cell.lower() for cell in rows[0][1][:2]] == ["cause", "effect"]:
            matrix = _edge_list_matrix(path, rows[1:], names)
        else:
            matrix = _truth_csv_matrix(path, rows, names)
    return truth_from_matrix(path, matrix, names)


def truth_from_matrix(path: str, matrix: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Validate a (D, D) ground-truth matrix; binarise (value != 0), drop self-loops; warn on each.

    Returns (truth (D, D) int8 0/1, warnings). Shared by every truth source, so all behave alike.
    """
    d = len(names)
    matrix = np.asarray(matrix)
    if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == bool) or np.iscomplexobj(matrix):
        raise InputError(f"{path}: ground truth has non-numeric dtype {matrix.dtype}; give a {d} x {d} 0/1 matrix")
    if matrix.shape != (d, d):
        raise InputError(f"{path}: ground truth has shape {matrix.shape} but the data has {d} variables; "
                         f"give a {d} x {d} 0/1 matrix")
    if not np.isfinite(matrix).all():
        raise InputError(f"{path}: ground truth contains NaN or Inf; give a {d} x {d} 0/1 matrix")
    warnings = []
    if not np.isin(matrix, (0, 1)).all():
        example = matrix[~np.isin(matrix, (0, 1))].flat[0]
        warnings.append(f"{path}: ground truth is weighted (values other than 0/1, e.g. {example:g}); "
                        "binarised as value != 0")
    truth = (matrix != 0).astype(np.int8)
    loops = np.flatnonzero(np.diag(truth))
    if len(loops):
        warnings.append(f"{path}: ground truth has self-loops on {', '.join(names[j] for j in loops)}; dropped")
        np.fill_diagonal(truth, 0)
    cycle = find_cycle(truth)
    if cycle is not None:
        shown = " -> ".join(names[j] for j in cycle + cycle[:1])
        warnings.append(f"{path}: ground truth has a cycle ({shown}); scoring directed edges as given")
    if not truth.any():
        warnings.append(f"{path}: ground truth has no edges; precision, recall and F1 will be 0")
    return truth, warnings


@contextlib.contextmanager
def _reading(path: str, what: str) -> Iterator[None]:
    """Turn any unexpected failure while reading `path` into one InputError line naming the file.

    The specific checks above name the exact problem; this is the net under them (a corrupt
    archive member, an unreadable file, a NumPy quirk), so a user never sees a traceback.
    """
    try:
        yield
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: {what} file does not fit in memory; use a smaller file or fewer windows") \
            from None
    except OSError as err:
        raise InputError(f"{path}: cannot read {what} file ({err.strerror or err}); check the file and its "
                         "permissions") from None
    except Exception as err:  # noqa: BLE001 - the last net: one line, never a traceback
        detail = (str(err).splitlines() or [""])[0][:200]
        raise InputError(f"{path}: cannot read {what} file ({type(err).__name__}: {detail}); "
                         f"re-save it as {', '.join(DATA_SUFFIXES if what == 'data' else TRUTH_SUFFIXES)}") \
            from None


def _existing_file(path, suffixes: tuple[str, ...], what: str) -> tuple[str, str]:
    """Return (path as str, lower-case suffix) of an existing, non-empty file of a known type."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a {what} file; give the path of a file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: {what} file not found; check the path")
    if suffix not in suffixes:
        raise InputError(f"{path}: unknown {what} file type {suffix or '(none)'!r}; use one of {', '.join(suffixes)}")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: {what} file is empty")
    return path, suffix


def _read_npy(path: str, what: str) -> np.ndarray:
    memory.check_npy_file(path, what)  # from the header, before a byte of the array is allocated
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):  # object arrays (never unpickled), foreign or truncated files
        raise InputError(f"{path}: cannot read {what}: not a NumPy .npy file of numbers; "
                         "save it with np.save(path, array) from a numeric array") from None


def _open_npz(path: str):
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):  # not a zip archive, or truncated
        raise InputError(f"{path}: not a NumPy .npz archive (corrupt or truncated?); "
                         "save it with np.savez(path, X=...)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # an .npy saved under an .npz name
        raise InputError(f"{path}: is a single .npy array, not an .npz archive; rename it to .npy "
                         "or save it with np.savez(path, X=...)")
    return archive


def _read_npz(path: str):
    """Return (X, mask or None, adjacency or None, names or None) of an .npz data file."""
    with _open_npz(path) as archive:
        x = _read_npz_key(path, archive, "X", required=True)
        mask = _read_npz_key(path, archive, "mask")
        adjacency = _read_npz_key(path, archive, "adjacency")
        names = _read_npz_key(path, archive, "names")
    if names is not None:
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise InputError(f"{path}: 'names' must be a 1-D string array, got {names.dtype} {names.shape}; "
                             "save np.array(names, dtype=str)")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
        d = x.shape[-1] if x.ndim else 0
        if len(names) != d or len(set(names)) != len(names) or "" in names:
            raise InputError(f"{path}: 'names' must hold {d} distinct non-empty names (one per column of X), "
                             f"got {len(names)}")
    return x, mask, adjacency, names


def _read_npz_key(path: str, archive, key: str, required: bool = False) -> np.ndarray | None:
    if key not in archive.files:
        if required:
            raise InputError(f"{path}: no array '{key}' in the .npz (found: {', '.join(archive.files) or 'none'}); "
                             f"save it with np.savez(path, {key}=...)")
        return None
    memory.check_npz_member(path, archive, key)
    try:
        return archive[key]
    except ValueError as err:
        if "pickle" not in str(err):
            raise InputError(f"{path}: array '{key}' in the .npz cannot be read ({err}); re-save the file") \
                from None
        # object arrays need pickle, which we never enable on user files
        raise InputError(f"{path}: array '{key}' holds Python objects; save it as a numeric "
                         "(or, for names, string) array") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:  # a damaged member of the archive
        raise InputError(f"{path}: array '{key}' in the .npz is corrupt ({type(err).__name__}: "
                         f"{(str(err).splitlines() or [''])[0][:120]}); re-save the file") from None


def _check_x(path: str, x: np.ndarray, mask: np.ndarray | None):
    """Validate X's dtype and rank and the mask; return (X float64, mask bool or None)."""
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InputError(f"{path}: X has non-numeric dtype {x.dtype}; save a float or integer array")
    if x.ndim not in (2, 3):
        raise InputError(f"{path}: X has shape {x.shape}, rank {x.ndim}; give (N, D) samples or "
                         "(N, T, D) windows")
    if 0 in x.shape:
        raise InputError(f"{path}: X has shape {x.shape} with no data; give at least one sample of one variable")
    x = x.astype(np.float64)  # statistics and range checks in float64: raw values reach 1e6 and more
    finite = np.isfinite(x)
    if (np.abs(x[finite]) > np.finfo(np.float32).max).any():
        raise InputError(f"{path}: X has values beyond the float32 range; rescale the data")
    if mask is None:
        return x, None
    if mask.shape != x.shape:
        raise InputError(f"{path}: mask has shape {mask.shape} but X has shape {x.shape}; give a mask like X")
    if not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool) or not np.isin(mask, (0, 1)).all():
        raise InputError(f"{path}: mask must hold only 0 (missing) and 1 (observed); fix its values")
    return x, mask.astype(bool)


def _cut_windows(path: str, x: np.ndarray, mask, window, stride):
    """Cut a (L, D) series into (N, window, D) windows starting every `stride` rows."""
    if x.ndim != 2:
        raise InputError(f"{path}: X is already windowed with shape {x.shape}; drop --window/--stride")
    if not window:
        raise InputError(f"{path}: --stride needs --window; give the window length too")
    stride = stride or window
    if window < 1 or stride < 1:
        raise InputError(f"{path}: window and stride must be >= 1, got {window} and {stride}")
    length = x.shape[0]
    if window > length:
        raise InputError(f"{path}: window {window} is longer than the series ({length} rows); "
                         "use a smaller --window")
    starts = np.arange(0, length - window + 1, stride)
    take = starts[:, None] + np.arange(window)  # (N, window) row indices
    return x[take], (None if mask is None else mask[take])


def _check_columns(path: str, x: np.ndarray, mask: np.ndarray, names: Sequence[str]) -> None:
    """Refuse columns with no observed value or zero variance over observed values."""
    observed = mask.reshape(-1, x.shape[-1]).astype(bool)
    values = x.reshape(observed.shape).astype(np.float64)
    count = observed.sum(axis=0)
    empty = [names[j] for j in np.flatnonzero(count == 0)]
    if empty:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, empty))} have no observed values; drop them")
    # max == min is exact, unlike a variance that rounding can leave at 1e-17.
    highest = np.where(observed, values, -np.inf).max(axis=0)
    lowest = np.where(observed, values, np.inf).min(axis=0)
    constant = [names[j] for j in np.flatnonzero(highest == lowest)]
    if constant:
        raise InputError(f"{path}: column(s) {', '.join(map(repr, constant))} are constant over their observed "
                         "values (zero variance, nothing to learn from); drop them")


def read_csv_rows(path: str) -> list[tuple[int, list[str]]]:
    """Non-blank rows as (line number, stripped cells); shared by the data, truth and prior-knowledge readers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, [cell.strip() for cell in row]) for row in reader
                    if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read as a UTF-8 comma-separated file ({err}); re-save it as CSV") from None


def _numeric_rows(path: str, rows, columns: Sequence[str], *, missing_ok: bool) -> np.ndarray:
    """Parse rows of cells into a float64 (len(rows), len(columns)) array, naming any bad cell."""
    table = np.empty((len(rows), len(columns)))
    for r, (line, cells) in enumerate(rows):
        if len(cells) != len(columns):
            raise InputError(f"{path}: line {line} has {len(cells)} cells, expected {len(columns)}; "
                             "make every row as long as the first")
        try:
            table[r] = [float(cell) for cell in cells]
            continue
        except ValueError:
            pass  # slow path: find the culprit, or the missing-value tokens
        for c, cell in enumerate(cells):
            if missing_ok and cell.lower() in MISSING_TOKENS:
                table[r, c] = np.nan
                continue
            try:
                table[r, c] = float(cell)
            except ValueError:
                fix = (f"fix it, leave the cell empty to mark it missing, or leave the column out with "
                       f"--drop {columns[c]}") if missing_ok else "use 0 or 1"
                raise InputError(f"{path}: line {line}, column '{columns[c]}': {cell!r} is not a number; {fix}") \
                    from None
    return table


def _read_data_csv(path: str, selection: Selection) -> tuple[np.ndarray, tuple[str, ...]]:
    rows = read_csv_rows(path)
    if not rows:
        raise InputError(f"{path}: has only blank lines; give a header of variable names and one row per sample")
    (_, header), body = rows[0], rows[1:]
    if len(header) == 1 and any(sep in header[0] for sep in ";\t"):
        raise InputError(f"{path}: the header looks separated by ';' or tabs; save the file comma-separated")
    if all(_is_number(cell) for cell in header):
        raise InputError(f"{path}: the first line holds numbers, not variable names; add a header line of names")
    if "" in header:
        raise InputError(f"{path}: header column {header.index('') + 1} has no name (an index column? "
                         "save without it, e.g. pandas index=False)")
    if len(set(header)) != len(header):
        repeated = sorted({name for name in header if header.count(name) > 1})
        raise InputError(f"{path}: header repeats the name(s) {', '.join(repeated)}; make names unique")
    if not body:
        raise InputError(f"{path}: has a header but no data rows")
    keep, time_index = selection.resolve(path, header) if selection.active else (list(range(len(header))), None)
    if selection.active:
        for line, cells in body:  # before picking cells, so a short row is named as such
            if len(cells) != len(header):
                raise InputError(f"{path}: line {line} has {len(cells)} cells, expected {len(header)}; "
                                 "make every row as long as the first")
        if time_index is not None:
            body = [body[r] for r in time_order(path, header[time_index], [(ln, c[time_index]) for ln, c in body])]
        body = [(line, [cells[j] for j in keep]) for line, cells in body]
    names = [header[j] for j in keep]
    return _numeric_rows(path, body, names, missing_ok=True), tuple(names)


def _truth_csv_matrix(path: str, rows, names: tuple[str, ...]) -> np.ndarray:
    """A D x D matrix CSV: no header, a header of names, or a header plus a leading row-label column."""
    header = rows[0][1]
    if all(_is_number(cell) for cell in header):
        return _numeric_rows(path, rows, [str(c + 1) for c in range(len(header))], missing_ok=False)
    labelled = header[0] == "" or (header[0] not in names and len(header) == len(names) + 1)
    columns = header[1:] if labelled else header
    unknown = [name for name in columns if name not in names]
    if unknown or len(columns) != len(names) or len(set(columns)) != len(columns):
        raise InputError(f"{path}: truth header {columns} does not list the data's {len(names)} variables "
                         f"({', '.join(names)}) once each; unknown: {', '.join(unknown) or 'none'}")
    body = rows[1:]
    if labelled:
        for (line, cells), expected in zip(body, columns):
            if cells[0] != expected:
                raise InputError(f"{path}: line {line} is labelled {cells[0]!r}, expected {expected!r}; "
                                 "order the row labels like the header")
        body = [(line, cells[1:]) for line, cells in body]
    matrix = _numeric_rows(path, body, columns, missing_ok=False)
    if matrix.shape != (len(columns), len(columns)):
        return matrix  # truth_from_matrix reports the shape
    order = [columns.index(name) for name in names]  # rows and columns follow the header's order
    return matrix[np.ix_(order, order)]


def _edge_list_matrix(path: str, rows, names: tuple[str, ...]) -> np.ndarray:
    index = {name: j for j, name in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int8)
    unknown = []
    for line, cells in rows:
        if len(cells) < 2:
            raise InputError(f"{path}: line {line} needs a cause and an effect, got {cells}")
        cause, effect = cells[:2]
        unknown += [name for name in (cause, effect) if name not in index and name not in unknown]
        if not unknown:
            matrix[index[cause], index[effect]] = 1
    if unknown:
        raise InputError(f"{path}: edge list names {', '.join(map(repr, unknown))} that are not variables of the "
                         f"data ({', '.join(names)}); fix the names")
    return matrix


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False
