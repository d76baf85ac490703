"""Metric accumulation inside jitted steps, and where metrics go: TensorBoard, metrics.jsonl,
PNG files and the console.

Train metrics are clu `Average`s merged on device at every step (no host sync); the loop reads
them only at log steps. ``metrics.jsonl`` holds one JSON object per logged step
(``{"step": 100, "epoch": 2.0, "train/loss": ..., "val/accuracy": ...}``): the file
`common.analyze` and the families' sweep tables read. Only process 0 writes anything.
"""

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metric_writers
from clu import metrics as clu_metrics
from PIL import Image

METRICS_FILE = "metrics.jsonl"
IMAGES_DIR = "images"
_NEVER = np.iinfo(np.int32).max


# ---- on-device accumulation ------------------------------------------------------------------
def empty_train_metrics(keys) -> dict:
    """Accumulator: a clu Average per metric key, plus the first step whose loss was non-finite."""
    return {
        "averages": {k: clu_metrics.Average.empty() for k in sorted(keys)},
        "first_nonfinite_step": jnp.array(_NEVER, jnp.int32),
    }


def merge_train_metrics(acc: dict, values: Mapping[str, jax.Array], step, finite) -> dict:
    averages = {
        k: acc["averages"][k].merge(
            clu_metrics.Average.from_model_output(jnp.asarray(v, jnp.float32))
        )
        for k, v in values.items()
    }
    first_bad = jnp.where(
        finite, acc["first_nonfinite_step"], jnp.minimum(acc["first_nonfinite_step"], step)
    )
    return {"averages": averages, "first_nonfinite_step": first_bad.astype(jnp.int32)}


def first_nonfinite_step(acc: dict) -> int | None:
    """Host read (a sync): the first step with a non-finite loss or gradient, if any."""
    step = int(jax.device_get(acc["first_nonfinite_step"]))
    return None if step == _NEVER else step


def compute_train_metrics(acc: dict) -> dict[str, float]:
    host = jax.device_get(acc["averages"])
    return {k: float(v.total / max(int(v.count), 1)) for k, v in host.items() if int(v.count) > 0}


# ---- writers ---------------------------------------------------------------------------------
def _to_python(value: Any) -> float | int | str:
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return int(arr)
    if arr.dtype.kind in "f":
        v = float(arr)
        return v if np.isfinite(v) else str(v)  # JSON has no NaN/inf
    return str(value)


class _OnlyWriter(metric_writers.MetricWriter):
    """A MetricWriter that ignores every kind of data its subclass does not override."""

    def write_summaries(self, step, values, metadata=None):
        pass

    def write_scalars(self, step, scalars):
        pass

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        pass

    def flush(self):
        pass

    def close(self):
        pass


class JsonlWriter(_OnlyWriter):
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


class PngWriter(_OnlyWriter):
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


class RunWriter:
    """The loop's writer: TensorBoard, metrics.jsonl and PNGs on process 0; no-op elsewhere."""

    def __init__(self, workdir: str, *, is_main: bool):
        self.is_main = is_main
        self.jsonl: JsonlWriter | None = None
        if is_main:
            self.jsonl = JsonlWriter(os.path.join(workdir, METRICS_FILE))
            self._writer = metric_writers.MultiWriter(
                [
                    metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard")),
                    self.jsonl,
                    PngWriter(os.path.join(workdir, IMAGES_DIR)),
                ]
            )
        else:
            self._writer = None

    def set_epoch_fn(self, fn) -> None:
        if self.jsonl is not None:
            self.jsonl.epoch_of_step = fn

    def scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        if self._writer is not None and scalars:
            self._writer.write_scalars(
                step,
                {
                    k: _to_python(v)
                    for k, v in scalars.items()
                    if not isinstance(_to_python(v), str)
                },
            )

    def images(self, step: int, images: Mapping[str, Any]) -> None:
        if self._writer is not None and images:
            self._writer.write_images(step, {k: to_uint8_image(v)[None] for k, v in images.items()})

    def hparams(self, hparams: Mapping[str, Any]) -> None:
        if self._writer is not None:
            self._writer.write_hparams({k: v for k, v in hparams.items()})

    def texts(self, step: int, texts: Mapping[str, str]) -> None:
        if self._writer is not None and texts:
            self._writer.write_texts(step, texts)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def flatten_config(config_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {'optim.lr': ...} with TensorBoard-friendly leaf values."""
    flat: dict[str, Any] = {}
    for key, value in config_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, name + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = "None" if value is None else value
        else:
            flat[name] = str(value)
    return flat


class CompileCounter:
    """Counts XLA backend compilations while active (a silent recompile shows up here)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        del duration, kwargs
        if event == self.EVENT:
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listener)


# ---- console progress ------------------------------------------------------------------------
class Progress:
    """Steps/s, examples/s, input wait and ETA over each log interval (host clock only)."""

    def __init__(self, *, total_steps: int, start_step: int, global_batch: int):
        self.total_steps = total_steps
        self.global_batch = global_batch
        self._t = time.perf_counter()
        self._step = start_step
        self._wait = 0.0

    def measure(self, step: int, data_wait_total: float) -> dict[str, float]:
        now = time.perf_counter()
        dt, dsteps = now - self._t, step - self._step
        wait = data_wait_total - self._wait
        self._t, self._step, self._wait = now, step, data_wait_total
        if dsteps <= 0 or dt <= 0:
            return {}
        rate = dsteps / dt
        return {
            "perf/steps_per_sec": rate,
            "perf/examples_per_sec": rate * self.global_batch,
            "perf/data_wait_fraction": min(wait / dt, 1.0),
            "perf/eta_minutes": (self.total_steps - step) / rate / 60.0,
        }


def format_line(step: int, total: int, epoch: float, scalars: Mapping[str, Any]) -> str:
    keys = sorted(scalars)
    parts = [f"step {step}/{total}", f"epoch {epoch:.2f}"]
    for k in keys:
        v = scalars[k]
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return " | ".join(parts)


def log(msg: str, *args) -> None:
    logging.info(msg, *args)


def merge_all(collections: Iterable[Any], what: str = "eval split") -> Any:
    """Merges a stream of clu metrics (one per batch) into one; the loop's eval and every
    family's offline evaluate tool use this, so they accumulate identically."""
    total = None
    for coll in collections:
        total = coll if total is None else total.merge(coll)
    if total is None:
        raise ValueError(f"{what} yielded no batches")
    return total


# ---- shared clu metrics ----------------------------------------------------------------------
@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
    """counts[t, p]: number of unmasked examples of true class t predicted as p (float32).

    Mergeable inside jit like any clu metric; use it in an eval Collection as
    ``confusion: ConfusionMatrix`` fed with ``logits=``, ``labels=`` and ``mask=``.
    """

    counts: jax.Array

    @classmethod
    def from_model_output(
        cls, *, logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None, **_
    ) -> "ConfusionMatrix":
        k = logits.shape[-1]
        weight = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
        true = jax.nn.one_hot(labels, k, dtype=jnp.float32) * weight[:, None]
        pred = jax.nn.one_hot(jnp.argmax(logits, -1), k, dtype=jnp.float32)
        return cls(counts=true.T @ pred)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        return type(self)(counts=self.counts + other.counts)

    def compute(self) -> jax.Array:
        return self.counts
