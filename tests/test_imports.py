"""Imports without side effects: the numpy-only layer and bad command lines never load jax.

Each check runs in a fresh interpreter, since this test process has jax loaded already.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_numpy_only_modules_do_not_import_jax():
    result = run_python(
        "import sys\n"
        "import jaxcausal, jaxcausal.graphs, jaxcausal.errors, jaxcausal.config, jaxcausal.cli, jaxcausal.data\n"
        "import jaxcausal.prepare, jaxcausal.reporting, jaxcausal.rundir\n"
        "loaded = sorted(m for m in ('jax', 'flax', 'optax', 'orbax') if m in sys.modules)\n"
        "assert not loaded, loaded\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module,argv", [("train", []), ("sweep", []), ("evaluate", ["runs/a"])])
def test_bad_flag_is_reported_without_jax(module, argv):
    result = run_python(
        "import sys\n"
        f"from jaxcausal import cli, {module}\n"
        "code = None\n"
        "try:\n"
        f"    cli.run({module}.main, {argv + ['--bogus-flag']!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "assert code == 2, code\n"
        "assert 'jax' not in sys.modules\n")
    assert result.returncode == 0, result.stderr
    assert "unrecognized arguments: --bogus-flag" in result.stderr


def test_a_wrong_run_directory_is_reported_without_jax(tmp_path):
    result = run_python(
        "import sys\n"
        "from jaxcausal import cli, evaluate\n"
        "code = cli.run(evaluate.main, [sys.argv[1]])\n"
        "assert code == 2, code\n"
        "assert 'jax' not in sys.modules\n".replace("sys.argv[1]", repr(str(tmp_path / "no_run"))))
    assert result.returncode == 0, result.stderr
    assert "no such checkpoints directory" in result.stderr


def test_the_data_summary_is_printed_before_jax_loads():
    # An import hook stops the process at jax's first import: what was printed by then came first.
    result = run_python(
        "import sys\n"
        "class StopAtJax:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jax':\n"
        "            print('<jax>', flush=True)\n"
        "            raise SystemExit(0)\n"
        "sys.meta_path.insert(0, StopAtJax())\n"
        "from jaxcausal import cli, train\n"
        "cli.run(train.main, ['--config', 'smoke', '--no-compile-cache'])\n")
    assert result.returncode == 0, result.stderr
    before_jax = result.stdout.split("<jax>")[0]
    assert "<jax>" in result.stdout and "windows" in before_jax and "variables" in before_jax, result.stdout


def test_public_names_load_on_first_use():
    result = run_python(
        "import sys, jaxcausal\n"
        "assert 'jax' not in sys.modules\n"
        "from jaxcausal import config, training\n"
        "assert jaxcausal.Config is config.Config\n"
        "assert jaxcausal.train_and_evaluate is training.train_and_evaluate\n"
        "assert set(jaxcausal.__all__) <= set(dir(jaxcausal))\n"
        "try:\n"
        "    jaxcausal.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n")
    assert result.returncode == 0, result.stderr


def test_importing_checkpoint_leaves_the_absl_logger_alone():
    result = run_python(
        "import logging\n"
        "before = list(logging.getLogger('absl').filters)\n"
        "import jaxcausal.checkpoint\n"
        "assert logging.getLogger('absl').filters == before, logging.getLogger('absl').filters\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("given,expected", [
    (None, "--xla_cpu_use_fusion_emitters=false"),
    ("--xla_cpu_use_fusion_emitters=true", "--xla_cpu_use_fusion_emitters=true"),  # the user's choice wins
    ("--xla_force_host_platform_device_count=4", "--xla_force_host_platform_device_count=4 "
                                                 "--xla_cpu_use_fusion_emitters=false"),
])
def test_the_faster_compiling_cpu_emitter_is_chosen_unless_the_user_chose(given, expected):
    env_line = "import os\n" + (f"os.environ['XLA_FLAGS'] = {given!r}\n" if given else "os.environ.pop('XLA_FLAGS', None)\n")
    result = run_python(env_line + "import jaxcausal\n"
                        f"assert os.environ['XLA_FLAGS'] == {expected!r}, os.environ['XLA_FLAGS']\n")
    assert result.returncode == 0, result.stderr
