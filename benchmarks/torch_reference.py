"""The same model, data and loss as jaxcausal, trained in PyTorch the way the original system did.

Eager mode, a Python loop over shuffled batches, `clip_grad_norm_(1.0)`, AdamW,
`ReduceLROnPlateau(factor=0.5, patience=3, cooldown=1)` stepped once per epoch on the validation
fit, validation as a loop over batches and the 21-threshold sweep as a Python loop. It is the
baseline of `benchmarks/epoch_time.py`, and `check_agreement` shows that it computes what
jaxcausal computes: every loss term (and the gradients) on the same batch with the same weights.

Covers the linear SEM (the default): W and lagged W, bias, latent blocks z_s / z_n / z_b with the
background offset, every fit term (`mse`, `gauss_nv`, `laplace_nv`) and every penalty form
(`trace_power` as jaxcausal builds it; `expm` and `logdet` as NOTEARS / DAGMA write them, with
`torch.linalg.matrix_exp` / `slogdet`).

    pip install -e ".[bench]"
    python benchmarks/torch_reference.py            # train 5 epochs on the built-in dataset
    python benchmarks/torch_reference.py --quick    # tiny, seconds
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

THRESHOLDS = np.linspace(0.0, 1.0, 21)


# ------------------------------------------------------------------------------------------ model
class TorchSEM(nn.Module):
    """jaxcausal.model.CausalSEM (sem='linear') in PyTorch; parameter names follow the flax ones."""

    def __init__(self, n_vars: int, max_lag: int = 1, latent_dim: int = 4, background: bool = True):
        super().__init__()
        d = n_vars
        self.n_vars, self.max_lag, self.background = d, max_lag, background
        self.w = nn.Parameter(torch.zeros(d, d))
        self.w_lag = nn.Parameter(torch.zeros(max_lag, d, d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.enc_s = nn.Linear(d, latent_dim)
        self.enc_n = nn.Linear(d, latent_dim)
        self.enc_b = nn.Linear(d, latent_dim)
        self.dec_b = nn.Linear(latent_dim, d)
        nn.init.zeros_(self.dec_b.weight)
        nn.init.zeros_(self.dec_b.bias)
        self.register_buffer("off_diag", 1.0 - torch.eye(d))

    def adjacency(self) -> torch.Tensor:
        return self.w * self.off_diag

    def forward(self, x_BxTxD: torch.Tensor):
        explained = x_BxTxD @ self.adjacency()
        for lag in range(1, self.max_lag + 1):
            shifted = torch.cat([torch.zeros_like(x_BxTxD[:, :lag]), x_BxTxD[:, :-lag]], dim=1)
            explained = explained + shifted @ self.w_lag[lag - 1]
        x_hat = explained + self.bias
        z_s = self.enc_s(explained.mean(dim=1))
        z_n = self.enc_n((x_BxTxD - explained).mean(dim=1))
        z_b = self.enc_b(x_BxTxD.mean(dim=1))
        if self.background and x_BxTxD.shape[1] > 1:
            x_hat = x_hat + self.dec_b(z_b)[:, None, :]
        return x_hat, z_s, z_n, z_b


def load_jax_params(model: TorchSEM, params) -> TorchSEM:
    """Copy jaxcausal parameters (a flax params dict) into the torch model, in place."""
    def t(a):
        return torch.as_tensor(np.array(a, dtype=np.float32))
    with torch.no_grad():
        model.w.copy_(t(params["w"]))
        if model.max_lag > 0:
            model.w_lag.copy_(t(params["w_lag"]))
        model.bias.copy_(t(params["bias"]))
        for name in ("enc_s", "enc_n", "enc_b", "dec_b"):
            layer = getattr(model, name)
            layer.weight.copy_(t(params[name]["kernel"]).T)  # flax kernel is (in, out), torch (out, in)
            layer.bias.copy_(t(params[name]["bias"]))
    return model


# -------------------------------------------------------------------------------------- penalties
def _normalised_square(w: torch.Tensor, margin: float = 1.0):
    s = w * w
    max_row, max_col = s.sum(dim=1).max(), s.sum(dim=0).max()
    scale = torch.clamp(torch.minimum(max_row, max_col) * margin, min=1.0).detach()
    return s / scale


def trace_power(w: torch.Tensor) -> torch.Tensor:
    """(1/m) sum_{k<=m} tr(S_n^k), m = 2^ceil(log2 D), by doubling (as jaxcausal.acyclicity)."""
    s = _normalised_square(w)
    d = s.shape[0]
    levels = max(0, math.ceil(math.log2(d))) if d > 1 else 0
    power, geom = s, s
    for _ in range(levels - 1):
        geom = geom + power @ geom
        power = power @ power
    total = torch.trace(geom) if levels == 0 else torch.trace(geom) + torch.sum(power * geom.T)
    return total / (2 ** levels)


def expm_penalty(w: torch.Tensor) -> torch.Tensor:
    """NOTEARS: tr(expm(S_n)) - D."""
    s = _normalised_square(w)
    return torch.trace(torch.linalg.matrix_exp(s)) - s.shape[0]


def logdet_penalty(w: torch.Tensor, s_coef: float = 1.0) -> torch.Tensor:
    """DAGMA: -logdet(s I - S_n) + D log s."""
    s = _normalised_square(w, margin=1.0 / (0.9 * s_coef))
    d = s.shape[0]
    eye = torch.eye(d, dtype=s.dtype)
    return -torch.linalg.slogdet(s_coef * eye - s)[1] + d * math.log(s_coef)


PENALTIES = {"trace_power": trace_power, "expm": expm_penalty, "logdet": logdet_penalty}


# ------------------------------------------------------------------------------------------- loss
def cross_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    def unit(z):
        z = z - z.mean(dim=0)
        return z / torch.sqrt(torch.mean(z**2, dim=0) + 1e-6)
    return torch.mean(torch.abs(unit(a).T @ unit(b) / a.shape[0]))


def fit_term(kind: str, resid: torch.Tensor, m: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    counts = torch.clamp(m.sum(dim=(0, 1)), min=1.0)
    if kind == "mse":
        return torch.sum(m * resid**2) / torch.clamp(m.sum(), min=1.0)
    if kind == "gauss_nv":
        per_var = 0.5 * torch.log(torch.sum(m * resid**2, dim=(0, 1)) / counts + 1e-8)
    else:
        per_var = torch.log(torch.sum(m * resid.abs(), dim=(0, 1)) / counts + 1e-8)
    d = adj.shape[0]
    return per_var.mean() - torch.linalg.slogdet(torch.eye(d) - adj)[1] / d


def loss_fn(model: TorchSEM, x, m, weights: dict, *, fit: str = "laplace_nv", penalty: str = "trace_power"):
    """(loss, aux) exactly as jaxcausal.losses.make_loss_fn; weights: recon, sparse, acyclic,
    disen, alpha, rho and optionally mu (floats)."""
    x_hat, z_s, z_n, z_b = model(x)
    valid_t = (torch.arange(x.shape[1]) >= model.max_lag).float()
    m = m * valid_t[None, :, None]
    resid = x_hat - x
    recon = torch.sum(m * resid**2) / torch.clamp(m.sum(), min=1.0)
    adj = model.adjacency()
    fit_value = recon if fit == "mse" else fit_term(fit, resid, m, adj)
    d = adj.shape[0]
    sparse = torch.sum(adj.abs() * model.off_diag) / (d * (d - 1))
    sparse_lag = model.w_lag.abs().mean() if model.max_lag > 0 else torch.zeros(())
    h = PENALTIES[penalty](adj)
    disen = (cross_correlation(z_s, z_n) + cross_correlation(z_s, z_b) + cross_correlation(z_n, z_b)) / 3.0
    acyclic_weighted = weights["acyclic"] * h + weights["alpha"] * h + 0.5 * weights["rho"] * h**2
    l1_per_var = (d - 1) * sparse + (d * sparse_lag if model.max_lag > 0 else 0.0)
    score = weights["recon"] * fit_value + weights["sparse"] * l1_per_var + weights["disen"] * disen
    loss = weights.get("mu", 1.0) * score + acyclic_weighted
    aux = {"recon": recon, "fit": fit_value, "sparse": sparse, "sparse_lag": sparse_lag, "acyclic": h,
           "disen": disen, "acyclic_weighted": acyclic_weighted}
    return loss, aux


# --------------------------------------------------------------------------------------- metrics
def sweep_metrics(scores: np.ndarray, truth: np.ndarray) -> dict:
    """The 21-threshold sweep as the original ran it: a Python loop over thresholds (numpy).
    Same definitions as jaxcausal.metrics (scores scaled by the largest off-diagonal score)."""
    d = scores.shape[0]
    off = ~np.eye(d, dtype=bool)
    off_scores = np.where(off, np.abs(scores), 0.0)
    largest = off_scores.max()
    scaled = off_scores / largest if largest > 0 else off_scores
    scaled = np.where((off_scores >= largest) & (largest > 0), 1.0, scaled)
    true = (truth != 0) & off
    upper = np.triu(np.ones((d, d), dtype=bool), k=1)
    rows = {k: [] for k in ("precision", "recall", "f1", "shd", "edge_count")}
    for t in THRESHOLDS:
        pred = (scaled > t) & off
        tp, n_pred, n_true = (pred & true).sum(), pred.sum(), true.sum()
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        pred_sk, true_sk = pred | pred.T, true | true.T
        shd = (pred_sk & ~true_sk & upper).sum() + (true_sk & ~pred_sk & upper).sum() + (pred & true.T & ~true).sum()
        for k, v in zip(rows, (precision, recall, f1, shd, n_pred)):
            rows[k].append(float(v))
    return {k: np.asarray(v) for k, v in rows.items()}


# --------------------------------------------------------------------------------------- trainer
class TorchTrainer:
    """Train / validate the reference on standardised arrays (N, T, D) with masks, as the original."""

    def __init__(self, x_train, m_train, x_val, m_val, truth, *, lambdas: dict, lr=5e-3, weight_decay=1e-4,
                 clip_norm=1.0, batch_size=64, fit="laplace_nv", penalty="trace_power", max_lag=1,
                 latent_dim=4, dag=None, seed=1337):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        self.x_train, self.m_train, self.x_val, self.m_val = map(t, (x_train, m_train, x_val, m_val))
        self.truth = None if truth is None else np.asarray(truth)
        d, window = self.x_train.shape[2], self.x_train.shape[1]
        self.model = TorchSEM(d, max_lag=min(max_lag, window - 1) if window > 1 else 0, latent_dim=latent_dim)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, mode="min", factor=0.5, patience=3,
                                                                cooldown=1)
        self.batch_size = min(batch_size, len(self.x_train))
        self.n_batches = len(self.x_train) // self.batch_size
        self.clip_norm, self.fit, self.penalty = clip_norm, fit, penalty
        # Augmented-Lagrangian pressure (jaxcausal.pressure), updated on the host once per epoch.
        self.dag = dag or {"rho_init": 2e-4, "rho_growth": 1.5, "rho_max": 1e6, "h_progress": 0.25, "h_tol": 1e-7}
        self.weights = dict(lambdas, alpha=0.0, rho=self.dag["rho_init"])
        self.h_ref = math.inf

    @classmethod
    def from_experiment(cls, exp) -> "TorchTrainer":
        """The reference on a `jaxcausal.experiment.Experiment`'s data, config and batch size."""
        cfg, p = exp.cfg, exp.prepared
        return cls(p.x_train, p.m_train, p.x_val, p.m_val, p.truth,
                   lambdas={k: getattr(cfg.loss, f"lambda_{k}") for k in ("recon", "sparse", "acyclic", "disen")},
                   lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, clip_norm=cfg.optim.clip_norm,
                   batch_size=exp.batch_size, fit=cfg.loss.fit, penalty=cfg.loss.penalty,
                   max_lag=cfg.model.max_lag, latent_dim=cfg.model.latent_dim, seed=cfg.train.seed,
                   dag={k: getattr(cfg.dag, k) for k in ("rho_init", "rho_growth", "rho_max", "h_progress", "h_tol")})

    def _loss(self, x, m):
        return loss_fn(self.model, x, m, self.weights, fit=self.fit, penalty=self.penalty)

    def train_epoch(self) -> dict:
        self.model.train()
        order = torch.randperm(len(self.x_train), generator=self.gen)
        total, clipped, nonfinite = 0.0, 0, 0
        for b in range(self.n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            loss, aux = self._loss(self.x_train[idx], self.m_train[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm))
            loss_value = loss.item()
            if math.isfinite(loss_value) and math.isfinite(grad_norm):
                self.opt.step()
                total += loss_value
            else:
                nonfinite += 1
            clipped += grad_norm > self.clip_norm
        return {"train_loss": total / max(self.n_batches - nonfinite, 1),
                "grad_clip_ratio": clipped / self.n_batches, "nonfinite_steps": nonfinite}

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        total, fit_total, count = 0.0, 0.0, 0
        for start in range(0, len(self.x_val), self.batch_size):
            x, m = self.x_val[start:start + self.batch_size], self.m_val[start:start + self.batch_size]
            loss, aux = self._loss(x, m)
            total += loss.item() * len(x)
            d = self.model.w.shape[0]
            l1_per_var = (d - 1) * aux["sparse"] + d * aux["sparse_lag"]
            fit_total += (self.weights["recon"] * aux["fit"] + self.weights["sparse"] * l1_per_var
                          + self.weights["disen"] * aux["disen"]).item() * len(x)
            count += len(x)
        adj = self.model.adjacency()
        out = {"val_loss": total / count, "val_fit": fit_total / count,
               "h": float(PENALTIES[self.penalty](adj))}
        if self.truth is not None:
            sweep = sweep_metrics(adj.abs().numpy(), self.truth)
            best = int(np.argmax(sweep["f1"]))
            out.update(val_f1=float(sweep["f1"][best]), val_shd=float(sweep["shd"][best]),
                       best_threshold=float(THRESHOLDS[best]))
        return out

    def update_pressure(self, h: float) -> None:
        cfg = self.dag
        if not math.isfinite(h):
            h = self.h_ref
        if h > cfg["h_tol"]:
            self.weights["alpha"] += self.weights["rho"] * h
            if h > cfg["h_progress"] * self.h_ref:
                self.weights["rho"] = min(self.weights["rho"] * cfg["rho_growth"], cfg["rho_max"])
            else:
                self.h_ref = h

    def epoch(self) -> dict:
        train = self.train_epoch()
        val = self.validate()
        self.sched.step(val["val_fit"])
        self.update_pressure(val["h"])
        return dict(train, **val, learning_rate=self.opt.param_groups[0]["lr"])


# ------------------------------------------------------------------------------ agreement check
# The loss function's batch argument (`Experiment.loss_fn(params, batch, weights, pressure)`).
LossBatch = collections.namedtuple("LossBatch", "x mask")  # (B, T, D) each


def check_agreement(exp, *, params=None, seed: int = 0, batch_size: int = 64) -> dict:
    """Loss terms and gradients of jaxcausal and this reference on one batch, random parameters.

    `exp` is a `jaxcausal.experiment.Experiment` (linear SEM). Parameters are jaxcausal's initial
    ones (`params`, or a fresh `exp.init_state()`) plus N(0, 0.2) noise on every leaf (so W, W_lag
    and the decoder are non-zero and W is cyclic); 10% of the batch entries are masked out; the
    acyclicity multiplier alpha and weight rho are non-zero (set on the initial state's pressure).
    Returns {"max_rel_err": ..., "terms": {name: (jax, torch)}, "grad_max_rel_err": ...}.
    """
    import jax
    import jax.numpy as jnp

    cfg = exp.cfg
    state = exp.init_state()
    params = state.params if params is None else params
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    params = jax.tree.unflatten(treedef, [p + 0.2 * jax.random.normal(k, p.shape, p.dtype)
                                          for p, k in zip(leaves, keys)])
    x = np.asarray(exp.prepared.x_train[:batch_size])
    rng = np.random.default_rng(seed)
    m = (rng.random(x.shape) > 0.1).astype(np.float32)
    x = np.where(m > 0, x, 0.0).astype(np.float32)
    weights = state.lambdas  # the config's fixed loss weights
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    pressure_state = state.pressure._replace(alpha=f(0.3), rho=f(2.0), h_ref=f(jnp.inf), mu=f(1.0))
    (jloss, jaux), jgrads = jax.jit(jax.value_and_grad(exp.loss_fn, has_aux=True))(
        params, LossBatch(jnp.asarray(x), jnp.asarray(m)), weights, pressure_state)

    model = TorchSEM(x.shape[2], max_lag=exp.model.max_lag, latent_dim=cfg.model.latent_dim,
                     background=cfg.model.background)
    load_jax_params(model, params)
    tweights = {k: float(getattr(weights, k)) for k in ("recon", "sparse", "acyclic", "disen")}
    tweights.update({k: float(getattr(pressure_state, k)) for k in ("alpha", "rho", "mu")})
    tloss, taux = loss_fn(model, torch.as_tensor(x), torch.as_tensor(m), tweights, fit=cfg.loss.fit,
                          penalty=cfg.loss.penalty)
    tloss.backward()

    terms = {"loss": (float(jloss), tloss.item())}
    for k in ("recon", "fit", "sparse", "sparse_lag", "acyclic", "disen", "acyclic_weighted"):
        terms[k] = (float(jaux[k]), taux[k].item())
    rel = lambda a, b: abs(a - b) / max(abs(a), abs(b), 1e-6)  # noqa: E731
    tgrads = {"w": model.w.grad, "w_lag": model.w_lag.grad, "bias": model.bias.grad}
    grad_err = 0.0
    for k, g in tgrads.items():
        jg = np.asarray(jgrads[k])
        grad_err = max(grad_err, float(np.max(np.abs(jg - g.numpy())) / max(np.max(np.abs(jg)), 1e-6)))
    for name in ("enc_s", "enc_n", "enc_b", "dec_b"):
        jg = np.asarray(jgrads[name]["kernel"]).T
        g = getattr(model, name).weight.grad.numpy()
        grad_err = max(grad_err, float(np.max(np.abs(jg - g)) / max(np.max(np.abs(jg)), 1e-6)))
    return {"max_rel_err": max(rel(a, b) for a, b in terms.values()), "terms": terms,
            "grad_max_rel_err": grad_err, "fit": cfg.loss.fit, "penalty": cfg.loss.penalty,
            "alpha": tweights["alpha"], "rho": tweights["rho"]}


def check_penalties(d: int, forms, seed: int = 0) -> dict:
    """Each penalty form named in `forms`, jaxcausal (its public lookup `acyclicity.get_penalty`) vs
    this reference, on one random cyclic W: {form: (jax, torch)}."""
    from jaxcausal import acyclicity
    w = (np.random.default_rng(seed).normal(0, 0.5, (d, d)) * (1 - np.eye(d))).astype(np.float32)
    return {name: (float(acyclicity.get_penalty(name)(w)), float(PENALTIES[name](torch.as_tensor(w))))
            for name in forms}


# -------------------------------------------------------------------------------------- the CLI
def _import_jaxcausal():
    try:
        import jaxcausal  # noqa: F401
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny data (D=5, 64 windows, 2 epochs): a smoke run")
    args = p.parse_args(argv)
    _import_jaxcausal()
    from jaxcausal import config as config_lib
    from jaxcausal.experiment import build

    overrides = {"quiet": True}
    if args.quick:
        import tempfile
        from jaxcausal.data import simulate
        ds = simulate(seed=0, d=5, noise="laplace", n_windows=64, window=32, raw_scale=True)
        tmp = tempfile.mkdtemp(prefix="torch_reference_")
        path = os.path.join(tmp, "quick.npz")
        np.savez(path, X=ds.x, adjacency=ds.truth)
        overrides.update(data=path, batch_size=16)
        args.epochs = 2
    cfg = config_lib.replace(config_lib.Config(), overrides)
    exp = build(cfg)
    agree = check_agreement(exp, batch_size=exp.batch_size)
    print(f"loss agreement with jaxcausal (random params, fit={agree['fit']}, penalty={agree['penalty']}): "
          f"max relative error {agree['max_rel_err']:.2e} over terms, {agree['grad_max_rel_err']:.2e} over gradients")
    for k, (a, b) in agree["terms"].items():
        print(f"  {k:17s} jax {a: .7e}  torch {b: .7e}")
    trainer = TorchTrainer.from_experiment(exp)
    for e in range(1, args.epochs + 1):
        t = time.perf_counter()
        row = trainer.epoch()
        dt = time.perf_counter() - t
        f1 = f" | Val F1: {row['val_f1']:.4f} | Val SHD: {row['val_shd']:.1f}" if "val_f1" in row else ""
        print(f"Epoch {e:3d}/{args.epochs} | Loss: {row['train_loss']:.4f}{f1} | "
              f"Grad Clip: {100 * row['grad_clip_ratio']:.1f}% | LR: {row['learning_rate']:.2e} | {dt:.3f} s")
    ok = agree["max_rel_err"] < 1e-4 and agree["grad_max_rel_err"] < 1e-3
    print("agreement:", "OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
