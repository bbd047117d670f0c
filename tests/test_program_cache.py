"""The traced epoch kept across runs (program_cache.py): same numbers as tracing, loaded not retraced."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

from jaxcausal import config as config_lib, experiment, program_cache

pytest.importorskip("flatbuffers")


def _setup(static_npz, **overrides):
    cfg = config_lib.replace(config_lib.load_toml("smoke"), {"data": static_npz, "epochs": 2, **overrides})
    return experiment.build(cfg, warn=lambda msg: None)


def _two_epochs(setup, epoch):
    state, data = setup.init_state(), setup.train_data()
    for _ in range(2):
        state, out = epoch(state, data)
    return jax.tree.leaves((state, out)), jax.tree.structure((state, out))


def _differing(a, b) -> int:
    return sum(not bool(jnp.array_equal(x, y, equal_nan=True)) for x, y in zip(a, b))


def test_the_cached_program_gives_the_traced_programs_numbers_and_is_loaded_not_retraced(
        static_npz, tmp_path, monkeypatch):
    monkeypatch.setattr(program_cache, "directory", lambda: str(tmp_path))
    setup = _setup(static_npz)
    direct, direct_tree = _two_epochs(setup, jax.jit(setup.epoch_fn(), donate_argnums=0))
    first, first_tree = _two_epochs(setup, setup.compiled_epoch(setup.init_state(), setup.train_data()))
    saved = os.listdir(tmp_path)
    assert len(saved) == 2, saved  # the program and its metadata

    def no_tracing(*args):
        raise AssertionError("a saved program was traced again")
    monkeypatch.setattr(program_cache, "_export", no_tracing)
    again = _setup(static_npz)  # a new Experiment: fresh closures, as in a second process
    second, second_tree = _two_epochs(again, again.compiled_epoch(again.init_state(), again.train_data()))
    assert first_tree == direct_tree == second_tree
    assert _differing(first, direct) == 0 and _differing(second, direct) == 0


def test_a_damaged_entry_is_traced_again_and_a_new_setting_gets_its_own_entry(static_npz, tmp_path, monkeypatch):
    monkeypatch.setattr(program_cache, "directory", lambda: str(tmp_path))
    setup = _setup(static_npz)
    reference, _ = _two_epochs(setup, setup.compiled_epoch(setup.init_state(), setup.train_data()))
    (entry,) = [f for f in os.listdir(tmp_path) if not f.endswith(".json")]
    (tmp_path / entry).write_bytes(b"not a serialised program")
    rebuilt, _ = _two_epochs(setup, setup.compiled_epoch(setup.init_state(), setup.train_data()))
    assert _differing(rebuilt, reference) == 0
    other = _setup(static_npz, lr=1e-3)  # a setting the program depends on: a new key, not the old program
    changed, _ = _two_epochs(other, other.compiled_epoch(other.init_state(), other.train_data()))
    assert len(os.listdir(tmp_path)) == 4
    assert _differing(changed, reference) > 0


def test_without_the_compile_cache_nothing_is_saved(static_npz, tmp_path, monkeypatch):
    monkeypatch.setattr(program_cache, "directory", lambda: str(tmp_path))
    setup = _setup(static_npz, compile_cache=False)
    setup.compiled_epoch(setup.init_state(), setup.train_data())
    assert not os.listdir(tmp_path)


def test_a_run_compiles_a_handful_of_programs_and_no_eager_ops(static_npz, tmp_path, monkeypatch):
    import logging

    from jaxcausal import training
    names = []

    class Compiles(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Compiling "):
                names.append(message.split()[1])
    handler = Compiles()
    logger = logging.getLogger("jax._src.interpreters.pxla")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    jax.clear_caches()  # what earlier tests compiled in this process would otherwise not be logged
    cfg = config_lib.replace(config_lib.load_toml("smoke"), {"data": static_npz, "epochs": 2, "truth": "",
                                                             "out": str(tmp_path / "run"), "plots": False})
    try:
        with jax.log_compiles(True):
            training.train_and_evaluate(cfg)
    finally:
        logger.removeHandler(handler)
    # The initial state, the epoch (exported: flat, then called), the graph's W and threshold table,
    # the best epoch's copy.
    expected = {"jit(init_state)", "jit(flat)", "jit(call)", "jit(epoch)", "jit(_learned)", "jit(_threshold_table)",
                "jit(<lambda>)"}
    assert names and set(names) <= expected, names


def test_another_file_of_the_same_shapes_reuses_the_program(static_npz, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(program_cache, "directory", lambda: str(tmp_path / "cache"))
    setup = _setup(static_npz)
    setup.compiled_epoch(setup.init_state(), setup.train_data())
    copy = str(tmp_path / "copy.npz")
    shutil.copy(static_npz, copy)
    monkeypatch.setattr(program_cache, "_export", lambda *args: pytest.fail("traced again for a new path"))
    other = _setup(copy)
    other.compiled_epoch(other.init_state(), other.train_data())
