"""Each model through the real shared loop on the tiny synthetic set, and a 2-point sweep."""

import csv
import io
import json
import os
import pathlib

import jax
import numpy as np
import pytest

import configs.scanline as cfgmod
from common import config as config_lib
from common.checkpoint import load_run
from common.evaluate import evaluate_run
from common.train import train_and_evaluate
from scanline import evaluate, input_pipeline, sweep, synth
from scanline.main import timestamped_workdir
from scanline.task import ScanlineTask


def _jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _smoke(data_dir, name):
    c = cfgmod.get_config("smoke")
    c.data_dir = str(data_dir)
    c.model.name = name
    if name == "sequential":
        c.model.tokenizer, c.model.progressive_weight = "cnn", 0.5
    return c


@pytest.mark.parametrize("name", ["vit", "sequential", "lrcn"])
def test_model_trains_through_the_loop(tmp_path, smoke_data_dir, name):
    result = train_and_evaluate(ScanlineTask, _smoke(smoke_data_dir, name), str(tmp_path))
    assert result.status in ("completed", "early_stopped")
    fm = result.final_metrics
    for key in ("accuracy", "balanced_accuracy", "auroc", "loss", "recall/0_individual_atoms"):
        assert np.isfinite(fm[f"final/test/{key}"]), key
    assert fm["final/test/num_examples"] == 16  # the held-out synthetic file, every image once
    records = _jsonl(tmp_path / "metrics.jsonl")
    val = [r for r in records if "val/balanced_accuracy" in r]
    assert len(val) == 2  # one eval per epoch
    assert all(0 <= r["val/auroc"] <= 1 for r in val)
    pngs = os.listdir(tmp_path / "images") if os.path.isdir(tmp_path / "images") else []
    assert any("confusion_matrix" in p for p in pngs), pngs
    if name != "vit":  # progressive read-outs: accuracy against lines seen
        assert "val/lines_64/balanced_accuracy" in val[-1]
        assert any("accuracy_vs_lines" in p for p in pngs)
    assert os.path.isfile(tmp_path / "config.json")


def test_two_point_sweep_table(tmp_path, smoke_data_dir):
    md = sweep.sweep(
        "configs/scanline.py:smoke",
        ["optim.weight_decay=0,0.01"],
        workdir=str(tmp_path),
        overrides=[f"data_dir={smoke_data_dir}", "max_epochs=1"],
    )
    assert "| Config | weight_decay | Best Valid Acc |" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "sweep_results.csv").read_text())))
    assert sorted(r["config"] for r in rows) == ["wd0", "wd0.01"]
    for r in rows:
        cfg = json.loads((tmp_path / r["config"] / "config.json").read_text())
        assert cfg["optim"]["weight_decay"] == float(r["grid:optim.weight_decay"])
        records = _jsonl(tmp_path / r["config"] / "metrics.jsonl")
        best = max(x["val/accuracy"] for x in records if "val/accuracy" in x)
        assert float(r["best_val_accuracy"]) == pytest.approx(best)
    # Rerunning only rebuilds the table: finished runs are not retrained.
    before = os.path.getmtime(tmp_path / "wd0" / "metrics.jsonl")
    sweep.sweep(
        "configs/scanline.py:smoke",
        ["optim.weight_decay=0,0.01"],
        workdir=str(tmp_path),
        overrides=[f"data_dir={smoke_data_dir}", "max_epochs=1"],
    )
    assert os.path.getmtime(tmp_path / "wd0" / "metrics.jsonl") == before


def test_grid_parsing_is_literal_only():
    assert config_lib.parse_literal("0") == 0 and config_lib.parse_literal("0.05") == 0.05
    assert config_lib.parse_literal("true") is True and config_lib.parse_literal("lrcn") == "lrcn"
    assert config_lib.parse_literal("__import__('os')") == "__import__('os')"  # a string, not code
    assert config_lib.parse_value("(16,32)") == (16, 32)
    grid = sweep.parse_grid(["optim.weight_decay=0,0.01", "model.dropout=0.1,0.2"])
    assert len(sweep.grid_points(grid, None)) == 4
    assert sweep.grid_points(grid, ["0.01,0.1"]) == [(0.01, 0.1)]
    with pytest.raises(sweep.ConfigError, match="not on the grid"):
        sweep.grid_points(grid, ["0.5,0.1"])
    c = cfgmod.get_config("smoke")
    config_lib.set_value(c, "optim.weight_decay", 0)
    assert isinstance(c.optim.weight_decay, float)
    with pytest.raises(sweep.ConfigError, match="unknown config key"):
        config_lib.set_value(c, "optim.wieght_decay", 0.1)


def test_timestamped_workdir(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    name = os.path.basename(timestamped_workdir(None))
    assert len(name) == 15 and name[8] == "_" and name.replace("_", "").isdigit()
    monkeypatch.setenv("SLURM_JOB_ID", "324891")
    path = timestamped_workdir(None)
    assert path.startswith("checkpoints" + os.sep) and path.endswith("_j324891")


@pytest.fixture(scope="module")
def lrcn_run(tmp_path_factory, smoke_data_dir):
    """One smoke LRCN run (workdir, config, result) for the tests that read a trained run."""
    workdir = tmp_path_factory.mktemp("lrcn_run")
    config = _smoke(smoke_data_dir, "lrcn")
    return workdir, config, train_and_evaluate(ScanlineTask, config, str(workdir))


def test_evaluate_reproduces_the_loops_final_test(lrcn_run):
    workdir, config, result = lrcn_run
    fm = result.final_metrics
    again = evaluate_run(str(workdir), which="best")  # the loop's evaluation, reopened
    assert again["checkpoint_step"] == fm["final/checkpoint_step"]
    for key, value in fm.items():
        if key.startswith("final/test/"):
            assert again[key.removeprefix("final/")] == pytest.approx(value, rel=1e-6), key
    # scanline.evaluate: another data file, with the generator's per-subtype breakdown.
    run = load_run(str(workdir), "best")
    test_file = input_pipeline.synthetic_file(config, config.synth.test_n, config.synth.test_seed)
    rep = evaluate.report(run.config, run.params, test_file)
    assert rep["num_examples"] == fm["final/test/num_examples"]
    for key in ("accuracy", "balanced_accuracy", "auroc"):
        np.testing.assert_allclose(rep[key], fm[f"final/test/{key}"], rtol=1e-6, err_msg=key)
    assert set(rep["recall_by_subtype"]) <= set(synth.SUBTYPE_NAMES)

    # Mirror test-time augmentation = the mean of the two single-view probabilities.
    images = input_pipeline.zscore_lines(np.load(test_file)["images"])
    plain = evaluate.predict(run.config, run.params, images)
    mirrored = evaluate.predict(run.config, run.params, images[..., ::-1])
    np.testing.assert_allclose(
        evaluate.predict(run.config, run.params, images, hflip_tta=True),
        (plain + mirrored) / 2,
        rtol=1e-5,
        atol=1e-7,
    )


def test_staged_continuation_on_a_fresh_synthetic_set(tmp_path, smoke_data_dir, lrcn_run):
    """The README's staged recipe: a second run starts from the first run's best params
    (`init_from`) and trains on images from another generator seed (`synth.seed`)."""
    first = lrcn_run[0]
    second = _smoke(smoke_data_dir, "lrcn")
    second.init_from = str(first)
    second.synth.seed = 2
    # Zero learning rate (no weight decay either): the params must come out bit-identical
    # to stage 1's best, which proves what the second stage started from.
    second.learning_rate = second.optim.warmup_init_lr = 0.0
    second.max_epochs = 1.0
    train_and_evaluate(ScanlineTask, second, str(tmp_path / "stage2"))
    assert os.path.isfile(input_pipeline.synthetic_file(second, second.synth.n, 2))
    best = load_run(str(first), "best").params
    after = load_run(str(tmp_path / "stage2"), "latest").params
    jax.tree.map(np.testing.assert_array_equal, best, after)


def test_a_trained_run_is_usable_from_python(lrcn_run):
    import common

    workdir, config, result = lrcn_run
    trained = common.load_run(str(workdir))
    test_file = input_pipeline.synthetic_file(config, config.synth.test_n, config.synth.test_seed)
    with np.load(test_file) as f:
        raw, labels = f["images"], f["labels"]
    out = trained.predict({"image": raw})  # heights as scanned: predict z-scores each line
    host = evaluate.predict(trained.config, trained.params, input_pipeline.zscore_lines(raw))
    np.testing.assert_allclose(out["probs"], host, atol=1e-4)
    accuracy = float((out["label"] == labels).mean())
    assert accuracy == pytest.approx(result.final_metrics["final/test/accuracy"], abs=1e-9)
