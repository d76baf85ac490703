"""`common.evaluate`: offline evaluation is the loop's evaluation, for any family's run."""

import json
import subprocess
import sys

import pytest

from common import evaluate as evaluate_lib
from common.config import ConfigError
from tests.common.conftest import REPO, run, subprocess_env


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    # EMA on: the loop evaluates EMA params, so must the offline path. Eval batch 32 over 100
    # examples pads the last batch.
    workdir = tmp_path_factory.mktemp("evaluate")
    result = run(
        workdir,
        final_eval_splits=("test",),
        ema_decay=0.9,
        max_steps=16,
        eval_batch_size=32,
        checkpoint_every_steps=8,
    )
    return workdir, result


def test_offline_figures_are_the_loops_final_figures(ema_run):
    workdir, result = ema_run
    again = evaluate_lib.evaluate_run(str(workdir), which="best")
    assert again["checkpoint_step"] == result.final_metrics["final/checkpoint_step"]
    finals = {k: v for k, v in result.final_metrics.items() if k.startswith("final/test/")}
    assert finals
    for key, value in finals.items():
        assert again[key.removeprefix("final/")] == pytest.approx(value, rel=1e-6), key


def test_a_named_step_and_a_config_change_for_this_evaluation_only(ema_run):
    workdir, _ = ema_run
    at8 = evaluate_lib.evaluate_run(str(workdir), which="8", splits=["val"], batch_size=24)
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    val8 = next(r for r in logged if r["step"] == 8 and "val/accuracy" in r)
    assert at8["checkpoint_step"] == 8
    assert at8["val/loss"] == pytest.approx(val8["val/loss"], rel=1e-6)
    assert at8["val/accuracy"] == pytest.approx(val8["val/accuracy"], rel=1e-6)
    # A config override reaches the task (here: a smaller validation set) and not config.json.
    fewer = evaluate_lib.evaluate_run(
        str(workdir), which="8", splits=["val"], overrides={"tiny.num_val": 50}
    )
    assert fewer["val/accuracy"] != pytest.approx(at8["val/accuracy"]) or (
        fewer["val/loss"] != pytest.approx(at8["val/loss"])
    )
    assert json.loads((workdir / "config.json").read_text())["tiny"]["num_val"] == 100
    with pytest.raises(ConfigError, match=r"unknown split 'tset'.*choose one of: val, test"):
        evaluate_lib.evaluate_run(str(workdir), splits=["tset"])
    with pytest.raises(FileNotFoundError, match=r"step 9 not in .* \(have \["):
        evaluate_lib.evaluate_run(str(workdir), which="9")


def test_command_line_prints_json_and_one_line_errors(ema_run, tmp_path):
    workdir, result = ema_run

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "common.evaluate", str(workdir), *args],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = tmp_path / "eval.json"
    ok = cli("--which", "latest", "--config.tiny.num_val=60", "--out", str(out))
    assert ok.returncode == 0, ok.stderr[-2000:]
    printed = json.loads(ok.stdout)
    assert printed == json.loads(out.read_text())
    assert printed["checkpoint_step"] == result.step and "test/accuracy" in printed
    bad = cli("--config.tiny.num_vall=3")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown config key 'tiny.num_vall' (did you mean 'num_val'?)" in bad.stderr
    bad = cli("--split", "tset")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown split 'tset'")
