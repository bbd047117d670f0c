"""Metrics against plain numpy references (loops, NOTEARS count_accuracy, brute-force AP)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcausal import metrics
from jaxcausal.metrics import (
    METRIC_NAMES,
    THRESHOLDS,
    auprc,
    best_threshold_index,
    edge_metrics,
    scale_scores,
    threshold_table,
)


@pytest.fixture(autouse=True)
def strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


# ---------------------------------------------------------------- references


def notears_shd(pred, true):
    """SHD as in NOTEARS `count_accuracy` (flat indices and set differences)."""
    b_est, b_true = pred.astype(int), true.astype(int)
    predicted = np.flatnonzero(b_est == 1)
    cond = np.flatnonzero(b_true)
    cond_reversed = np.flatnonzero(b_true.T)
    extra = np.setdiff1d(predicted, cond, assume_unique=True)
    reverse = np.intersect1d(extra, cond_reversed, assume_unique=True)
    pred_lower = np.flatnonzero(np.tril(b_est + b_est.T))
    cond_lower = np.flatnonzero(np.tril(b_true + b_true.T))
    extra_lower = np.setdiff1d(pred_lower, cond_lower, assume_unique=True)
    missing_lower = np.setdiff1d(cond_lower, pred_lower, assume_unique=True)
    return len(extra_lower) + len(missing_lower) + len(reverse)


def reference_metrics(scores, truth, threshold):
    d = scores.shape[0]
    pred = np.zeros((d, d), dtype=bool)
    true = np.zeros((d, d), dtype=bool)
    for i in range(d):
        for j in range(d):
            if i != j:
                pred[i, j] = scores[i, j] > threshold
                true[i, j] = truth[i, j] != 0
    tp = sum(pred[i, j] and true[i, j] for i in range(d) for j in range(d))
    n_pred, n_true = int(pred.sum()), int(true.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": n_pred - tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "shd": notears_shd(pred, true),
        "edge_count": n_pred,
        "true_edge_count": n_true,
    }


def brute_force_average_precision(scores, truth):
    d = scores.shape[0]
    pairs = [(scores[i, j], truth[i, j] != 0) for i in range(d) for j in range(d) if i != j]
    positives = sum(y for _, y in pairs)
    ap, last_recall = 0.0, 0.0
    for t in sorted({s for s, _ in pairs}, reverse=True):
        kept = [y for s, y in pairs if s >= t]
        recall = sum(kept) / positives
        ap += (recall - last_recall) * sum(kept) / len(kept)
        last_recall = recall
    return ap


# ---------------------------------------------------------------- cases


def random_dag(rng, d, density):
    adj = np.triu(rng.random((d, d)) < density, k=1).astype(np.float32)
    perm = rng.permutation(d)
    return adj[np.ix_(perm, perm)]


def random_cases(seed, count):
    """(scores, truth) pairs: noisy truth, 2-cycles, reversed edges, empty truth/predictions."""
    rng = np.random.default_rng(seed)
    for case in range(count):
        d = int(rng.integers(2, 12))
        truth = random_dag(rng, d, rng.uniform(0.1, 0.6))
        if case % 7 == 0:
            truth[:] = 0  # no true edges
        kind = case % 5
        if kind == 0:
            scores = rng.random((d, d))  # arbitrary, includes many 2-cycles
        elif kind == 1:
            scores = np.clip(truth + rng.normal(0, 0.3, (d, d)), 0, None)
        elif kind == 2:
            scores = np.clip(truth.T + 0.5 * truth + rng.normal(0, 0.1, (d, d)), 0, None)
        elif kind == 3:
            scores = np.zeros((d, d))  # empty prediction
        else:
            scores = np.round(rng.random((d, d)), 1)  # ties at the thresholds
        np.fill_diagonal(scores, rng.random(d) + 1)  # diagonal must be ignored
        yield scores.astype(np.float32), truth


# ---------------------------------------------------------------- tests


def test_edge_metrics_match_reference():
    metric_fn = jax.jit(lambda s, t, th: edge_metrics(scores=s, truth=t, threshold=th))
    for scores, truth in random_cases(0, 120):
        for threshold in (0.0, 0.25, 0.5, 0.95):
            got = metric_fn(scores, truth, threshold)
            expected = reference_metrics(scores, truth, np.float32(threshold))
            assert set(got) == set(METRIC_NAMES)
            for name in METRIC_NAMES:
                assert got[name].dtype == jnp.float32 and got[name].shape == ()
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)


def test_shd_hand_cases():
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)  # 0 -> 1 -> 2

    def shd(pred):
        pred = np.asarray(pred, np.float32)
        return float(edge_metrics(scores=pred, truth=truth, threshold=0.5)["shd"])

    assert shd(truth) == 0
    assert shd(truth.T) == 2  # two reversed edges, one each
    assert shd(truth + truth.T) == 2  # 2-cycles on true edges count as reversed, once each
    assert shd(np.zeros((3, 3))) == 2  # two missing
    assert shd(truth + np.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]])) == 1  # one extra
    assert shd(np.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]])) == 3  # one extra, two missing


def test_threshold_table_equals_per_threshold_calls():
    single_fn = jax.jit(lambda s, t, th: edge_metrics(scores=s, truth=t, threshold=th))
    for scores, truth in random_cases(1, 12):
        scaled = scale_scores(scores)
        table = threshold_table(scores=scaled, truth=truth, thresholds=THRESHOLDS)
        assert all(table[name].shape == (21,) for name in METRIC_NAMES)
        table = {name: np.asarray(value) for name, value in table.items()}
        for k, threshold in enumerate(THRESHOLDS):
            single = single_fn(scaled, truth, np.float32(threshold))
            for name in METRIC_NAMES:
                # Counts agree exactly; ratios up to XLA's division rounding.
                np.testing.assert_allclose(table[name][k], single[name], rtol=1e-6)


def test_threshold_table_vmaps_over_a_population():
    cases = [c for c in random_cases(2, 40) if c[0].shape[0] == 6][:4]
    scores = np.stack([s for s, _ in cases])
    truth = np.stack([t for _, t in cases])
    population = jax.jit(
        jax.vmap(lambda s, t: threshold_table(scores=scale_scores(s), truth=t))
    )(scores, truth)
    for p, (s, t) in enumerate(cases):
        single = threshold_table(scores=scale_scores(s), truth=t)
        for name in METRIC_NAMES:
            np.testing.assert_array_equal(population[name][p], single[name])
    best = best_threshold_index(population["f1"])
    assert best.shape == (len(cases),)


def test_thresholds():
    assert THRESHOLDS.shape == (21,)
    np.testing.assert_allclose(THRESHOLDS, np.arange(21) / 20)


def test_scale_scores():
    rng = np.random.default_rng(3)
    for d in (2, 5, 9):
        raw = rng.random((d, d)).astype(np.float32) * 7
        scaled = np.asarray(scale_scores(raw))
        off = ~np.eye(d, dtype=bool)
        np.testing.assert_allclose(scaled[off], raw[off] / raw[off].max(), rtol=1e-6)
        assert np.all(np.diag(scaled) == 0) and scaled.max() == 1.0
        # Magnitudes: signed weights scale like their absolute values.
        np.testing.assert_allclose(scale_scores(-raw), scaled, rtol=1e-6)
    zeros = scale_scores(np.zeros((4, 4), np.float32))
    assert np.all(zeros == 0) and np.all(np.isfinite(zeros))
    only_diagonal = scale_scores(np.eye(4, dtype=np.float32) * 5)
    assert np.all(only_diagonal == 0)


def test_auprc_matches_brute_force():
    for scores, truth in random_cases(4, 60):
        if truth.sum() == 0:
            assert auprc(scores=scores, truth=truth) == 0.0
            continue
        expected = brute_force_average_precision(scores, truth)
        assert auprc(scores=scores, truth=truth) == pytest.approx(expected, abs=1e-12)


def test_auprc_hand_cases():
    truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    perfect = truth * 0.9 + 0.1
    assert auprc(scores=perfect, truth=truth) == pytest.approx(1.0)
    # Ranking: true, false, true, false...  AP = (1/2)(1/1) + (1/2)(2/3).
    scores = np.array([[0, 0.9, 0.8], [0.1, 0, 0.7], [0.2, 0.3, 0]])
    assert auprc(scores=scores, truth=truth) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # All tied: precision is the base rate.
    assert auprc(scores=np.ones((3, 3)), truth=truth) == pytest.approx(2 / 6)
    assert auprc(scores=scores, truth=np.zeros((3, 3))) == 0.0


def test_best_threshold_index():
    assert int(best_threshold_index(jnp.array([0.1, 0.5, 0.5, 0.2]))) == 1  # ties -> lowest
    assert int(best_threshold_index(jnp.zeros(21))) == 0
    assert int(best_threshold_index(jnp.array([jnp.nan, 0.0, 0.3]))) == 2
    batched = best_threshold_index(jnp.array([[0.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_array_equal(batched, [1, 0])


def test_keyword_only():
    with pytest.raises(TypeError):
        metrics.edge_metrics(np.zeros((2, 2)), np.zeros((2, 2)), 0.5)
    with pytest.raises(TypeError):
        metrics.auprc(np.zeros((2, 2)), np.zeros((2, 2)))
