"""Metric accumulation inside jitted steps, the console progress line, and the shared clu
metrics; where metrics are written (TensorBoard, metrics.jsonl, PNGs) is `common.writers`.

Train metrics are clu `Average`s merged on device at every step (no host sync); the loop reads
them only at log steps.
"""

import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

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
        self._t = self._t0 = time.perf_counter()
        self._step = self._step0 = start_step
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
            "perf/eta_minutes": self.eta_minutes(step, now),
        }

    def eta_minutes(self, step: int, now: float | None = None) -> float | None:
        """Minutes to the last step at the rate since the meter started, evaluations and
        checkpoints included (an interval's own rate would jump after every evaluation)."""
        now = time.perf_counter() if now is None else now
        if step <= self._step0 or now <= self._t0:
            return None
        overall = (step - self._step0) / (now - self._t0)
        return (self.total_steps - step) / overall / 60.0


class ProgressBar:
    """A one-line bar on a terminal (``[######....]  52%  step 520/1000  ETA 3 min``), redrawn
    at most twice a second from host counters only (no device sync). Off when stderr is not a
    terminal (logs, CI, SLURM output files) and on every process but 0. Log lines clear it
    first (`install` adds a logging filter), so the two never mix."""

    WIDTH = 30

    def __init__(self, total_steps: int, *, enabled: bool | None = None):
        self.total = max(int(total_steps), 1)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._drawn_at = 0.0
        self._shown = False

    @staticmethod
    def render(step: int, total: int, eta_minutes: float | None) -> str:
        done = min(max(step / max(total, 1), 0.0), 1.0)
        filled = round(done * ProgressBar.WIDTH)
        bar = "#" * filled + "." * (ProgressBar.WIDTH - filled)
        eta = f"  ETA {human_duration(eta_minutes)}" if eta_minutes is not None else ""
        return f"[{bar}] {done:4.0%}  step {step}/{total}{eta}"

    def update(self, step: int, eta_minutes: float | None) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._drawn_at < 0.5:
            return
        self._drawn_at = now
        sys.stderr.write("\r\033[K" + self.render(step, self.total, eta_minutes))
        sys.stderr.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False

    def install(self) -> None:
        """Clears the bar before every log record (a logging filter on the root handlers)."""
        if not self.enabled:
            return
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._before_record)

    def uninstall(self) -> None:
        self.clear()
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._before_record)

    def _before_record(self, record: logging.LogRecord) -> bool:
        del record
        self.clear()
        return True


def human_duration(minutes: float) -> str:
    """12.3 -> "12 min", 72.4 -> "1 h 12 min", 0.4 -> "24 s": for log lines people read."""
    if minutes < 1:
        return f"{round(minutes * 60)} s"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def format_line(step: int, total: int, epoch: float, scalars: Mapping[str, Any]) -> str:
    keys = sorted(scalars)
    parts = [f"step {step}/{total}", f"epoch {epoch:.2f}"]
    if "perf/eta_minutes" in scalars:
        parts.append(f"ETA {human_duration(float(scalars['perf/eta_minutes']))}")
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


def unmasked_rows(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The rows of collected per-example eval outputs (a clu ``CollectingMetric``'s computed
    dict, with the batch ``mask`` among them) that are real examples, not padding."""
    outputs = dict(outputs)
    keep = np.asarray(outputs.pop("mask")).astype(bool)
    return {k: np.asarray(v)[keep] for k, v in outputs.items()}


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
