"""Graph-recovery metrics against a ground-truth adjacency (F1, SHD, AUPRC over 21 thresholds; docs/method.md).

Conventions: `scores` and `truth` are (D, D); [i, j] is the edge i -> j. `truth` is read as
`truth != 0`. The diagonal is ignored everywhere (self-loops are never edges). All arguments are
keyword-only so truth and prediction cannot be swapped. `edge_metrics`, `threshold_table`,
`scale_scores` and `best_threshold_index` are pure jnp (jit- and vmap-able, e.g. over a
population of models); `auprc` is host-side numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# The 21 validation thresholds, applied to scores scaled by `scale_scores`.
THRESHOLDS = np.linspace(0.0, 1.0, 21)

METRIC_NAMES = ("tp", "fp", "precision", "recall", "f1", "shd", "edge_count", "true_edge_count")


def _off_diagonal(d: int) -> jax.Array:
    return ~jnp.eye(d, dtype=bool)


def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask, dtype=jnp.float32)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, 0 where den == 0 (without a NaN in either branch, so gradients stay clean)."""
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def edge_metrics(*, scores: jax.Array, truth: jax.Array, threshold: jax.Array | float) -> dict:
    """Metrics of the graph {i -> j : scores[i, j] > threshold, i != j} for ONE threshold.

    Args: scores (D, D) float; truth (D, D) 0/1 or bool; threshold scalar.
    Returns a dict of float32 scalars:
      tp: predicted edges present in truth with the same direction;
      fp: predicted edges that are not (edge_count - tp; a reversed edge is a false positive);
      precision = tp / edge_count, recall = tp / true_edge_count, f1 their harmonic mean
        (each 0 when its denominator is 0);
      shd: NOTEARS `count_accuracy` SHD = extra + missing + reversed, over unordered pairs
        {i, j}: extra = predicted in either direction but no true edge either way; missing =
        true edge either way but none predicted; reversed = predicted (i, j) with truth[j, i]
        and not truth[i, j] (a predicted 2-cycle on a true edge counts once, as reversed);
      edge_count, true_edge_count: number of predicted / true edges.
    """
    d = scores.shape[0]
    off = _off_diagonal(d)
    pred = (scores > threshold) & off
    true = (truth != 0) & off

    tp = _count(pred & true)
    edge_count = _count(pred)
    true_edge_count = _count(true)
    precision = _safe_ratio(tp, edge_count)
    recall = _safe_ratio(tp, true_edge_count)
    f1 = _safe_ratio(2.0 * precision * recall, precision + recall)

    pred_skeleton = pred | pred.T
    true_skeleton = true | true.T
    upper = jnp.triu(jnp.ones((d, d), dtype=bool), k=1)  # each unordered pair once
    extra = _count(pred_skeleton & ~true_skeleton & upper)
    missing = _count(true_skeleton & ~pred_skeleton & upper)
    reversed_ = _count(pred & true.T & ~true)
    return {
        "tp": tp,
        "fp": edge_count - tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "shd": extra + missing + reversed_,
        "edge_count": edge_count,
        "true_edge_count": true_edge_count,
    }


# vmap maps keyword arguments over axis 0, so the swept function takes positional arguments.
_table = jax.jit(
    jax.vmap(
        lambda scores, truth, threshold: edge_metrics(
            scores=scores, truth=truth, threshold=threshold
        ),
        in_axes=(None, None, 0),
    )
)


def threshold_table(*, scores: jax.Array, truth: jax.Array, thresholds=THRESHOLDS) -> dict:
    """`edge_metrics` at every threshold in one jitted, vmapped call.

    Args: scores (D, D), truth (D, D), thresholds (K,) (default: the 21 `THRESHOLDS`, meant for
    scores already passed through `scale_scores`). Returns a dict of (K,) float32 arrays.
    """
    return _table(scores, truth, jnp.asarray(thresholds, dtype=jnp.float32))


@jax.jit
def scale_scores(scores: jax.Array) -> jax.Array:
    """Edge scores scaled to [0, 1] so the fixed thresholds in [0, 1] apply to any model.

    (D, D) -> (D, D): takes magnitudes |scores| (so raw W works too), zeroes the diagonal and
    divides by the largest off-diagonal magnitude, so the strongest edge scores exactly 1. All-zero
    scores stay all zero. Threshold t then means "keep edges stronger than t x the strongest edge".
    """
    d = scores.shape[0]
    off_DxD = jnp.where(_off_diagonal(d), jnp.abs(scores), 0.0)
    largest = jnp.max(off_DxD)
    scaled_DxD = off_DxD / jnp.where(largest > 0, largest, 1.0)
    # XLA may divide via a reciprocal (x / x = 0.99999994): pin the strongest edge(s) to 1.
    return jnp.where((off_DxD >= largest) & (largest > 0), 1.0, scaled_DxD)


def best_threshold_index(f1: jax.Array) -> jax.Array:
    """Index of the best F1 along the last axis, (..., K) -> (...) int32.

    Ties go to the smallest index, i.e. the lowest threshold (thresholds ascending): of equally
    good graphs the one keeping the most edges. All-zero F1 (nothing recovered, or no true
    edges) therefore selects index 0. NaN never wins.
    """
    f1 = jnp.where(jnp.isnan(f1), -jnp.inf, f1)
    return jnp.argmax(f1, axis=-1).astype(jnp.int32)


def auprc(*, scores, truth) -> float:
    """Average precision of off-diagonal `scores` against off-diagonal `truth` (numpy, host).

    Same definition as sklearn `average_precision_score`: AP = sum_n (R_n - R_{n-1}) P_n over the
    distinct score values taken as thresholds in descending order (tied scores enter together),
    with R_0 = 0. Threshold-free and invariant to any monotone rescaling of the scores.
    Returns 0.0 when truth has no off-diagonal edge (AP is undefined there).
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth)
    off = ~np.eye(scores.shape[0], dtype=bool)
    y = truth[off] != 0
    s = scores[off]
    positives = int(y.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # Last index of each run of equal scores: a threshold admits a whole tie group at once.
    last_of_group = np.flatnonzero(np.append(np.diff(s) != 0, True))
    tp = np.cumsum(y)[last_of_group]
    predicted = last_of_group + 1
    precision = tp / predicted
    recall = tp / positives
    recall_step = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_step * precision))
