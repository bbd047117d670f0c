"""A sweep across two local CPU processes (jax.distributed, gloo) equals the one-process run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxcausal import cli, sweep

from conftest import ROOT, check_run, read_json, write_static_npz, xla_flags


def gloo_available() -> bool:
    from jax._src.lib import _jax  # where jaxlib's CPU builds expose the gloo collectives
    return hasattr(_jax, "make_gloo_tcp_collectives")


# 2 lambda_sparse values x 2 seeds = 4 members, 2 per device: members 0 and 1 on process 0, 2 and 3
# on process 1. Members 0 and 1 stop early (after epochs 4 and 5) while 2 and 3 run all 6 epochs, so
# frozen members are covered too, and the selected member (2) is trained by process 1.
GRID = ["--lambda-sparse", "0.05,0.005", "--seeds", "2"]
# --bootstrap 4: replicates 0 and 2 searched by process 0, 1 and 3 by process 1, then gathered.
FLAGS = ["--epochs", "6", "--batch-size", "32", "--patience", "2", "--lr", "0.02", "--min-steps-per-epoch", "1",
         "--path-stages", "2", "--steps-per-update", "6", "--noise", "laplace", "--bootstrap", "4",
         "--no-plots"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, command: tuple[str, ...] = ("-m", "jaxcausal.sweep")) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *command, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def log_rows(out: str) -> list[dict]:
    with open(os.path.join(out, "sweep_log.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k != "epoch_time"} for line in f]


@pytest.mark.skipif(not gloo_available(), reason="this jaxlib has no gloo CPU collectives")
def test_two_processes_equal_one_process(tmp_path):
    data = write_static_npz(tmp_path / "static.npz")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags())
    join = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    two, elsewhere, one = (str(tmp_path / name) for name in ("two", "p1-out", "one"))
    # Process 1 names its own --out only to show that it writes nothing there, not even checkpoints:
    # it takes part in orbax's saves, which write from process 0.
    t0 = time.perf_counter()
    procs = [start(["--data", data, "--out", out, *GRID, *FLAGS, *join, "--process-id", str(i)], env)
             for i, out in ((0, two), (1, elsewhere))]
    # The reference: one process whose two devices hold the same two members each, so every device
    # runs the same program on the same inputs as in the two-process run.
    procs.append(start(["--data", data, "--out", one, *GRID, *FLAGS],
                       dict(env, XLA_FLAGS=xla_flags(devices=2))))
    (rc0, out0, err0), (rc1, out1, err1), (rc, out, err) = (finish(p, 180) for p in procs)
    wall = time.perf_counter() - t0
    assert rc0 == 0 and rc1 == 0 and rc == 0, (err0[-2000:], err1[-2000:], err[-2000:])
    assert "4 members on 2 device(s) in 2 processes" in out0 and "<- best" in out0
    assert "Sweep:" not in out1 and "<- best" not in out1  # only process 0 prints
    assert not os.path.exists(elsewhere)
    assert check_run(os.path.join(two, "best")).returncode == 0

    a, b = read_json(os.path.join(two, "sweep.json")), read_json(os.path.join(one, "sweep.json"))
    assert (a["processes"], a["devices"], b["processes"], b["devices"]) == (2, 2, 1, 2)
    # Exact: each device computes the same members with the same program in both runs; the
    # processes only exchange finished results (the per-epoch metrics, the final states).
    assert a["members"] == b["members"] and a["selection"] == b["selection"]
    assert [r["stop_reason"] for r in a["members"]] == ["early_stopping"] * 2 + ["max_epochs"] * 2
    assert a["selection"]["best_member"] == 2
    assert log_rows(two) == log_rows(one)
    for name in ("sweep.csv", os.path.join("best", "graph.csv")):
        with open(os.path.join(two, name)) as fa, open(os.path.join(one, name)) as fb:
            assert fa.read() == fb.read(), name
    # The gathered replicates disagree on some edge, so a replicate lost or computed twice would show.
    graph = read_json(os.path.join(two, "best", "summary.json"))["graph"]
    assert graph["bootstrap"]["replicates"] == 4 and graph == read_json(os.path.join(one, "best", "summary.json"))["graph"]
    assert {e["confidence"] for e in graph["edges"]} - {1.0}, graph["edges"]
    np.testing.assert_array_equal(np.load(os.path.join(two, "best", "weights.npy")),
                                  np.load(os.path.join(one, "best", "weights.npy")))
    print(f"two processes + the one-process reference: {wall:.1f} s wall")

    # Bad input seen by process 0 alone (its sweep directory is taken) ends both, with exit code 2,
    # instead of leaving process 1 waiting in a collective.
    join[1] = f"127.0.0.1:{free_port()}"
    procs = [start(["--data", data, "--out", two, *GRID, *FLAGS, *join, "--process-id", str(i)], env) for i in (0, 1)]
    (rc0, _, err0), (rc1, _, err1) = (finish(p, 60) for p in procs)
    assert (rc0, rc1) == (2, 2), (err0[-2000:], err1[-2000:])
    assert "sweep directory already holds" in err0 and "process 0 stopped with bad input" in err1


@pytest.mark.parametrize("argv, message", [
    (["--coordinator", "127.0.0.1:abc", "--num-processes", "2", "--process-id", "0"],
     "--coordinator: port 'abc' of '127.0.0.1:abc' is not a number"),
    (["--coordinator", "10.0.0.1", "--num-processes", "2", "--process-id", "0"], "is not HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 is out of range for --num-processes 2"),
    (["--num-processes", "0"], "--num-processes: must be >= 1, got 0"),
    (["--process-id", "one"], "--process-id: 'one' is not an integer"),
])
def test_bad_distributed_flags_are_one_line_and_exit_2(argv, message, capsys):
    assert cli.run(sweep.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_bad_coordinator_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:99999")
    assert cli.run(sweep.main, ["--num-processes", "2", "--process-id", "1"]) == 2
    assert "$JAX_COORDINATOR_ADDRESS: port '99999'" in capsys.readouterr().err


# Each process runs this with its id: spread's results, in order, equal the one-process list for
# counts that do not divide evenly and one smaller than the process count; a bad replicate on
# process 1 alone stops both with an InputError.
SPREAD = """
import sys
import numpy as np
from jaxcausal import distributed
from jaxcausal.errors import InputError
distributed.initialize(distributed.Options(True, sys.argv[1], 2, int(sys.argv[2])))
def fn(k):
    if k == 99:
        raise InputError("replicate 99 is bad")
    return {"o": np.full((2, 2), k, np.int8), "c": np.arange(3, dtype=np.float32) / (k + 1),
            "lag": np.zeros((0, 2, 2), np.float32)}
for count in (5, 1, 4):
    got, want = distributed.spread(fn, count), [fn(k) for k in range(count)]
    assert len(got) == count and all(g[x].dtype == w[x].dtype and np.array_equal(g[x], w[x])
                                     for g, w in zip(got, want) for x in w), count
try:
    distributed.spread(lambda k: fn(99 if k == 3 else k), 4)
except InputError as e:
    print("stopped:", e)
"""


@pytest.mark.skipif(not gloo_available(), reason="this jaxlib has no gloo CPU collectives")
def test_spread_gives_every_process_every_result_in_order():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags())
    address = f"127.0.0.1:{free_port()}"
    procs = [start([address, str(i)], env, command=("-c", SPREAD)) for i in (0, 1)]
    (rc0, out0, err0), (rc1, out1, err1) = (finish(p, 60) for p in procs)
    assert (rc0, rc1) == (0, 0), (err0[-2000:], err1[-2000:])
    assert "stopped: process 1 stopped with bad input" in out0 and "stopped: replicate 99 is bad" in out1
