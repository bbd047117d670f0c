"""Figures of a run: the learned graph and the training curves (matplotlib, the `plot` extra).

With a `path`, a figure is drawn on matplotlib's Agg canvas and saved, without pyplot, so the
process-wide backend (a notebook's inline display, say) is left alone. Without a path, pyplot
makes the figure so that a notebook or an interactive session shows it.
"""
from __future__ import annotations

import math

import numpy as np

INSTALL_HINT = 'plots need matplotlib: pip install "jaxcausal[plot]"'
NODE_RADIUS = 0.09  # in layout units: nodes sit on the unit circle
LAG_BEND = 0.25  # lagged edges curve off the straight contemporaneous ones
DIRECTED, UNDIRECTED, LAGGED = "#1f4e79", "#7f7f7f", "#c55a11"


def _figure(path, size):
    """A new Figure: on an Agg canvas when it is to be saved to `path`, else from pyplot."""
    try:
        if path is not None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
            fig = Figure(figsize=size)
            FigureCanvasAgg(fig)
            return fig
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return plt.figure(figsize=size)


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120)  # fixed margins: a "tight" bounding box costs a second full draw
    return fig


def circular_layout(n: int) -> np.ndarray:
    """(n, 2) node positions on the unit circle, the first at the top, then clockwise."""
    angles = math.pi / 2 - 2 * math.pi * np.arange(n) / max(n, 1)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _width(weight, largest: float) -> float:
    return 0.6 + 3.4 * abs(weight or 0.0) / largest


def plot_graph(edges: list[dict], names, path=None, *, lagged: bool = True, title: str | None = None):
    """Draw the graph on a circle: arrows for directed edges, plain lines for undirected ones,
    line width ~ |weight|; lagged edges (with `lagged`) dashed and curved. Returns the Figure."""
    names = list(names)
    d = len(names)
    size = 3.0 + 0.35 * min(d, 30)
    fig = _figure(path, (size, size))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.93))  # the title sits in the top 7%
    pos = dict(zip(names, circular_layout(d)))
    shown = [e for e in edges if lagged or e["lag"] == 0]
    largest = max([abs(e["weight"]) for e in shown if e["weight"] is not None] + [1e-12])
    label_weights = len(shown) <= 30  # labels on a dense graph would hide the edges
    for e in shown:
        a, b = pos[e["cause"]], pos[e["effect"]]
        width = _width(e["weight"], largest)
        if e["lag"] and e["cause"] == e["effect"]:  # a variable's own past: a small dashed loop outside it
            centre = a * (1 + 1.6 * NODE_RADIUS)
            ax.add_patch(_circle(centre, 0.7 * NODE_RADIUS, LAGGED, width))
            continue
        style = {"color": LAGGED if e["lag"] else DIRECTED if e["orientation"] == "directed" else UNDIRECTED,
                 "lw": width, "linestyle": "--" if e["lag"] else "-",
                 "shrinkA": 0, "shrinkB": 0, "connectionstyle": f"arc3,rad={LAG_BEND if e['lag'] else 0.0}",
                 "arrowstyle": "-|>" if e["orientation"] == "directed" else "-", "mutation_scale": 12}
        start, end = _trim(a, b)
        ax.annotate("", xy=end, xytext=start, arrowprops=style, zorder=1)
        if label_weights and e["weight"] is not None:
            # arc3's quadratic Bezier passes rad/2 * |end - start| off the chord at its middle
            mid = (start + end) / 2 + (_normal(a, b) * LAG_BEND / 2 * np.linalg.norm(end - start) if e["lag"] else 0)
            text = f"{e['weight']:.2g}" + (f" (lag {e['lag']})" if e["lag"] else "")
            ax.text(*mid, text, fontsize=7, ha="center", va="center", color=style["color"],
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}, zorder=2)
    for name, (x, y) in pos.items():
        ax.add_patch(_node((x, y)))
        ax.text(x, y, name, ha="center", va="center", fontsize=8 if len(name) <= 4 else 6, zorder=4)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    _legend(ax, shown)
    n_contemporaneous = sum(1 for e in shown if e["lag"] == 0)
    ax.set_title(title or f"{d} variables, {n_contemporaneous} edges"
                 + (f", {len(shown) - n_contemporaneous} lagged" if len(shown) > n_contemporaneous else ""))
    return _finish(fig, path)


def _trim(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segment a -> b cut back by the node radius at both ends, so arrowheads stay visible."""
    step = (b - a) / max(np.linalg.norm(b - a), 1e-9) * NODE_RADIUS
    return a + step, b - step


def _normal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    v = b - a
    return np.array([v[1], -v[0]]) / max(np.linalg.norm(v), 1e-9)


def _node(xy):
    from matplotlib.patches import Circle
    return Circle(xy, NODE_RADIUS, facecolor="#dde8f3", edgecolor=DIRECTED, lw=1.0, zorder=3)


def _circle(xy, radius, color, width):
    from matplotlib.patches import Circle
    return Circle(xy, radius, fill=False, edgecolor=color, lw=width, linestyle="--", zorder=1)


def _legend(ax, shown: list[dict]) -> None:
    from matplotlib.lines import Line2D
    kinds = [("directed", DIRECTED, "-", any(e["orientation"] == "directed" and not e["lag"] for e in shown)),
             ("undirected", UNDIRECTED, "-", any(e["orientation"] == "undirected" and not e["lag"] for e in shown)),
             ("lagged", LAGGED, "--", any(e["lag"] for e in shown))]
    handles = [Line2D([], [], color=c, linestyle=ls, label=label) for label, c, ls, present in kinds if present]
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)


def _series(rows: list[dict], key: str) -> tuple[list, list]:
    """(epochs, values) of one log field, leaving out epochs where it is missing or not finite."""
    pairs = [(r.get("epoch", k + 1), r.get(key)) for k, r in enumerate(rows)]
    pairs = [(e, float(v)) for e, v in pairs if isinstance(v, (int, float)) and math.isfinite(v)]
    return [e for e, _ in pairs], [v for _, v in pairs]


def plot_training(rows: list[dict], path=None, *, best_epoch: int | None = None):
    """Loss (train, val), acyclicity h and edge count per epoch from training_log.jsonl rows."""
    fig = _figure(path, (11, 3.2))
    from matplotlib.ticker import MaxNLocator
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("acyclicity h", [("h", "h")]),
              ("edges", [("edge_count", "learned"), ("true_edge_count", "true")])]
    for k, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for key, label in keys:
            epochs, values = _series(rows, key)
            if epochs:
                ax.plot(epochs, values, label=label, linestyle=":" if key == "true_edge_count" else "-")
        if title.startswith("acyclicity"):
            _, h = _series(rows, "h")
            if h and min(h) > 0:  # h spans orders of magnitude as the DAG constraint tightens
                ax.set_yscale("log")
        if best_epoch:
            ax.axvline(best_epoch, color="0.6", linestyle="--", lw=0.8, label=f"best epoch {best_epoch}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
    if not rows:
        fig.suptitle("no epochs logged")
    # Fixed margins: tight_layout measures every tick label, which took most of the drawing time.
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.89, wspace=0.25)
    return _finish(fig, path)
