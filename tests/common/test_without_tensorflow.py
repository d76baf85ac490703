"""The project as a bare JAX GPU image runs it: without TensorFlow and tensorflow_datasets.

Every test here starts subprocesses whose `sitecustomize` takes both packages out of the
import system, as on an image that never installed them: ``import tensorflow`` raises
ModuleNotFoundError and ``importlib.util.find_spec("tensorflow")`` is None. In them,
`python -m common.campaign --scale smoke` runs every stage (vit trains on CIFAR-10 that
`vit.prepare_cifar10` prepared from a binary archive, mathart trains and is evaluated), and
scanline and ternary_vae train through their command lines; then the TensorBoard events each
run wrote are read back and must hold the scalars its metrics.jsonl holds.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.common.conftest import REPO, subprocess_env
from tests.vit.cifar_files import write_binary_archive

_HIDE = '''"""Hides TensorFlow and TFDS as if they were not installed."""
import importlib.machinery
import sys

HIDDEN = ("tensorflow", "tensorflow_datasets")


class _PathFinderWithout(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [
    _PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
'''


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory) -> dict:
    hide = tmp_path_factory.mktemp("hide_tf")
    (hide / "sitecustomize.py").write_text(_HIDE)
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hide), REPO])
    return env


def test_the_hidden_packages_are_really_absent(bare_env):
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('tensorflow') is None\n"
        "assert importlib.util.find_spec('tensorflow_datasets') is None\n"
        "try:\n    import tensorflow\nexcept ModuleNotFoundError:\n    print('absent')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=bare_env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "absent"


def _scalars_agree(run_dir) -> set[str]:
    """Every scalar of metrics.jsonl is in the run's TensorBoard events at the same step and
    value; returns the tags found."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    events = event_accumulator.EventAccumulator(
        os.path.join(run_dir, "tensorboard"), size_guidance={event_accumulator.SCALARS: 0}
    )
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for record in records:
        for key, value in record.items():
            if key in ("step", "epoch") or isinstance(value, str):
                continue
            assert key in tags, (key, sorted(tags))
            logged = {e.step: e.value for e in events.Scalars(key)}
            np.testing.assert_allclose(logged[record["step"]], value, rtol=1e-6, err_msg=key)
    assert records
    return set(events.Tags()["images"]) | tags


def test_campaign_smoke_runs_every_stage_without_tensorflow(bare_env, tmp_path):
    write_binary_archive(tmp_path / "cifar-10-binary.tar.gz")
    cmd = [sys.executable, "-m", "common.campaign", "--scale", "smoke", "--minutes", "6"]
    cmd += ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    cmd += ["--cifar", str(tmp_path / "cifar-10-binary.tar.gz")]
    done = subprocess.run(cmd, cwd=REPO, env=bare_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    stages = report["stages"]
    assert list(stages) == ["environment", "bench", "vit", "mathart", "parity"]
    failed = {
        f"{s}:{u['item']}": (u["unit_status"], u.get("error"))
        for s, units in stages.items()
        for u in units
        if u["unit_status"] != "ok"
    }
    assert not failed, (failed, (out / "logs" / "bench.log").read_text()[-3000:])

    env = stages["environment"][0]
    assert env["devices"]["device_count"] == 1
    assert all(rate > 0 for rate in env["matmul_tflops"].values())
    bench = {u["item"]: u for u in stages["bench"]}
    assert set(bench) == {"vit:smoke"}
    for record in bench.values():
        assert record["examples_per_sec"] > 0 and record["compile_s"] > 0
        assert record["compilations_during_timing"] == 0 and record["mfu"] > 0

    vit = stages["vit"][0]
    assert vit["status"] == "completed" and vit["epochs_trained"] == 2.0
    assert [e for e, _ in vit["test_accuracy_by_epoch"]] == [1.0, 2.0]
    assert all(0 <= a <= 1 for _, a in vit["test_accuracy_by_epoch"])
    mathart = stages["mathart"][0]
    assert mathart["eval_formulas"] == 8 and mathart["k"] == 4
    assert 0 <= mathart["top1_ssim"] <= 1 and 0 <= mathart["harmony"] <= 10
    parity = stages["parity"][0]
    # One device here (jit against pmap on 8 is tests/common/test_loop.py's); on a GPU machine
    # the campaign compares them on every device it finds.
    assert parity["devices"] == 1 and len(parity["jit_float32"]) == 4
    assert parity["jit_vs_pmap_max_rel"] < 1e-5
    assert parity["bf16_vs_f32_max_rel"] < 0.05

    # What comes back from a device machine: at most 8 files, at most two folders deep.
    files = [p for p in glob.glob(str(out / "**" / "*"), recursive=True) if os.path.isfile(p)]
    assert len(files) <= 8
    assert all(os.path.relpath(p, out).count(os.sep) <= 1 for p in files)
    md = (out / "report.md").read_text()
    for heading in ("## Stages", "## Train-step benchmarks", "## ViT", "## mathart", "jit vs pmap"):
        assert heading in md

    # vit (on CIFAR-10 prepared without TensorFlow) and mathart trained through the loop:
    # their TensorBoard events hold what metrics.jsonl holds.
    vit_tags = _scalars_agree(tmp_path / "work" / "vit_run")
    assert {"train/loss", "val/accuracy", "val/confusion_matrix"} <= vit_tags
    assert "train/loss" in _scalars_agree(tmp_path / "work" / "mathart_run")


def test_scanline_and_ternary_vae_log_to_tensorboard_without_tensorflow(bare_env, tmp_path):
    for family in ("scanline", "ternary_vae"):
        cmd = [sys.executable, "-m", f"{family}.main", f"--config=configs/{family}.py:smoke"]
        cmd.append(f"--workdir={tmp_path / family}")
        done = subprocess.run(cmd, cwd=REPO, env=bare_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "run completed" in done.stdout

    assert "val/balanced_accuracy" in _scalars_agree(tmp_path / "scanline")
    assert "train/loss" in _scalars_agree(tmp_path / "ternary_vae")
