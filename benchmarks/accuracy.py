"""Accuracy benchmark: jaxcausal's default run against the strongest public peers on the same data.

    python benchmarks/accuracy.py                              # quick suite, 1 seed (minutes)
    python benchmarks/accuracy.py --suite full --seeds 3       # every case (cases.py), medians
    python benchmarks/accuracy.py --cases gauss-er2-d20-std,sachs
    python benchmarks/accuracy.py --suite full --peers-only    # reuse jaxcausal's half of the last JSON
    python benchmarks/accuracy.py --suite full --jaxcausal-only

jaxcausal runs through `python -m jaxcausal.train` with default settings and no ground truth
(jaxcausal_cli.py); each peer runs alone in a one-thread process with a timeout (peers.py), static
peers on static data, time-series peers on windowed series. Everything is scored here, outside
jaxcausal, by `jaxcausal.cpdag.compare` (scoring.py). Writes results/accuracy.json (every run, with
seeds, versions, machine and load) and results/accuracy.md, and prints the table.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_lib  # noqa: E402
import jaxcausal_cli  # noqa: E402
import peers as peers_lib  # noqa: E402
import scoring  # noqa: E402
from machine_info import machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
JAXCAUSAL = "jaxcausal"
ALL_PEERS = peers_lib.STATIC_PEERS + peers_lib.SERIES_PEERS


def git_commit() -> str | None:
    """HEAD's short hash, marked when the package's files differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the pathspec is relative to cwd
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=root, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "jaxcausal"], capture_output=True, text=True,
                               cwd=root, timeout=10).stdout.strip()
        return out.stdout.strip() + (" (jaxcausal/ modified)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def versions(peer_names) -> dict:
    out = {"jaxcausal": importlib.metadata.version("jaxcausal"), "jaxcausal_commit": git_commit()}
    for peer in peer_names:
        out[peers_lib.PACKAGE_OF[peer]] = peers_lib.version_of(peer)
    return out


def _record(case, seed, method, data, result) -> dict:
    rec = {"case": case.name, "seed": seed if case.seeded else None, "method": method,
           "true_edges": int(data.truth.sum()), "status": result["status"],
           "load_average_before": round(result.pop("load_before"), 2)}
    for k in ("wall_s", "fit_s", "model", "timings", "epochs"):
        if result.get(k) is not None:
            rec[k] = result[k]
    if result["status"] == "ok":
        rec.update(scoring.score(pred=result["pdag"], true=data.truth, pred_lagged=result.get("lagged"),
                                 true_lagged=data.truth_lagged))
    return rec


def run_case(case, seed, methods, timeout_s, versions_now: dict) -> list[dict]:
    data = cases_lib.generate(case, seed)
    records = []
    for method in methods:
        if method != JAXCAUSAL and not peers_lib.applies(method, series=case.series):
            continue
        load = os.getloadavg()[0]
        if method == JAXCAUSAL:
            result = jaxcausal_cli.run_cli(data.x, data.names, timeout_s=timeout_s)
        else:
            result = peers_lib.run_peer(method, data.x, timeout_s=timeout_s)
        result["load_before"] = load
        rec = _record(case, seed, method, data, result)
        # Per run, so a table regenerated from reused runs still says which code made each one.
        rec["version"] = versions_now["jaxcausal_commit" if method == JAXCAUSAL else peers_lib.PACKAGE_OF[method]]
        records.append(rec)
        shown = f"F1 {rec['f1']:.3f} strict {rec['strict_f1']:.3f} CPDAG-SHD {rec['cpdag_shd']} SHD {rec['shd']}" \
            if "f1" in rec else rec["status"]
        if rec.get("lagged_f1") is not None:
            shown += f" lag-1 F1 {rec['lagged_f1']:.3f}"
        print(f"{case.name} seed {rec['seed']}: {method:18s} {shown}  {rec.get('wall_s', 0):.1f} s "
              f"(load {load:.2f})", flush=True)
    return records


def reused(path: str, keep, wanted: set) -> list[dict]:
    """Records of the previous JSON whose method passes `keep` and whose (case, seed) is wanted."""
    if not os.path.isfile(path):
        print(f"warning: {path} does not exist: nothing to reuse", file=sys.stderr)
        return []
    with open(path) as f:
        previous = json.load(f)
    found = [r for r in previous["per_seed"] if keep(r["method"]) and (r["case"], r["seed"]) in wanted]
    for r in found:  # runs written before records carried their own version
        key = "jaxcausal_commit" if r["method"] == JAXCAUSAL else peers_lib.PACKAGE_OF.get(r["method"], "")
        r.setdefault("version", previous.get("versions", {}).get(key))
    missing = wanted - {(r["case"], r["seed"]) for r in found}
    if missing:
        print(f"warning: {path} has no reusable runs for {sorted(map(str, missing))}", file=sys.stderr)
    return found


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=("quick", "full"), default="quick")
    p.add_argument("--cases", default="", help="comma-separated case names (see cases.py)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per generated case (Sachs has one)")
    p.add_argument("--peers", default=",".join(ALL_PEERS), help="peers to run ('' for none)")
    half = p.add_mutually_exclusive_group()
    half.add_argument("--peers-only", action="store_true",
                      help="run the --peers only; reuse the other methods' runs from the previous JSON")
    half.add_argument("--jaxcausal-only", action="store_true", help="reuse the peers' runs from the previous JSON")
    p.add_argument("--merge", action="append", default=[], metavar="JSON",
                   help="also take runs of other methods from this accuracy.json (repeatable)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per single run (default 600)")
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)

    selected = cases_lib.suite(args.suite)
    if args.cases:
        names = args.cases.split(",")
        unknown = [n for n in names if n not in cases_lib.BY_NAME]
        if unknown:
            p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(cases_lib.BY_NAME)}")
        selected = [cases_lib.BY_NAME[n] for n in names]
    peer_names = [q for q in args.peers.split(",") if q]
    bad = [q for q in peer_names if q not in ALL_PEERS]
    if bad:
        p.error(f"unknown peer(s) {', '.join(bad)}; known: {', '.join(ALL_PEERS)}")
    methods = ([] if args.peers_only else [JAXCAUSAL]) + ([] if args.jaxcausal_only else peer_names)
    plan = [(c, cases_lib.SEED_BASE + k if c.seeded else None)
            for c in selected for k in range(args.seeds if c.seeded else 1)]
    json_path = os.path.join(args.out, "accuracy.json")
    per_seed = []
    if args.peers_only or args.jaxcausal_only:  # keep every earlier run of a method not rerun now
        per_seed = reused(json_path, lambda m: m not in methods, {(c.name, s) for c, s in plan})
    for extra in args.merge:  # runs made elsewhere (e.g. one peer in parallel), for methods not yet held
        held = {r["method"] for r in per_seed} | set(methods)
        per_seed += reused(extra, lambda m, held=held: m not in held, {(c.name, s) for c, s in plan})
    report = {"machine": machine(), "suite": args.suite, "seeds": args.seeds, "seed_base": cases_lib.SEED_BASE,
              "cases": {c.name: dict(vars(c)) for c in selected}, "versions": versions(peer_names),
              "peer_settings": {"bic_penalty": peers_lib.BIC_PENALTY, "pcmci_tau_max": peers_lib.PCMCI_TAU_MAX,
                                "threads": 1, "timeout_s": args.timeout},
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sources": {}}
    os.makedirs(args.out, exist_ok=True)
    for case, seed in plan:
        if not case.seeded:
            report["sources"][case.name] = cases_lib.generate(case, seed).source
        per_seed.extend(run_case(case, seed, methods, args.timeout, report["versions"]))
        report.update(per_seed=per_seed, results=scoring.medians(per_seed),
                      load_average_at_end=list(os.getloadavg()))
        with open(json_path, "w") as f:  # after every case: a stopped run keeps what it measured
            json.dump(report, f, indent=2)
    order = {c.name: k for k, c in enumerate(selected)}
    rows = sorted(scoring.medians(per_seed), key=lambda r: (order.get(r["case"], 99), r["method"] != JAXCAUSAL))
    report["results"] = rows
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    m = report["machine"]
    md = (f"Machine: {m['cpu']}, {m['cpu_count']} cores; load average {m['load_average_at_start']} at start, "
          f"{report['load_average_at_end']} at end; suite {args.suite}, {args.seeds} seed(s) from "
          f"{cases_lib.SEED_BASE}; jaxcausal runs from commit(s) "
          f"{', '.join(sorted({str(r.get('version')) for r in per_seed if r['method'] == JAXCAUSAL})) or '—'}"
          f"\n\n{scoring.table(rows)}\n")
    with open(os.path.join(args.out, "accuracy.md"), "w") as f:
        f.write(md)
    print(json.dumps({k: report[k] for k in ("versions", "sources", "results")}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
