"""A population of training runs as one pytree: every TrainState leaf gains a leading member axis.

Members differ only in data — their loss weights and their seed — so one compiled program trains
them all: `make_epoch_fn`'s epoch, `jax.vmap`ped over the member axis, inside one `jax.jit`. Each
member keeps its own optimiser state (plateau scale included), acyclicity pressure and early
stopping; a member that has stopped is frozen. With several devices the member axis is sharded
across them (padded with frozen copies when it does not divide evenly). After `jax.distributed`
starts (jaxcausal/distributed.py) the devices are every process's: the same mesh then splits the
members across processes, each process computing its own shard; the data are replicated on every
device, and the per-epoch metrics come back replicated, so each process's host sees all members.

On the host, a `Record` per member collects its log rows and best epoch; `member_table` and
`select` turn them into the sweep's table and its pick (val F1 with ground truth, else the
label-free score).
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxcausal import program_cache, reporting
from jaxcausal.losses import LossWeights
from jaxcausal.steps import TrainState, init_state, tree_where

if TYPE_CHECKING:  # a grid point, defined with the grid
    from jaxcausal.sweep import Member

AXIS = "pop"
LABEL_FREE_RULE = ("lowest 2 * val_nll + edges * log(n) / (n * D): held-out negative log-likelihood per "
                   "variable (the fit term; 1/2 log(recon) for --fit mse) plus a BIC complexity term, edges = "
                   "edge score > --graph-threshold, n = validation rows, at each member's best epoch")


class Layout(NamedTuple):
    """How the population sits on the devices: `size` real members padded to `padded`."""

    mesh: jax.sharding.Mesh
    size: int
    padded: int

    @property
    def members(self) -> NamedSharding:  # leading axis split over the devices
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def replicated(self) -> NamedSharding:  # the data and the metrics: one full copy per device
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def padding(self) -> np.ndarray:
        """(padded,) bool, on the host: True for the padding slots."""
        return np.arange(self.padded) >= self.size


def layout(size: int, devices: Sequence[Any] | None = None) -> Layout:
    """Use min(#devices, size) devices; pad the population to a multiple of that. Across
    processes every device is used, so that each process holds a part of the mesh."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices) if jax.process_count() > 1 else max(1, min(len(devices), size))
    mesh = jax.make_mesh((n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n])
    return Layout(mesh, size, -(-size // n) * n)


def member_weights(members: Sequence[Member]) -> LossWeights:
    """(P,) float32 loss weights, one per member."""
    return LossWeights(*(jnp.asarray([m.lambdas[f"lambda_{name}"] for m in members], jnp.float32)
                         for name in LossWeights._fields))


def padded_members(members: Sequence[Member], padded: int) -> list[Member]:
    """Padding slots repeat the first member; they start halted and are never reported."""
    return list(members) + [members[0]] * (padded - len(members))


def init_population(setup, members: Sequence[Member], lay: Layout) -> tuple[TrainState, TrainState, jax.Array]:
    """(state, best, halted): the population's TrainState, a copy kept at each member's best
    epoch, and a (P,) bool `halted` flag (True for padding). Member m is exactly
    `init_state(..., seed=m.seed, lambdas=m's weights)`, as a single run would start."""
    slots = padded_members(members, lay.padded)
    # Host values placed with the mesh's shardings: global arrays when the mesh spans processes.
    seeds = jax.device_put(np.asarray([m.seed for m in slots], np.int32), lay.replicated)
    weights = jax.device_put(jax.tree.map(np.asarray, member_weights(slots)), lay.replicated)
    sample = setup.prepared.x_train[: setup.batch_size]  # numpy: a constant of the program

    def one(seed, w):
        return init_state(setup.model, setup.optimizer, setup.cfg, sample, seed, lambdas=w)

    state = jax.jit(jax.vmap(one), out_shardings=lay.members, compiler_options=program_cache.ONE_SHOT)(seeds, weights)
    best = jax.tree.map(jnp.copy, state)  # separate buffers: both are donated every epoch
    halted = jax.device_put(lay.padding, lay.members)
    return state, best, halted


def make_population_epoch(setup, lay: Layout) -> Callable:
    """`step(state, best, halted, data) -> (state, best, halted, metrics)`, all with a leading
    member axis, jitted once. A member halts when early stopping fires or after
    `max_nonfinite` consecutive non-finite steps (the single run's two stop rules); a halted
    member is frozen and reports `improved=False`. `metrics` also carries each member's
    `halted` and `early_stopped` flags, and comes back replicated: every process reads all of it."""
    epoch = setup.epoch_fn()
    max_nonfinite = setup.cfg.optim.max_nonfinite

    def member(state, best, halted, data):
        new, out = epoch(state, data)
        new = tree_where(halted, state, new)
        improved = out["improved"] & ~halted
        best = tree_where(improved, new, best)
        halted = halted | new.early.stopped | (new.nonfinite_run >= max_nonfinite)
        return new, best, halted, dict(out, improved=improved, halted=halted, early_stopped=new.early.stopped)

    pop, rep = lay.members, lay.replicated
    return jax.jit(jax.vmap(member, in_axes=(0, 0, 0, None)), in_shardings=(pop, pop, pop, rep),
                   out_shardings=(pop, pop, pop, rep), donate_argnums=(0, 1, 2))


def place_data(data, lay: Layout):
    """The training data, one full copy on every device of the mesh (from this host's copy)."""
    return jax.device_put(jax.tree.map(np.asarray, data), lay.replicated)


def take(tree, index: int):
    """Member `index` of a population pytree, as a single-run pytree on this process's default
    device. Across processes the whole population is gathered first: every process must call it."""
    if not all(a.is_fully_addressable for a in jax.tree.leaves(tree)):
        everywhere = jax.tree.map(lambda a: a.sharding.update(spec=PartitionSpec()), tree)
        tree = jax.device_get(jax.jit(lambda t: t, out_shardings=everywhere)(tree))  # one program
    host = jax.device_get(jax.tree.map(lambda a: a[index], tree))
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a)), host)


# ---------------------------------------------------------------------------------------------
# Host side: each member's record, its label-free score, the selection


@dataclasses.dataclass
class Record:
    member: Member
    health: reporting.HealthMonitor
    rows: list[dict] = dataclasses.field(default_factory=list)
    stop_reason: str | None = None
    at_best: dict | None = None  # the best epoch's row plus the label-free quantities

    def add(self, row: dict, out: dict, setup) -> None:
        self.rows.append(row)
        self.health.check(row)
        if bool(out["improved"]):
            scores = np.asarray(out["scores"])
            edges = scores > setup.cfg.train.graph_threshold
            self.at_best = {"row": row, "val_nll": val_nll(out, setup.cfg.loss.fit),
                            "edges": int(edges.sum()), "edge_set": set(zip(*np.nonzero(edges)))}


def val_nll(out: dict, fit: str) -> float:
    """Held-out negative log-likelihood per variable, up to a constant, whatever the loss weights."""
    aux = out["val_aux"]
    return 0.5 * math.log(max(float(aux["recon"]), 1e-30)) if fit == "mse" else float(aux["fit"])


def label_free_score(*, val_nll: float, edges: int, n: int, d: int) -> float:
    """BIC per observation and variable: 2 * NLL + edges * log(n) / (n * D). Lower is better."""
    return 2.0 * val_nll + edges * math.log(n) / (n * d)


def edge_stability(records: list[Record]) -> dict[int, float | None]:
    """Mean Jaccard overlap of a member's label-free edge set with the other seeds' (same lambdas)."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault(tuple(r.member.lambdas.values()), []).append(r)
    result: dict[int, float | None] = {}
    for group in groups.values():
        for r in group:
            others = [o for o in group if o is not r and o.at_best and r.at_best]
            if not others:
                result[r.member.index] = None
                continue
            a = r.at_best["edge_set"]
            result[r.member.index] = float(np.mean(
                [len(a & o.at_best["edge_set"]) / max(len(a | o.at_best["edge_set"]), 1) for o in others]))
    return result


def member_table(records: list[Record], setup) -> list[dict]:
    n = setup.prepared.x_val.shape[0] * max(setup.prepared.x_val.shape[1] - setup.model.max_lag, 1)
    d = setup.prepared.x_val.shape[-1]
    stability = edge_stability(records)
    table = []
    for r in records:
        m, best = r.member, r.at_best
        row = best["row"] if best else {}
        last = r.rows[-1] if r.rows else {}
        comps = last.get("train_loss_components") or {}
        table.append(reporting.clean({
            "member": m.index, **m.lambdas, "seed": m.seed,
            "best_epoch": row.get("epoch"), "epochs_run": last.get("epoch", 0), "stop_reason": r.stop_reason,
            "val_f1": row.get("val_f1"), "val_shd": row.get("val_shd"), "edge_count": row.get("edge_count"),
            "true_edge_count": row.get("true_edge_count"), "best_threshold": row.get("best_threshold"),
            "val_loss": row.get("val_loss"), "val_nll": best and best["val_nll"],
            "label_free_edges": best and best["edges"],
            "label_free_score": best and label_free_score(val_nll=best["val_nll"], edges=best["edges"], n=n, d=d),
            "edge_stability": stability[m.index],
            "final_train_loss": last.get("train_loss"),
            **{f"final_{k}": comps.get(k) for k in ("recon", "sparse", "acyclic", "disen")},
            "final_h": last.get("h"),
            "warnings": sorted(r.health.seen),
        }))
    return table


def select(table: list[dict], has_truth: bool) -> dict:
    """The oracle pick (best val F1, then lower SHD, then lower index) when there is ground truth,
    the label-free pick always; the selected member is the oracle's with truth, else label-free."""
    scored = [t for t in table if t["label_free_score"] is not None]
    label_free = min(scored, key=lambda t: (t["label_free_score"], t["member"]))["member"] if scored else 0
    result = {"label_free_rule": LABEL_FREE_RULE, "label_free_member": label_free,
              "oracle_member": None, "label_free_equals_oracle": None, "label_free_ties_oracle": None}
    if has_truth:
        rated = [t for t in table if t["val_f1"] is not None]
        oracle = min(rated, key=lambda t: (-t["val_f1"], t["val_shd"], t["member"]))["member"] if rated else 0
        quality = lambda m: (table[m]["val_f1"], table[m]["val_shd"])  # noqa: E731
        result.update(rule="best val F1 at each member's best epoch (ground truth)", oracle_member=oracle,
                      label_free_equals_oracle=oracle == label_free,
                      # Several members often reach the same graph: a different member, equally good.
                      label_free_ties_oracle=quality(oracle) == quality(label_free), best_member=oracle)
    else:
        result.update(rule="label-free (no ground truth): " + LABEL_FREE_RULE, best_member=label_free)
    return result
