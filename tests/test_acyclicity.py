"""Acyclicity penalties: exactly zero on DAGs, positive on every cycle length, finite, vmap/jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxcausal import acyclicity
from jaxcausal.acyclicity import PENALTIES, get_penalty

NAMES = sorted(PENALTIES)
# Shared compiled functions, so each (penalty, shape) compiles once for the whole module.
JITTED = {name: jax.jit(f) for name, f in PENALTIES.items()}
BATCHED = {name: jax.jit(jax.vmap(f)) for name, f in PENALTIES.items()}
VALUE_AND_GRAD = {name: jax.jit(jax.value_and_grad(f)) for name, f in PENALTIES.items()}
BATCH = 6


def evaluate(name, matrices):
    """Penalty of each matrix, vmapped in fixed batches of BATCH (zero-padded) -> (len,)."""
    stacked = np.stack(matrices)
    padding = np.zeros((-len(stacked) % BATCH,) + stacked.shape[1:], np.float32)
    batches = np.concatenate([stacked, padding]).reshape((-1, BATCH) + stacked.shape[1:])
    return np.concatenate([np.asarray(BATCHED[name](b)) for b in batches])[: len(stacked)]


@pytest.fixture(autouse=True)
def strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


def random_dag(rng, d, density, scale):
    """Signed weights on a random DAG: upper triangle under a random node permutation."""
    w = rng.uniform(0.5, 2.0, (d, d)) * rng.choice([-1.0, 1.0], (d, d)) * scale
    w = np.triu(w * (rng.random((d, d)) < density), k=1)
    perm = rng.permutation(d)
    return w[np.ix_(perm, perm)].astype(np.float32)


def with_cycle(rng, w, length, weight):
    """Add a directed cycle of `length` through random nodes, each edge of `weight`."""
    w = w.copy()
    nodes = rng.permutation(w.shape[0])[:length]
    for a, b in zip(nodes, np.roll(nodes, -1)):
        w[a, b] = weight
    return w


def normalised_square(w, margin=1.0):
    s = w.astype(np.float64) ** 2
    return s / max(1.0, min(s.sum(1).max(), s.sum(0).max()) * margin)


def reference(name, w):
    """float64 numpy versions of the three penalties, with the same normalisation."""
    d = w.shape[0]
    if name == "trace_power":
        s = normalised_square(w)
        m = 2 ** math.ceil(math.log2(d)) if d > 1 else 1
        return sum(np.trace(np.linalg.matrix_power(s, k)) for k in range(1, m + 1)) / m
    if name == "expm":
        return np.trace(scipy.linalg.expm(normalised_square(w))) - d
    s = normalised_square(w, margin=1 / 0.9)
    return -np.linalg.slogdet(np.eye(d) - s)[1]


@pytest.mark.parametrize("name", NAMES)
def test_matches_float64_reference(name):
    rng = np.random.default_rng(0)
    for d in (1, 2, 3, 12):
        scales = (0.1, 0.3, 1.0, 3.0, 30.0, 1e3)
        population = [(rng.normal(size=(d, d)) * s).astype(np.float32) for s in scales]
        values = evaluate(name, population)
        expected = [reference(name, w) for w in population]
        np.testing.assert_allclose(values, expected, rtol=2e-4, atol=1e-6)


def test_expm_matches_jax_scipy_expm():
    w = np.random.default_rng(1).normal(size=(20, 20)).astype(np.float32)
    expected = jnp.trace(jax.scipy.linalg.expm(jnp.asarray(normalised_square(w), jnp.float32)))
    np.testing.assert_allclose(acyclicity.expm_penalty(w), expected - 20, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_exactly_zero_on_random_dags(name):
    rng = np.random.default_rng(2)
    for d in (2, 3, 12, 50):
        dags = [
            random_dag(rng, d, density, scale)
            for scale in (1e-3, 0.1, 1.0, 30.0, 1e3)
            for density in (0.2, 0.5, 1.0)
            for _ in range(3)
        ]
        values = evaluate(name, dags)
        assert np.all(values == 0.0), (d, values)


@pytest.mark.parametrize("name", NAMES)
def test_exactly_zero_on_large_dags(name):
    rng = np.random.default_rng(3)
    for scale, density in ((1.0, 0.05), (1e3, 0.05), (1.0, 1.0)):
        value, grad = VALUE_AND_GRAD[name](random_dag(rng, 200, density, scale))
        assert float(value) == 0.0
        assert not np.any(grad)  # no cycle to shrink: the gradient is exactly zero too


@pytest.mark.parametrize("name", NAMES)
def test_positive_on_every_cycle_length(name):
    rng = np.random.default_rng(4)
    d = 12
    dag = random_dag(rng, d, 0.3, 1.0)
    # logdet resolves det(I - S) only to ~1e-7, so weak long cycles are below its resolution.
    weights = (1.0, 0.1) if name != "logdet" else (1.0,)
    for weight in weights:
        lengths = range(1, d + 1)
        values = evaluate(name, [with_cycle(rng, dag, k, weight) for k in lengths])
        assert np.all(values > 0.0), (weight, values)


def test_trace_power_sees_long_cycles():
    """Every cycle length has weight 1/m: a unit cycle scores ~1 whatever its length."""
    rng = np.random.default_rng(5)
    for d in (50, 200):
        lengths = (1, 2, 3, d // 2, d - 1, d)
        weak_dag = random_dag(rng, d, 2.0 / d, 0.01)  # keeps the normaliser near 1
        strong_dag = random_dag(rng, d, 2.0 / d, 1.0)
        weak = evaluate("trace_power", [with_cycle(rng, weak_dag, k, 1.0) for k in lengths])
        strong = evaluate("trace_power", [with_cycle(rng, strong_dag, k, 1.0) for k in lengths])
        assert np.all(weak > 0.4) and np.all(strong > 0.0), (weak, strong)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [50, 200])
def test_finite_value_and_gradient_for_large_weights(name, d):
    rng = np.random.default_rng(6)
    w = (rng.normal(size=(d, d)) * 1e3).astype(np.float32)
    w[np.abs(w) < 1.0] = 1e3  # every entry of magnitude ~1e3
    value, grad = VALUE_AND_GRAD[name](w)
    assert np.isfinite(value) and value > 0.0
    assert np.all(np.isfinite(grad))


def reachability(w):
    """reach[i, j]: a directed path of length >= 1 from i to j."""
    step = (w != 0).astype(np.int64)
    reach = step.copy()
    for _ in range(w.shape[0]):
        reach = ((reach + reach @ step) > 0).astype(np.int64)
    return reach > 0


@pytest.mark.parametrize("name", NAMES)
def test_gradient_lives_on_cycle_edges_and_shrinks_them(name):
    rng = np.random.default_rng(7)
    dag = random_dag(rng, 12, 0.3, 1.0)
    w = with_cycle(rng, dag, 4, 0.8)
    grad = np.asarray(VALUE_AND_GRAD[name](w)[1])
    on_cycle = (w != 0) & reachability(w).T  # edge i -> j with a path j -> i
    assert on_cycle.sum() >= 4
    assert np.all(grad[on_cycle] * w[on_cycle] > 0)  # descent shrinks every cycle edge
    assert np.all(grad[~on_cycle] == 0)  # and leaves every other entry alone


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_population_equals_loop(name):
    rng = np.random.default_rng(8)
    population = np.stack(
        [random_dag(rng, 12, 0.3, 1.0) for _ in range(2)]
        + [with_cycle(rng, random_dag(rng, 12, 0.3, 1.0), k, 0.7) for k in (2, 5, 12)]
        + [(rng.normal(size=(12, 12)) * 100).astype(np.float32)]
    )
    batched = BATCHED[name](population)
    looped = np.array([JITTED[name](w) for w in population])
    assert batched.shape == (len(population),)
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-7)
    assert np.all(batched[:2] == 0.0) and np.all(batched[2:] > 0.0)


def test_logdet_scale_parameter():
    rng = np.random.default_rng(9)
    w = with_cycle(rng, random_dag(rng, 8, 0.3, 1.0), 3, 0.5)
    penalty = jax.jit(acyclicity.logdet_penalty)  # s may be traced (e.g. a dual schedule)
    for s in (0.5, 1.0, 4.0):
        value = float(penalty(w, s))
        sq = normalised_square(w, margin=1 / (0.9 * s))
        expected = -np.linalg.slogdet(s * np.eye(8) - sq)[1] + 8 * np.log(s)
        assert value > 0.0
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6)


def test_get_penalty():
    assert get_penalty("trace_power") is acyclicity.trace_power
    assert get_penalty("expm") is acyclicity.expm_penalty
    assert get_penalty("logdet") is acyclicity.logdet_penalty
    with pytest.raises(ValueError, match="expm, logdet, trace_power"):
        get_penalty("notears")
