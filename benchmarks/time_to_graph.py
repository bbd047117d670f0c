"""Time to graph: the default run end to end, cold and warm compile cache, against the peers' wall time.

    python benchmarks/time_to_graph.py                 # built-in dataset + gauss-er2-d20-std, 1 warm repeat
    python benchmarks/time_to_graph.py --repeats 3 --case laplace-er2-d20-std
    python benchmarks/time_to_graph.py --repeats 3 --no-plots --out benchmarks/results/no_plots   # as the core install runs

Each measurement is a fresh `python -m jaxcausal.train` process as a user starts it (default
settings, console on, no ground truth). JAXCAUSAL_CACHE_DIR points at a new empty temp directory
for the cold run; the warm runs reuse the directory the cold run filled. Before the first cold run
one process imports what a run imports (jaxcausal.training, and matplotlib unless --no-plots), so
"cold" is an empty compile cache, not packages still on disk (its wall time: warmup_s). Reported per
run: wall seconds, seconds to the first console line, the cache's file count, and the phase breakdown from
summary.json's `timings` (import, compile, train, search, write; absent in older code). The peers
(peers.py: one thread each, process start and imports included in wall_s) run on the same d = 20
data in the same script. Writes results/time_to_graph.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_lib  # noqa: E402
import jaxcausal_cli  # noqa: E402
import peers as peers_lib  # noqa: E402
from accuracy import git_commit  # noqa: E402
from machine_info import machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PHASES = ("import", "compile", "train", "search", "write")
TIMEOUT_S = 600.0


def _files_in(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def time_run(data_args: list[str], cache_dir: str, timeout_s: float = TIMEOUT_S) -> dict:
    """One fresh default run; wall from process start to exit, first_line_s to its first output line."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        env = {k: v for k, v in os.environ.items() if k not in jaxcausal_cli.THREAD_VARS}
        env["JAXCAUSAL_CACHE_DIR"] = cache_dir
        cmd = [sys.executable, "-m", "jaxcausal.train", *data_args, "--out", run_dir]
        load = os.getloadavg()[0]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        watchdog = threading.Timer(timeout_s, proc.kill)  # a silent hang must not block the loop below
        watchdog.start()
        first_line, lines = None, []
        for line in proc.stdout:
            if first_line is None:
                first_line = time.perf_counter() - t
            lines.append(line)
        rc = proc.wait()
        wall = time.perf_counter() - t
        if not watchdog.is_alive():
            rc = "timeout"
        watchdog.cancel()
        out = {"wall_s": wall, "first_line_s": first_line, "exit": rc, "load_average_before": round(load, 2),
               "cache_files_after": _files_in(cache_dir), "first_line": lines[0].rstrip()[:160] if lines else None}
        summary_path = os.path.join(run_dir, "summary.json")
        if rc == 0 and os.path.isfile(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
            out["timings"] = summary.get("timings")
            out["model"] = summary.get("model")
            out["epochs"] = summary.get("epochs_run")
        elif rc != 0:
            out["output_tail"] = "".join(lines[-3:])[-400:]
        return out


def warm_up(plots: bool) -> float:
    """Wall seconds of one process importing what a run imports: the OS page cache then holds them."""
    modules = "import jaxcausal.training" + ("; import matplotlib.pyplot" if plots else "")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", modules], check=True)
    return time.perf_counter() - t


def cold_and_warm(data_args: list[str], repeats: int) -> dict:
    """A cold run in an empty cache directory, then `repeats` warm runs reusing that directory."""
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = time_run(data_args, cache_dir)
        print(f"  cold: {cold['wall_s']:.1f} s (first line {cold['first_line_s']}, cache files "
              f"{cold['cache_files_after']}, exit {cold['exit']})", flush=True)
        warm = []
        for _ in range(repeats):
            warm.append(time_run(data_args, cache_dir))
            print(f"  warm: {warm[-1]['wall_s']:.1f} s (exit {warm[-1]['exit']})", flush=True)
    return {"cold": cold, "warm": warm}


def phases(run: dict) -> str:
    t = run.get("timings") or {}
    return " / ".join(f"{t[p]:.1f}" if isinstance(t.get(p), (int, float)) else "—" for p in PHASES)


def table(report: dict) -> str:
    lines = ["| data | run | wall s | first line s | " + " / ".join(PHASES) + " s | load |", "|---|---|---|---|---|---|"]
    for name, m in report["jaxcausal"].items():
        for label, run in [("cold", m["cold"])] + [("warm", w) for w in m["warm"]]:
            first = f"{run['first_line_s']:.2f}" if run.get("first_line_s") is not None else "—"
            lines.append(f"| {name} | jaxcausal {label} | {run['wall_s']:.1f} | {first} | {phases(run)} | "
                         f"{run['load_average_before']} |")
    for peer, r in report["peers"].items():
        fit = f"fit {r['fit_s']:.1f}" if r.get("fit_s") is not None else r["status"]
        lines.append(f"| {report['case']} | {peer} | {r.get('wall_s', float('nan')):.1f} | — | {fit} | "
                     f"{r['load_average_before']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="gauss-er2-d20-std", help="static case of cases.py for the d = 20 run")
    p.add_argument("--repeats", type=int, default=1, help="warm runs after each cold run")
    p.add_argument("--peers", default=",".join(peers_lib.STATIC_PEERS))
    p.add_argument("--no-builtin", action="store_true", help="skip the built-in dataset")
    p.add_argument("--no-plots", action="store_true",
                   help="pass --no-plots to jaxcausal: a run as the core install (no matplotlib) makes it")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    if args.case not in cases_lib.BY_NAME or cases_lib.BY_NAME[args.case].series:
        p.error(f"--case must be a static case of cases.py, got {args.case!r}")
    case = cases_lib.BY_NAME[args.case]
    peers = [q for q in args.peers.split(",") if q]
    missing = [q for q in peers if peers_lib.version_of(q) is None]
    if missing:  # checked first: a table with a peer's import error in it must not replace the last good one
        print(f"time_to_graph: peer(s) {', '.join(missing)} not installed; pip install -e '.[bench]' "
              "(and the peers venv, benchmarks/README.md), or leave them out with --peers", file=sys.stderr)
        return 2
    data = cases_lib.generate(case, cases_lib.SEED_BASE)
    report = {"machine": machine(), "case": case.name, "seed": cases_lib.SEED_BASE, "rows": int(data.x.shape[0]),
              "d": int(data.x.shape[-1]), "repeats": args.repeats, "no_plots": args.no_plots, "jaxcausal": {}, "peers": {},
              "jaxcausal_commit": git_commit(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        jaxcausal_cli.save_npz(path, data.x, data.names)
        plots = ["--no-plots"] if args.no_plots else []
        targets = ([] if args.no_builtin else [("builtin", plots)]) + [(case.name, ["--data", path, *plots])]
        report["warmup_s"] = warm_up(plots=not args.no_plots)
        print(f"warm-up imports: {report['warmup_s']:.1f} s", flush=True)
        for name, data_args in targets:
            print(f"jaxcausal on {name}:", flush=True)
            report["jaxcausal"][name] = cold_and_warm(data_args, args.repeats)
    for peer in peers:
        load = os.getloadavg()[0]
        r = peers_lib.run_peer(peer, data.x)
        report["peers"][peer] = {k: r.get(k) for k in ("status", "wall_s", "fit_s")}
        report["peers"][peer]["load_average_before"] = round(load, 2)
        print(f"{peer}: {r.get('wall_s', float('nan')):.1f} s ({r['status']})", flush=True)
    report["load_average_at_end"] = list(os.getloadavg())
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "time_to_graph.json"), "w") as f:
        json.dump(report, f, indent=2)
    m = report["machine"]
    md = (f"Machine: {m['cpu']}, {m['cpu_count']} cores; load average {m['load_average_at_start']} at start, "
          f"{report['load_average_at_end']} at end; jaxcausal {report['jaxcausal_commit']}; {case.name} seed {report['seed']} ({report['rows']} rows); "
          f"warm-up imports before the first cold run {report['warmup_s']:.1f} s\n\n"
          + table(report) + "\n")
    with open(os.path.join(args.out, "time_to_graph.md"), "w") as f:
        f.write(md)
    print(json.dumps(report, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
