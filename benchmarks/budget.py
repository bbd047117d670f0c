"""Training budget benchmark (issue #12): accuracy of the exported graph against how much training it had.

    python benchmarks/budget.py                                    # every case and budget, 3 seeds
    python benchmarks/budget.py --cases gauss-er2-d20-std --budgets steps250,converged100 --seeds 1

Each run is `python -m jaxcausal.train` as a user runs it (jaxcausal_cli.py: a fresh process, no
ground truth, default settings plus the budget's flags); the graph is scored here by scoring.py.
The case `builtin` is the built-in dataset run without --data (`--builtin-seed` = the seed): there
the trainer itself sees the dataset's truth, as any user's `python -m jaxcausal.train` does.
Runs accumulate in results/budget.json, keyed by (case, seed, budget), so a session can add
budgets or seeds; results/budget.md is regenerated from all of them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_lib  # noqa: E402
import jaxcausal_cli  # noqa: E402
import scoring  # noqa: E402
from accuracy import git_commit  # noqa: E402

TRAINING_SOURCES = ("jaxcausal/pressure.py", "jaxcausal/steps.py", "jaxcausal/config.py")


def code_version() -> str:
    """The git commit, and a digest of the training path's sources (the runs may come from a copy
    of the tree that is not a git checkout, or one with uncommitted changes)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha256()
    for path in TRAINING_SOURCES:
        with open(os.path.join(root, path), "rb") as f:
            digest.update(f.read())
    return f"{git_commit() or 'no git'}; training sources {digest.hexdigest()[:10]}"
from machine_info import machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BUILTIN = "builtin"
DEFAULT_CASES = ("gauss-er2-d20-std", "laplace-er2-d20-std", "gauss-er2-d20-raw", "svar-gauss-er1-d10", BUILTIN,
                 "mlp-er2-d10-raw", "gauss-er2-d50-std")
# Budget name -> its flags, spelled out so a name means the same schedule whatever the defaults are.
CONVERGED = ["--stage-end", "converged", "--stage-tol", "0.01", "--stage-patience", "2"]
BUDGETS = {
    "default": [],  # the package defaults of the code that ran (converged100 since this benchmark)
    "steps250": ["--stage-end", "steps", "--steps-per-update", "250"],  # the defaults before this benchmark
    "steps100": ["--stage-end", "steps", "--steps-per-update", "100"],
    "stages3": ["--stage-end", "steps", "--steps-per-update", "250", "--path-stages", "3"],
    "converged250": CONVERGED + ["--steps-per-update", "250"],
    "converged100": CONVERGED + ["--steps-per-update", "100"],
}


def case_data(name: str, seed: int):
    """(x or None for the built-in dataset, names, truth, truth_lagged)."""
    if name == BUILTIN:
        from jaxcausal.data import builtin_dataset
        ds = builtin_dataset(seed)
        lagged = None if ds.truth_lagged is None else np.asarray(ds.truth_lagged[0], np.int8)
        return None, tuple(ds.names), np.asarray(ds.truth, np.int8), lagged
    data = cases_lib.generate(cases_lib.BY_NAME[name], seed)
    return data.x, data.names, data.truth, data.truth_lagged


def run_one(case: str, seed: int, budget: str, flags: list[str], timeout_s: float) -> dict:
    x, names, truth, truth_lagged = case_data(case, seed)
    extra = list(flags) + (["--builtin-seed", str(seed)] if case == BUILTIN else [])
    load = os.getloadavg()[0]
    result = jaxcausal_cli.run_cli(x, names, extra_args=extra, timeout_s=timeout_s)
    rec = {"case": case, "seed": seed, "budget": budget, "flags": flags, "status": result["status"],
           "load_average_before": round(load, 2), "wall_s": result.get("wall_s"),
           "epochs": result.get("epochs"), "timings": result.get("timings"), "version": code_version()}
    if result["status"] == "ok":
        rec.update(scoring.score(pred=result["pdag"], true=truth, pred_lagged=result.get("lagged"),
                                 true_lagged=truth_lagged))
    return rec


def medians(records: list[dict]) -> list[dict]:
    """One row per (case, budget): medians over seeds of the ok runs."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["case"], r["budget"]), []).append(r)
    rows = []
    for (case, budget), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        row = {"case": case, "budget": budget, "seeds": sorted(r["seed"] for r in rs), "ok_runs": len(ok)}
        values = {
            "f1": [r["f1"] for r in ok], "strict_f1": [r["strict_f1"] for r in ok],
            "cpdag_shd": [r["cpdag_shd"] for r in ok if r.get("cpdag_shd") is not None],
            "train_s": [r["timings"]["train"] for r in ok if r.get("timings")],
            "total_s": [r["wall_s"] for r in ok], "epochs": [r["epochs"] for r in ok if r.get("epochs") is not None],
            "load": [r["load_average_before"] for r in rs]}
        for k, v in values.items():
            if v:
                row[k] = float(np.median(v))
        row["f1_per_seed"] = [round(r["f1"], 3) for r in sorted(ok, key=lambda r: r["seed"])]
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = "| case | budget | median F1 (per seed) | strict F1 | CPDAG-SHD | epochs | train s | total s | load |"
    lines = [head, "|" + "---|" * 9]
    fmt = lambda r, k, spec: format(r[k], spec) if r.get(k) is not None else "—"  # noqa: E731
    for r in rows:
        seeds = ", ".join(f"{v:.2f}" for v in r["f1_per_seed"])
        lines.append(f"| {r['case']} | {r['budget']} | {fmt(r, 'f1', '.3f')} ({seeds}) | "
                     f"{fmt(r, 'strict_f1', '.3f')} | {fmt(r, 'cpdag_shd', '.0f')} | {fmt(r, 'epochs', '.0f')} | "
                     f"{fmt(r, 'train_s', '.1f')} | {fmt(r, 'total_s', '.1f')} | {fmt(r, 'load', '.2f')} |")
    return "\n".join(lines)


def seeds_of(case: str, n: int) -> list[int]:
    return list(range(n)) if case == BUILTIN else [cases_lib.SEED_BASE + k for k in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated: cases.py names or {BUILTIN}")
    p.add_argument("--budgets", default=",".join(BUDGETS), help=f"comma-separated, of: {', '.join(BUDGETS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--rerun", action="store_true", help="rerun (case, seed, budget) runs already in the JSON")
    p.add_argument("--report-only", action="store_true", help="run nothing: rewrite the table from the JSON")
    args = p.parse_args(argv)
    cases = args.cases.split(",")
    bad = [c for c in cases if c != BUILTIN and c not in cases_lib.BY_NAME]
    budgets = args.budgets.split(",")
    bad += [b for b in budgets if b not in BUDGETS]
    if bad:
        p.error(f"unknown case(s) or budget(s): {', '.join(bad)}")
    json_path = os.path.join(args.out, "budget.json")
    report = {"records": []}
    if os.path.isfile(json_path):
        with open(json_path) as f:
            report = json.load(f)
    if not args.report_only:
        report.setdefault("machines", []).append(dict(machine(), started=time.strftime("%Y-%m-%d %H:%M:%S")))
    report["budgets"] = BUDGETS
    os.makedirs(args.out, exist_ok=True)
    for case in [] if args.report_only else cases:
        for seed in seeds_of(case, args.seeds):
            for budget in budgets:
                done = {(r["case"], r["seed"], r["budget"]) for r in report["records"] if r["status"] == "ok"}
                if (case, seed, budget) in done and not args.rerun:
                    continue
                rec = run_one(case, seed, budget, BUDGETS[budget], args.timeout)
                report["records"] = [r for r in report["records"]
                                     if (r["case"], r["seed"], r["budget"]) != (case, seed, budget)] + [rec]
                shown = f"F1 {rec['f1']:.3f} strict {rec['strict_f1']:.3f} CPDAG-SHD {rec['cpdag_shd']}" \
                    if "f1" in rec else rec["status"]
                train = (rec.get("timings") or {}).get("train")
                print(f"{case} seed {seed} {budget:18s} {shown} epochs {rec.get('epochs')} train "
                      f"{train if train is None else round(train, 1)} s total {rec['wall_s']:.1f} s "
                      f"(load {rec['load_average_before']:.2f})", flush=True)
                with open(json_path, "w") as f:  # after every run: a stopped session keeps what it measured
                    json.dump(report, f, indent=2)
    order = {c: k for k, c in enumerate(DEFAULT_CASES)}
    border = {b: k for k, b in enumerate(BUDGETS)}
    rows = sorted(medians(report["records"]), key=lambda r: (order.get(r["case"], 99), r["case"],
                                                              border.get(r["budget"], 99)))
    report["results"] = rows
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    md = ("Training budget vs accuracy of the exported graph (benchmarks/budget.py). Each run: "
          "`python -m jaxcausal.train` in a fresh process, warm compile cache, no truth (except `builtin`, "
          "the built-in dataset, whose truth the trainer sees as a user's run does); F1 counts an undirected "
          f"edge on the true skeleton as a hit; medians over seeds; load = 1-min load average before the run.\n\n"
          f"Budgets (flags added to the default): "
          + "; ".join(f"`{b}` = {' '.join(BUDGETS[b]) or '(none)'}" for b in BUDGETS) + "\n\n" + table(rows) + "\n")
    with open(os.path.join(args.out, "budget.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
