"""Where metrics go: TensorBoard event files, metrics.jsonl, PNG files; process 0 only.

The loop writes through `RunWriter`, which fans out to writers that share clu's
`MetricWriter` method set (`write_scalars`, `write_images`, `write_texts`, `write_hparams`,
`write_histograms`, ...), so any clu writer fits beside them. clu itself is not the base class:
in clu 0.0.12, importing `clu.metric_writers` imports TensorFlow (its `SummaryWriter`), and
nothing that trains or logs here may need TensorFlow, which bare JAX GPU images do not ship.
`TensorBoardWriter` writes the same event files with the `tensorboard` package alone
(`EventFileWriter` and its protos), readable by `tensorboard --logdir WORKDIR/tensorboard`.

``metrics.jsonl`` holds one JSON object per logged step
(``{"step": 100, "epoch": 2.0, "train/loss": ..., "val/accuracy": ...}``): the file
`common.analyze` and the families' sweep tables read.
"""

import hashlib
import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter

METRICS_FILE = "metrics.jsonl"
IMAGES_DIR = "images"
TENSORBOARD_DIR = "tensorboard"


def _to_python(value: Any) -> float | int | str:
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return int(arr)
    if arr.dtype.kind in "f":
        v = float(arr)
        return v if np.isfinite(v) else str(v)  # JSON has no NaN/inf
    return str(value)


class MetricWriter:
    """clu's `MetricWriter` interface (same methods and arguments); every method is a no-op
    until a subclass overrides it, so each writer implements only what it stores."""

    def write_summaries(self, step: int, values: Mapping[str, Any], metadata=None) -> None:
        pass

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        pass

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        pass

    def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
        pass

    def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
        pass

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        pass

    def write_histograms(
        self, step: int, arrays: Mapping[str, Any], num_buckets: Mapping[str, int] | None = None
    ) -> None:
        pass

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardWriter(MetricWriter):
    """TensorBoard events (scalars, images, texts, histograms, hparams) without TensorFlow.

    Where TensorFlow is installed, `tensorboard` writes through `tf.io.gfile`, so a
    `gs://` logdir works as it does with clu's SummaryWriter; without it, local paths.
    """

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._events = EventFileWriter(logdir, flush_secs=30)

    def _add(self, step: int, values: list) -> None:
        summary = summary_pb2.Summary(value=values)
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._events.add_event(event)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = [
            summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()
        ]
        if values:
            self._add(step, values)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """images: {tag: [N, H, W, C] or [H, W, C]}; the first image of a batch is written."""
        values = []
        for tag, image in images.items():
            pixels = to_uint8_image(image)
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            encoded = summary_pb2.Summary.Image(
                height=pixels.shape[0],
                width=pixels.shape[1],
                colorspace=pixels.shape[2],
                encoded_image_string=png.getvalue(),
            )
            values.append(summary_pb2.Summary.Value(tag=tag, image=encoded))
        if values:
            self._add(step, values)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        values = [
            summary_pb2.Summary.Value(
                tag=tag,
                metadata=text_metadata.create_summary_metadata(display_name=None, description=None),
                tensor=tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_STRING, string_val=[str(text).encode("utf-8")]
                ),
            )
            for tag, text in texts.items()
        ]
        if values:
            self._add(step, values)

    def write_histograms(
        self, step: int, arrays: Mapping[str, Any], num_buckets: Mapping[str, int] | None = None
    ) -> None:
        values = []
        for tag, array in arrays.items():
            x = np.asarray(array, np.float64).ravel()
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            counts, edges = np.histogram(x, bins=(num_buckets or {}).get(tag, 30))
            histo = summary_pb2.HistogramProto(
                min=float(x.min()),
                max=float(x.max()),
                num=float(x.size),
                sum=float(x.sum()),
                sum_squares=float(np.dot(x, x)),
                bucket_limit=edges[1:].tolist(),
                bucket=counts.astype(np.float64).tolist(),
            )
            values.append(summary_pb2.Summary.Value(tag=tag, histo=histo))
        if values:
            self._add(step, values)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        kept = {k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))}
        summary = hparams_summary.hparams_pb(kept)
        self._events.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()


class JsonlWriter(MetricWriter):
    """Appends one JSON object per `write_scalars` call to WORKDIR/metrics.jsonl."""

    def __init__(self, path: str):
        self.path = path
        # Line-buffered: every record reaches the file when written, so a run killed without
        # warning (OOM, a preempted node) keeps its metrics up to its last log step.
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self.epoch_of_step: Any = None  # set by the loop: step -> epoch (float)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        record: dict[str, Any] = {"step": int(step)}
        if self.epoch_of_step is not None:
            record["epoch"] = round(float(self.epoch_of_step(step)), 4)
        record.update({k: _to_python(v) for k, v in scalars.items()})
        self._file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class PngWriter(MetricWriter):
    """Writes every image as WORKDIR/images/<key>_<step>.png (keys' '/' become '_')."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        for key, image in images.items():
            write_png(os.path.join(self.directory, f"{key.replace('/', '_')}_{step}.png"), image)


def to_uint8_image(image: Any) -> np.ndarray:
    """HW, HWC or NHWC (first image) array -> HWC uint8; floats are taken as [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8:
        arr = np.clip(np.nan_to_num(arr.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def write_png(path: str, image: Any) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(to_uint8_image(image)).save(path)
    return path


class WandbWriter(MetricWriter):
    """Weights & Biases, optional (the ``[wandb]`` extra) and off unless
    ``config.wandb_project`` is set. The W&B run id is derived from the work directory, so a
    resumed run continues the same W&B run instead of starting a new one."""

    def __init__(self, workdir: str, project: str, entity: str = "", config: Mapping | None = None):
        from common.environment import require_extra

        wandb = require_extra(
            "wandb", "wandb", f"config.wandb_project='{project}'", "Weights & Biases"
        )
        self._wandb = wandb
        run_id = hashlib.sha1(os.path.abspath(workdir).encode()).hexdigest()[:16]
        self.run = wandb.init(
            project=project,
            entity=entity or None,
            id=run_id,
            name=os.path.basename(os.path.abspath(workdir)),
            dir=workdir,
            resume="allow",
            config=dict(config or {}),
        )

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self.run.log(dict(scalars), step=step)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        self.run.log({k: self._wandb.Image(np.asarray(v)[0]) for k, v in images.items()}, step=step)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self.run.log({k: str(v) for k, v in texts.items()}, step=step)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.run.config.update(dict(hparams), allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


class RunWriter:
    """The loop's writer: TensorBoard, metrics.jsonl and PNGs on process 0; no-op elsewhere.

    Scalars that are not finite numbers are dropped (JSON and TensorBoard would misrender
    them); the loop's own non-finite check reports a NaN loss instead.
    """

    def __init__(self, workdir: str, *, is_main: bool, extra: Sequence[MetricWriter] = ()):
        self.jsonl: JsonlWriter | None = None
        self._writers: list[MetricWriter] = []
        if is_main:
            self.jsonl = JsonlWriter(os.path.join(workdir, METRICS_FILE))
            self._writers = [
                TensorBoardWriter(os.path.join(workdir, TENSORBOARD_DIR)),
                self.jsonl,
                PngWriter(os.path.join(workdir, IMAGES_DIR)),
                *extra,
            ]

    @classmethod
    def for_run(cls, workdir: str, config, *, is_main: bool) -> "RunWriter":
        """The loop's writer for `config`: W&B too when ``config.wandb_project`` is set."""
        extra = []
        if is_main and config.get("wandb_project"):
            flat = flatten_config(config.to_dict())
            extra.append(
                WandbWriter(workdir, config.wandb_project, config.get("wandb_entity") or "", flat)
            )
        return cls(workdir, is_main=is_main, extra=extra)

    def set_epoch_fn(self, fn) -> None:
        if self.jsonl is not None:
            self.jsonl.epoch_of_step = fn

    def _each(self, method: str, *args) -> None:
        for writer in self._writers:
            getattr(writer, method)(*args)

    def scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = {k: _to_python(v) for k, v in scalars.items()}
        values = {k: v for k, v in values.items() if not isinstance(v, str)}
        if values:
            self._each("write_scalars", step, values)

    def images(self, step: int, images: Mapping[str, Any]) -> None:
        if images:
            batch = {k: to_uint8_image(v)[None] for k, v in images.items()}
            self._each("write_images", step, batch)

    def hparams(self, hparams: Mapping[str, Any]) -> None:
        self._each("write_hparams", dict(hparams))

    def texts(self, step: int, texts: Mapping[str, str]) -> None:
        if texts:
            self._each("write_texts", step, texts)

    def flush(self) -> None:
        self._each("flush")

    def close(self) -> None:
        self._each("flush")
        self._each("close")
        self._writers = []


def flatten_config(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Nested config -> {'optim.lr': ...} (`common.config.flatten`) with TensorBoard-friendly
    leaf values: None as "None", tuples and other values as their text."""
    from common.config import flatten

    def leaf(value: Any) -> Any:
        if value is None:
            return "None"
        return value if isinstance(value, (bool, int, float, str)) else str(value)

    return {key: leaf(value) for key, value in flatten(dict(config_dict)).items()}
