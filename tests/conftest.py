"""Shared fixtures: the smoke config, a runner for the real CLI, the contract checker."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxcausal import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK_RUN = os.path.join(ROOT, "..", "shared", "tools", "check_run.py")


@pytest.fixture
def smoke_config():
    return config_lib.load_toml("smoke")


def run_cli(*args: str, module: str = "jaxcausal.train", timeout: float = 300, env=None):
    """Run `python -m module args...` in a subprocess; returns CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def read_log(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "training_log.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_run(run_dir: str) -> subprocess.CompletedProcess:
    if not os.path.isfile(CHECK_RUN):
        pytest.skip("shared/tools/check_run.py is not beside the checkout")
    return subprocess.run([sys.executable, CHECK_RUN, run_dir], capture_output=True, text=True)
