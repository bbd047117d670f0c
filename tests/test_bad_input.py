"""Bad input through the CLI entry point: one line on stderr naming the problem, exit code 2, nothing lost.

The cases run `cli.run(train.main, argv)` in this process, as `python -m jaxcausal.train` does;
one case spawns the real process to pin its exit code and stderr. The cases that train use tiny
static data, 2 epochs and batches of 8.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxcausal import train
from conftest import read_log, run_cli, run_main

TRAIN = ("--epochs", "2", "--batch-size", "8", "--quiet", "--no-plots")


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity, as a strict JSON reader would."""
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    assert code == 2, (code, stderr[-2000:])
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------ files

def _chain(d=3):
    return np.eye(d, k=1, dtype=np.int8)  # x0 -> x1 -> x2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input file the cases need, written once: name -> absolute path."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x = rng.laplace(size=(100, 3))  # 80 training windows: more than one default batch of 64
    x[:, 1] += 0.8 * x[:, 0]
    x[:, 2] += 0.8 * x[:, 1]
    p = {}

    def path(name):
        p[name] = str(root / name)
        return p[name]

    def write(name, content):  # text or bytes, closed at once (unclosed files are errors here)
        path(name)
        target = root / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)

    np.save(path("ok.npy"), x)
    write("empty.npz", "")
    write("table.parquet", "x")
    np.savez(path("no_x.npz"), data=x)
    np.savez(path("rank1.npz"), X=np.arange(5.0))
    np.savez(path("rank4.npz"), X=np.zeros((2, 3, 4, 5)))
    write("cells.csv", "a,b,c\n1,2,3\n4,oops,6\n7,8,9\n")
    write("empty_column.csv", "a,b,c\n1,,3\n4,,6.5\n7,,9\n2,,1\n")
    constant = x.copy()
    constant[:, 2] = 5.0
    np.save(path("constant.npy"), constant)
    np.save(path("two_windows.npy"), x[:2])
    np.savez(path("mask_shape.npz"), X=x, mask=np.ones((100, 2)))
    np.savez(path("mask_values.npz"), X=x, mask=np.full_like(x, 0.5))
    np.savez(path("full.npz"), X=x)
    whole = (root / "full.npz").read_bytes()
    write("truncated.npz", whole[: len(whole) // 2])
    damaged = bytearray(whole)
    start = damaged.find(b"\x93NUMPY") + 200  # inside X's bytes: the zip directory stays intact
    damaged[start:start + 64] = bytes(64)
    write("damaged.npz", bytes(damaged))
    np.save(path("truth_2x2.npy"), np.zeros((2, 2)))
    write("edges_unknown.csv", "cause,effect\nx0,x1\nx1,pressure\n")
    write("unknown_key.toml", "[train]\nepochz = 3\n")
    write("wrong_type.toml", "[optim]\nlr = 'fast'\n")

    # Files the training cases use.
    raw = 1e6 - 2e4 * np.abs(x)  # a raw sensor scale: values up to 1e6
    raw[rng.random(raw.shape) < 0.08] = np.nan
    raw[3, 1], raw[10, 0], raw[20, 2] = np.inf, -np.inf, np.nan
    np.save(path("raw_1e6_nan_inf.npy"), raw)
    np.save(path("int64.npy"), np.round(500 + 100 * x).astype(np.int64))  # 80 training windows
    np.save(path("truth_weighted_self_loop.npy"), np.array([[1, 0.5, 0], [0, 0, -2.0], [0, 0, 0]]))
    cyclic = _chain()
    cyclic[2, 0] = 1
    np.save(path("truth_cyclic.npy"), cyclic)
    return p


# ------------------------------------------------------------------ cases that fail before training

def _existing_run(tmp, overwrite: bool):
    """A run directory holding results; returns (args, directory)."""
    run = os.path.join(tmp, "existing_overwrite" if overwrite else "existing")
    os.makedirs(os.path.join(run, "checkpoints"), exist_ok=True)
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write('{"keep": "me"}')
    return run


# id -> (arguments from (files, tmp dir), fragments the one error line must contain)
FAST_CASES = {
    # data files
    "missing_file": (lambda f, t: ["--data", os.path.join(t, "nope.npz")], ["nope.npz", "data file not found"]),
    "empty_file": (lambda f, t: ["--data", f["empty.npz"]], ["empty.npz", "data file is empty"]),
    "unknown_extension": (lambda f, t: ["--data", f["table.parquet"]],
                          ["table.parquet", "unknown data file type '.parquet'", ".npz, .npy, .csv"]),
    "npz_without_X": (lambda f, t: ["--data", f["no_x.npz"]], ["no_x.npz", "no array 'X'", "found: data"]),
    "rank_1": (lambda f, t: ["--data", f["rank1.npz"]], ["rank1.npz", "shape (5,), rank 1", "(N, T, D)"]),
    "rank_4": (lambda f, t: ["--data", f["rank4.npz"]], ["rank4.npz", "shape (2, 3, 4, 5), rank 4"]),
    "non_numeric_cell": (lambda f, t: ["--data", f["cells.csv"]],
                         ["cells.csv", "line 3, column 'b'", "'oops' is not a number"]),
    "column_entirely_missing": (lambda f, t: ["--data", f["empty_column.csv"]],
                                ["empty_column.csv", "'b'", "no observed values"]),
    "constant_column": (lambda f, t: ["--data", f["constant.npy"]],
                        ["constant.npy", "'x2'", "constant", "drop them"]),
    "too_few_windows_for_validation": (lambda f, t: ["--data", f["two_windows.npy"]],
                                       ["two_windows.npy", "shape (2, 1, 3)", "0 validation windows"]),
    "window_longer_than_series": (lambda f, t: ["--data", f["ok.npy"], "--window", "101"],
                                  ["ok.npy", "window 101 is longer than the series (100 rows)"]),
    "mask_wrong_shape": (lambda f, t: ["--data", f["mask_shape.npz"]],
                         ["mask_shape.npz", "mask has shape (100, 2) but X has shape (100, 3)"]),
    "mask_not_0_1": (lambda f, t: ["--data", f["mask_values.npz"]], ["mask_values.npz", "only 0", "and 1"]),
    "truncated_npz": (lambda f, t: ["--data", f["truncated.npz"]], ["truncated.npz", "not a NumPy .npz archive"]),
    "damaged_npz_member": (lambda f, t: ["--data", f["damaged.npz"]],
                           ["damaged.npz", "array 'X' in the .npz is corrupt"]),
    # ground truth
    "truth_wrong_shape": (lambda f, t: ["--data", f["ok.npy"], "--truth", f["truth_2x2.npy"]],
                          ["truth_2x2.npy", "shape (2, 2) but the data has 3 variables"]),
    "truth_unknown_names": (lambda f, t: ["--data", f["ok.npy"], "--truth", f["edges_unknown.csv"]],
                            ["edges_unknown.csv", "'pressure'", "not variables of the data (x0, x1, x2)"]),
    # config file and flags
    "toml_unknown_key": (lambda f, t: ["--config", f["unknown_key.toml"]],
                         ["unknown_key.toml", "unknown key 'epochz' in [train]", "did you mean 'epochs'"]),
    "toml_wrong_type": (lambda f, t: ["--config", f["wrong_type.toml"]],
                        ["wrong_type.toml", "'lr' must be float, got 'fast'"]),
    "lr_zero": (lambda f, t: ["--lr", "0"], ["'lr' must be > 0, got 0.0"]),
    "lr_negative": (lambda f, t: ["--lr", "-1e-3"], ["'lr' must be > 0, got -0.001"]),
    "lambda_negative": (lambda f, t: ["--lambda-sparse", "-0.1"], ["'lambda_sparse' must be >= 0, got -0.1"]),
    "batch_size_negative": (lambda f, t: ["--batch-size", "-1"], ["'batch_size' must be >= 0, got -1"]),
    "threshold_outside_unit": (lambda f, t: ["--graph-threshold", "1.5"],
                               ["'graph_threshold' must lie in [0, 1], got 1.5"]),
    "seed_negative": (lambda f, t: ["--seed", "-1"], ["'seed' must be an integer in [0, "]),
    "config_file_missing": (lambda f, t: ["--config", os.path.join(t, "nope.toml")],
                            ["nope.toml", "config file not found", "smoke"]),
    "unknown_flag": (lambda f, t: ["--epochz", "3"], ["unrecognized arguments: --epochz", "did you mean --epochs"]),
    # output
    "out_not_creatable": (lambda f, t: ["--data", f["ok.npy"], "--out", "/proc/jaxcausal-test/run"],
                          ["/proc/jaxcausal-test", "check the path"]),
    "existing_run_dir": (lambda f, t: ["--data", f["ok.npy"], "--out", _existing_run(t, overwrite=False)],
                         ["existing", "already holds config.json, checkpoints", "--overwrite"]),
    "overwrite_with_bad_data": (lambda f, t: ["--data", f["rank1.npz"], "--overwrite",
                                              "--out", _existing_run(t, overwrite=True)], ["rank1.npz", "rank 1"]),
}


# numpy's np.load leaves its file open when the zip directory is unreadable (numpy, not jaxcausal).
NUMPY_LEAKS_THE_FILE = pytest.mark.filterwarnings("ignore:Exception ignored in. <_io.FileIO name=.*truncated.npz"
                                                  ":pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize("case", [pytest.param(c, marks=NUMPY_LEAKS_THE_FILE) if c == "truncated_npz" else c
                                  for c in FAST_CASES])
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, case, capsys):
    make, needles = FAST_CASES[case]
    tmp = str(tmp_path)
    args = make(files, tmp)
    if "--out" not in args:
        args += ["--out", os.path.join(tmp, "run-" + case)]
    code, _, stderr = run_main(train.main, args, capsys)
    assert_one_line_error(code, stderr, *needles)
    if case in ("existing_run_dir", "overwrite_with_bad_data"):
        # Nothing lost: the earlier results are still there, untouched.
        run = os.path.join(tmp, "existing" if case == "existing_run_dir" else "existing_overwrite")
        assert read_text(os.path.join(run, "config.json")) == '{"keep": "me"}'
        assert os.path.isdir(os.path.join(run, "checkpoints"))
    else:
        assert not os.path.exists(os.path.join(tmp, "run-" + case))  # bad input leaves no run directory


# ------------------------------------------------------------------ cases that train

# Each training run costs a compilation (~5 s on 2 cores), so each covers a data quirk and a truth quirk,
# and both have the same shapes (100 x 3 rows, 80 training windows in one batch): one set of programs.
TRAIN_CASES = {
    # id: (data file, truth file, extra args, warning fragments, each expected on exactly one stderr line)
    "raw_1e6_with_nan_inf+weighted_self_loop_truth": (
        "raw_1e6_nan_inf.npy", "truth_weighted_self_loop.npy", ["--batch-size", "128"],
        ["truth_weighted_self_loop.npy: ground truth is weighted (values other than 0/1, e.g. 0.5); "
         "binarised as value != 0", "truth_weighted_self_loop.npy: ground truth has self-loops on x0; dropped"]),
    "int64+fewer_windows_than_a_batch+cyclic_truth+overwrite": (
        "int64.npy", "truth_cyclic.npy", ["--batch-size", "128", "--overwrite"],
        ["only 80 training windows, fewer than --batch-size 128; using batches of 80",
         "truth_cyclic.npy: ground truth has a cycle (x0 -> x1 -> x2 -> x0); scoring directed edges as given"]),
}


def test_the_real_process_exits_2_with_one_line(files, tmp_path):
    """The contract as a shell sees it: `python -m jaxcausal.train` with a bad file."""
    result = run_cli("--data", files["rank1.npz"], "--out", str(tmp_path / "run"), timeout=120)
    assert_one_line_error(result.returncode, result.stderr, "rank1.npz", "shape (5,), rank 1", "(N, T, D)")
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_awkward_but_valid_input_trains(files, tmp_path, case, capsys):
    data, truth, extra, warnings = TRAIN_CASES[case]
    out = str(tmp_path / "run")
    if "--overwrite" in extra:  # a previous run's files are replaced only because --overwrite says so
        os.makedirs(out)
        with open(os.path.join(out, "summary.json"), "w") as f:
            f.write('{"old": true}')
    code, _, stderr = run_main(train.main, ["--data", files[data], "--truth", files[truth], "--out", out,
                                            *TRAIN, *extra], capsys)
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    for fragment in warnings:
        assert sum(fragment in line for line in stderr.splitlines()) == 1, (fragment, stderr)
    rows = read_log(out)
    assert len(rows) == 2
    for row in rows:
        assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]), row
        assert row["nonfinite_steps"] == 0, row  # missing values never reach the loss or the gradient
        assert row["val_f1"] is not None and row["true_edge_count"] == (2 if "weighted" in case else 3)
    for name in ("training_log.jsonl", "summary.json", "config.json"):
        text = read_text(os.path.join(out, name))
        for line in (text.splitlines() if name.endswith(".jsonl") else [text]):
            strict_json(line)
    summary = strict_json(read_text(os.path.join(out, "summary.json")))
    assert "old" not in summary and summary["stop_reason"] == "max_epochs"
    stats = strict_json(read_text(os.path.join(out, "config.json")))["data"]
    if data.startswith("raw"):
        assert 0.05 < stats["missing_fraction"] < 0.15  # NaN and +-Inf became missing entries
        assert min(stats["standardizer"]["mean"]) > 9e5  # standardised with statistics of the raw scale
    else:
        assert stats["shape"] == [100, 1, 3] and summary["graph"]["edges"] is not None


def test_nonfinite_training_stops_with_one_error_line_and_exit_2(files, tmp_path, capsys):
    """lr 1e30 sends W to ~1e30 after one step: every later step is non-finite and skipped."""
    out = str(tmp_path / "run")
    code, _, stderr = run_main(train.main, ["--data", files["ok.npy"], "--out", out, "--lr", "1e30",
                                            "--max-nonfinite", "3", *TRAIN], capsys)
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "non-finite" in line]
    assert len(errors) == 1 and "--max-nonfinite 3" in errors[0] and "checkpoints" in errors[0], stderr
    rows = [strict_json(line) for line in read_text(os.path.join(out, "training_log.jsonl")).splitlines() if line.strip()]
    assert len(rows) == 1 and rows[0]["nonfinite_steps"] >= 3
    summary = strict_json(read_text(os.path.join(out, "summary.json")))
    assert summary["stop_reason"] == "nonfinite" and summary["nonfinite_steps"] >= 3
    assert os.listdir(os.path.join(out, "checkpoints"))
