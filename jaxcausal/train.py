"""`python -m jaxcausal.train`: train on the built-in dataset or a file; see README."""
from __future__ import annotations

import json
import os

from jaxcausal import cli, config as config_lib, rundir
from jaxcausal.errors import InputError
from jaxcausal.prepare import prepare


def parser() -> cli.Parser:
    p = cli.Parser(prog="python -m jaxcausal.train", description="Learn a causal graph from data.")
    p.add_argument("--config", help="TOML preset: a path or a name in configs/ (default, original, smoke)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    config_lib.add_flags(p)
    return p


def saved_config(run_dir: str) -> config_lib.Config:
    path = os.path.join(run_dir, "config.json")
    if not os.path.isdir(os.path.join(run_dir, "checkpoints")) or not os.path.isfile(path):
        raise InputError(f"{run_dir}: not a run directory with checkpoints (expected {path} and checkpoints/)")
    try:
        with open(path) as f:
            saved = json.load(f)["config"]
    except (ValueError, KeyError, TypeError):  # damaged or foreign file: one line, not a traceback
        raise InputError(f"{path}: not a jaxcausal config.json (unreadable JSON or no 'config' table); "
                         "start a new run with --out instead") from None
    if not isinstance(saved, dict):
        raise InputError(f"{path}: 'config' is not a table; start a new run with --out instead")
    return config_lib.from_dict(saved, where=path)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.resume:
        saved = saved_config(args.resume)
        cfg = config_lib.from_args(args, base=saved)
        rundir.check_resumable(saved, cfg, args.resume)
    else:
        cfg = config_lib.from_args(args)
    prepared = prepare(cfg)  # numpy only: the data summary is the first line, before jax loads
    if not cfg.train.quiet:
        print(prepared.describe(), flush=True)
    from jaxcausal.training import train_and_evaluate  # after the checks: bad input never loads jax
    _, summary = train_and_evaluate(cfg, resume=args.resume, prepared=prepared)
    return int(summary.get("exit_code", 0))


if __name__ == "__main__":
    cli.exit_after_run(cli.run(main))
