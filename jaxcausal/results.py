"""What a run reports: a log row per epoch, the metadata of each checkpoint, and at the end the
graph files and summary.json of the best epoch. Train runs, sweeps and evaluation share them."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from jaxcausal import checkpoint, config as config_lib, export, formats, priors as priors_lib, reporting
from jaxcausal.errors import InputError
from jaxcausal.experiment import Experiment
from jaxcausal.metrics import THRESHOLDS
from jaxcausal.steps import TrainState


def epoch_row(out: dict, state_epoch: int, setup: Experiment, epoch_time: float) -> dict:
    """One training_log.jsonl line from the epoch's metrics (already on the host)."""
    comps = out["components"]
    row = {
        "epoch": state_epoch,
        "train_loss": out["train_loss"],
        "train_loss_components": {k: comps[k] for k in ("recon", "sparse", "acyclic", "disen", "sparse_lag",
                                                          "acyclic_weighted")},
        "val_loss": out["val_loss"],
        "val_recon": out["val_aux"]["recon"],
        "val_f1": None, "val_shd": None, "precision": None, "recall": None,
        "edge_count": int(np.sum(out["scores"] > setup.cfg.train.graph_threshold)),
        "true_edge_count": None, "best_threshold": None,
        "grad_clip_ratio": out["grad_clip_ratio"],
        "max_grad_norm": out["max_grad_norm"],
        "learning_rate": out["learning_rate"],
        "h": out["h"], "rho": out["rho"], "alpha": out["alpha"], "mu": out["mu"], "stage": int(out["stage"]),
        "eligible": bool(out["eligible"]),
        "weight_change": out["weight_change"],  # relative change of the edge scores: what ends a stage
        "nonfinite_steps": int(out["nonfinite_steps"]),
        "epoch_time": epoch_time,
    }
    if setup.has_truth:
        i, table = int(out["best_index"]), out["thresholds"]
        row.update(val_f1=table["f1"][i], val_shd=table["shd"][i], precision=table["precision"][i],
                   recall=table["recall"][i], edge_count=int(table["edge_count"][i]),
                   true_edge_count=int(setup.prepared.truth.sum()), best_threshold=float(THRESHOLDS[i]))
    return reporting.clean(row)


def checkpoint_meta(setup: Experiment, state: TrainState, stop_reason: str | None = None) -> dict:
    """What travels with every checkpoint besides the state (the state digest is added on save)."""
    return reporting.clean({
        "epoch": int(state.epoch), "best_epoch": int(state.early.best_epoch),
        "config": config_lib.to_dict(setup.cfg), "config_fingerprint": config_lib.fingerprint(setup.cfg),
        "data_fingerprint": setup.prepared.fingerprint,
        "priors_fingerprint": priors_lib.fingerprint(setup.priors), "data_shape": list(setup.prepared.dataset.x.shape),
        "standardizer": setup.prepared.standardizer.to_dict(), "stop_reason": stop_reason,
    })


def restore_best(setup: Experiment, ckpts: checkpoint.Checkpoints, state: TrainState) -> tuple[TrainState, int]:
    """The checkpoint of the best epoch; the given state, with a warning, if it cannot be read."""
    best = int(state.early.best_epoch)
    if best < 1:  # no epoch ever had a finite metric
        return state, int(state.epoch)
    if best == int(state.epoch):
        return state, best
    try:
        restored, _, step = ckpts.restore(state, step=best)
        return restored, step
    except InputError:
        print(f"WARNING: the best checkpoint (epoch {best}) is not readable; exporting the final state "
              f"(epoch {int(state.epoch)})", file=sys.stderr, flush=True)
        return state, int(state.epoch)


def finish_run(setup: Experiment, ckpts, run_dir: str, state: TrainState, stop_reason: str,
               health: reporting.HealthMonitor, compile_time: float, train_time: float, say=print,
               best_state: TrainState | None = None) -> dict:
    """Export the best epoch's graph and write summary.json; `state` is read, never changed.
    best_state: the best epoch's state when still in memory, else it is restored from `ckpts`."""
    if best_state is not None:
        best_epoch = int(state.early.best_epoch)
    else:
        best_state, best_epoch = restore_best(setup, ckpts, state)
    with formats.RunVisuals(run_dir, best_epoch, plots=setup.cfg.train.plots) as visuals:
        t0 = time.perf_counter()
        report = setup.search_graph(best_state.params, progress=say)
        search_time = time.perf_counter() - t0
        names = list(setup.prepared.dataset.names)
        export.write_graph_files(run_dir, report, names)
        visuals_note = visuals.finish()
    summary = summarize(setup, report, best_epoch, state, stop_reason)
    summary.update(health=health.verdicts(), compile_time=compile_time, train_time=train_time,
                   timings={"compile": compile_time, "train": train_time, "search": search_time,
                            "bootstrap": (report.get("bootstrap") or {}).get("seconds"),
                            "write": time.perf_counter() - t0 - search_time})
    reporting.write_json(os.path.join(run_dir, "summary.json"), summary)
    for line in export.console_summary(report, names):
        say(line)
    if visuals_note:
        say(visuals_note)
    return summary


def summarize(setup: Experiment, report: dict, best_epoch: int, state: TrainState, stop_reason: str) -> dict:
    names = list(setup.prepared.dataset.names)
    edges = [dict(zip(("cause", "effect", "weight", "orientation", "confidence"), r))
             for r in export.edge_rows(report, names)]
    summary = {
        "best_epoch": best_epoch, "epochs_run": int(state.epoch), "stop_reason": stop_reason,
        "nonfinite_steps": int(state.nonfinite_total),
        "graph": {"rule": report["rule"], "edges": edges,
                  "lagged_edges": [dict(zip(("cause", "effect", "lag", "weight", "confidence"), r))
                                   for r in export.lagged_rows(report, names)],
                  # its time lives in timings, so a restored run reproduces the graph entry exactly
                  "bootstrap": {k: v for k, v in report["bootstrap"].items() if k != "seconds"}
                  if "bootstrap" in report else None},
        "model": report["model"],
        "threshold_table": export.threshold_rows(report),
    }
    if "thresholds" in report:
        i, table = report["best_index"], report["thresholds"]
        summary["best"] = {"val_f1": float(table["f1"][i]), "val_shd": float(table["shd"][i]),
                           "precision": float(table["precision"][i]), "recall": float(table["recall"][i]),
                           "edge_count": int(table["edge_count"][i]), "best_threshold": report["best_threshold"],
                           "true_edge_count": int(setup.prepared.truth.sum()), "auprc": report["auprc"]}
        summary["exported"] = report["exported"]
    return reporting.clean(summary)
