"""A run directory as edge records, and the graph in formats other tools read: DOT and GraphML.

Built only on the run-directory contract (README, "Reading the results"): graph.csv, graph_lagged.csv,
config.json, summary.json and training_log.jsonl, so it does not depend on the engine's internals.
An edge record is a dict {cause, effect, lag, weight, orientation, confidence}: lag 0 is
contemporaneous, orientation is "directed" (cause -> effect) or "undirected" (listed once),
confidence is None without `--bootstrap`. Nothing here imports matplotlib or networkx.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from jaxcausal.errors import InputError

ORIENTATIONS = ("directed", "undirected")
PLOT_HINT = 'pip install "jaxcausal[plot]" draws graph.png and training.png'
GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"
GO = "graph"  # RunVisuals' word to its child: graph.csv is written
DRAW_TIMEOUT_S = 300


def _number(text: str | None, where: str) -> float | None:
    """A CSV cell as a float; an empty cell is None (no value), anything else unreadable is an error."""
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None


def read_edges(path: str, *, lagged: bool = False) -> list[dict]:
    """Edge records of graph.csv (lag 0) or, with `lagged`, graph_lagged.csv; [] if the file is absent.

    A file from before the orientation/confidence columns reads as directed, confidence None.
    """
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    edges = []
    for k, row in enumerate(rows, start=2):
        where = f"{path}, line {k}"
        if not row.get("cause") or not row.get("effect"):
            raise InputError(f"{where}: every edge needs a cause and an effect")
        orientation = (row.get("orientation") or "directed").strip()
        if orientation not in ORIENTATIONS:
            raise InputError(f"{where}: orientation {orientation!r} is not one of {', '.join(ORIENTATIONS)}")
        lag = int(_number(row.get("lag"), where) or 0) if lagged else 0
        edges.append({"cause": row["cause"], "effect": row["effect"], "lag": lag,
                      "weight": _number(row.get("weight"), where), "orientation": orientation,
                      "confidence": _number(row.get("confidence"), where)})
    return edges


def read_json(path: str, default=None):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def read_log(path: str) -> list[dict]:
    """training_log.jsonl rows; a last line cut short by a kill is skipped."""
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def read_run(run_dir: str) -> dict:
    """{names, edges (contemporaneous, then lagged), n_lags, summary, config, log} of a run directory."""
    run_dir = os.fspath(run_dir)
    graph_csv = os.path.join(run_dir, "graph.csv")
    if not os.path.isfile(graph_csv):
        what = "is not a directory" if not os.path.isdir(run_dir) else "has no graph.csv"
        raise InputError(f"{run_dir}: {what}; give the run directory of a finished run (--out)")
    edges = read_edges(graph_csv) + read_edges(os.path.join(run_dir, "graph_lagged.csv"), lagged=True)
    config = read_json(os.path.join(run_dir, "config.json"), {})
    data = config.get("data") or {}
    names = [str(n) for n in data.get("names") or []]
    for e in edges:  # a foreign or hand-edited run without config.json: the variables its edges name
        for n in (e["cause"], e["effect"]):
            if n not in names:
                names.append(n)
    shape = data.get("shape") or []
    max_lag = ((config.get("config") or {}).get("model") or {}).get("max_lag", 0)
    window = shape[1] if len(shape) == 3 else 1
    n_lags = max([min(max_lag, window - 1)] + [e["lag"] for e in edges])
    return {"names": tuple(names), "edges": edges, "n_lags": int(max(n_lags, 0)),
            "summary": read_json(os.path.join(run_dir, "summary.json"), {}), "config": config,
            "log": read_log(os.path.join(run_dir, "training_log.jsonl"))}


def _dot_id(name: str) -> str:
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def to_dot(edges: list[dict], names, *, lagged: bool = True) -> str:
    """Graphviz DOT: solid arrows directed, no arrowhead undirected, dashed lagged; pen width ~ |weight|."""
    shown = [e for e in edges if lagged or e["lag"] == 0]
    largest = max([abs(e["weight"]) for e in shown if e["weight"] is not None] + [1e-12])
    lines = ["digraph jaxcausal {", "  node [shape=ellipse];"]
    lines += [f"  {_dot_id(n)};" for n in names]
    for e in shown:
        attrs = {"penwidth": f"{0.5 + 3.5 * abs(e['weight'] or 0.0) / largest:.2f}"}
        label = _fmt(e["weight"])
        if e["confidence"] is not None:
            label += f" ({e['confidence']:.2f})"
        if e["lag"]:
            attrs["style"] = "dashed"
            label += f" lag {e['lag']}"
        if e["orientation"] == "undirected":
            attrs["dir"] = "none"
        if label.strip():
            attrs["label"] = _dot_id(label.strip())
        rendered = ", ".join(f"{k}={v}" for k, v in attrs.items())
        lines.append(f"  {_dot_id(e['cause'])} -> {_dot_id(e['effect'])} [{rendered}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graphml_tree(edges: list[dict], names) -> ET.ElementTree:
    """GraphML (directed by default; an undirected edge carries directed="false"), with weight, lag,
    orientation and confidence as edge data; nodes are keyed by variable name."""
    ET.register_namespace("", GRAPHML_NS)
    root = ET.Element(f"{{{GRAPHML_NS}}}graphml")
    keys = (("weight", "double"), ("lag", "int"), ("orientation", "string"), ("confidence", "double"))
    for key, kind in keys:
        ET.SubElement(root, f"{{{GRAPHML_NS}}}key", {"id": key, "for": "edge", "attr.name": key, "attr.type": kind})
    graph = ET.SubElement(root, f"{{{GRAPHML_NS}}}graph", {"id": "G", "edgedefault": "directed"})
    for n in names:
        ET.SubElement(graph, f"{{{GRAPHML_NS}}}node", {"id": str(n)})
    for k, e in enumerate(edges):
        attrs = {"id": f"e{k}", "source": str(e["cause"]), "target": str(e["effect"])}
        if e["orientation"] == "undirected":
            attrs["directed"] = "false"
        edge = ET.SubElement(graph, f"{{{GRAPHML_NS}}}edge", attrs)
        for key, _ in keys:
            value = e[key]
            if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
                ET.SubElement(edge, f"{{{GRAPHML_NS}}}data", {"key": key}).text = str(value)
    ET.indent(root)
    return ET.ElementTree(root)


def write_graphml(path: str, edges: list[dict], names) -> None:
    graphml_tree(edges, names).write(os.fspath(path), encoding="utf-8", xml_declaration=True)


def write_run_visuals(run_dir: str, *, plots: bool = True, best_epoch: int | None = None) -> str | None:
    """Write graph.dot, and with `plots` graph.png and training.png when matplotlib is installed, into run_dir.

    Returns None when all were written, else one line for the console saying why not (matplotlib
    missing: how to get it). best_epoch: the line on the training curves (default: summary.json's).
    The run's own files are never changed.
    """
    run = read_run(run_dir)
    with open(os.path.join(run_dir, "graph.dot"), "w") as f:
        f.write(to_dot(run["edges"], run["names"]))
    if not plots:
        return None
    if importlib.util.find_spec("matplotlib") is None:
        return f"graph.dot written; {PLOT_HINT}"
    from jaxcausal import plotting
    try:
        plotting.plot_graph(run["edges"], run["names"], os.path.join(run_dir, "graph.png"))
        plotting.plot_training(run["log"], os.path.join(run_dir, "training.png"),
                               best_epoch=best_epoch or run["summary"].get("best_epoch"))
    except Exception as err:  # noqa: BLE001 - a figure must never fail a finished run; say why instead
        return f"graph.dot written; could not draw the plots ({type(err).__name__}: {err})"
    return None


class RunVisuals:
    """`write_run_visuals` with the figures drawn by a child process, which starts on training.png
    (the log is complete) while this process searches the graph: on 2 cores that hides matplotlib's
    import and drawing (~1.3 s). Use as a context manager; `finish()` once graph.csv is written."""

    def __init__(self, run_dir: str, best_epoch: int | None, *, plots: bool = True):
        self.run_dir, self.best_epoch, self.plots, self.child = run_dir, best_epoch, plots, None
        if not plots or importlib.util.find_spec("matplotlib") is None:
            return
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = f"import sys; sys.path.insert(0, {root!r}); from jaxcausal.formats import _draw_main; _draw_main()"
        try:
            self.child = subprocess.Popen([sys.executable, "-c", code, run_dir, str(best_epoch or 0)],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
        except OSError:
            self.child = None  # drawn in this process at finish()

    def finish(self) -> str | None:
        """graph.dot, then the figures: None when all were written, else one line saying why not."""
        if self.child is None:
            return write_run_visuals(self.run_dir, plots=self.plots, best_epoch=self.best_epoch)
        write_run_visuals(self.run_dir, plots=False)
        try:
            _, err = self.child.communicate(GO + "\n", timeout=DRAW_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.close()
            return f"graph.dot written; the plots were not drawn within {DRAW_TIMEOUT_S} s"
        if self.child.returncode != 0:
            why = (err.strip().splitlines() or [f"exit code {self.child.returncode}"])[-1]
            return f"graph.dot written; could not draw the plots ({why})"
        return None

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.communicate()

    def __enter__(self) -> "RunVisuals":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _draw_main() -> None:
    """The child of `RunVisuals`: training.png now, graph.png once the parent says graph.csv is written."""
    run_dir, best_epoch = sys.argv[1], int(sys.argv[2]) or None
    try:
        from jaxcausal import plotting
        plotting.plot_training(read_log(os.path.join(run_dir, "training_log.jsonl")),
                               os.path.join(run_dir, "training.png"), best_epoch=best_epoch)
        if sys.stdin.readline().strip() != GO:  # the parent ended without a graph
            return
        run = read_run(run_dir)
        plotting.plot_graph(run["edges"], run["names"], os.path.join(run_dir, "graph.png"))
    except Exception as err:  # noqa: BLE001 - reported by the parent as one line
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
