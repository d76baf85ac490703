"""The Task interface: what a model family must tell the shared loop, and nothing more.

`common.train.train_and_evaluate(task, config, workdir)` owns devices, sharding, jit/pmap,
precision policy, optimizer, checkpoints, logging, time limits, preemption, early stopping, EMA
and learning-rate groups. A family subclasses `Task` and supplies only what is special about it:
data, model variables, the loss, the eval step, and optional hooks.

Contract, in the order the loop uses it:

1. ``datasets()`` -> `Datasets`: a deterministic train source (batches are a pure function of
   (seed, epoch, step), so resume continues the same order) and named eval sources that pad and
   mask their last batch.
2. ``init_variables(rng, batch)`` -> ``{"params": ..., <other collections>: ...}``. Called under
   `jax.jit` with a small example batch; other collections (e.g. ``batch_stats``) become
   `StepContext.extras`.
3. ``loss_fn(params, batch, rng, ctx)`` -> ``(loss, (metrics, new_extras))``: a pure function,
   differentiated w.r.t. ``params``. ``metrics`` is a flat dict of scalars averaged over the log
   interval (``"loss"`` is added for you if absent).
4. ``eval_step(params, batch, ctx)`` -> a `clu.metrics.Collection` built with
   ``batch["mask"]`` so padded rows do not count.
5. ``summarize_eval(split, computed, ctx)`` -> `EvalSummary`: turn the collection's computed
   values into scalars / images (confusion matrices, per-class tables).
6. Hooks (optional): ``on_eval`` may return new `controls` (dynamic float hyper-parameters such
   as loss weights or per-group learning-rate scales) and images; ``on_epoch_end`` may write
   sample grids; ``state_dict``/``load_state_dict`` persist host-side controller state in every
   checkpoint; ``init_from_params`` maps params from another run (``config.init_from``).

Every family lays its code out alike: ``<family>.input_pipeline.build_datasets(config)`` returns
the `Datasets` its ``Task.datasets`` hands the loop, ``<family>.model.build_model(config, ...)``
builds its Flax module (``Task.model``), and ``config.task`` names the Task class
(`task_class`), which training, `common.bench` and `common.evaluate` all build.

Everything is keyed by strings so metrics land in TensorBoard and ``metrics.jsonl`` as
``train/<name>``, ``<split>/<name>`` and ``final/<split>/<name>``.
"""

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import flax
import jax
import ml_collections
import numpy as np
from clu import metrics as clu_metrics

Batch = dict[str, Any]  # name -> array with a leading batch dimension
Params = Any  # a pytree of arrays
Metrics = dict[str, Any]


class TrainSource(Protocol):
    """A deterministic, resumable stream of process-local training batches."""

    num_examples: int  # global number of training examples (defines the epoch)

    def batches(
        self,
        *,
        epoch: int,
        start_step: int,
        global_batch_size: int,
        process_index: int,
        process_count: int,
    ) -> Iterator[Batch]:
        """Yields the batches of `epoch` from `start_step` on; each holds this process's rows.

        Must be a pure function of (seed, epoch, start_step): resuming at step k of an epoch
        yields exactly the batches an uninterrupted run would have seen from k on. Drops the
        last partial batch (a changing shape would recompile the step).
        """
        ...


class EvalSource(Protocol):
    """A finite, ordered stream of process-local eval batches, padded and masked."""

    num_examples: int

    def batches(
        self, *, global_batch_size: int, process_index: int, process_count: int
    ) -> Iterator[Batch]:
        """Yields every example once; the last batch is padded and carries ``mask`` (bool)."""
        ...


@dataclass
class Datasets:
    """What `Task.datasets` returns: one train source and named eval splits."""

    train: TrainSource
    eval: Mapping[str, EvalSource] = field(default_factory=dict)
    # Splits the loop evaluates every `eval_every_*`; others (e.g. "test") are only evaluated
    # once at the end with the best checkpoint, if listed in `config.final_eval_splits`.
    periodic_eval_splits: tuple[str, ...] | None = None  # None: every split in `eval`
    # What the data holds, per split (JSON-ready, e.g. images, class counts, which sessions):
    # the loop writes it to WORKDIR/data.json, so a run says what it was tested on.
    summary: dict | None = None


@flax.struct.dataclass
class StepContext:
    """What a jitted loss/eval step may read besides params, batch and rng."""

    step: jax.Array  # int32 scalar: global step before this update
    extras: Any  # non-trainable variable collections, e.g. {"batch_stats": ...}
    controls: Any  # dict[str, float32 scalar]: host-adjustable knobs (loss weights, lr scales)
    # Train steps only (None in eval steps): the loop's fractional epoch, step / steps_per_epoch
    # (float32 scalar), and the run's length in epochs, total_steps / steps_per_epoch, so a
    # loss scheduled in epochs reads the loop's own clock instead of recomputing it.
    epoch: Any = None
    total_epochs: Any = None


@dataclass
class EvalSummary:
    """Host-side result of one eval split: scalars to log, images to write (HWC uint8)."""

    scalars: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class HookContext:
    """Read-only view of the run handed to host-side hooks."""

    config: ml_collections.ConfigDict
    workdir: str
    step: int
    epoch: int  # completed epochs (float-free: an epoch ends when step % steps_per_epoch == 0)
    steps_per_epoch: int
    total_steps: int
    params: Params  # the params evaluation uses (EMA params when EMA is on)
    raw_params: Params  # the optimised params
    extras: Any
    controls: dict[str, float]
    eval_results: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> scalars
    is_main_process: bool = True


@dataclass
class HookResult:
    """What a hook may hand back to the loop."""

    controls: dict[str, float] | None = None  # replaces the named controls from the next step
    scalars: dict[str, float] = field(default_factory=dict)  # logged at this step as-is
    images: dict[str, np.ndarray] = field(default_factory=dict)  # logged + written as PNG
    stop_training: bool = False  # e.g. a task-specific convergence test
    message: str | None = None  # logged verbatim (e.g. "homeostasis: froze encoder_b")


class Task:
    """Base class for a model family. Subclasses override the methods marked `required`."""

    # Metric that picks the best checkpoint: (key as logged, "max" | "min").
    # `config.best_metric` / `config.best_mode`, when set, override it.
    best_metric: ClassVar[tuple[str, str]] = ("val/loss", "min")
    # The family's Flax module, from `<family>.model.build_model`: what its loss and eval step
    # apply, and what a tool that applies the trained model (sampling, analysis) should use.
    model: Any = None
    # Config keys (or "section." prefixes) besides `common.config.RESUME_SAFE_KEYS` that a
    # resumed run may change, e.g. how often samples are drawn; every other change of a run's
    # config is refused on resume.
    resume_safe_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    # ---- required -----------------------------------------------------------------------------
    def datasets(self) -> Datasets:
        """Builds the train source and eval sources (required)."""
        raise NotImplementedError

    def init_variables(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
        """Returns the model's variables, at least ``{"params": ...}`` (required)."""
        raise NotImplementedError

    def loss_fn(
        self, params: Params, batch: Batch, rng: jax.Array, ctx: StepContext
    ) -> tuple[jax.Array, tuple[Metrics, Any]]:
        """Returns ``(scalar loss, (metrics, new_extras))`` for one train batch (required)."""
        raise NotImplementedError

    def eval_step(self, params: Params, batch: Batch, ctx: StepContext) -> clu_metrics.Collection:
        """Returns a clu Collection for one (masked) eval batch (required)."""
        raise NotImplementedError

    # ---- optional -----------------------------------------------------------------------------
    def summarize_eval(self, split: str, computed: Mapping[str, Any]) -> EvalSummary:
        """Turns a computed eval Collection into scalars/images; default: keep the scalars."""
        scalars = {}
        for key, value in computed.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                scalars[key] = float(arr)
        return EvalSummary(scalars=scalars)

    def initial_controls(self) -> dict[str, float]:
        """Float knobs visible in `StepContext.controls` and changeable by hooks."""
        return {}

    def param_groups(self) -> dict[str, str]:
        """Learning-rate groups: name -> regex on the '/'-joined param path (first match wins).

        Params that match no pattern belong to group "default". `config.optim.lr_scales`
        gives each group's scale (0 freezes it); hooks can change them through
        ``controls["lr_scale/<group>"]``.
        """
        return {}

    def on_eval(self, ctx: HookContext) -> HookResult | None:
        """Called after each periodic evaluation on every process (write only on main)."""
        return None

    def on_epoch_end(self, ctx: HookContext) -> HookResult | None:
        """Called at every epoch boundary and after the last step (which ends a partial last
        epoch too), e.g. for sample grids at a task-chosen cadence."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable host state saved in every checkpoint (controllers, curricula)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""
        del state

    def init_from_params(
        self, loaded: Params, fresh: Params, loaded_task_state: dict | None = None
    ) -> Params:
        """Maps params restored from `config.init_from` onto freshly initialised ones.

        `loaded_task_state` is what the init_from run's `state_dict` saved (e.g. its
        tokenizer), for tasks whose params are indexed by host-side state."""
        del fresh, loaded_task_state
        return loaded

    def predict(
        self, params: Params, extras: Any, batch: Batch, rng: jax.Array
    ) -> dict[str, jax.Array]:
        """What the trained model is for, on a batch of a user's inputs: a pure, jit-able
        function (`common.load_run(...).predict` compiles it). Each family documents its
        inputs and outputs; nothing here may read the training data."""
        del params, extras, batch, rng
        raise NotImplementedError(f"{type(self).__name__} defines no predict")

    @classmethod
    def ignored_settings(cls, config: ml_collections.ConfigDict) -> dict[str, str]:
        """Dotted config keys that `config`'s own choices make this Task ignore, each with the
        reason (an LSTM width when the model is a Transformer). `common.cli.run` refuses them
        on the command line, so a setting never silently does nothing."""
        del config
        return {}

    def synthetic_batch(self, global_batch_size: int, rng: np.random.Generator) -> Batch | None:
        """A random batch shaped like real training data, for `common.bench` without a
        dataset (e.g. CIFAR not downloaded yet). None: bench reads the real train source."""
        del global_batch_size, rng
        return None

    def flops_per_example(self) -> float | None:
        """Analytic training FLOPs per example (forward + backward), for MFU; None = unknown."""
        return None


def task_class(config: ml_collections.ConfigDict) -> type[Task]:
    """Imports ``config.task`` ("module:Class"): the one place a config names its Task, read by
    training (`common.cli.run` checks it), `common.bench` and `common.evaluate`."""
    spec = str(config.get("task", ""))
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"config.task must look like 'vit.task:VitTask', got '{spec}'")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"config.task '{spec}' is not a common.task.Task subclass")
    return cls
