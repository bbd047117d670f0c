"""Large d (issue #12): the whole default pipeline at d = 200, 500, 1000 against DAGMA and BOSS.

    python benchmarks/large_d.py                                  # every size, noise and method
    python benchmarks/large_d.py --dims 200 --noises laplace --methods jaxcausal

Data: n = 2000 rows of a static linear SEM on an Erdos-Renyi graph with 2d expected edges
(`jaxcausal.data.simulate`, weights +-[0.5, 2], seed SEED_BASE + d), Laplace or Gaussian noise,
every column standardised (the conventions of cases.py). jaxcausal runs as a user starts it
(jaxcausal_cli.run_cli: `python -m jaxcausal.train` in a fresh process, default settings, no
truth, its own empty compile cache: a cold run); the peers through peers.run_peer (one thread).
Each run sits in its own wrapper process (this script with --child), so the peak resident set
(ru_maxrss of the waited-for children) is that run's alone. Scored outside jaxcausal by
scoring.score. Results merge into results/large_d.json (a rerun replaces its own entries) and
results/large_d.md; sizes run in increasing order, jaxcausal first.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import jaxcausal_cli  # noqa: E402
import peers as peers_lib  # noqa: E402
import scoring  # noqa: E402
from cases import SEED_BASE  # noqa: E402
from machine_info import cpu_model  # noqa: E402

RESULTS = os.path.join(HERE, "results")
ROWS = 2000
TIMEOUT_S = 1800.0  # 30 minutes per run, as issue #12 asks of the peers
METHODS = ("jaxcausal", "dagma", "boss")
PHASES = ("compile", "train", "search", "write")


def generate(d: int, noise: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x (N, 1, D) standardised float64, truth (D, D) int8, names) of the static ER2 case."""
    from jaxcausal.data import simulate
    ds = simulate(seed=SEED_BASE + d, d=d, n_edges=2 * d, graph="er", mechanism="linear", noise=noise,
                  n_windows=ROWS, window=1, weight_range=(0.5, 2.0))
    x = np.asarray(ds.x, np.float64)
    return (x - x.mean(axis=(0, 1))) / x.std(axis=(0, 1)), np.asarray(ds.truth, np.int8), list(ds.names)


def child(method: str, data_path: str, out_path: str, timeout_s: float, jaxcausal_args=()) -> int:
    """One run in this process's only child; writes its record (graph included) to out_path."""
    with np.load(data_path) as f:
        x, names = f["x"], [str(n) for n in f["names"]]
    if method == "jaxcausal":
        with tempfile.TemporaryDirectory() as cache:  # a cold compile cache: what a first run pays
            r = jaxcausal_cli.run_cli(x, names, env={"JAXCAUSAL_CACHE_DIR": cache}, timeout_s=timeout_s,
                                     extra_args=jaxcausal_args)
    else:
        r = peers_lib.run_peer(method, x, timeout_s=timeout_s)
    # Linux reports ru_maxrss in KiB: the largest resident set of any waited-for descendant.
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    np.savez(out_path, record=json.dumps({k: v for k, v in r.items() if k not in ("pdag", "lagged")}),
             **({"pdag": r["pdag"]} if r.get("pdag") is not None else {}))
    return 0


def random_w(d: int):
    """A fixed random (D, D) float32 W with zero diagonal, N(0, 0.3) entries: cyclic, as early in training."""
    import jax.numpy as jnp
    w = np.random.default_rng(0).normal(0.0, 0.3, (d, d)) * (1 - np.eye(d))
    return jnp.asarray(w.astype(np.float32))


def value_grad_ms(fn, w, reps: int = 5) -> float:
    """Median ms of the jitted value and gradient of fn at w (compiled and run once first)."""
    import jax
    vg = jax.jit(jax.value_and_grad(fn))
    jax.block_until_ready(vg(w))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(vg(w))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def probe_epoch(d: int, data_path: str, epochs: int, penalty: str = "") -> dict:
    """Where the training time goes at this d: the default experiment built on the Laplace data
    (public `jaxcausal.experiment.build`, no truth), its epoch compiled and timed, and the default
    penalty's value and gradient alone (`jaxcausal.acyclicity.get_penalty`, read only) next to the
    fit term's log-determinant. `penalty` overrides the config's form. Runs in this process (the caller
    starts it as a child)."""
    import jax
    import jax.numpy as jnp
    from jaxcausal import acyclicity, config as config_lib
    from jaxcausal.experiment import build
    with tempfile.TemporaryDirectory() as tmp:
        with np.load(data_path) as f:
            path = os.path.join(tmp, "x.npz")
            np.savez(path, X=f["x"][:, 0, :])
        overrides = {"data": path, "quiet": True, **({"penalty": penalty} if penalty else {})}
        cfg = config_lib.replace(config_lib.Config(), overrides)
        exp = build(cfg, warn=lambda msg: None)
    state, data = exp.init_state(), exp.train_data()
    t = time.perf_counter()
    epoch = jax.jit(exp.epoch_fn(), donate_argnums=0).lower(state, data).compile()
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        state, out = epoch(state, data)
        jax.device_get(out["train_loss"])
        times.append(time.perf_counter() - t)

    w = random_w(d)
    penalty_ms = value_grad_ms(acyclicity.get_penalty(cfg.loss.penalty), w)
    logdet_ms = value_grad_ms(lambda a: jnp.linalg.slogdet(jnp.eye(d) - 0.1 * a)[1], w)
    epoch_ms = 1e3 * float(np.median(times[1:] if len(times) > 1 else times))
    steps = exp.n_batches + 1  # the training steps plus the validation pass
    return {"d": d, "n_train": int(exp.prepared.x_train.shape[0]), "batch_size": exp.batch_size,
            "n_batches": exp.n_batches, "compile_s": compile_s, "epoch_ms": epoch_ms,
            "epoch_all_ms": [1e3 * t for t in times], "step_ms": epoch_ms / exp.n_batches,
            "penalty": cfg.loss.penalty, "penalty_value_grad_ms": penalty_ms, "slogdet_value_grad_ms": logdet_ms,
            "penalty_share_estimate": steps * penalty_ms / epoch_ms,
            "slogdet_share_estimate": steps * logdet_ms / epoch_ms,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_average": list(os.getloadavg())}


def run_one(method: str, data_path: str, truth: np.ndarray, timeout_s: float, jaxcausal_args: str = "") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        cmd = [sys.executable, os.path.abspath(__file__), "--child", method, "--data", data_path, "--result", out,
               "--timeout", str(timeout_s), f"--jaxcausal-args={jaxcausal_args}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(out):
            return {"status": f"wrapper error: {(proc.stderr.strip().splitlines() or ['no output'])[-1][:300]}"}
        with np.load(out) as f:
            record = json.loads(str(f["record"]))
            pdag = f["pdag"] if "pdag" in f.files else None
    if record.get("status") == "ok" and pdag is not None:
        record.update(scoring.score(pred=pdag, true=truth))
    record.pop("stdout_tail", None)
    return record


def phase_line(r: dict) -> str:
    t = r.get("timings") or {}
    return " / ".join(f"{t[p]:.0f}" if isinstance(t.get(p), (int, float)) else "—" for p in PHASES)


def method_label(r: dict) -> str:
    """The method, with the flags a jaxcausal run added to the defaults (empty: a default run)."""
    return f"{r['method']} `{r['jaxcausal_args']}`" if r.get("jaxcausal_args") else r["method"]


def row_key(r: dict) -> tuple:
    return r["d"], r["noise"], r["method"], r.get("jaxcausal_args", "")


def table(rows: list[dict]) -> str:
    lines = ["| d | noise | method | status | wall s | " + " / ".join(PHASES) + " s | epochs | peak RSS MiB | F1 "
             "| strict F1 | SHD | edges (true) | model | load |", "|" + "---|" * 14]
    for r in rows:
        f = lambda k, spec=".2f": format(r[k], spec) if isinstance(r.get(k), (int, float)) else "—"  # noqa: E731
        lines.append(f"| {r['d']} | {r['noise']} | {method_label(r)} | {r['status'][:40]} | {f('wall_s', '.0f')} | "
                     f"{phase_line(r) if r['method'] == 'jaxcausal' else '—'} | {r.get('epochs') or '—'} | "
                     f"{f('peak_rss_mib', '.0f')} | {f('f1')} | {f('strict_f1')} | {f('shd', '.0f')} | "
                     f"{f('edge_count', '.0f')} ({r['true_edges']}) | "
                     f"{scoring.model_label(r['model']) if r.get('model') else '—'} | {r['load_before']} |")
    return "\n".join(lines)


def probe_table(probes: dict) -> str:
    """The --probe rows: where an epoch's time goes at each d."""
    lines = ["| d (penalty if not the default) | batch x steps | compile s | epoch ms | step ms | penalty value+grad ms "
             "| slogdet value+grad ms | penalty share (est.) | peak RSS MiB | load |", "|" + "---|" * 10]
    for key in sorted(probes, key=lambda k: (int(k.split("-")[0]), k)):
        r = probes[key]
        lines.append(f"| {key.replace('-', ', ')} | {r['batch_size']} x {r['n_batches']} | {r['compile_s']:.0f} | {r['epoch_ms']:.0f} | "
                     f"{r['step_ms']:.1f} | {r['penalty_value_grad_ms']:.1f} | {r['slogdet_value_grad_ms']:.1f} | "
                     f"{100 * r['penalty_share_estimate']:.0f}% | {r['peak_rss_mib']:.0f} | {r['load_average'][0]:.1f} |")
    return "\n".join(lines)


def git_state() -> dict:
    def git(*a):
        out = subprocess.run(["git", "-C", os.path.dirname(HERE), *a], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None
    dirty = git("status", "--short", "--", "jaxcausal")
    return {"commit": git("rev-parse", "--short", "HEAD"), "jaxcausal_uncommitted": dirty.splitlines() if dirty else []}


def write(report: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "large_d.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    m = report["machine"]
    md = (f"Machine of the latest run: {m['cpu']}, {m['cpu_count']} cores, shared (a row's own machine is its `cpu` "
          f"in large_d.json; rows without one ran on an AMD EPYC, 2 cores); n = {ROWS} rows, static ER2, standardised; "
          f"timeout {report['timeout_s']:.0f} s per run. Each row gives the load average (1 min) before it and "
          f"the jaxcausal commit (plus uncommitted files) it ran on in large_d.json.\n\n" + table(report["runs"]) + "\n")
    if report.get("epoch_probe"):
        md += "\n" + probe_table(report["epoch_probe"]) + "\n"
    with open(os.path.join(out_dir, "large_d.md"), "w") as f:
        f.write(md)


def probe(report: dict, args) -> int:
    """--probe: each d's epoch probe in a fresh child process, merged into report["epoch_probe"]."""
    with tempfile.TemporaryDirectory() as tmp:
        for d in sorted(args.dims):
            x, _, names = generate(d, "laplace")
            data_path = os.path.join(tmp, f"d{d}.npz")
            np.savez(data_path, x=x, names=np.array(names, dtype=str))
            print(f"probe d={d}: started {time.strftime('%H:%M:%S')}, load {os.getloadavg()[0]:.2f}", flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), "--probe-child", str(d), "--data", data_path,
                   "--probe-epochs", str(args.probe_epochs), "--probe-penalty", args.probe_penalty]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                return 1
            row = dict(json.loads(proc.stdout.strip().splitlines()[-1]), **git_state())
            print(json.dumps(row), flush=True)
            report.setdefault("epoch_probe", {})[f"{d}-{args.probe_penalty}" if args.probe_penalty else str(d)] = row
            write(report, args.out)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[200, 500, 1000])
    p.add_argument("--noises", nargs="+", default=["laplace", "gaussian"], choices=["laplace", "gaussian"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per run")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--probe", action="store_true",
                   help="instead of the runs: time the default epoch and its penalty at each d (Laplace data)")
    p.add_argument("--probe-epochs", type=int, default=3, help="timed epochs per d with --probe")
    p.add_argument("--probe-penalty", default="", help="with --probe: this acyclicity penalty instead of the default")
    p.add_argument("--jaxcausal-args", default="",
                   help="flags added to jaxcausal's defaults, e.g. '--penalty logdet'; such rows are labelled with them")
    p.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--probe-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, args.data, args.result, args.timeout, args.jaxcausal_args.split())
    if args.probe_child:
        print(json.dumps(probe_epoch(args.probe_child, args.data, args.probe_epochs, args.probe_penalty)))
        return 0

    path = os.path.join(args.out, "large_d.json")
    report = {"runs": []}
    if os.path.isfile(path):
        with open(path) as f:
            report = json.load(f)
    report.update(machine={"cpu": cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version()}, rows=ROWS, timeout_s=args.timeout)
    if args.probe:
        return probe(report, args)
    # jaxcausal first at each size, then the peers; sizes increasing.
    order = sorted(args.methods, key=METHODS.index)
    with tempfile.TemporaryDirectory() as tmp:
        for d in sorted(args.dims):
            for noise in args.noises:
                x, truth, names = generate(d, noise)
                data_path = os.path.join(tmp, f"d{d}-{noise}.npz")
                np.savez(data_path, x=x, names=np.array(names, dtype=str))
                for method in order:
                    load = round(os.getloadavg()[0], 2)
                    print(f"d={d} {noise} {method}: started {time.strftime('%H:%M:%S')}, load {load}", flush=True)
                    extra = args.jaxcausal_args if method == "jaxcausal" else ""
                    r = run_one(method, data_path, truth, args.timeout, extra)
                    r.update(jaxcausal_args=extra, d=d, noise=noise, method=method, seed=SEED_BASE + d,
                             true_edges=int(truth.sum()), cpu=cpu_model(),
                             load_before=load, load_after=round(os.getloadavg()[0], 2),
                             finished=time.strftime("%Y-%m-%d %H:%M:%S"), **git_state())
                    if method != "jaxcausal":
                        r["version"] = peers_lib.version_of(method)
                    report["runs"] = [q for q in report["runs"] if row_key(q) != row_key(r)] + [r]
                    report["runs"].sort(key=lambda q: (q["d"], q["noise"], METHODS.index(q["method"]),
                                                       q.get("jaxcausal_args", "")))
                    write(report, args.out)
                    print(f"  {r['status']}: wall {r.get('wall_s', float('nan')):.0f} s, F1 {r.get('f1')}, "
                          f"peak RSS {r.get('peak_rss_mib', float('nan')):.0f} MiB, timings {r.get('timings')}",
                          flush=True)
    print(table(report["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
