"""Scores of one method's graph against the truth, and medians across seeds.

Every method is scored by `jaxcausal.cpdag.compare` (DAG F1 as NOTEARS' count_accuracy with an
undirected edge on the true skeleton a hit, strict F1, CPDAG-SHD, skeleton F1, edge counts); the
lag-1 F1 of time series is computed here, the autoregressive diagonal included.
"""
from __future__ import annotations

import numpy as np

METRICS = ("f1", "strict_f1", "cpdag_shd", "shd", "skeleton_f1", "precision", "recall", "edge_count",
           "undirected_count", "lagged_f1", "wall_s", "fit_s")


def lagged_f1(*, pred: np.ndarray, true: np.ndarray) -> float:
    """F1 of the lag-1 edges (D, D), diagonal (autoregressive) entries included."""
    pred, true = np.asarray(pred) != 0, np.asarray(true) != 0
    tp = int((pred & true).sum())
    return 2.0 * tp / max(int(pred.sum() + true.sum()), 1)


def score(*, pred: np.ndarray, true: np.ndarray, pred_lagged=None, true_lagged=None) -> dict:
    """compare()'s metrics of pred (D, D) PDAG against the true DAG, plus lagged_f1 for series."""
    from jaxcausal.cpdag import compare, compare_without_cpdag
    kw = {}
    if true_lagged is not None:
        kw["true_lagged"] = np.asarray(true_lagged)[None]
        if pred_lagged is not None:
            kw["pred_lagged"] = np.asarray(pred_lagged)[None]
    try:
        out = compare(pred=pred, true=true, **kw)
    except ValueError as err:  # a cyclic truth (Sachs' consensus) or a cyclic directed output
        out = dict(compare_without_cpdag(pred=pred, true=true), score_note=str(err)[:200])
    out = {k: v if v is None or isinstance(v, str) else float(v) if isinstance(v, float) else int(v)
           for k, v in out.items()}
    if true_lagged is not None:
        out["lagged_f1"] = lagged_f1(pred=pred_lagged, true=true_lagged) if pred_lagged is not None else None
    return out


def model_label(model) -> str:
    """summary.json's `model` entry in a few words: noise/mechanism (directions)."""
    if isinstance(model, dict):
        return f"{model.get('noise')}/{model.get('mechanism')} ({model.get('directions')})"
    return str(model)


def medians(records: list[dict]) -> list[dict]:
    """One row per (case, method): the median of each metric over its seeds (ok runs only)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["case"], r["method"]), []).append(r)
    rows = []
    for (case, method), rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok" and "f1" in r]
        row = {"case": case, "method": method, "seeds": [r["seed"] for r in rs], "ok_runs": len(ok),
               "true_edges": rs[0].get("true_edges"), "status": "ok" if ok else rs[0].get("status")}
        for k in METRICS:
            values = [r[k] for r in ok if r.get(k) is not None]
            if values:
                row[k] = float(np.median(values))
        models = sorted({model_label(r["model"]) for r in ok if r.get("model") is not None})
        if models:
            row["model"] = models
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per case and method."""
    head = ("| case | method | F1 | strict F1 | CPDAG-SHD | SHD | skeleton F1 | edges (true) | undirected "
            "| lag-1 F1 | wall s |")
    lines = [head, "|" + "---|" * 11]
    fmt = lambda r, k, spec=".2f": format(r[k], spec) if r.get(k) is not None else "—"  # noqa: E731
    for r in rows:
        if r.get("ok_runs", 0) == 0:
            lines.append(f"| {r['case']} | {r['method']} | {r.get('status')} |" + " |" * 8 + f" {fmt(r, 'wall_s', '.1f')} |")
            continue
        method = r["method"] + (f" [{', '.join(r['model'])}]" if r.get("model") else "")
        lines.append(f"| {r['case']} | {method} | {fmt(r, 'f1')} | {fmt(r, 'strict_f1')} | "
                     f"{fmt(r, 'cpdag_shd', '.0f')} | {fmt(r, 'shd', '.0f')} | {fmt(r, 'skeleton_f1')} | {fmt(r, 'edge_count', '.0f')} "
                     f"({r['true_edges']}) | {fmt(r, 'undirected_count', '.0f')} | {fmt(r, 'lagged_f1')} | "
                     f"{fmt(r, 'wall_s', '.1f')} |")
    return "\n".join(lines)
