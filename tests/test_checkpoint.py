"""Checkpoints: bit-identical resume, signals and kills, damaged checkpoints, refused resumes, evaluate.

Every run here uses one tiny static dataset and one set of flags, so the subprocesses share a
single compiled epoch through a module-wide XLA compilation cache. The flags make
reduce_on_plateau cut the learning rate as early as it can: epoch 1 always improves on the
initial best (inf); with lr 1e-4 the watched loss then moves by less than the schedule's relative
tolerance, so with patience 2 and no cooldown the first cut comes after epoch 3. An epoch is one
pass (6 steps) and the acyclicity path has two stages, the first PATH_EPOCHS = 4 epochs long, so
both stop points lie mid-path: a stop after epoch 2 falls in the middle of the patience, a stop
after epoch 3 right after a cut, and each resumed run crosses the stage change (new score weight,
optimiser re-initialised) in the new process. Bit-level comparisons see the smallest difference,
so small steps test resume as well as large ones.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxcausal
from jaxcausal import checkpoint, cli, evaluate, experiment, pressure, train, training

from conftest import ROOT, check_run, read_json, read_log, run_cli, run_main, write_static_npz

STEPS_PER_EPOCH = 6  # 205 training windows in batches of 32, one pass an epoch
PATH_EPOCHS = 4  # epochs in the path's first stage; the second (and last) stage starts after them
FLAGS = ("--batch-size", "32", "--min-steps-per-epoch", "1", "--patience", "0", "--lr", "1e-4",
         "--plateau-patience", "2", "--plateau-cooldown", "0",
         "--path-stages", "2", "--steps-per-update", str(PATH_EPOCHS * STEPS_PER_EPOCH), "--quiet",
         "--no-plots")
REFERENCE_EPOCHS = 6


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("xla_cache")
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_static_npz(tmp_path_factory.mktemp("data") / "static.npz")


def train_cli(env, *args):
    result = run_cli(*map(str, args), env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def reference(env, data_file, tmp_path_factory):
    """A straight run of REFERENCE_EPOCHS epochs that saves and keeps every checkpoint."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_cli(env, "--data", data_file, *FLAGS, "--epochs", REFERENCE_EPOCHS, "--keep-checkpoints", 100,
              "--checkpoint-every", 1, "--out", out)
    with open(out / "config.json") as f:
        assert json.load(f)["steps_per_epoch"] == STEPS_PER_EPOCH
    return out


def saved_states(run_dir) -> dict[int, object]:
    """Every checkpointed TrainState of `run_dir`, by epoch."""
    template = experiment.build(train.saved_config(str(run_dir))).init_state()
    ckpts = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), read_only=True)
    try:
        return {step: ckpts.restore(template, step=step)[0] for step in ckpts.steps()}
    finally:
        ckpts.close()


@pytest.fixture(scope="module")
def reference_eligible(reference) -> dict[int, bool]:
    """Per epoch of the reference: does it count for early stopping and best (the path's last stage)?"""
    cfg = train.saved_config(str(reference))
    states = saved_states(reference)
    assert sorted(states) == list(range(1, REFERENCE_EPOCHS + 1))
    stages = [int(states[e].pressure.stage) for e in sorted(states)]
    assert stages == [0] * (PATH_EPOCHS - 1) + [1] * (REFERENCE_EPOCHS - PATH_EPOCHS + 1), stages
    # An epoch counts when it was trained in the last stage, i.e. the stage after the previous epoch.
    eligible = {e: r["eligible"] for e, r in ((r["epoch"], r) for r in read_log(str(reference)))}
    assert eligible == {e: e > PATH_EPOCHS for e in states}, eligible
    assert eligible == {e: bool(pressure.final_stage(states[e - 1].pressure, cfg.dag)) if e > 1 else False
                        for e in states}
    return eligible


def rows(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in read_log(str(run_dir))]


def digest(run_dir, step: int) -> str:
    """SHA-256 of the whole TrainState saved after `step` (stored with the checkpoint)."""
    meta, _ = checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints"), read_only=True).read_meta(step)
    return meta["state_digest"]


def summary_of(run_dir) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        return {k: v for k, v in json.load(f).items() if k not in ("compile_time", "train_time", "timings")}


def first_cut(log: list[dict]) -> int | None:
    lrs = [r["learning_rate"] for r in log]
    return next((e for e in range(2, len(lrs) + 1) if lrs[e - 1] < lrs[e - 2]), None)


def start(env, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxcausal.train", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_parallel(env, *arg_lists) -> None:
    """Run several `python -m jaxcausal.train` processes side by side; each must succeed."""
    procs = [start(env, *args) for args in arg_lists]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in err, err


@pytest.fixture(scope="module")
def resumed(reference, env, data_file, tmp_path_factory) -> dict[str, tuple[int, object]]:
    """Per stop point k: a run of k epochs, then `--resume` in a new process to 2k epochs."""
    cut = first_cut(rows(reference))
    assert cut is not None and 2 * cut <= REFERENCE_EPOCHS, f"no early learning-rate cut: {rows(reference)}"
    # Both stop points lie in the path's first stage; the stage change happens after the resume.
    assert cut < PATH_EPOCHS <= 2 * (cut - 1)
    # Patience 2, no cooldown: a cut after epoch `cut` means epochs cut-1 and cut did not improve,
    # so after epoch cut-1 the plateau count stands at 1 of 2.
    base = tmp_path_factory.mktemp("resumed")
    runs = {where: (k, base / where) for where, k in (("mid_patience", cut - 1), ("after_cut", cut))}
    run_parallel(env, *[("--data", data_file, *FLAGS, "--epochs", k, "--out", out) for k, out in runs.values()])
    for k, out in runs.values():
        assert [r["epoch"] for r in rows(out)] == list(range(1, k + 1))
    run_parallel(env, *[("--resume", out, "--epochs", REFERENCE_EPOCHS) for k, out in runs.values()])
    return runs


@pytest.mark.parametrize("where", ["mid_patience", "after_cut"])
def test_resume_in_a_new_process_is_bit_identical(where, resumed, reference, reference_eligible):
    k, out = resumed[where]
    n, ref = REFERENCE_EPOCHS, rows(reference)
    with open(out / "config.json") as f:
        assert json.load(f)["resumed_from_epoch"] == k
    lrs = [r["learning_rate"] for r in ref]
    cuts = [e for e in range(2, len(lrs) + 1) if lrs[e - 1] < lrs[e - 2]]  # epochs that ended with a cut
    assert (k in cuts) == (where == "after_cut") and (k + 1 in cuts) == (where == "mid_patience")

    assert rows(out) == ref[:n]  # every log line but epoch_time
    assert digest(out, n) == digest(reference, n)  # params, optimiser and plateau state, pressure, key, ...
    assert not reference_eligible[k] and reference_eligible[n]  # stopped mid-path, resumed into the last stage
    # The first maximum over the last stage's epochs (strict improvement; earlier graphs never rank).
    eligible = [r for r in ref[:n] if reference_eligible[r["epoch"]]]
    best = max(eligible, key=lambda r: r["val_f1"])["epoch"]
    assert summary_of(out)["best_epoch"] == best
    assert digest(out, best) == digest(reference, best)
    if n == REFERENCE_EPOCHS:
        assert summary_of(out) == summary_of(reference)
        np.testing.assert_array_equal(np.load(out / "weights.npy"), np.load(reference / "weights.npy"))
        assert (out / "graph.csv").read_text() == (reference / "graph.csv").read_text()
    else:  # the straight run of n epochs exports the reference's checkpoint of that best epoch
        np.testing.assert_array_equal(np.load(out / "weights.npy"), jaxcausal.load(reference, epoch=best).graph["weights"])


def open_lines(path) -> list[str]:
    with open(path) as f:
        return f.readlines()


def wait_for_epochs(proc: subprocess.Popen, run_dir, epochs: int, timeout: float = 120) -> None:
    path, deadline = os.path.join(run_dir, "training_log.jsonl"), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and sum(line.endswith("\n") for line in open_lines(path)) >= epochs:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"{run_dir}: fewer than {epochs} epochs logged after {timeout} s")


def test_sigterm_then_sigkill_then_resume_completes_the_run(reference, env, data_file, tmp_path):
    out = tmp_path / "run"
    proc = start(env, "--data", data_file, *FLAGS, "--epochs", 1000, "--out", out)
    wait_for_epochs(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert f"--resume {out}" in err and "Traceback" not in err
    stopped = read_log(str(out))[-1]["epoch"]
    assert summary_of(out)["stop_reason"] == "interrupted"
    assert max(checkpoint.Checkpoints(str(out / "checkpoints"), read_only=True).steps()) == stopped  # nothing lost

    proc = start(env, "--resume", out)  # continues towards epoch 1000 ...
    wait_for_epochs(proc, out, stopped + 2)
    proc.kill()  # ... until SIGKILL, maybe in the middle of a save
    proc.communicate()
    leftover = out / "checkpoints" / f"{10**6}{checkpoint.TMP_SUFFIX}"  # as a save killed midway leaves
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "junk").write_bytes(b"\0" * 64)
    final = read_log(str(out))[-1]["epoch"] + 2
    train_cli(env, "--resume", out, "--epochs", final)

    assert not leftover.exists()
    assert [r["epoch"] for r in read_log(str(out))] == list(range(1, final + 1))  # each epoch exactly once
    assert rows(out)[:REFERENCE_EPOCHS] == rows(reference)[:final]  # and still the uninterrupted trajectory
    assert check_run(str(out)).returncode == 0, check_run(str(out)).stdout


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    last = REFERENCE_EPOCHS
    for path in (out / "checkpoints" / str(last) / "state").rglob("*"):
        if path.is_file():  # truncate every file of the latest state
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = train.saved_config(str(out))
    setup = experiment.build(cfg)
    ckpts = checkpoint.Checkpoints(str(out / "checkpoints"), keep=cfg.train.keep_checkpoints)
    state = training.resume_state(setup, ckpts, str(out))  # what --resume does
    ckpts.close()
    err = capsys.readouterr().err
    assert f"skipping unreadable checkpoint {out}/checkpoints/{last}" in err
    assert int(state.epoch) == last - 1
    assert checkpoint.state_digest(jax.device_get(state)) == digest(reference, last - 1)
    assert max(checkpoint.Checkpoints(str(out / "checkpoints"), read_only=True).steps()) == last - 1  # re-savable


def test_resume_is_refused_on_other_data_or_config(tmp_path, capsys):
    own = write_static_npz(tmp_path / "own.npz")
    out = tmp_path / "run"
    code, _, stderr = run_main(train.main, ["--data", own, *FLAGS, "--epochs", "1", "--out", str(out)], capsys)
    assert code == 0 and "Traceback" not in stderr, stderr
    log_before = (out / "training_log.jsonl").read_text()

    code, _, stderr = run_main(train.main, ["--resume", str(out), "--data",
                                            write_static_npz(tmp_path / "other.npz", seed=12)], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "cannot resume" in stderr and "data" in stderr

    write_static_npz(own, seed=12)  # same path, other content: the fingerprint catches it
    assert cli.run(train.main, ["--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "data differ" in err

    assert cli.run(train.main, ["--resume", str(out), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "lr 0.0001 -> 0.1" in err
    assert (out / "training_log.jsonl").read_text() == log_before


def test_evaluate_reproduces_the_saved_best_graph_and_metrics(reference, tmp_path, capsys):
    ev = tmp_path / "eval"
    code, stdout, stderr = run_main(evaluate.main, ["--out", str(ev), str(reference)], capsys)
    assert code == 0, stderr
    assert "Reproduces" in stdout
    assert (ev / "graph.csv").read_bytes() == (reference / "graph.csv").read_bytes()
    np.testing.assert_array_equal(np.load(ev / "weights.npy"), np.load(reference / "weights.npy"))
    saved, evaluation = summary_of(reference), read_json(ev / "evaluation.json")
    for key in ("best_epoch", "best", "model", "exported", "threshold_table", "graph"):
        assert evaluation[key] == saved[key], key

    loaded = jaxcausal.load(str(reference))
    assert loaded.epoch == saved["best_epoch"] and loaded.config.train.epochs == REFERENCE_EPOCHS
    np.testing.assert_array_equal(loaded.graph["weights"], np.load(reference / "weights.npy"))
    with open(reference / "config.json") as f:
        stats = json.load(f)["data"]["standardizer"]
    np.testing.assert_array_equal(loaded.standardizer.mean, np.asarray(stats["mean"], np.float32))
    assert cli.run(evaluate.main, [str(tmp_path / "missing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_keeps_latest_and_best_skips_nan_and_leftovers(tmp_path, capsys):
    directory = str(tmp_path / "checkpoints")
    state = {"w": np.arange(4, dtype=np.float32)}
    ckpts = checkpoint.Checkpoints(directory, keep=2)
    for epoch, metric in enumerate([0.5, float("nan"), 0.9, 0.9, None, 0.2], start=1):
        ckpts.save(epoch, {"w": state["w"] + epoch}, {"epoch": epoch}, metric)
    ckpts.close()
    ckpts = checkpoint.Checkpoints(directory, keep=2, read_only=True)
    assert ckpts.steps() == [3, 5, 6]  # best (first of the tied 0.9s) plus the latest two; NaN never best
    assert ckpts.best_step() == 3
    # A save killed midway leaves a tmp directory: never restored, removed by the next writer.
    os.makedirs(os.path.join(directory, f"7{checkpoint.TMP_SUFFIX}", "state"))
    template = jax.eval_shape(lambda: state)
    restored, meta, step = ckpts.restore(template)
    assert step == 6 and meta["epoch"] == 6
    np.testing.assert_array_equal(restored["w"], state["w"] + 6)
    # Bytes that no longer match the digest taken at save time (here: the recorded digest is altered).
    meta_file = os.path.join(directory, "6", "meta", "metadata")
    with open(meta_file) as f:
        saved = json.load(f)
    with open(meta_file, "w") as f:
        json.dump(dict(saved, state_digest="0" * 64), f)
    _, _, step = ckpts.restore(template)
    assert step == 5
    assert f"skipping unreadable checkpoint {directory}/6 (ValueError: state bytes differ" in capsys.readouterr().err
    checkpoint.Checkpoints(directory, keep=2).close()
    assert not os.path.exists(os.path.join(directory, f"7{checkpoint.TMP_SUFFIX}"))
