"""`python -m jaxcausal.sweep`: a grid over the loss weights (x seeds) trained as one population.

    python -m jaxcausal.sweep --lambda-sparse 1e-5,1e-4,1e-3 --lambda-acyclic 1e-7,1e-6,1e-5 [--seeds 3]

One compilation: the TrainState gets a leading member axis (`jaxcausal.population`)
and `make_epoch_fn`'s epoch runs under `jit(vmap)`. The four `--lambda-*` flags take
comma-separated lists; an axis not given holds the config's value; every other train flag applies
to all members. With `--seeds K`, member seeds are seed, seed+1, ..., seed+K-1: each member's
parameter init and batch shuffling come from its own seed, while the train/validation split comes
from the config's `--seed` and is shared, so every member is scored on the same validation windows.

Across processes or hosts (`--coordinator HOST:PORT --num-processes N --process-id I`, or
`--distributed` under SLURM; jaxcausal/distributed.py) the same mesh spans every process's devices
and the members are split across them; every process sees all members' metrics, so all agree on
the selection, and process 0 alone writes the sweep directory.

Writes into `--out`: sweep_log.jsonl (one line per member and epoch), sweep.csv and sweep.json
(one row per member, the selection) and best/ — the selected member as a normal run directory
(`python -m jaxcausal.evaluate OUT/best`, `python -m jaxcausal.train --resume OUT/best`).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import os
import sys
import time
from typing import NamedTuple


# jax and everything built on it (checkpoint, population, training) are imported inside the functions
# that train, so a bad flag or grid value is reported without loading jax.
from jaxcausal import cli, config as config_lib, distributed, reporting, rundir
from jaxcausal.errors import InputError

SWEEP_FILES = ("sweep_log.jsonl", "sweep.csv", "sweep.json", "best")
LAMBDA_FIELDS = config_lib.LAMBDA_FIELDS  # the grid's axes


class Member(NamedTuple):
    """One grid point: its index in the population, its loss weights and its seed."""

    index: int
    lambdas: dict[str, float]  # {lambda_recon, lambda_sparse, lambda_acyclic, lambda_disen}
    seed: int


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_values(name: str, text: str) -> list[float]:
    """'1e-5,1e-4' -> [1e-5, 1e-4]; one-line InputError on anything else."""
    try:
        values = [float(item) for item in text.split(",")]
    except ValueError:
        raise InputError(f"{flag(name)}: {text!r} is not a comma-separated list of numbers "
                         f"(e.g. {flag(name)} 1e-5,1e-4,1e-3)") from None
    if len(set(values)) != len(values):
        raise InputError(f"{flag(name)}: {text!r} lists a value twice")
    return values


def grid_members(cfg: config_lib.Config, grid: dict[str, list[float]], n_seeds: int) -> list[Member]:
    """Every combination of the lambda axes (config value where an axis is not given) x seeds."""
    if n_seeds < 1:
        raise InputError(f"--seeds: need at least 1 seed, got {n_seeds}")
    axes = []
    for name in LAMBDA_FIELDS:
        values = grid.get(name) or [getattr(cfg.loss, name)]
        for v in values:  # range checks of the config schema, naming the flag
            config_lib.replace(cfg, {name: v}, where=flag(name))
        axes.append(values)
    seeds = [cfg.train.seed + k for k in range(n_seeds)]
    config_lib.replace(cfg, {"seed": seeds[-1]}, where="--seeds")  # the schema's seed range
    return [Member(i, dict(zip(LAMBDA_FIELDS, combo)), seed)
            for i, (combo, seed) in enumerate(itertools.product(itertools.product(*axes), seeds))]


def prepare_sweep_dir(out: str, overwrite: bool, clear: bool = True) -> None:
    """Refuse a directory holding sweep results unless --overwrite; with `clear`, empty and create it."""
    rundir.prepare_output_dir(out, overwrite, files=SWEEP_FILES, what="sweep directory",
                              alternatives="choose another --out or pass --overwrite", clear=clear)


# ---------------------------------------------------------------------------------------------
# The run


def run_sweep(cfg: config_lib.Config, members: list[Member], *, stream=sys.stdout,
              devices=None) -> dict:
    """Train `members` as one population and write the sweep directory. Returns sweep.json's content.

    Across processes every process calls this with the same arguments; only process 0 prints and
    writes, and only its result holds `best_summary`."""
    from jaxcausal import experiment
    primary = distributed.is_primary()
    quiet = cfg.train.quiet or not primary
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=stream, flush=True))
    warn = (lambda msg: print(msg, file=sys.stderr, flush=True)) if primary else (lambda msg: None)
    if distributed.process_count() > 1 and not cfg.train.out:
        raise InputError("--out: name the sweep directory when running across processes "
                         "(the same path for every process; process 0 writes it)")
    out_dir = cfg.train.out or rundir.default_run_dir()
    distributed.agreed(lambda: prepare_sweep_dir(out_dir, cfg.train.overwrite, clear=False), everywhere=False)
    # data first: bad input never clears earlier results
    setup = distributed.agreed(lambda: experiment.build(cfg, warn=warn))
    with contextlib.ExitStack() as held:
        # One process per sweep directory, locked before anything in it is cleared (jaxcausal/rundir.py).
        distributed.agreed(lambda: held.enter_context(rundir.RunLock(
            out_dir, warn=warn, resume_hint="the same sweep command with --overwrite")), everywhere=False)
        return _run_sweep_locked(cfg, members, setup, out_dir, say, warn, devices)


def _run_sweep_locked(cfg: config_lib.Config, members: list[Member], setup, out_dir: str, say, warn,
                      devices) -> dict:
    """The body of `run_sweep`, run while this process holds the sweep directory's lock."""
    import jax
    from jaxcausal import population, results
    from jaxcausal.population import Record, member_table, select
    primary = distributed.is_primary()
    if primary:
        prepare_sweep_dir(out_dir, cfg.train.overwrite)
    for w in setup.prepared.warnings:
        warn(f"WARNING: {w}")
    lay = population.layout(len(members), devices)
    state, best, halted = population.init_population(setup, members, lay)
    data = population.place_data(setup.train_data(), lay)
    t0 = time.perf_counter()
    step = population.make_population_epoch(setup, lay).lower(state, best, halted, data).compile()
    compile_time = time.perf_counter() - t0
    processes = distributed.process_count()
    where = f" in {processes} processes" if processes > 1 else ""
    say(f"Sweep: {len(members)} members on {lay.mesh.size} device(s){where} ({jax.default_backend()}), "
        f"compiled in {compile_time:.1f} s -> {out_dir}")
    records = [Record(m, reporting.HealthMonitor(quiet=True)) for m in members]
    was_halted = lay.padding
    epochs, exit_signal, start = cfg.train.epochs, None, time.perf_counter()
    log_path = os.path.join(out_dir, "sweep_log.jsonl") if primary else os.devnull
    with rundir.SignalStop() as stop, open(log_path, "w") as log:
        for epoch in range(1, epochs + 1):
            t = time.perf_counter()
            state, best, halted, out = step(state, best, halted, data)
            out = jax.device_get(out)  # replicated: every process has every member's metrics
            now_halted, stopped = out.pop("halted"), out.pop("early_stopped")
            dt = time.perf_counter() - t
            for r in records:
                m = r.member.index
                if was_halted[m]:
                    continue
                member_out = jax.tree.map(lambda a: a[m], out)  # noqa: B023
                row = results.epoch_row(member_out, epoch, setup, dt)
                r.add(row, member_out, setup)
                log.write(reporting.dumps({"member": m, "seed": r.member.seed, "lambdas": r.member.lambdas,
                                           **row}) + "\n")
                if now_halted[m]:
                    r.stop_reason = "early_stopping" if stopped[m] else "nonfinite"
                    say(f"  member {m} stopped ({r.stop_reason}) after epoch {epoch}")
            log.flush()
            if primary:
                os.fsync(log.fileno())
            say(progress_line(records, epoch, epochs, now_halted, dt, setup.has_truth))
            was_halted = now_halted
            # A signal to any process stops all of them after the same epoch.
            signals = distributed.gather_ints(stop.signum or 0) if processes > 1 else [stop.signum or 0]
            if any(signals):
                exit_signal = next(int(s) for s in signals if s)
            if was_halted.all() or exit_signal is not None:
                break
    train_time = time.perf_counter() - start
    for r in records:
        r.stop_reason = r.stop_reason or ("interrupted" if exit_signal is not None else "max_epochs")
    table = member_table(records, setup)
    selection = select(table, setup.has_truth)
    b = selection["best_member"]
    for row in table:
        row["selected"] = row["member"] == b
    summary = write_best_run(setup, records[b], population.take(state, b), population.take(best, b),
                             os.path.join(out_dir, "best"), compile_time, train_time) or {}
    result = reporting.clean({
        "members": table, "selection": selection, "grid": grid_axes(members),
        "seeds": sorted({m.seed for m in members}), "split_seed": cfg.train.seed,
        "population": len(members), "padded_population": lay.padded, "devices": lay.mesh.size,
        "processes": processes,
        "platform": jax.default_backend(), "epochs_run": max(t["epochs_run"] for t in table),
        "compile_time": compile_time, "train_time": train_time, "best_dir": "best",
        "best_summary": {k: summary.get(k) for k in ("best_epoch", "best", "exported", "stop_reason")},
        "config": config_lib.to_dict(cfg), "versions": rundir.versions(), "data": setup.prepared.stats(),
    })
    if primary:
        reporting.write_json(os.path.join(out_dir, "sweep.json"), result)
        write_csv(os.path.join(out_dir, "sweep.csv"), table)
    say(format_table(table, selection))
    if exit_signal is not None:
        warn(f"Interrupted by signal {exit_signal} after epoch {result['epochs_run']}; results so far are in {out_dir}")
        result["exit_code"] = rundir.EXIT_SIGNAL_BASE + exit_signal
    return result


def progress_line(records: list[population.Record], epoch: int, epochs: int, halted, dt: float, has_truth: bool) -> str:
    active = sum(1 for r in records if not halted[r.member.index])
    line = f"Epoch {epoch:>{max(len(str(epochs)), 3)}}/{epochs} | Active: {active}/{len(records)}"
    rated = [r for r in records if r.at_best]
    if rated and has_truth:
        top = max(rated, key=lambda r: (r.at_best["row"]["val_f1"] or 0.0, -r.member.index))
        line += f" | Best Val F1: {top.at_best['row']['val_f1']:.4f} (member {top.member.index})"
    return line + f" | Epoch time: {dt:.2f}s"


def grid_axes(members: list[Member]) -> dict[str, list[float]]:
    return {name: sorted({m.lambdas[name] for m in members}) for name in LAMBDA_FIELDS}


def write_best_run(setup, record: population.Record, state, best_state, run_dir: str, compile_time: float,
                   train_time: float) -> dict | None:
    """The selected member as a train run directory: config, log, checkpoints (best + latest),
    graph files and summary, through the same functions `train_and_evaluate` uses.

    Across processes every process calls it with the same (gathered) states: orbax's
    CheckpointManager is collective (its saves meet at barriers across processes) and writes only
    from process 0, which alone writes the other files. The others run the same graph search (its
    --bootstrap replicates are split across all processes: `distributed.spread`) and return None."""
    from jaxcausal import checkpoint, results
    primary = distributed.is_primary()
    m = record.member
    # The config keeps the split seed: evaluate and --resume rebuild the same validation windows;
    # the member's own seed lives on in the checkpoint (its PRNG key) and in the "sweep" block.
    cfg = config_lib.replace(setup.cfg, dict(m.lambdas, out=run_dir), where="sweep")
    msetup = dataclasses.replace(setup, cfg=cfg)
    sweep_info = {"member": m.index, "member_seed": m.seed, "split_seed": setup.cfg.train.seed,
                  "sweep_dir": os.path.dirname(os.path.abspath(run_dir))}
    if primary:
        rundir.prepare_output_dir(run_dir, overwrite=True)
        rundir.write_config(run_dir, msetup, sweep=sweep_info)
        with open(os.path.join(run_dir, "training_log.jsonl"), "w") as f:
            f.writelines(reporting.dumps(row) + "\n" for row in record.rows)
    ckpts = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), keep=cfg.train.keep_checkpoints)
    final_epoch, best_epoch = int(state.epoch), int(state.early.best_epoch)
    metric = float(state.early.best_metric)
    if 0 < best_epoch < final_epoch:
        ckpts.save(best_epoch, best_state, results.checkpoint_meta(msetup, best_state), metric)
    ckpts.save(final_epoch, state, results.checkpoint_meta(msetup, state, record.stop_reason),
               metric if best_epoch == final_epoch else None)
    ckpts.wait()
    if not primary:
        ckpts.close()
        # The same (deterministic) search as process 0's finish_run, for this process's bootstrap share.
        msetup.search_graph((best_state if best_epoch >= 1 else state).params)
        return None
    # finish_run reads the best epoch back when it is not the last; across processes an orbax restore
    # is collective, so process 0 must not read alone. It gets the state it just saved, still in memory.
    summary = results.finish_run(msetup, ckpts, run_dir, state, record.stop_reason, record.health, compile_time,
                                 train_time, best_state=best_state if best_epoch >= 1 else None)
    ckpts.close()
    summary["sweep"] = sweep_info
    reporting.write_json(os.path.join(run_dir, "summary.json"), summary)
    return summary


# ---------------------------------------------------------------------------------------------
# Output tables

CSV_COLUMNS = ("member", *LAMBDA_FIELDS, "seed", "best_epoch", "epochs_run", "stop_reason", "val_f1", "val_shd",
               "edge_count", "true_edge_count", "best_threshold", "val_loss", "val_nll", "label_free_edges",
               "label_free_score", "edge_stability", "final_train_loss", "final_recon", "final_sparse",
               "final_acyclic", "final_disen", "final_h", "warnings", "selected")


def write_csv(path: str, table: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in table:
            writer.writerow(["" if row[c] is None else ";".join(row[c]) if isinstance(row[c], list) else row[c]
                             for c in CSV_COLUMNS])


def format_table(table: list[dict], selection: dict) -> str:
    fmt = reporting.fmt
    header = (f"{'member':>6} {'recon':>8} {'sparse':>8} {'acyclic':>8} {'disen':>8} {'seed':>6} {'best ep':>7} "
              f"{'val F1':>7} {'SHD':>5} {'edges':>5} {'thr':>5} {'loss':>9} {'LF score':>9}  stop")
    lines = [header]
    for t in table:
        mark = ("  <- best" if t["selected"] else "") + \
               ("  (label-free pick)" if t["member"] == selection["label_free_member"] and not t["selected"] else "")
        lines.append(
            f"{t['member']:>6} {t['lambda_recon']:>8.3g} {t['lambda_sparse']:>8.3g} {t['lambda_acyclic']:>8.3g} "
            f"{t['lambda_disen']:>8.3g} {t['seed']:>6} {fmt(t['best_epoch'], 'd'):>7} {fmt(t['val_f1'], '.4f'):>7} "
            f"{fmt(t['val_shd'], '.0f'):>5} {fmt(t['edge_count'], 'd'):>5} {fmt(t['best_threshold'], '.2f'):>5} "
            f"{fmt(t['final_train_loss'], '.4f'):>9} {fmt(t['label_free_score'], '.4f'):>9}  {t['stop_reason']}{mark}")
    lines.append(f"Selected member {selection['best_member']}: {selection['rule']}")
    if selection["oracle_member"] is not None:
        agree = ("equals" if selection["label_free_equals_oracle"] else
                 "ties (same val F1 and SHD)" if selection["label_free_ties_oracle"] else "differs from")
        lines.append(f"Label-free pick (member {selection['label_free_member']}) {agree} the F1 pick")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


def parser() -> cli.Parser:
    p = cli.Parser(prog="python -m jaxcausal.sweep",
                   description="Train a grid of loss weights (x seeds) as one vmapped population.",
                   epilog="--lambda-recon/--lambda-sparse/--lambda-acyclic/--lambda-disen take comma-separated "
                          "lists (e.g. 1e-5,1e-4,1e-3); an axis not given holds the config's value. "
                          "All other flags are the train flags and apply to every member.")
    p.add_argument("--config", help="TOML preset: a path or a name in configs/ (default, original, smoke)")
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="seeds per grid point: seed, seed+1, ... (the train/val split uses --seed for all)")
    distributed.add_flags(p)
    config_lib.add_flags(p)
    return p


def parse_args(argv: list[str] | None) -> tuple[config_lib.Config, list[Member]]:
    cfg, members, _ = parse_all(argv)
    return cfg, members


def parse_all(argv: list[str] | None) -> tuple[config_lib.Config, list[Member], distributed.Options]:
    """(config, grid members, jax.distributed options), all checked before JAX is loaded."""
    args = parser().parse_args(argv)
    dist = distributed.options(args)
    grid = {}
    for name in LAMBDA_FIELDS:
        text = getattr(args, name)
        if text is not None:
            grid[name] = parse_values(name, text)
            setattr(args, name, None)  # the config keeps its own value; the grid overrides per member
    cfg = config_lib.from_args(args)
    return cfg, grid_members(cfg, grid, args.seeds), dist


def main(argv: list[str] | None = None) -> int:
    cfg, members, dist = parse_all(argv)
    distributed.initialize(dist)  # before any JAX computation
    result = run_sweep(cfg, members)
    return int(result.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(cli.run(main))
