"""The ViT family through the real shared loop: the smoke profile on random images
(in-process, 8 CPU devices) and `python -m vit.main` on a prepared data_dir, interrupted and
resumed."""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from common.cli import load_config_file
from common.task import StepContext
from common.train import train_and_evaluate
from tests.common.conftest import subprocess_env
from tests.vit.cifar_files import random_split
from vit.input_pipeline import write_arrays
from vit.task import VitTask, repeat_examples

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_jsonl(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_config_profiles_and_flops():
    sizes = {}
    for profile in ("default", "small", "large", "custom_seed", "strong", "smoke"):
        c = load_config_file(f"configs/vit.py:{profile}")
        m = c.model
        sizes[profile] = (m.embedding_dim, m.num_layers, m.num_heads, m.mlp_size, c.batch_size)
    assert sizes["default"] == (192, 12, 3, 768, 128)
    assert sizes["small"] == (128, 6, 4, 512, 256)
    assert sizes["large"] == (384, 24, 6, 1536, 64)
    assert sizes["custom_seed"] == (384, 12, 6, 768, 256)
    c = load_config_file("configs/vit.py")
    assert (c.learning_rate, c.optim.weight_decay, c.optim.grad_clip) == (3e-4, 0.01, 1.0)
    assert (c.optim.schedule, c.optim.warmup_epochs, c.label_smoothing) == ("warmup_cosine", 5, 0.1)
    assert c.checkpoint_every_epochs == 5 and c.log_every_steps == 50 and c.max_epochs == 100
    seed = load_config_file("configs/vit.py:custom_seed")
    assert (seed.learning_rate, seed.max_epochs, seed.max_training_hours) == (5e-4, 200, 48)
    # Training FLOPs = 3 x forward = 6 x MACs; ViT-Ti/4: 0.365 GMAC -> 2.19 GFLOP.
    assert abs(VitTask(c).flops_per_example() / 1e9 - 2.19) < 0.01


@pytest.mark.parametrize("profile", ["default", "small", "large", "custom_seed", "strong"])
def test_every_profile_traces_its_train_and_eval_step(profile):
    """Shape-level check (no compile) that each profile's model, augmentation and batch size fit
    together, at the profile's real global batch."""
    c = load_config_file(f"configs/vit.py:{profile}")
    task = VitTask(c)
    batch = task.synthetic_batch(c.batch_size, np.random.default_rng(0))
    key = jax.random.key(0)
    params = jax.eval_shape(task.init_variables, key, batch)["params"]
    ctx = StepContext(step=jnp.int32(0), extras={}, controls={})
    loss, (metrics, _) = jax.eval_shape(task.loss_fn, params, batch, key, ctx)
    assert loss.shape == () and set(metrics) == {"accuracy"}
    eval_batch = {**batch, "mask": np.ones(c.batch_size, bool)}
    computed = jax.eval_shape(task.eval_step, params, eval_batch, ctx)
    assert computed.confusion.counts.shape == (10, 10)


def test_repeated_augmentation_rows():
    batch = {"label": jnp.arange(8), "image": jnp.arange(8)[:, None]}
    out = repeat_examples(batch, 3)  # ceil(8 / 3) = 3 distinct examples
    np.testing.assert_array_equal(out["label"], [0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(out["image"][:, 0], out["label"])
    assert repeat_examples(batch, 1) is batch


def test_smoke_on_random_images(tmp_path):
    images = random_split(256, seed=5)
    write_arrays({"train": images, "test": images}, str(tmp_path / "data"))
    c = load_config_file("configs/vit.py:smoke")
    c.data_dir = str(tmp_path / "data")
    c.augment.policy = "randaugment"  # exercise the strong-profile augmentations too
    c.augment.random_erasing = 0.25
    c.augment.mixup_alpha = c.augment.cutmix_alpha = 1.0
    c.model.stochastic_depth_rate = 0.1
    c.augment.repeated_aug = 3  # does not divide the batch of 32
    run = tmp_path / "run"
    result = train_and_evaluate(VitTask, c, str(run))
    # 256 - 128 held out = 128 train images = 4 steps/epoch; 2 epochs.
    assert result.status == "completed" and result.step == 8
    records = read_jsonl(run)
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [4, 8]
    evals = [r for r in records if "val/accuracy" in r]
    assert [r["step"] for r in evals] == [4, 8]
    assert all(0 <= r["val/accuracy"] <= 1 and np.isfinite(r["val/loss"]) for r in evals)
    per_class = [evals[-1][f"val/accuracy/{name}"] for name in VitTask(c).class_names]
    assert len(per_class) == 10
    final = json.loads((run / "final_metrics.json").read_text())
    assert 0 <= final["final/test/accuracy"] <= 1 and final["final/checkpoint_step"] in (4, 8)
    png = glob.glob(str(run / "images" / "val_confusion_matrix_*.png"))
    assert len(png) == 2 and Image.open(png[0]).mode == "RGB"
    assert glob.glob(str(run / "tensorboard" / "events.out.tfevents.*"))


def run_cli(*args: str, workdir) -> subprocess.CompletedProcess:
    env = subprocess_env()
    cmd = [
        sys.executable,
        "-m",
        "vit.main",
        "--config=configs/vit.py:smoke",
        f"--workdir={workdir}",
    ]
    return subprocess.run(
        [*cmd, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_trains_on_prepared_cifar10_and_resumes(binary_data_dir, tmp_path):
    data_dir, _ = binary_data_dir
    args = (
        f"--config.data_dir={data_dir}",
        "--config.download=False",
        "--config.val_examples=20",  # 100 train images: 80 train + 20 val; 20 test
        "--config.batch_size=16",
        "--config.eval_batch_size=16",  # does not divide 20: padded, masked last batch
        "--config.max_epochs=3",  # 5 steps/epoch, 15 steps
    )
    first = run_cli(*args, "--config.stop_after_steps=7", workdir=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "run stopped" in first.stdout
    steps_before = sorted(
        int(os.path.basename(p)) for p in glob.glob(str(tmp_path / "checkpoints/*"))
    )
    assert steps_before[-1] == 7 and 5 in steps_before  # epoch-1 eval + the stop save

    second = run_cli(*args, workdir=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "run completed" in second.stdout
    records = read_jsonl(tmp_path)
    val_steps = [r["step"] for r in records if "val/accuracy" in r]
    assert val_steps == [5, 10, 15]  # no epoch repeated or skipped across the restart
    final = json.loads((tmp_path / "final_metrics.json").read_text())
    assert 0 <= final["final/test/accuracy"] <= 1
    # 20 test images with batch 16: the padded rows must not count (accuracy is k/20).
    assert abs(final["final/test/accuracy"] * 20 - round(final["final/test/accuracy"] * 20)) < 1e-4
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["profile"] == "smoke" and config["data_dir"] == str(data_dir)

    # Offline evaluation reproduces the loop's final test numbers from the best checkpoint.
    from common.evaluate import evaluate_run

    again = evaluate_run(str(tmp_path), which="best", splits=["test"])
    assert again["checkpoint_step"] == final["final/checkpoint_step"]
    for key, value in final.items():
        if key.startswith("final/test/"):
            assert again[key.removeprefix("final/")] == pytest.approx(value, rel=1e-6, abs=1e-7)
    assert glob.glob(str(tmp_path / "images" / "eval_test_step*_confusion_matrix.png"))

    # From Python, in a fresh process: common.load_run(...).predict gives the same accuracy.
    script = (
        "import json, sys, numpy as np, common\n"
        "from vit.input_pipeline import load_cifar10\n"
        "trained = common.load_run(sys.argv[1])\n"
        "images, labels = load_cifar10(sys.argv[2], download=False)['test']\n"
        "out = trained.predict({'image': images})\n"
        "print(json.dumps({'step': trained.step, 'accuracy': float((out['label'] == labels)"
        ".mean()), 'sums': out['probs'].sum(1).tolist()}))\n"
    )
    env = subprocess_env()
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(data_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = json.loads(proc.stdout.strip().splitlines()[-1])
    assert predicted["step"] == final["final/checkpoint_step"]
    assert predicted["accuracy"] == pytest.approx(final["final/test/accuracy"], abs=1e-6)
    np.testing.assert_allclose(predicted["sums"], 1.0, rtol=1e-5)


def test_missing_data_is_advice_without_a_traceback(tmp_path):
    missing = tmp_path / "no_cifar_here"
    proc = run_cli(f"--config.data_dir={missing}", "--config.download=False", workdir=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    said = f"error: CIFAR-10 is not prepared in config.data_dir={missing} (that folder does not"
    assert f"{said} exist)" in proc.stderr
    assert f"python -m vit.prepare_cifar10 --source PATH --data_dir {missing}" in proc.stderr
    assert "(traceback in " in proc.stderr  # kept in the run directory's error.log
    assert "Traceback" in (tmp_path / "error.log").read_text()
