"""common.analyze and common.bench on a tiny run / the tiny config; common.data sources."""

import json
import os

import numpy as np
import pytest

from common import analyze, bench
from common.data import ArrayEvalSource, ArraySource, fixed_size_chunks
from tests.common import tiny_config
from tests.common.conftest import run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    run(base / "a", max_steps=16, eval_every_steps=8, final_eval_splits=("test",))
    run(base / "b", max_steps=16, eval_every_steps=8, learning_rate=0.001)
    return base / "a", base / "b"


def test_analyze_reports_best_and_latest_with_steps(two_runs, tmp_path):
    a, b = map(str, two_runs)
    report = analyze.analyze([a, b], out_dir=str(tmp_path))
    series = analyze.read_metrics(a)
    val_loss = series["val/loss"]
    best = min(val_loss, key=lambda p: p.value)
    row = next(line for line in report.splitlines() if line.startswith("| val | loss |"))
    assert f"| {best.value:.6g} | {best.step} | {best.epoch:.2f} |" in row
    assert f"| {val_loss[-1].value:.6g} | {val_loss[-1].step} |" in row
    assert "| final/test | accuracy |" in report
    assert "| run | " in report and a in report and b in report  # comparison table
    assert (tmp_path / "report.md").read_text().startswith("# Runs")
    assert (tmp_path / "val_loss.png").stat().st_size > 0
    assert analyze.summarise(series)["train/learning_rate"].best is None
    # Bookkeeping is not compared: no ETA and no checkpoint-step rows or plots.
    assert "eta_minutes" not in report and "checkpoint_step" not in report
    assert not list(tmp_path.glob("*eta*.png"))


def test_analyze_cli_errors_clearly(tmp_path, capsys):
    assert analyze.main([str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_bench_times_the_real_step_without_recompiling(monkeypatch):
    from tests.common.tiny_task import TinyTask

    built = []
    original = TinyTask.datasets
    monkeypatch.setattr(TinyTask, "datasets", lambda self: built.append(1) or original(self))
    config = tiny_config.get_config()
    record = bench.benchmark(config, steps=5, warmup=2, input_batches=3)
    assert len(built) == 1  # the example batch and the input timing share one build
    assert record["compilations_during_timing"] == 0
    assert record["global_batch"] == 32 and record["num_params"] == 195
    assert record["step_ms_median"] > 0 and record["examples_per_sec"] > 0
    assert record["analytic_flops_per_step"] == 3 * 2 * (8 * 16 + 16 * 3) * 32
    assert record["xla_flops_per_step"] > 0
    assert 0 < record["mfu"] < 1
    assert record["input_examples_per_sec"] > 0
    json.dumps(record, default=str)
    assert "step_ms_median" in bench.format_table(record)


def test_bench_compile_only_sizes_the_step_without_running_it():
    config = tiny_config.get_config()
    record = bench.compile_only(config)
    timed = bench.benchmark(config, steps=1, warmup=0)
    assert record["mode"] == "compile_only" and record["num_params"] == 195
    assert record["xla_flops_per_step"] == timed["xla_flops_per_step"]
    assert record["analytic_flops_per_step"] == timed["analytic_flops_per_step"]
    assert record["xla_argument_bytes"] >= 3 * 4 * 195  # params + Adam's two moments, float32
    assert record["xla_alias_bytes"] > 0  # the state is donated, so it is counted once
    assert record["xla_live_bytes"] == (
        record["xla_argument_bytes"]
        + record["xla_output_bytes"]
        + record["xla_temp_bytes"]
        - record["xla_alias_bytes"]
    )
    assert "xla_live_bytes" in bench.format_table(record)


def test_config_task_must_name_a_task_class():
    from common.task import task_class

    config = tiny_config.get_config()
    config.task = "common.config:ConfigError"
    with pytest.raises(ValueError, match=r"not a common\.task\.Task subclass"):
        task_class(config)


def _rows(source, **kw):
    return [b["i"] for b in source.batches(**kw)]


def test_array_source_is_deterministic_resumable_and_process_sharded():
    src = ArraySource({"i": np.arange(100)}, seed=3)
    kw = dict(global_batch_size=20, process_index=0, process_count=1)
    epoch0 = _rows(src, epoch=0, start_step=0, **kw)
    assert len(epoch0) == 5  # 100 // 20, last partial dropped (none here)
    assert sorted(np.concatenate(epoch0)) == list(range(100))
    assert _rows(src, epoch=0, start_step=0, **kw)[2].tolist() == epoch0[2].tolist()
    assert [b.tolist() for b in _rows(src, epoch=0, start_step=3, **kw)] == [
        b.tolist() for b in epoch0[3:]
    ]
    assert _rows(src, epoch=1, start_step=0, **kw)[0].tolist() != epoch0[0].tolist()
    # Two processes see disjoint halves of the very same global batches.
    halves = [
        _rows(src, epoch=0, start_step=0, global_batch_size=20, process_index=p, process_count=2)
        for p in range(2)
    ]
    for step in range(5):
        joined = sorted(np.concatenate([halves[0][step], halves[1][step]]).tolist())
        assert joined == sorted(epoch0[step].tolist())
        assert not set(halves[0][step]) & set(halves[1][step])


def test_array_source_drops_the_last_partial_batch_and_checks_sizes():
    src = ArraySource({"i": np.arange(50)}, seed=0)
    kw = dict(epoch=0, start_step=0, global_batch_size=16, process_index=0, process_count=1)
    assert [len(b) for b in _rows(src, **kw)] == [16, 16, 16]
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        next(
            src.batches(
                epoch=0, start_step=0, global_batch_size=16, process_index=0, process_count=3
            )
        )
    with pytest.raises(ValueError, match="share their first dimension"):
        ArraySource({"a": np.zeros(3), "b": np.zeros(4)}, seed=0)


def test_eval_source_pads_masks_and_zeroes_padding():
    src = ArrayEvalSource({"x": np.arange(1, 11, dtype=np.float32)})
    batches = list(src.batches(global_batch_size=4, process_index=0, process_count=1))
    assert [b["mask"].tolist() for b in batches][-1] == [True, True, False, False]
    assert batches[-1]["x"].tolist() == [9.0, 10.0, 0.0, 0.0]
    seen = np.concatenate([b["x"][b["mask"]] for b in batches])
    assert seen.tolist() == list(range(1, 11))
    per_process = [
        list(src.batches(global_batch_size=4, process_index=p, process_count=2)) for p in (0, 1)
    ]
    both = np.concatenate([b["x"][b["mask"]] for p in per_process for b in p])
    assert sorted(both.tolist()) == list(range(1, 11))


def test_host_transform_gets_a_resumable_generator():
    def jitter(batch, rng):
        return {"i": batch["i"] + rng.integers(0, 1000, size=len(batch["i"]))}

    src = ArraySource({"i": np.arange(40)}, seed=1, transform=jitter)
    kw = dict(global_batch_size=10, process_index=0, process_count=1)
    full = _rows(src, epoch=2, start_step=0, **kw)
    resumed = _rows(src, epoch=2, start_step=2, **kw)
    assert [b.tolist() for b in full[2:]] == [b.tolist() for b in resumed]


def test_metrics_jsonl_has_epoch_and_no_nan(tmp_path):
    run(tmp_path, max_steps=8)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            assert "step" in rec and "epoch" in rec


def test_metrics_jsonl_record_is_on_disk_before_any_flush(tmp_path):
    # A run killed without warning (OOM, preemption) must keep what it logged.
    from common.writers import JsonlWriter

    writer = JsonlWriter(str(tmp_path / "metrics.jsonl"))
    writer.write_scalars(7, {"val/loss": 0.25})
    with open(tmp_path / "metrics.jsonl") as f:  # a second reader, as after a crash
        assert json.loads(f.read()) == {"step": 7, "val/loss": 0.25}
    writer.close()


def test_confusion_matrix_metric_counts_unmasked_examples_and_renders():
    import jax.numpy as jnp

    from common.metrics import ConfusionMatrix
    from common.plots import confusion_matrix_image

    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    labels = jnp.array([0, 1, 2, 2])
    mask = jnp.array([True, True, True, False])
    cm = ConfusionMatrix.from_model_output(logits=logits, labels=labels, mask=mask)
    cm = cm.merge(ConfusionMatrix.from_model_output(logits=logits[:1], labels=labels[:1]))
    expected = np.zeros((3, 3))
    expected[0, 0], expected[1, 1], expected[2, 1] = 2, 1, 1
    np.testing.assert_array_equal(np.asarray(cm.compute()), expected)
    image = confusion_matrix_image(expected, ["a", "b", "c"], "title")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def test_fixed_size_chunks_cover_every_row_once_in_one_shape():
    chunks = list(fixed_size_chunks(10, 4))
    assert [idx.tolist() for idx, _ in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert [real for _, real in chunks] == [4, 4, 2]
    kept = np.concatenate([idx[:real] for idx, real in chunks])
    np.testing.assert_array_equal(kept, np.arange(10))
    # A set smaller than a batch runs at its own size: no padding rows are computed.
    assert [(idx.tolist(), real) for idx, real in fixed_size_chunks(3, 100)] == [([0, 1, 2], 3)]
    assert list(fixed_size_chunks(0, 8)) == []


def test_library_logs_keep_orbax_warnings_but_not_its_chatter():
    import logging

    from common.cli import quiet_library_logs

    logger, handlers = logging.getLogger("absl"), logging.getLogger().handlers
    before, handler_filters = list(logger.filters), [list(h.filters) for h in handlers]
    quiet_library_logs()
    try:

        def shown(level, msg, path="/site-packages/orbax/checkpoint/checkpoint_manager.py"):
            record = logging.LogRecord("absl", level, path, 1, msg, None, None)
            return all(f(record) for f in logger.filters if f not in before)

        assert shown(logging.WARNING, "Checkpoint step 7 is damaged")
        assert not shown(logging.INFO, "Saving checkpoint at step 7")
        assert not shown(logging.WARNING, "Given directory is read only=/runs/x/checkpoints")
        assert not shown(logging.WARNING, "CheckpointManagerOptions.read_only=True, setting")
        assert shown(logging.INFO, "anything", path="/work/common/train.py")
    finally:
        logger.filters[:] = before
        for handler, filters in zip(handlers, handler_filters):
            handler.filters[:] = filters
