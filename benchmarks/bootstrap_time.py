"""What `--bootstrap K` costs: wall time of K replicates against one default run (issue #14's target: 5x at d = 20, K = 50).

    python benchmarks/bootstrap_time.py                              # K = 50, two d = 20 cases, 3 repeats (~15 min)
    python benchmarks/bootstrap_time.py --k 20 --cases laplace-er2-d20-std --repeats 1

Each run is `python -m jaxcausal.train` in a fresh process as a user starts it (jaxcausal_cli.py:
no ground truth). One warm-up run fills a shared compile cache first, so every timed run is warm;
then, per repeat, the default run and the `--bootstrap K` run alternate, so both see the same
machine load. Reported: medians of the walls, their ratio, and the bootstrap phase's own seconds
(summary.json `timings.bootstrap`). Writes results/bootstrap_time.json and results/bootstrap_time.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_lib  # noqa: E402
import jaxcausal_cli  # noqa: E402
from accuracy import git_commit  # noqa: E402
from machine_info import machine  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def timed(data, extra, env) -> dict:
    load = os.getloadavg()[0]
    r = jaxcausal_cli.run_cli(data.x, data.names, extra_args=extra, env=env)
    if r["status"] != "ok":
        raise SystemExit(f"run {extra or 'default'} failed: {r['status']}")
    return {"wall_s": r["wall_s"], "bootstrap_s": (r.get("timings") or {}).get("bootstrap"),
            "search_s": (r.get("timings") or {}).get("search"), "load_before": round(load, 2),
            "model": (r.get("model") or {}).get("noise")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--cases", default="laplace-er2-d20-std,gauss-er2-d20-std")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    report = {"machine": machine(), "jaxcausal_commit": git_commit(), "k": args.k, "repeats": args.repeats,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cases": {}}
    rows = ["| case | default run s (median) | --bootstrap K s (median) | ratio | bootstrap phase s | per replicate s |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as cache:
        env = {"JAXCAUSAL_CACHE_DIR": cache}
        for name in filter(None, args.cases.split(",")):
            data = cases_lib.generate(cases_lib.BY_NAME[name], cases_lib.SEED_BASE)
            timed(data, [], env)  # warm-up: compiles this shape into the shared cache
            default, boot = [], []
            for _ in range(args.repeats):
                default.append(timed(data, [], env))
                boot.append(timed(data, ["--bootstrap", str(args.k)], env))
                print(f"{name}: default {default[-1]['wall_s']:.1f} s, --bootstrap {args.k} {boot[-1]['wall_s']:.1f} s "
                      f"(bootstrap phase {boot[-1]['bootstrap_s']:.1f} s, load {boot[-1]['load_before']})", flush=True)
            med_d = statistics.median(r["wall_s"] for r in default)
            med_b = statistics.median(r["wall_s"] for r in boot)
            med_phase = statistics.median(r["bootstrap_s"] for r in boot)
            report["cases"][name] = {"default": default, "bootstrap": boot, "median_default_s": med_d,
                                     "median_bootstrap_s": med_b, "ratio": med_b / med_d,
                                     "median_bootstrap_phase_s": med_phase}
            rows.append(f"| {name} ({boot[0]['model']}) | {med_d:.1f} | {med_b:.1f} | {med_b / med_d:.2f}x | "
                        f"{med_phase:.1f} | {med_phase / args.k:.2f} |")
    report["load_average_at_end"] = list(os.getloadavg())
    m = report["machine"]
    md = (f"`python benchmarks/bootstrap_time.py --k {args.k} --repeats {args.repeats}`: jaxcausal "
          f"{report['jaxcausal_commit']}, {m['cpu']}, {m['cpu_count']} cores, load average "
          f"{m['load_average_at_start'][0]:.2f} at start, {report['load_average_at_end'][0]:.2f} at end; "
          f"n = 1000 rows, seed {cases_lib.SEED_BASE}; warm compile cache; medians of {args.repeats}.\n\n"
          + "\n".join(rows) + "\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bootstrap_time.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out, "bootstrap_time.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
