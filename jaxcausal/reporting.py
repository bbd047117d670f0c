"""What the user sees: the per-epoch console line, health warnings and strict JSON files."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np


def clean(value: Any) -> Any:
    """Make a value strict-JSON safe: numpy -> Python, NaN/Inf -> None, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps(value: Any, **kwargs) -> str:
    return json.dumps(clean(value), allow_nan=False, **kwargs)


def write_json(path: str, value: Any) -> None:
    """Write atomically: a crash mid-write never leaves a truncated file behind."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(dumps(value, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:  # a full or read-only disk: the old file stays, the partial one goes
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass
        raise


class JsonlLog:
    """Append-only per-epoch log, flushed and fsynced after every line.

    The file is opened for each line (once per epoch), so a write that fails on a full or
    read-only disk leaves no handle open, and at worst one cut-short line that a resume drops.
    """

    def __init__(self, path: str):
        self.path = path
        with open(path, "a"):  # fail here, before training, if the log cannot be created
            pass

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        pass  # nothing held between lines


def fmt(value, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def console_line(row: dict, epochs: int, best: bool) -> str:
    width = len(str(epochs))
    edges = f"{row['edge_count']}/{fmt(row['true_edge_count'], 'd', '?')}"
    parts = [
        f"Epoch {row['epoch']:>{max(width, 3)}}/{epochs}",
        f"Loss: {fmt(row['train_loss'], '.4f')}",
        f"Val F1: {fmt(row['val_f1'], '.4f')}",
        f"Val SHD: {fmt(row['val_shd'], '.1f')}",
        f"Edges: {edges}",
        f"Grad Clip: {fmt(None if row['grad_clip_ratio'] is None else 100 * row['grad_clip_ratio'], '.1f')}%",
        f"LR: {fmt(row['learning_rate'], '.2e')}",
        f"h: {fmt(row['h'], '.2e')}",
    ]
    line = " | ".join(parts)
    if row.get("nonfinite_steps"):
        line += f" | NONFINITE {row['nonfinite_steps']}"
    return line + (" | NEW BEST" if best else "")


HINTS = {
    "clip": "grad_clip_ratio > 50%: gradients too high -> lower --lr or raise --clip-norm",
    "edges": "edge_count 0: structure not learned -> lower --lambda-sparse / --lambda-acyclic",
    "f1": "val_f1 0: thresholding issue -> inspect the threshold table in summary.json",
    "flat": "train_loss flat for 10 epochs: learning stuck -> raise --lr or check the input scale",
    "threshold": "best_threshold >= 0.5: edges too small relative to the largest -> lower --lambda-sparse",
}


FLAT_EPOCHS = 10  # the train loss unchanged over the first this many epochs: learning is stuck


class HealthMonitor:
    """The design page's health table; each warning printed once, all kept for summary.json."""

    def __init__(self, stream=None, quiet: bool = False):
        self.seen: dict[str, int] = {}
        self.losses: list[float] = []
        self.stream = stream
        self.quiet = quiet

    def check(self, row: dict) -> list[str]:
        """The warnings `row` (one epoch of the log) newly fires. The graph checks wait for the
        acyclicity path's last stage (`eligible`): before it W is not yet a DAG and its edges are
        still forming, so a wide threshold or few edges there are expected, not a fault."""
        fired = []
        settled = row.get("eligible", True)
        if row["grad_clip_ratio"] is not None and row["grad_clip_ratio"] > 0.5 and row["epoch"] > 1:
            fired.append("clip")
        if row["edge_count"] == 0 and row["epoch"] > 2 and settled:
            fired.append("edges")
        if row["val_f1"] is not None and row["val_f1"] == 0 and row["epoch"] > 2 and settled:
            fired.append("f1")
        if row["best_threshold"] is not None and row["best_threshold"] >= 0.5 and settled:
            fired.append("threshold")
        if row["train_loss"] is not None:
            self.losses.append(row["train_loss"])
        # Stuck means no progress from the start; a loss that is flat after converging is what
        # early stopping is for, not a fault.
        if len(self.losses) == FLAT_EPOCHS:
            old, new = self.losses[0], self.losses[-1]
            if abs(new - old) <= 1e-6 * max(abs(old), 1e-12):
                fired.append("flat")
        new_warnings = [k for k in fired if k not in self.seen]
        for k in fired:
            self.seen.setdefault(k, row["epoch"])
        if not self.quiet:
            for k in new_warnings:
                print(f"WARNING (epoch {row['epoch']}): {HINTS[k]}", file=self.stream or sys.stderr)
        return new_warnings

    def verdicts(self) -> dict[str, Any]:
        return {k: {"first_epoch": self.seen.get(k), "hint": HINTS[k], "healthy": k not in self.seen}
                for k in HINTS}
