"""`python -m jaxcausal.evaluate RUN_DIR`: restore the best checkpoint and reproduce graph and metrics.

Nothing is trained: the configuration stored with the checkpoint rebuilds the model
(`experiment.build`), the best epoch's checkpoint gives the parameters, and the same search
turns them into the same graph.csv, weights.npy and best metrics the run wrote. `--data FILE`
scores another file with the run's standardisation; `--truth FILE` scores against another graph.
From Python: `jaxcausal.load(run_dir)`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

# jax and everything built on it load inside the functions, so a bad flag or path is reported at once.
from jaxcausal import cli, config as config_lib, reporting, rundir
from jaxcausal.data import Standardizer
from jaxcausal.errors import InputError

COMPARED = ("best_epoch", "graph", "model", "threshold_table", "best", "exported")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A trained run at its best epoch. graph: `export.graph_report` (weights, scores, dag, metrics)."""

    model: Any  # CausalSEM; predict with model.apply({"params": params}, x_BxTxD)
    params: Any
    standardizer: Standardizer  # the training split's statistics: apply them to new data
    config: config_lib.Config
    graph: dict
    names: tuple[str, ...]
    epoch: int


def _restore(run_dir: str, data: str | None = None, truth: str | None = None, warn=print,
             epoch: int | None = None):
    """(setup, state, meta, epoch) for the best (or the given epoch's) checkpoint of `run_dir`."""
    rundir.require_checkpoints(os.path.join(run_dir, "checkpoints"))  # a wrong path fails before jax loads
    from jaxcausal import checkpoint, experiment
    ckpts = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), read_only=True)
    latest, _ = ckpts.read_meta()
    cfg = config_lib.from_dict(latest["config"], where=f"{run_dir} checkpoint")
    if data:  # another file: its own ground truth unless --truth names one
        cfg = config_lib.replace(cfg, {"data": data, "truth": truth or ""})
    elif truth:
        cfg = config_lib.replace(cfg, {"truth": truth})
    setup = experiment.build(cfg, warn=warn)
    _check_data(setup, latest, run_dir, same_data=not (data or truth), warn=warn)
    best = int(latest["best_epoch"])
    step = epoch if epoch is not None else best if best >= 1 else max(ckpts.steps())
    if step not in ckpts.steps():
        raise InputError(f"{run_dir}: no checkpoint of epoch {step} (kept: {ckpts.steps()})")
    state, meta, step = ckpts.restore(setup.state_template(), step=step)
    return setup, state, meta, step


def _check_data(setup, meta: dict, run_dir: str, same_data: bool, warn) -> None:
    from jaxcausal.model import build_model
    n, window, d = meta.get("data_shape") or setup.prepared.dataset.x.shape
    new_window, new_d = setup.prepared.dataset.x.shape[1:]
    if new_d != d:
        raise InputError(f"{setup.prepared.dataset.source}: has {new_d} variables; the run {run_dir} "
                         f"was trained on {d}")
    if build_model(setup.cfg.model, d, window).max_lag != setup.model.max_lag:
        raise InputError(f"{setup.prepared.dataset.source}: windows of {new_window} steps do not fit the "
                         f"run's lagged model (trained on windows of {window}); cut it with --window {window}")
    if same_data and meta.get("data_fingerprint") != setup.prepared.fingerprint:
        warn(f"WARNING: {setup.prepared.dataset.source} changed since {run_dir} was trained "
             f"(fingerprint {meta.get('data_fingerprint')} -> {setup.prepared.fingerprint})")


def load(run_dir: str, *, data: str | None = None, truth: str | None = None, epoch: int | None = None) -> Loaded:
    """The run's model at its best epoch (or `epoch`, if kept), with standardizer, config and graph."""
    warn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    setup, state, meta, step = _restore(run_dir, data, truth, warn, epoch)
    report = _graph_report(setup, state.params, other_data=bool(data))
    return Loaded(setup.model, state.params, Standardizer.from_dict(meta["standardizer"]), setup.cfg,
                  report, tuple(setup.prepared.dataset.names), step)


def _graph_report(setup, params, other_data: bool) -> dict:
    """The run's graph: searched on the run's own training split as in training; scoring another
    file (--data) keeps thresholded W, so the answer never depends on the file being scored."""
    from jaxcausal import export
    if other_data:
        return export.graph_report(setup.model, params, setup.prepared.truth, setup.cfg.train.graph_threshold)
    return setup.search_graph(params)


def data_loss(setup, state, standardizer: Standardizer) -> dict:
    """Loss and reconstruction error of every window of the setup's dataset, in the run's scale."""
    import jax
    import jax.numpy as jnp
    from jaxcausal.steps import make_eval_fn
    ds = setup.prepared.dataset
    x, m = standardizer.apply(ds.x, ds.mask), ds.mask
    d = x.shape[-1]
    truth = np.zeros((d, d), np.float32) if setup.prepared.truth is None else setup.prepared.truth
    out = jax.jit(make_eval_fn(setup.model, setup.loss_fn, has_truth=False))(
        state.params, state.lambdas, state.pressure, jnp.asarray(x), jnp.asarray(m), jnp.asarray(truth, jnp.float32))
    return {"source": ds.source, "windows": int(x.shape[0]), "loss": float(out["val_loss"]),
            "recon": float(out["val_aux"]["recon"])}


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def compare_with_run(run_dir: str, out_dir: str, summary: dict) -> list[str]:
    """Names of the run's files and summary fields the evaluation does not reproduce exactly."""
    differ = []
    for name in ("graph.csv", "weights.npy"):
        ours, theirs = os.path.join(out_dir, name), os.path.join(run_dir, name)
        if not os.path.isfile(theirs) or _read_bytes(ours) != _read_bytes(theirs):
            differ.append(name)
    path = os.path.join(run_dir, "summary.json")
    saved = json.loads(_read_bytes(path)) if os.path.isfile(path) else {}
    differ += [f"summary.json:{k}" for k in COMPARED if k in summary and saved.get(k) != summary[k]]
    return differ


def parser() -> cli.Parser:
    p = cli.Parser(prog="python -m jaxcausal.evaluate",
                   description="Restore a run's best checkpoint and reproduce its graph and metrics.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", help="evaluate on this file instead (standardised with the run's statistics)")
    p.add_argument("--truth", help="ground-truth graph to score against")
    p.add_argument("--out", help="where to write graph.csv, weights.npy, evaluation.json (default RUN_DIR/evaluation)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    setup, state, meta, step = _restore(args.run_dir, args.data, args.truth, warn)
    from jaxcausal import export, results
    report = _graph_report(setup, state.params, other_data=bool(args.data))
    out_dir = args.out or os.path.join(args.run_dir, "evaluation")
    os.makedirs(out_dir, exist_ok=True)
    names = list(setup.prepared.dataset.names)
    export.write_graph_files(out_dir, report, names)
    summary = results.summarize(setup, report, step, state, stop_reason=None)
    summary = {k: summary[k] for k in COMPARED if k in summary}
    if args.data:
        summary["data"] = data_loss(setup, state, Standardizer.from_dict(meta["standardizer"]))
    reporting.write_json(os.path.join(out_dir, "evaluation.json"), dict(summary, run_dir=args.run_dir))
    print(f"Restored epoch {step} (best) of {args.run_dir}; {len(summary['graph']['edges'])} edges "
          f"({summary['graph']['rule']}) -> {out_dir}/graph.csv")
    if "exported" in summary:  # the graph in graph.csv, scored; the truth never changes it
        e = summary["exported"]
        shd = "n/a" if e.get("cpdag_shd") is None else e["cpdag_shd"]
        print(f"graph.csv: F1 {e['f1']:.4f} | precision {e['precision']:.4f} | recall {e['recall']:.4f} | "
              f"CPDAG-SHD {shd} | edges {e['edge_count']}/{e['true_edge_count']}")
    if "best" in summary:
        b = summary["best"]
        print(f"W alone (best of the 21 thresholds): F1 {b['val_f1']:.4f} | AUPRC {b['auprc']:.4f}")
    if "data" in summary:
        print(f"{summary['data']['source']}: loss {summary['data']['loss']:.6g}, "
              f"recon {summary['data']['recon']:.6g} over {summary['data']['windows']} windows")
    if args.data or args.truth:
        return 0
    differ = compare_with_run(args.run_dir, out_dir, summary)
    if differ:
        warn(f"MISMATCH: the restored best checkpoint does not reproduce {', '.join(differ)} of {args.run_dir}")
        return 1
    print(f"Reproduces {args.run_dir}'s graph.csv, weights.npy and best metrics exactly")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
