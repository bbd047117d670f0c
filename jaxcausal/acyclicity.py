"""Acyclicity penalties h(W) >= 0, zero exactly on DAGs, written for ONE weight matrix.

Every penalty takes `w_DxD` (float32, W[i, j] != 0 means i -> j) and returns a float32 scalar, so
`jax.vmap(penalty)(w_PxDxD)` lifts it over a population and `jax.jit` compiles it. Self-loops
(W[i, i] != 0) are cycles of length 1 and are penalised too; mask the diagonal before if unwanted.

All three are matrix power series in S = W o W (elementwise square, so S >= 0) with nonnegative
coefficients: tr(S^k) is positive iff there is a closed walk of length k, i.e. a cycle.

Normalisation (shared): S_n = S / c with c = max(1, min(max row sum, max column sum) of S).
Either sum bounds the spectral radius, so rho(S_n) <= 1 and every series stays finite in float32
for any weight size (|W| ~ 1e3 gives S ~ 1e6), while small W (c = 1) are left untouched.
c is held constant under differentiation (stop_gradient): its own gradient would reward
*inflating* the largest row/column sum (a bigger c makes h smaller), the opposite of what a
penalty should do; with c constant, the gradient only ever shrinks edges that lie on cycles.

Exact zeros: on a DAG every entry of S^k that is mathematically zero is a sum of products with at
least one exact zero factor and no cancellation (all terms >= 0), so it is exactly 0.0 in float
arithmetic too. The trace-power and expm forms therefore return exactly 0.0 on DAGs by
construction; logdet relies on the LU factorisation, which is tested to give 0.0 as well.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

# Taylor degree of the expm core; with ||X||_inf <= 2**-3 the truncation error is < 1e-16.
_EXPM_TAYLOR_DEGREE = 8
_EXPM_MIN_HALVINGS = 3


def _normalised_square(w_DxD: jax.Array, margin: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """S_n = (W o W) / c with rho(S_n) <= 1 / margin; also returns the row/col-bound flag.

    Returns (s_DxD, rows_are_bounded): rows_are_bounded is True when the max row sum gave the
    (tighter) bound, i.e. ||S_n||_inf <= 1; otherwise ||S_n||_1 <= 1.
    """
    s_DxD = w_DxD * w_DxD
    max_row = jnp.max(jnp.sum(s_DxD, axis=1))
    max_col = jnp.max(jnp.sum(s_DxD, axis=0))
    bound = jnp.minimum(max_row, max_col)
    scale = jax.lax.stop_gradient(jnp.maximum(1.0, bound * margin))
    return s_DxD / scale, max_row <= max_col


def _matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    # Full float32 products on GPU/TPU too (their default TF32/bf16 passes lose ~3 digits).
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _num_doublings(d: int) -> int:
    """ceil(log2 d): 2**L is the smallest power of two >= d (static, from the shape)."""
    return max(0, math.ceil(math.log2(d))) if d > 1 else 0


def trace_power(w_DxD: jax.Array) -> jax.Array:
    """Trace-power penalty h = (1/m) * sum_{k=1..m} tr(S_n^k), m = smallest power of two >= D.

    Shapes: w_DxD (D, D) -> scalar. Range: 0 <= h <= D (each |tr(S_n^k)| <= D as rho(S_n) <= 1);
    a single cycle with normalised weights 1 gives h ~ 1 whatever its length.

    Every cycle length 1..D has weight 1/m in the sum (the binomial form tr((I + S_n/m)^m) - D
    weights length k by ~1/k!, so in float32 a unit-weight cycle longer than ~34 edges, or a
    12-cycle of weight 0.1, contributes exactly 0). The geometric sum is built by doubling,
    G_2n = G_n + S^n G_n and S^2n = S^n S^n: 2 * ceil(log2 D) - 2 matrix products, not D; the
    gradient (a custom JVP, below) adds ceil(log2 D) - 1 more instead of differentiating the chain.
    """
    s_DxD, _ = _normalised_square(w_DxD)
    return _geometric_trace(s_DxD)


def _geometric_chain(s_DxD: jax.Array):
    """h of S_n = s_DxD, and the powers P_n = S^n and sums G_n = S + ... + S^n it went through."""
    levels = _num_doublings(s_DxD.shape[0])
    powers, geoms = [s_DxD], [s_DxD]  # P_n, G_n for n = 1, 2, 4, ..., 2**(levels - 1)
    for _ in range(levels - 1):
        geoms.append(geoms[-1] + _matmul(powers[-1], geoms[-1]))
        powers.append(_matmul(powers[-1], powers[-1]))
    if levels == 0:
        total = jnp.trace(geoms[-1])
    else:
        # Last doubling needs only the trace: tr(G + P G) = tr(G) + sum(P o G^T), no matmul.
        total = jnp.trace(geoms[-1]) + jnp.sum(powers[-1] * geoms[-1].T)
    return total / (2**levels), powers, geoms


@jax.custom_jvp
def _geometric_trace(s_DxD: jax.Array) -> jax.Array:
    return _geometric_chain(s_DxD)[0]


@_geometric_trace.defjvp
def _geometric_trace_jvp(primals, tangents):
    """d h = tr(C_m dS) / m with C_m = sum_{k=1..m} k S^(k-1), built by doubling from the same P_n, G_n:
    C_2n = C_n + P_n (C_n + n A_n), A_n = I + G_n - P_n = S^0 + ... + S^(n-1). One matrix product per
    doubling, where differentiating the chain costs four: value and gradient take half the FLOPs
    (same value bit for bit; gradient equal to float32 rounding). Where no path leads from j to i
    every term of C_m[j, i] is an exact 0, so DAGs and edges on no cycle keep an exactly zero gradient.
    """
    (s_DxD,), (ds_DxD,) = primals, tangents
    value, powers, geoms = _geometric_chain(s_DxD)
    levels = _num_doublings(s_DxD.shape[0])
    eye = jnp.eye(s_DxD.shape[0], dtype=s_DxD.dtype)
    c_DxD = eye if levels == 0 else eye + 2.0 * s_DxD  # C_1 = I; C_2 = I + 2S (no product needed)
    for i in range(1, levels):  # n = 2**i: C_n -> C_2n
        p_DxD = powers[i]
        c_DxD = c_DxD + _matmul(p_DxD, c_DxD + 2**i * (eye + geoms[i] - p_DxD))
    return value, jnp.sum(c_DxD.T * ds_DxD) / (2**levels)


def expm_penalty(w_DxD: jax.Array) -> jax.Array:
    """NOTEARS penalty h = tr(expm(S_n)) - D = sum_{k>=1} tr(S_n^k) / k!.  (D, D) -> scalar.

    Computed as tr(expm(S_n) - I) by scaling and squaring on E(X) = expm(X) - I (Taylor series,
    then E(2X) = 2 E(X) + E(X)^2), never forming I + tiny. jax.scipy.linalg.expm gives the same
    value to float32 precision (tested) but loses any cycle worth < ~1e-7 (it returns 0.0 on a
    unit-weight 12-cycle, whose true h is 12/12! = 2.5e-8); here all terms are >= 0, so cycles
    stay positive down to float32 underflow (still ~1/k!: long weak cycles do underflow).
    """
    s_DxD, rows_are_bounded = _normalised_square(w_DxD)
    d = s_DxD.shape[0]
    # tr(f(S)) = tr(f(S^T)): pick the orientation with ||.||_inf <= 1 so halving is enough.
    x_DxD = jnp.where(rows_are_bounded, s_DxD, s_DxD.T)
    # Enough squarings for accuracy, and degree * 2**halvings >= D so every length is reached.
    halvings = max(_EXPM_MIN_HALVINGS, _num_doublings(math.ceil(d / _EXPM_TAYLOR_DEGREE)))
    x_DxD = x_DxD / (2.0**halvings)
    # Horner on E = X (I + X/2 (I + X/3 (...))), written with E-terms only (no identity added).
    inner_DxD = x_DxD / _EXPM_TAYLOR_DEGREE
    for k in range(_EXPM_TAYLOR_DEGREE - 1, 0, -1):
        inner_DxD = (x_DxD + _matmul(x_DxD, inner_DxD)) / k
    e_DxD = inner_DxD
    for _ in range(halvings - 1):
        e_DxD = 2.0 * e_DxD + _matmul(e_DxD, e_DxD)
    # Last squaring needs only the trace.
    return 2.0 * jnp.trace(e_DxD) + jnp.sum(e_DxD * e_DxD.T)


def logdet_penalty(w_DxD: jax.Array, s: float = 1.0) -> jax.Array:
    """DAGMA penalty h = -logdet(s I - S_n) + D log s.  (D, D) -> scalar, s > 0.

    S_n is normalised so that min(max row sum, max col sum) <= 0.9 s, hence rho(S_n) <= 0.9 s < s
    and s I - S_n is an M-matrix (positive determinant). Mathematically
    h = sum_k tr((S_n / s)^k) / k. Float32 caveat: det(s I - S_n) is resolved only to ~1e-7
    relative, so a cycle whose normalised weight product is below ~1e-7 (e.g. a 4-cycle of
    weights 0.1, or a unit cycle of length ~150+) gives h = 0.0 although its gradient is still
    informative. Use trace_power when every cycle must register in the value.
    """
    s_DxD, _ = _normalised_square(w_DxD, margin=1.0 / (0.9 * s))
    d = s_DxD.shape[0]
    _, logabsdet = jnp.linalg.slogdet(s * jnp.eye(d, dtype=s_DxD.dtype) - s_DxD)
    return -logabsdet + d * jnp.log(jnp.asarray(s, dtype=s_DxD.dtype))


PENALTIES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "trace_power": trace_power,
    "expm": expm_penalty,
    "logdet": logdet_penalty,
}


def get_penalty(name: str) -> Callable[[jax.Array], jax.Array]:
    """The penalty registered as `name`; ValueError naming the valid choices otherwise."""
    try:
        return PENALTIES[name]
    except KeyError:
        valid = ", ".join(sorted(PENALTIES))
        raise ValueError(f"unknown acyclicity penalty {name!r}; choose one of: {valid}") from None
