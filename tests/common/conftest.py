"""Fixtures for the shared-loop tests: run the tiny task through the real loop."""

import os
import subprocess
import sys

import pytest

from common import checkpoint
from common.config import set_value
from common.train import TrainResult, train_and_evaluate
from tests.common import tiny_config
from tests.common.tiny_task import TinyTask
from tests.jax_env import env_vars

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_config(**overrides):
    """The tiny config with dotted overrides, e.g. make_config(**{"tiny.dropout": 0.1})."""
    c = tiny_config.get_config()
    for dotted, value in overrides.items():
        set_value(c, dotted, value)
    return c


def run(workdir, **overrides) -> TrainResult:
    return train_and_evaluate(TinyTask, make_config(**overrides), str(workdir))


def params_of(workdir, which="latest"):
    return checkpoint.load_run(str(workdir), which=which)


def subprocess_env(**extra) -> dict:
    """This environment for a child process: CPU, the tests' compile settings and cache
    (tests/jax_env.py), the checkout importable; ``extra`` on top."""
    env = {**os.environ, **env_vars(), "PYTHONPATH": REPO}
    env.pop("XLA_FLAGS", None)  # a user's flags (e.g. 8 forced host devices) stay out of it
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tiny_cli(workdir, *flags: str, env=None, **popen) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tests.common.tiny_main",
        "--config=tests/common/tiny_config.py",
        f"--workdir={workdir}",
        *flags,
    ]
    return subprocess.Popen(cmd, cwd=REPO, env=env or subprocess_env(), **popen)


@pytest.fixture
def tiny_run():
    return run
