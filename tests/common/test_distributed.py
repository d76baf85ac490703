"""Two processes on one machine (jax.distributed over localhost, 4 CPU devices each) train the
tiny task and agree with one process on 8 devices: the multi-host data path, per-process data
shards, collective checkpoint saves and process-0-only logging."""

import json
import os
import socket

import jax
import numpy as np
import pytest

from tests.common.conftest import params_of, run, subprocess_env, tiny_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
    knobs = ["--config.max_steps=8", "--config.distributed=on", "--config.log_every_steps=4"]
    port = free_port()
    procs = []
    for pid in range(2):
        env = subprocess_env(
            JAX_NUM_CPU_DEVICES=4,
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES=2,
            JAX_PROCESS_ID=pid,
        )
        log = open(tmp_path / f"proc{pid}.log", "w")  # noqa: SIM115 - closed below
        procs.append((tiny_cli(tmp_path / "multi", *knobs, env=env, stdout=log, stderr=log), log))
    for proc, log in procs:
        proc.wait(timeout=300)
        log.close()
    logs = [(tmp_path / f"proc{pid}.log").read_text() for pid in range(2)]
    for (proc, _), text in zip(procs, logs):
        assert proc.returncode == 0, text
    assert "2 processes" in logs[0]

    run(tmp_path / "single", max_steps=8, log_every_steps=4)
    multi, single = params_of(tmp_path / "multi"), params_of(tmp_path / "single")
    assert multi.step == single.step == 8
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
        multi.params,
        single.params,
    )

    # Only process 0 wrote metrics, and the curves agree.
    def curve(d):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            return [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]

    np.testing.assert_allclose(curve(tmp_path / "multi"), curve(tmp_path / "single"), rtol=1e-5)
