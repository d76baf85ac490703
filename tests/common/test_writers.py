"""TensorBoard events written without TensorFlow read back exactly with TensorBoard's own
reader; the writers keep clu's MetricWriter interface."""

import inspect

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from common import writers


def read_events(logdir) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(
        str(logdir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 0}
    )
    acc.Reload()
    return acc


def test_tensorboard_writer_round_trips_every_kind(tmp_path):
    w = writers.TensorBoardWriter(str(tmp_path))
    w.write_hparams({"learning_rate": 3e-4, "model.name": "vit", "ema": True, "skipped": [1]})
    for step in (1, 2, 3):
        w.write_scalars(step, {"train/loss": 1.0 / step, "val/accuracy": 0.25 * step})
    image = np.zeros((1, 5, 7, 3), np.uint8)
    image[0, 1, 2] = (255, 0, 10)
    w.write_images(3, {"val/confusion_matrix": image})
    w.write_texts(3, {"events": "lr halved at step 3"})
    w.write_histograms(3, {"weights": np.array([0.0, 1.0, 1.0, 2.0, np.nan])})
    w.close()

    acc = read_events(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [
        (1, 1.0),
        (2, 0.5),
        (3, pytest.approx(1 / 3)),
    ]
    assert [e.value for e in acc.Scalars("val/accuracy")] == [0.25, 0.5, 0.75]
    (img,) = acc.Images("val/confusion_matrix")
    assert (img.step, img.width, img.height) == (3, 7, 5)
    from io import BytesIO

    np.testing.assert_array_equal(
        np.asarray(Image.open(BytesIO(img.encoded_image_string))), image[0]
    )
    (text,) = acc.Tensors("events")
    assert text.tensor_proto.string_val == [b"lr halved at step 3"]
    (histo,) = acc.Histograms("weights")
    assert (histo.histogram_value.num, histo.histogram_value.sum) == (4, 4.0)
    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["learning_rate"].number_value == pytest.approx(3e-4)
    assert start.hparams["model.name"].string_value == "vit"
    assert start.hparams["ema"].bool_value is True
    assert "skipped" not in start.hparams


def test_run_writer_drops_non_finite_scalars_from_every_sink(tmp_path):
    w = writers.RunWriter(str(tmp_path), is_main=True)
    w.scalars(4, {"train/loss": float("nan"), "train/accuracy": np.float32(0.5)})
    w.close()
    assert [e.value for e in read_events(tmp_path / "tensorboard").Scalars("train/accuracy")] == [
        0.5
    ]
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 4, "train/accuracy": 0.5}\n'
    idle = writers.RunWriter(str(tmp_path / "other"), is_main=False)
    idle.scalars(1, {"x": 1.0})
    idle.close()
    assert not (tmp_path / "other").exists()


def test_writers_keep_clus_metric_writer_interface():
    # clu's package imports TensorFlow, so this check runs only where TensorFlow is installed.
    pytest.importorskip("tensorflow", reason="clu.metric_writers imports TensorFlow")
    from clu.metric_writers import MetricWriter as CluWriter

    for name in CluWriter.__abstractmethods__:
        ours, theirs = getattr(writers.MetricWriter, name), getattr(CluWriter, name)
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(theirs).parameters
        ), name


def test_wandb_is_optional_and_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    import sys
    import types

    import pytest

    from common.environment import MissingExtraError
    from common.writers import WandbWriter

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(MissingExtraError, match=r"Weights & Biases: pip install -e '\.\[wandb\]'"):
        WandbWriter(str(tmp_path), "proj")

    calls = []

    class FakeRun:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))
            self.config = types.SimpleNamespace(update=lambda d, **kw: calls.append(("hp", d)))

        def log(self, values, step):
            calls.append(("log", step, values))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: FakeRun(**kw), Image=lambda a: ("img", a.shape))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    first = WandbWriter(str(tmp_path), "proj", config={"lr": 0.1})
    first.write_scalars(3, {"train/loss": 0.5})
    first.write_images(3, {"val/cm": np.zeros((1, 4, 5, 3), np.uint8)})
    first.close()
    again = WandbWriter(str(tmp_path), "proj")
    inits = [c[1] for c in calls if c[0] == "init"]
    assert inits[0]["id"] == inits[1]["id"] and inits[0]["resume"] == "allow"
    assert ("log", 3, {"train/loss": 0.5}) in calls and (
        "log",
        3,
        {"val/cm": ("img", (4, 5, 3))},
    ) in calls
    assert again.run is not first.run
