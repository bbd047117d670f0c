"""Graph utilities: DAG checks, cycle pruning, edge tables."""

import time

import numpy as np
import pytest

from jaxcausal.graphs import edges_table, enforce_dag, is_dag, topological_order


def random_dag_weights(rng, d, density):
    w = np.triu(rng.uniform(0.1, 1.0, (d, d)) * (rng.random((d, d)) < density), k=1)
    perm = rng.permutation(d)
    return w[np.ix_(perm, perm)]


def brute_force_is_dag(adj):
    """A graph is acyclic iff no power A^k (k = 1..D) has a nonzero diagonal."""
    a = (np.asarray(adj) != 0).astype(np.int64)
    power = np.eye(len(a), dtype=np.int64)
    for _ in range(len(a)):
        power = np.minimum(power @ a, 1)
        if np.trace(power):
            return False
    return True


def test_topological_order_and_is_dag():
    rng = np.random.default_rng(0)
    for _ in range(200):
        d = int(rng.integers(1, 10))
        adj = (rng.random((d, d)) < rng.uniform(0.05, 0.4)).astype(int)
        order = topological_order(adj)
        assert is_dag(adj) == brute_force_is_dag(adj) == (order is not None)
        if order is not None:
            assert sorted(order) == list(range(d))
            position = {node: k for k, node in enumerate(order)}
            for i, j in zip(*np.nonzero(adj)):
                assert position[i] < position[j]


def test_self_loop_is_a_cycle():
    assert not is_dag(np.eye(3))
    assert is_dag(np.zeros((3, 3)))
    assert topological_order(np.array([[0, 0], [1, 0]])) == [1, 0]


def test_enforce_dag_keeps_dags_unchanged():
    rng = np.random.default_rng(1)
    for d in (1, 5, 30):
        w = random_dag_weights(rng, d, 0.3)
        np.testing.assert_array_equal(enforce_dag(w), w)


def test_enforce_dag_removes_weakest_edge_of_a_simple_cycle():
    w = np.zeros((4, 4))
    w[0, 1], w[1, 2], w[2, 3], w[3, 0] = 0.9, 0.4, 0.7, 0.8
    expected = w.copy()
    expected[1, 2] = 0
    out = enforce_dag(w)
    np.testing.assert_array_equal(out, expected)
    assert w[1, 2] == 0.4  # input untouched
    two_cycle = np.array([[0, 0.3], [0.5, 0]])
    np.testing.assert_array_equal(enforce_dag(two_cycle), [[0, 0], [0.5, 0]])
    np.testing.assert_array_equal(enforce_dag(np.diag([1.0, 2.0])), np.zeros((2, 2)))


def test_enforce_dag_random_graphs_are_pruned_subgraphs():
    rng = np.random.default_rng(2)
    for _ in range(100):
        d = int(rng.integers(2, 15))
        w = rng.uniform(0, 1, (d, d)) * (rng.random((d, d)) < rng.uniform(0.1, 0.7))
        out = enforce_dag(w)
        assert is_dag(out) and brute_force_is_dag(out)
        kept = out != 0
        np.testing.assert_array_equal(out[kept], w[kept])  # a subgraph, weights unchanged
        assert np.array_equal(enforce_dag(w), out)  # deterministic


def test_enforce_dag_keeps_strong_acyclic_backbone():
    """Cycles made by weak back-edges on a strong DAG are broken at a weak edge."""
    rng = np.random.default_rng(3)
    dag = random_dag_weights(rng, 40, 0.2) + 0.0
    dag[dag != 0] += 1.0  # strong: weights in [1.1, 2]
    order = topological_order(dag)
    noisy = dag.copy()
    for _ in range(30):
        a, b = sorted(rng.choice(40, 2, replace=False))
        noisy[order[b], order[a]] = rng.uniform(0.01, 0.5)  # weak edge against the order
    out = enforce_dag(noisy)
    assert is_dag(out) and not is_dag(noisy)
    np.testing.assert_array_equal(out[dag != 0], dag[dag != 0])  # the backbone survives


def test_enforce_dag_is_fast_for_d200():
    rng = np.random.default_rng(4)
    w = rng.uniform(0, 1, (200, 200)) * (rng.random((200, 200)) < 400 / 200**2)
    start = time.perf_counter()
    out = enforce_dag(w)
    assert time.perf_counter() - start < 2.0
    assert is_dag(out)


def test_enforce_dag_rejects_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        enforce_dag(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        enforce_dag(np.array([[0, np.nan], [0, 0]]))


def test_edges_table():
    w = np.array([[0.0, -0.9, 0.2], [0.0, 5.0, 0.5], [0.2, 0.0, 0.0]])
    table = edges_table(w, np.array(["a", "b", "c"]))
    assert table == [("a", "b", -0.9), ("b", "c", 0.5), ("a", "c", 0.2), ("c", "a", 0.2)]
    assert all(type(cause) is str and type(weight) is float for cause, _, weight in table)
    assert edges_table(np.zeros((2, 2)), ["x", "y"]) == []
    with pytest.raises(ValueError, match="names"):
        edges_table(w, ["a", "b"])
