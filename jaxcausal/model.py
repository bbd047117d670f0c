"""The structural model: parents under W (and lagged parents) predict each variable.

Knows nothing of losses or optimisers. Shapes: B windows, T time steps, D variables, L lags,
H hidden units, K latent width.

The latent blocks z_s (structural), z_n (noise) and z_b (background) are window summaries of,
respectively, the part of X explained by W, the residual, and X itself. Only z_b feeds back into the
reconstruction, and only as a per-window constant offset for windows with T > 1: it can explain
window-level shifts (batch effects) but not the within-window variation that W must explain. With
T = 1 the offset would be a shortcut around W (it could copy X), so it is switched off.
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class ModelOutput(NamedTuple):
    x_hat: jax.Array  # (B, T, D) reconstruction
    z_s: jax.Array  # (B, K)
    z_n: jax.Array  # (B, K)
    z_b: jax.Array  # (B, K)


def off_diagonal(d: int) -> jax.Array:
    return 1.0 - jnp.eye(d, dtype=jnp.float32)


def lagged(x_BxTxD: jax.Array, lag: int) -> jax.Array:
    """x shifted `lag` steps forward in time, zero-filled: out[:, t] = x[:, t - lag]."""
    pad = jnp.zeros_like(x_BxTxD[:, :lag])
    return jnp.concatenate([pad, x_BxTxD[:, :-lag]], axis=1)


class CausalSEM(nn.Module):
    """Linear or per-variable-MLP structural equation model with latent blocks."""

    n_vars: int
    sem: str = "linear"
    hidden: int = 16
    max_lag: int = 1  # effective number of lags; 0 for static data
    latent_dim: int = 4
    background: bool = True
    # Prior knowledge (priors.py): allowed[i, j] = design column i (the D variables, then their lags)
    # may be a parent of variable j; nested tuples keep the module hashable. None = all open.
    allowed: tuple[tuple[bool, ...], ...] | None = None

    def setup(self):
        d, init_w = self.n_vars, nn.initializers.zeros
        if self.sem == "linear":
            self.w = self.param("w", init_w, (d, d))
        else:
            # fc1[i, j, h]: weight from input variable i to hidden unit h of variable j's MLP.
            scale = 1.0 / jnp.sqrt(d)
            self.fc1 = self.param("fc1", nn.initializers.uniform(scale), (d, d, self.hidden))
            self.fc1_bias = self.param("fc1_bias", nn.initializers.zeros, (d, self.hidden))
            self.fc2 = self.param("fc2", nn.initializers.uniform(1.0 / jnp.sqrt(self.hidden)), (d, self.hidden))
        if self.max_lag > 0:
            self.w_lag = self.param("w_lag", init_w, (self.max_lag, d, d))
        self.bias = self.param("bias", nn.initializers.zeros, (d,))
        self.enc_s = nn.Dense(self.latent_dim)
        self.enc_n = nn.Dense(self.latent_dim)
        self.enc_b = nn.Dense(self.latent_dim)
        self.dec_b = nn.Dense(d, kernel_init=nn.initializers.zeros)

    def edge_mask(self) -> jax.Array:
        """(D, D) 0/1: off-diagonal slots that prior knowledge leaves open. Multiplying W by it keeps
        a forbidden weight and its gradient exactly zero. Required edges are not forced here: the
        search that exports the graph enforces them (structure.py)."""
        mask = off_diagonal(self.n_vars)
        if self.allowed is None:
            return mask
        return mask * jnp.asarray(self.allowed[: self.n_vars], jnp.float32)

    def lag_mask(self) -> jax.Array:
        """(L, D, D) 0/1: lagged slots that prior knowledge leaves open."""
        d = self.n_vars
        if self.allowed is None:
            return jnp.ones((self.max_lag, d, d), jnp.float32)
        return jnp.asarray(self.allowed[d:], jnp.float32).reshape(self.max_lag, d, d)

    def adjacency(self) -> jax.Array:
        """(D, D) weighted adjacency the acyclicity penalty sees: W (linear) or first-layer norms (MLP)."""
        mask = self.edge_mask()
        if self.sem == "linear":
            return self.w * mask
        # The tiny epsilon keeps the norm's gradient finite at exactly zero weights.
        return jnp.sqrt(jnp.sum(self.fc1**2, axis=-1) + 1e-12) * mask

    def instantaneous(self, x_BxTxD: jax.Array) -> jax.Array:
        mask = self.edge_mask()
        if self.sem == "linear":
            return x_BxTxD @ (self.w * mask)
        fc1 = self.fc1 * mask[:, :, None]
        h_BxTxDxH = jax.nn.sigmoid(jnp.einsum("bti,ijh->btjh", x_BxTxD, fc1) + self.fc1_bias[None, None])
        return jnp.einsum("btjh,jh->btj", h_BxTxDxH, self.fc2)

    def __call__(self, x_BxTxD: jax.Array) -> ModelOutput:
        explained = self.instantaneous(x_BxTxD)
        w_lag = self.lag_weights()
        for lag in range(1, self.max_lag + 1):
            explained = explained + lagged(x_BxTxD, lag) @ w_lag[lag - 1]
        x_hat = explained + self.bias[None, None, :]
        z_s = self.enc_s(explained.mean(axis=1))
        z_n = self.enc_n((x_BxTxD - explained).mean(axis=1))
        z_b = self.enc_b(x_BxTxD.mean(axis=1))
        if self.background and x_BxTxD.shape[1] > 1:
            x_hat = x_hat + self.dec_b(z_b)[:, None, :]
        return ModelOutput(x_hat, z_s, z_n, z_b)

    def lag_weights(self) -> jax.Array:
        """(L, D, D) lagged weights (forbidden ones exactly zero), or (0, D, D) without lags."""
        if self.max_lag > 0:
            return self.w_lag * self.lag_mask()
        return jnp.zeros((0, self.n_vars, self.n_vars), jnp.float32)


def build_model(cfg, n_vars: int, window: int, allowed_AxD=None) -> CausalSEM:
    """Model for a dataset with `n_vars` variables and windows of `window` steps (cfg: ModelConfig).

    allowed_AxD: optional (D + L*D, D) bool prior-knowledge mask (priors.py) for this model's L."""
    max_lag = min(cfg.max_lag, window - 1) if window > 1 else 0
    allowed = None
    if allowed_AxD is not None:
        assert allowed_AxD.shape == (n_vars * (1 + max_lag), n_vars), (allowed_AxD.shape, n_vars, max_lag)
        allowed = tuple(tuple(bool(v) for v in row) for row in allowed_AxD)
    return CausalSEM(n_vars=n_vars, sem=cfg.sem, hidden=cfg.hidden, max_lag=max_lag,
                     latent_dim=cfg.latent_dim, background=cfg.background, allowed=allowed)


def edge_scores(model: CausalSEM, params) -> jax.Array:
    """(D, D) non-negative edge scores with zero diagonal; thresholds apply to these."""
    return jnp.abs(model.apply({"params": params}, method=CausalSEM.adjacency))
