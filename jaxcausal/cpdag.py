"""Markov equivalence classes: CPDAGs by Meek's rules, DAG extensions, and metrics on PDAGs.

Host-side numpy only (no jax). A PDAG is a (D, D) int8 0/1 matrix: pdag[i, j] = 1 and
pdag[j, i] = 0 is the directed edge i -> j; pdag[i, j] = pdag[j, i] = 1 is the undirected edge
i - j; the diagonal is 0. A DAG is any (D, D) matrix read as `dag != 0` ([i, j] means i -> j).

Meek's rules are evaluated for all candidate undirected edges at once per sweep (rows of boolean
(edges, D) arrays, built in chunks of ~4M entries), so memory stays O(D^2); after the first sweep
only edges near a newly oriented one are re-tested.
"""

from __future__ import annotations

import numpy as np

from jaxcausal.graphs import find_cycle

_CHUNK = 1 << 22  # boolean entries per temporary (edges x D) block: 4 MiB


def _square(matrix, what: str) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{what} must be a square (D, D) matrix, got shape {matrix.shape}")
    if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
        raise ValueError(f"{what} contains NaN or Inf; edges must be 0/1 or finite weights")
    return matrix


def _dag(dag, what: str = "dag") -> np.ndarray:
    """Boolean adjacency of `dag`; ValueError naming a cycle if it has one (self-loops included)."""
    edges = _square(dag, what) != 0
    cycle = find_cycle(edges)
    if cycle is not None:
        raise ValueError(f"{what} is cyclic: {' -> '.join(map(str, cycle + cycle[:1]))}")
    return edges


def _pdag(pdag, what: str = "pdag") -> np.ndarray:
    edges = _square(pdag, what) != 0
    if edges.diagonal().any():
        node = int(np.argmax(edges.diagonal()))
        raise ValueError(f"{what} has a nonzero diagonal entry at node {node}")
    return edges


def _chunks(n: int, d: int):
    step = max(1, _CHUNK // max(d, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _rows_any(left, left_rows, right, right_rows) -> np.ndarray:
    """any(left[left_rows[k]] & right[right_rows[k]]) for every k, in chunks: (K,) bool."""
    out = np.zeros(len(left_rows), dtype=bool)
    for part in _chunks(len(left_rows), left.shape[1]):
        out[part] = (left[left_rows[part]] & right[right_rows[part]]).any(axis=1)
    return out


def _pair_hit(members, relation, partners) -> np.ndarray:
    """Per row r: is there u in members[r], v in partners[r] with relation[u, v]? (R,) bool."""
    rows, nodes = np.nonzero(members)
    hit = np.zeros(members.shape[0], dtype=bool)
    hit[rows[_rows_any(relation, nodes, partners, rows)]] = True
    return hit


def _implied(a, b, und, directed, parents, adjacent, nonadj) -> np.ndarray:
    """Which undirected edges a - b (index arrays) Meek's rules R1-R4 orient as a -> b."""
    # R1: p -> a - b with p, b non-adjacent.
    r1 = (parents[a] & nonadj[b]).any(axis=1)
    # R2: a -> c -> b.
    r2 = (directed[a] & parents[b]).any(axis=1)
    # R3: a - c -> b and a - e -> b with c, e non-adjacent.
    spouses = und[a] & parents[b]
    r3 = _pair_hit(spouses, nonadj, spouses)
    # R4: a - k -> l -> b with k, b non-adjacent and a adjacent to l.
    starts = und[a] & nonadj[b]
    middles = parents[b] & adjacent[a]
    r4 = _pair_hit(starts, directed, middles)
    return r1 | r2 | r3 | r4


def _meek_closure(g: np.ndarray) -> np.ndarray:
    """Apply R1-R4 to the boolean PDAG `g` in place until nothing changes; returns it.

    Each sweep tests its candidate undirected edges in both directions on the same graph, then
    orients all implied edges together (each implication is sound on its own, so order does not
    matter). Orienting u -> v can only create new implications for edges with an endpoint in
    {u, v} or adjacent to them, so later sweeps test only those: a propagation down a long chain
    costs O(chain x degree), not O(chain x D^2). Orientation never changes adjacency, so the
    (non-)adjacency matrices are built once. An edge implied in both directions in one sweep
    (only possible for an inconsistent PDAG) stays undirected.
    """
    d = g.shape[0]
    adjacent = g | g.T
    nonadj = ~adjacent & ~np.eye(d, dtype=bool)
    und = g & g.T
    directed = g & ~und
    parents = np.ascontiguousarray(directed.T)  # parents[b] is the row of b's parents
    touched = np.arange(d)
    while touched.size:
        rows, others = np.nonzero(und[touched])
        ends = touched[rows]
        keys = np.unique(np.concatenate([ends * d + others, others * d + ends]))
        heads_a, heads_b = keys // d, keys % d
        implied = np.zeros(keys.size, dtype=bool)
        for part in _chunks(keys.size, d):
            implied[part] = _implied(heads_a[part], heads_b[part], und, directed, parents,
                                     adjacent, nonadj)
        hits = keys[implied]
        hits = hits[~np.isin((hits % d) * d + hits // d, hits)]  # drop two-way conflicts
        tails, heads = hits // d, hits % d
        g[heads, tails] = False
        und[tails, heads] = und[heads, tails] = False
        directed[tails, heads] = True
        parents[heads, tails] = True
        ends = np.concatenate([tails, heads])
        touched = np.union1d(ends, np.nonzero(adjacent[ends])[1])
    return g


def meek_rules(pdag) -> np.ndarray:
    """The closure of `pdag` (D, D) under Meek's rules R1-R4: (D, D) int8 PDAG.

    R1: a -> b - c, a and c non-adjacent => b -> c. R2: a -> c -> b and a - b => a -> b.
    R3: a - c -> b, a - d -> b, c and d non-adjacent, a - b => a -> b. R4: a - k -> l -> b,
    k and b non-adjacent, a adjacent to l, a - b => a -> b. Directed input edges never change.
    """
    return _meek_closure(_pdag(pdag).copy()).astype(np.int8)


def cpdag_from_dag(dag, *, fixed=None) -> np.ndarray:
    """The CPDAG (essential graph) of `dag` (D, D): (D, D) int8 PDAG.

    Skeleton plus the edges of v-structures (a -> c <- b, a and b non-adjacent), then Meek's rules
    to closure. `fixed` (D, D) bool marks edges whose direction is background knowledge:
    fixed[i, j] or fixed[j, i] keeps the edge between i and j directed as in `dag` and Meek's
    rules propagate from it (the maximally oriented PDAG of the class members that agree);
    entries where `dag` has no edge are ignored. ValueError if `dag` is cyclic or shapes disagree.
    """
    edges = _dag(dag)
    d = edges.shape[0]
    adjacent = edges | edges.T
    nonadj = ~adjacent & ~np.eye(d, dtype=bool)
    parents = np.ascontiguousarray(edges.T)
    tails, heads = np.nonzero(edges)
    # Edge a -> c is in a v-structure if c has another parent not adjacent to a.
    compelled = np.zeros((d, d), dtype=bool)
    in_v = _rows_any(parents, heads, nonadj, tails)
    compelled[tails[in_v], heads[in_v]] = True
    if fixed is not None:
        fixed = _square(fixed, "fixed")
        if fixed.shape != edges.shape:
            raise ValueError(f"fixed has shape {fixed.shape}, dag has {edges.shape}")
        fixed = fixed != 0
        compelled |= edges & (fixed | fixed.T)
    pattern = adjacent & ~compelled.T
    return _meek_closure(pattern).astype(np.int8)


def cpdag_with_lags(dag_DxD, lagged_LxDxD) -> np.ndarray:
    """The CPDAG of a stationary time-series graph, contemporaneous block: (D, D) int8 PDAG.

    `dag_DxD`: contemporaneous DAG, [i, j] means x_{t,i} -> x_{t,j}. `lagged_LxDxD`: [l, i, j]
    != 0 means x_{t-l-1,i} -> x_{t,j}. Lagged edges point forward in time, so they are directed.

    Unrolled graph: the D nodes of slice t, plus one node x_{t-l-1,i} for every (lag, variable)
    that has a lagged child, with its lagged edges into slice t, fixed as directed; then
    `cpdag_from_dag(..., fixed=lag edges)`. This finds, e.g., x_{t-1} -> y_t <- z_t with x_{t-1}
    and z_t non-adjacent (orients z -> y), and R1 from a lagged parent (x_{t-1} -> y_t - z_t).
    Why no other unrolled edges: an undirected edge joins two slice-t nodes, and every premise of
    a v-structure or of R1-R4 that touches one is an adjacency between a slice-t node and another
    node (its lagged parents all sit in this graph, and adjacency of x_{t-k} with z_t is exactly
    the lag-k edge) or a directed path between slice-t nodes, which cannot leave slice t because
    edges never go back in time. Edges among lagged nodes (their contemporaneous copies, lags
    between lag slices) would only add v-structures at or between lagged nodes: by stationarity
    these repeat ones already seen at slice t, or join two lagged edges, which are fixed anyway.
    Keeping a single copy of the contemporaneous graph also keeps its orientation the same in
    every slice, as stationarity requires.
    """
    dag = _dag(dag_DxD, "dag_DxD")
    d = dag.shape[0]
    lagged = np.asarray(lagged_LxDxD)
    if lagged.ndim != 3 or lagged.shape[1:] != (d, d):
        raise ValueError(f"lagged_LxDxD must have shape (L, {d}, {d}), got {lagged.shape}")
    if lagged.dtype.kind == "f" and not np.isfinite(lagged).all():
        raise ValueError("lagged_LxDxD contains NaN or Inf")
    lag_edges = (lagged != 0).reshape(-1, d)  # row l * D + i: children of x_{t-l-1,i}
    sources = np.flatnonzero(lag_edges.any(axis=1))
    n = d + sources.size
    unrolled = np.zeros((n, n), dtype=bool)
    unrolled[:d, :d] = dag
    unrolled[d:, :d] = lag_edges[sources]
    fixed = np.zeros_like(unrolled)
    fixed[d:, :d] = unrolled[d:, :d]
    return cpdag_from_dag(unrolled, fixed=fixed)[:d, :d]


def dag_from_pdag(pdag) -> np.ndarray:
    """A consistent DAG extension of `pdag` (Dor & Tarsi 1992): (D, D) int8 DAG.

    Same skeleton, every directed edge kept, and no v-structure the PDAG lacks. Repeatedly removes
    a node x with no outgoing directed edge whose undirected neighbours are each adjacent to all
    other nodes adjacent to x, orienting its undirected edges into x. ValueError if none exists.
    """
    g = _pdag(pdag)
    d = g.shape[0]
    und = g & g.T
    directed = g & ~und
    adjacent = g | g.T
    dag = directed.copy()
    neighbours = [set(np.flatnonzero(adjacent[x]).tolist()) for x in range(d)]
    undirected = [set(np.flatnonzero(und[x]).tolist()) for x in range(d)]
    children = directed.sum(axis=1)
    alive = np.ones(d, dtype=bool)

    def removable(x: int) -> bool:
        return children[x] == 0 and all(neighbours[x] - {y} <= neighbours[y] for y in undirected[x])

    # Removing nodes only relaxes the condition, so a removable node stays removable.
    queued = np.zeros(d, dtype=bool)
    stack = [x for x in range(d - 1, -1, -1) if removable(x)]
    queued[stack] = True
    while stack:
        x = stack.pop()
        alive[x] = False
        for y in undirected[x]:
            dag[y, x] = True
        for y in neighbours[x]:
            neighbours[y].discard(x)
            undirected[y].discard(x)
            if directed[y, x]:
                children[y] -= 1
            if not queued[y] and removable(y):
                queued[y] = True
                stack.append(y)
    if alive.any():
        stuck = np.flatnonzero(alive)
        raise ValueError("pdag has no consistent DAG extension "
                         f"(stuck at nodes {stuck[:10].tolist()})")
    return dag.astype(np.int8)


def is_cpdag_consistent(pdag) -> bool:
    """True if `pdag` (D, D) has a consistent DAG extension (see `dag_from_pdag`)."""
    try:
        dag_from_pdag(pdag)
    except ValueError:
        return False
    return True


def is_cpdag(pdag) -> bool:
    """True if `pdag` (D, D) is exactly the CPDAG of some DAG (of its consistent extensions)."""
    try:
        extension = dag_from_pdag(pdag)
    except ValueError:
        return False
    return bool(np.array_equal(cpdag_from_dag(extension), _pdag(pdag)))


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2.0 * precision * recall, precision + recall)


def _marks_differ(first: np.ndarray, second: np.ndarray) -> int:
    """Unordered pairs whose edge mark (none, i->j, j->i, undirected) differs between two PDAGs."""
    differ = (first != second) | (first.T != second.T)
    return int(np.triu(differ, k=1).sum())


def compare(*, pred, true, true_lagged=None, pred_lagged=None) -> dict:
    """Metrics of a predicted PDAG (or DAG) `pred` (D, D) against a true DAG `true` (D, D).

    Both are read as `!= 0` with the diagonal ignored; pred[i, j] and pred[j, i] both nonzero is
    the undirected edge i - j, counted once. Returns python floats/ints:
      f1, precision, recall: NOTEARS count_accuracy convention, TP = directed edges in the true
        direction + undirected edges on the true skeleton; precision = TP / edge_count,
        recall = TP / true_edge_count;
      strict_f1, strict_precision, strict_recall: TP = correctly directed edges only;
      skeleton_f1: over unordered pairs;
      shd: extra + missing + reversed over unordered pairs, an undirected predicted edge on a true
        edge counting as reversed;
      cpdag_shd: pairs whose mark differs between the CPDAG of `true` (via `cpdag_with_lags` when
        `true_lagged` (L, D, D) is given) and that of `pred`: `pred` itself if it has an
        undirected edge, else its CPDAG (with `pred_lagged` (L, D, D) when given);
      edge_count, undirected_count, true_edge_count.
    ValueError if shapes differ, `true` is cyclic, or a directed-only `pred` is cyclic.
    """
    pred_g = _square(pred, "pred") != 0
    true_g = _square(true, "true") != 0
    if pred_g.shape != true_g.shape:
        raise ValueError(f"pred has shape {pred_g.shape}, true has {true_g.shape}")
    off = ~np.eye(pred_g.shape[0], dtype=bool)
    pred_g &= off
    true_g &= off
    upper = np.triu(off)
    und = pred_g & pred_g.T
    directed = pred_g & ~und
    und_once = und & upper
    true_skeleton = true_g | true_g.T
    pred_skeleton = pred_g | pred_g.T

    edge_count = int(directed.sum() + und_once.sum())
    true_count = int(true_g.sum())
    tp_directed = int((directed & true_g).sum())
    tp = tp_directed + int((und_once & true_skeleton).sum())
    precision, recall = _ratio(tp, edge_count), _ratio(tp, true_count)
    strict_precision = _ratio(tp_directed, edge_count)
    strict_recall = _ratio(tp_directed, true_count)
    tp_skeleton = int((pred_skeleton & true_skeleton & upper).sum())
    skeleton_precision = _ratio(tp_skeleton, int((pred_skeleton & upper).sum()))
    skeleton_recall = _ratio(tp_skeleton, int((true_skeleton & upper).sum()))
    extra = int((pred_skeleton & ~true_skeleton & upper).sum())
    missing = int((true_skeleton & ~pred_skeleton & upper).sum())
    reversed_ = int((directed & true_g.T).sum() + (und_once & true_skeleton).sum())

    if true_lagged is not None:
        true_cpdag = cpdag_with_lags(true_g, true_lagged)
    else:
        true_cpdag = cpdag_from_dag(true_g)
    if und.any():
        pred_cpdag = pred_g.astype(np.int8)
    elif pred_lagged is not None:
        pred_cpdag = cpdag_with_lags(pred_g, pred_lagged)
    else:
        pred_cpdag = cpdag_from_dag(pred_g)
    return {
        "f1": _f1(precision, recall),
        "precision": precision,
        "recall": recall,
        "strict_f1": _f1(strict_precision, strict_recall),
        "strict_precision": strict_precision,
        "strict_recall": strict_recall,
        "skeleton_f1": _f1(skeleton_precision, skeleton_recall),
        "shd": extra + missing + reversed_,
        "cpdag_shd": _marks_differ(true_cpdag, pred_cpdag),
        "edge_count": edge_count,
        "undirected_count": int(und_once.sum()),
        "true_edge_count": true_count,
    }


def compare_without_cpdag(*, pred: np.ndarray, true: np.ndarray) -> dict:
    """`compare`'s metrics that need no CPDAG, for graphs with a cycle (a cyclic truth such as
    Sachs' consensus graph, or a cyclic directed prediction): f1 (an undirected edge on the true
    skeleton is a hit), strict_f1, skeleton_f1, shd, precision, recall, counts; cpdag_shd is None."""
    off = ~np.eye(len(true), dtype=bool)
    p, t = (np.asarray(pred) != 0) & off, (np.asarray(true) != 0) & off
    und = p & p.T
    und_once, directed = np.triu(und), p & ~und
    t_skel, p_skel = np.triu(t | t.T), np.triu(p | p.T)
    edges, true_edges = int(directed.sum() + und_once.sum()), int(t.sum())
    tp_strict = int((directed & t).sum())
    tp = tp_strict + int((und_once & (t | t.T)).sum())
    tp_skel = int((p_skel & t_skel).sum())
    shd = int((p_skel & ~t_skel).sum() + (t_skel & ~p_skel).sum() + (directed & t.T & ~t).sum()
              + (und_once & (t | t.T)).sum())
    precision, recall = _ratio(tp, edges), _ratio(tp, true_edges)
    return {"f1": _f1(precision, recall), "strict_f1": _f1(_ratio(tp_strict, edges), _ratio(tp_strict, true_edges)),
            "skeleton_f1": _f1(_ratio(tp_skel, int(p_skel.sum())), _ratio(tp_skel, int(t_skel.sum()))), "shd": shd,
            "precision": precision, "recall": recall, "edge_count": edges,
            "undirected_count": int(und_once.sum()), "true_edge_count": true_edges, "cpdag_shd": None}
