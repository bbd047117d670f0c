"""Training end to end: one step, one compilation, reproducibility, the CLI and the presets."""
from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcausal import config as config_lib, train
from jaxcausal.losses import Batch
from jaxcausal.experiment import build
from jaxcausal.training import train_and_evaluate

from conftest import check_run, read_json, read_log, run_cli, run_main, write_static_npz

SMALL = {"epochs": 3, "batch_size": 32, "patience": 0, "quiet": True}


def small_static_config(tmp_path, **overrides):
    """A static (N, D) file with a known DAG: fast to train, exercises the T = 1 path."""
    path = write_static_npz(os.path.join(tmp_path, "static.npz"))
    return config_lib.replace(config_lib.Config(), dict(SMALL, data=path, **overrides))


def test_one_step_moves_weights_and_keeps_loss_finite(smoke_config):
    setup = build(smoke_config)
    state = setup.init_state()
    x = jnp.asarray(setup.prepared.x_train[:8])
    batch = Batch(x, jnp.ones_like(x))
    # Jitted: run eagerly, every primitive of the loss and the optax chain compiles on its own (~10 s).
    (loss, aux), grads = jax.jit(jax.value_and_grad(setup.loss_fn, has_aux=True))(state.params, batch,
                                                                                    state.lambdas, state.pressure)
    assert np.isfinite(float(loss))
    assert set(aux) >= {"recon", "sparse", "acyclic", "disen"}
    updates, _ = jax.jit(lambda g, o, p, v: setup.optimizer.update(g, o, p, value=v))(
        grads, state.opt_state, state.params, loss)
    moved = jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)
    assert moved["w"] > 0  # W starts at zero: the first step must move it
    assert float(aux["acyclic"]) == 0.0  # W = 0 is a DAG


def test_epoch_compiles_once_and_freezes_stopped_state(smoke_config):
    setup = build(smoke_config)
    state, data = setup.init_state(), setup.train_data()
    epoch = jax.jit(setup.epoch_fn(), donate_argnums=0)  # as training jits it: the smoke runs' program
    for _ in range(3):
        state, _ = epoch(state, data)
    assert epoch._cache_size() == 1
    assert int(state.epoch) == 3
    frozen = state.replace(early=state.early._replace(stopped=jnp.asarray(True)))
    w_before = np.asarray(frozen.params["w"])  # read before the call donates frozen's buffers
    after, _ = epoch(frozen, data)
    assert int(after.epoch) == 3
    np.testing.assert_array_equal(np.asarray(after.params["w"]), w_before)


def test_same_seed_gives_identical_log(tmp_path):
    rows = []
    for name in ("a", "b"):
        cfg = small_static_config(tmp_path, out=str(tmp_path / name), epochs=5)
        train_and_evaluate(cfg)
        rows.append([{k: v for k, v in r.items() if k != "epoch_time"} for r in read_log(str(tmp_path / name))])
    assert rows[0] == rows[1]
    assert len(rows[0]) == 5
    cfg = small_static_config(tmp_path, out=str(tmp_path / "c"), epochs=5, seed=2)
    train_and_evaluate(cfg)
    assert [{k: v for k, v in r.items() if k != "epoch_time"} for r in read_log(str(tmp_path / "c"))] != rows[0]


def test_cli_smoke_run_writes_the_contract(tmp_path, capsys):
    out = str(tmp_path / "run")
    result = run_cli("--config", "smoke", "--out", out)  # a real process: its console and exit code
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith("Epoch")]
    assert len(lines) == 3 and "| Val F1:" in lines[0] and "| Grad Clip:" in lines[0]
    assert check_run(out).returncode == 0, check_run(out).stdout
    for name in ("config.json", "summary.json", "graph.csv", "weights.npy", "training_log.jsonl"):
        assert os.path.isfile(os.path.join(out, name))
    summary = read_json(os.path.join(out, "summary.json"))
    assert len(summary["threshold_table"]) == 21
    assert summary["stop_reason"] == "max_epochs"
    assert os.listdir(os.path.join(out, "checkpoints"))
    rows = read_log(out)
    assert all(r["weight_change"] is not None and r["weight_change"] >= 0 for r in rows)  # the stage rule's signal
    # The same --out again is refused: nothing the user had is overwritten silently.
    code, _, stderr = run_main(train.main, ["--config", "smoke", "--out", out], capsys)
    assert code == 2 and "--overwrite" in stderr and "Traceback" not in stderr


def test_flags_override_config_file():
    from jaxcausal.train import parser
    args = parser().parse_args(["--config", "original", "--lambda-sparse", "1e-5", "--epochs", "7"])
    cfg = config_lib.from_args(args)
    assert cfg.loss.lambda_sparse == 1e-5 and cfg.train.epochs == 7
    assert cfg.loss.lambda_recon == 10.0 and cfg.loss.lambda_acyclic == 1e-5  # from the file


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(config_lib.preset_dir(), "*.toml"))))
def test_every_preset_loads(path):
    cfg = config_lib.load_toml(path)
    assert isinstance(cfg, config_lib.Config)


def test_default_preset_matches_dataclass_defaults():
    assert config_lib.load_toml("default") == config_lib.Config()


def test_original_preset_keeps_the_original_weights():
    loss = config_lib.load_toml("original").loss
    assert (loss.lambda_recon, loss.lambda_sparse, loss.lambda_acyclic, loss.lambda_disen) == (10, 1e-4, 1e-5, 1e-4)
