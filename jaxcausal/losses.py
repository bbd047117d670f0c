"""The training objective as a pure function `(params, batch, weights) -> (loss, aux)`.

Every component is mean-reduced so its scale does not grow with the data size:
  recon   = sum(M * (X_hat - X)^2) / sum(M)          (masked mean squared error)
  sparse  = mean |W| over off-diagonal entries        (weighted as (D - 1) * sparse = sum |W| / D,
                                                      the L1 per variable; lagged weights likewise)
  acyclic = h(W), the chosen acyclicity penalty       (zero exactly on DAGs)
  disen   = mean |cross-correlation| between the latent blocks z_s, z_n, z_b over the batch
The acyclicity pressure (see `pressure`) adds alpha * h + rho / 2 * h^2 on top of the fixed weight
lambda_acyclic and scales the score terms (fit, sparse, disen) by mu. The loss takes the fixed
`LossWeights` and the `PressureState` (which holds alpha, rho and mu) as separate arguments; both are
data, not constants, so one compiled loss serves every member of a sweep.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxcausal import acyclicity
from jaxcausal.model import CausalSEM, off_diagonal
from jaxcausal.pressure import PressureState


class LossWeights(NamedTuple):
    """The fixed loss weights of a run (or population member); float32 so vmapped sweeps can vary them."""

    recon: jax.Array
    sparse: jax.Array
    acyclic: jax.Array
    disen: jax.Array

    @classmethod
    def create(cls, loss_cfg) -> "LossWeights":
        """From a LossConfig's lambda_recon, lambda_sparse, lambda_acyclic and lambda_disen."""
        return cls(*(jnp.asarray(getattr(loss_cfg, f"lambda_{name}"), jnp.float32) for name in cls._fields))


class Batch(NamedTuple):
    x: jax.Array  # (B, T, D) standardised, missing entries 0
    mask: jax.Array  # (B, T, D) 1 observed / 0 missing


def cross_correlation(a_BxK: jax.Array, b_BxK: jax.Array) -> jax.Array:
    """Mean absolute Pearson correlation between the columns of a and b over the batch."""
    def unit(z):
        z = z - z.mean(axis=0, keepdims=True)
        return z / jnp.sqrt(jnp.mean(z**2, axis=0, keepdims=True) + 1e-6)
    return jnp.mean(jnp.abs(unit(a_BxK).T @ unit(b_BxK) / a_BxK.shape[0]))


def fit_term(kind: str, resid_BxTxD: jax.Array, m_BxTxD: jax.Array, adj_DxD: jax.Array | None,
             linear: bool) -> jax.Array:
    """The data-fit term actually minimised (the logged `recon` is always the masked MSE).

    mse:        masked mean squared error (the original; favours whatever has the largest variance).
    gauss_ev:   Gaussian likelihood with one noise variance shared by all variables, 1/2 log(mean r^2)
                (GOLEM-EV). Identifies the graph when the noise variances are equal in the units given,
                which holds only when the columns share one unit: use it with --standardize global.
    gauss_nv:   Gaussian likelihood with one noise variance per variable, mean_j 1/2 log(mean r_j^2).
    laplace_nv: Laplace likelihood with one noise scale per variable, mean_j log(mean |r_j|).
    The two likelihoods are invariant to rescaling any variable, so the answer does not depend on
    units or standardisation; the Laplace one also tells cause from effect when noise is
    non-Gaussian (heavy-tailed), which least squares cannot on standardised data. For the linear SEM
    they include -log|det(I - W)| / D, zero on DAGs, keeping the likelihood proper while W is cyclic.
    """
    if kind == "mse":
        return jnp.sum(m_BxTxD * resid_BxTxD**2) / jnp.maximum(jnp.sum(m_BxTxD), 1.0)
    counts = jnp.maximum(jnp.sum(m_BxTxD, axis=(0, 1)), 1.0)
    if kind == "gauss_ev":
        # One noise variance shared by all variables (GOLEM-EV): identifiable from the raw variances.
        value = 0.5 * jnp.log(jnp.sum(m_BxTxD * resid_BxTxD**2) / jnp.sum(counts) + 1e-8)
        per_var = value[None]
    elif kind == "gauss_nv":
        per_var = 0.5 * jnp.log(jnp.sum(m_BxTxD * resid_BxTxD**2, axis=(0, 1)) / counts + 1e-8)
    else:
        per_var = jnp.log(jnp.sum(m_BxTxD * jnp.abs(resid_BxTxD), axis=(0, 1)) / counts + 1e-8)
    value = jnp.mean(per_var)
    if linear:
        d = adj_DxD.shape[0]
        value = value - jnp.linalg.slogdet(jnp.eye(d) - adj_DxD)[1] / d
    return value


def make_loss_fn(model: CausalSEM, penalty: str, fit: str = "mse") -> Callable:
    """`loss_fn(params, batch, weights, pressure) -> (loss, aux)` for `model`; `penalty` names the
    acyclicity form (see `acyclicity.PENALTIES`), `fit` the data-fit term (see `fit_term`)."""
    penalty_fn = acyclicity.get_penalty(penalty)
    linear = model.sem == "linear"
    fit_kind = fit
    n_lags = model.max_lag

    def loss_fn(params, batch: Batch, weights: LossWeights, pressure: PressureState):
        variables = {"params": params}
        out = model.apply(variables, batch.x)
        # Steps whose lagged parents fall before the window start are not scored.
        valid_T = (jnp.arange(batch.x.shape[1]) >= n_lags).astype(jnp.float32)
        m = batch.mask * valid_T[None, :, None]
        resid = out.x_hat - batch.x
        recon = fit_term("mse", resid, m, None, linear=False)  # logged whatever the fit
        adj = model.apply(variables, method=CausalSEM.adjacency)
        fit = fit_term(fit_kind, resid, m, adj, linear)
        d = adj.shape[0]
        sparse = jnp.sum(jnp.abs(adj) * off_diagonal(d)) / (d * (d - 1))
        w_lag = model.apply(variables, method=CausalSEM.lag_weights)
        sparse_lag = jnp.mean(jnp.abs(w_lag)) if n_lags > 0 else jnp.float32(0.0)
        h = penalty_fn(adj)
        disen = (cross_correlation(out.z_s, out.z_n) + cross_correlation(out.z_s, out.z_b)
                 + cross_correlation(out.z_n, out.z_b)) / 3.0
        acyclic_weighted = weights.acyclic * h + pressure.alpha * h + 0.5 * pressure.rho * h**2
        # L1 per variable (sum of |parent weights| / D): its pull on each edge, relative to the per-variable
        # fit, is then the same at every D (the logged `sparse` stays the mean over entries).
        l1_per_var = (d - 1) * sparse + (w_lag.shape[-1] * sparse_lag if n_lags > 0 else 0.0)
        score = weights.recon * fit + weights.sparse * l1_per_var + weights.disen * disen
        loss = pressure.mu * score + acyclic_weighted
        aux = {"recon": recon, "sparse": sparse, "sparse_lag": sparse_lag, "acyclic": h,
               "disen": disen, "acyclic_weighted": acyclic_weighted,
               "fit": fit, "recon_weighted": weights.recon * fit,
               "sparse_weighted": weights.sparse * l1_per_var,
               "disen_weighted": weights.disen * disen}
        return loss, aux

    return loss_fn
