"""The optimiser: the original system's stability fixes as one optax chain."""
from __future__ import annotations

import optax


def build_optimizer(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
    """clip_by_global_norm -> adamw -> reduce_on_plateau (cfg: OptimConfig).

    optax's plateau schedule counts update calls; averaging the loss over `steps_per_epoch` calls
    (`accumulation_size`) makes its patience and cooldown count epochs, as the original's
    ReduceLROnPlateau did. Its scale multiplies the final update, AdamW's decay term included.
    """
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(cfg.lr, weight_decay=cfg.weight_decay),
        optax.contrib.reduce_on_plateau(
            factor=cfg.plateau_factor, patience=cfg.plateau_patience, cooldown=cfg.plateau_cooldown,
            accumulation_size=steps_per_epoch),
    )


def plateau_scale(opt_state):
    """The current reduce-on-plateau multiplier (1.0 until the first cut)."""
    return opt_state[-1].scale
