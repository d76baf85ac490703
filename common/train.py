"""THE training loop: `train_and_evaluate(task, config, workdir)`, shared by every family.

Reads top to bottom: set up the run directory and devices; build data and derive every size
and cadence in steps (`Plan`); build model and optimizer (shapes first, then real arrays,
already placed); restore or initialise; train, and when it is time (`due`) log, evaluate,
checkpoint and call the task's hooks; final eval of held-out splits with the best checkpoint.
Everything family-specific is a call into the `Task` (common/task.py); evaluation is
`common.evaluate.evaluate`, the function offline evaluation calls too.

Stopping: the configured duration, `max_training_hours` (save, exit "time_limit"),
SIGTERM/SIGINT (save, exit "preempted"), `stop_after_steps` (save, exit "stopped"), early
stopping, or a task hook. A non-finite loss raises `NonFiniteLossError` naming the step; no
checkpoint is written after it, so the last good one stays the latest.
"""

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from common import checkpoint as ckpt_lib
from common import environment, parallel
from common import evaluate as evaluate_lib
from common import metrics as metrics_lib
from common import writers as writers_lib
from common.best import BestRecord
from common.checkpoint import NonFiniteLossError  # noqa: F401  (raised by the loop)
from common.config import ConfigError, due, resume_changes, steps_from
from common.data import Prefetcher
from common.precision import compute_dtype, dtype_name
from common.steps import Steps, TrainState, build_steps
from common.task import Batch, Datasets, HookContext, HookResult, Task


@dataclass
class TrainResult:
    status: str  # completed | early_stopped | stopped_by_task | time_limit | preempted | stopped
    step: int
    best_step: int | None
    best_value: float | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    workdir: str = ""


MAX_STEPS_AHEAD = 2  # train steps the host may dispatch before the device has finished them


# ---- sizes and cadences, in steps ------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Every size and cadence of a run, derived once from the config and the data."""

    global_batch: int
    per_device_batch: int
    eval_batch: int
    steps_per_epoch: int
    total_steps: int
    log_every: int
    eval_every: int
    keep_every: int | None  # checkpoints kept besides latest and best; None: none
    periodic_splits: tuple[str, ...]

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


def make_plan(config: ml_collections.ConfigDict, data: Datasets, mesh: Mesh) -> Plan:
    """Checks batch sizes against the devices and the data; converts every duration to steps."""
    for key in ("batch_size", "eval_batch_size", "grad_accum_steps", "log_every_steps"):
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"config.{key}={value!r} must be a positive whole number")
    if not config.learning_rate >= 0:  # 0 is allowed: a run that changes nothing (tests)
        raise ConfigError(f"config.learning_rate={config.learning_rate!r} must be >= 0")
    global_batch = int(config.batch_size)
    per_device = parallel.per_device_batch(global_batch, mesh)
    accum = int(config.grad_accum_steps)
    if accum < 1 or per_device % accum:
        raise ConfigError(
            f"grad_accum_steps={accum} must be >= 1 and divide the per-device batch {per_device} "
            f"(batch_size={global_batch} over {mesh.size} devices)"
        )
    eval_batch = int(config.eval_batch_size or global_batch)
    parallel.per_device_batch(eval_batch, mesh, "eval_batch_size")
    steps_per_epoch = data.train.num_examples // global_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch_size={global_batch} exceeds the {data.train.num_examples} training examples"
        )
    periodic = tuple(data.periodic_eval_splits or data.eval)
    unknown = [s for s in (*periodic, *config.final_eval_splits) if s not in data.eval]
    if unknown:
        raise ConfigError(
            f"eval splits {unknown} not provided by the task; it has {list(data.eval)}"
        )
    in_steps = lambda epochs, steps, what, required=True: steps_from(
        epochs=epochs, steps=steps, steps_per_epoch=steps_per_epoch, what=what, required=required
    )
    eval_every = in_steps(config.eval_every_epochs, config.eval_every_steps, "eval_every")
    return Plan(
        global_batch=global_batch,
        per_device_batch=per_device,
        eval_batch=eval_batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=in_steps(config.max_epochs, config.max_steps, "max_epochs/max_steps"),
        log_every=int(config.log_every_steps),
        eval_every=max(1, eval_every),
        keep_every=in_steps(
            config.checkpoint_every_epochs,
            config.checkpoint_every_steps,
            "checkpoint_every",
            required=False,
        ),
        periodic_splits=periodic,
    )


def train_batches(data: Datasets, plan: Plan, first_step: int) -> Iterator[Batch]:
    """This process's training batches from `first_step` to the end, across epochs."""
    step = first_step
    while step < plan.total_steps:
        for batch in data.train.batches(
            epoch=step // plan.steps_per_epoch,
            start_step=step % plan.steps_per_epoch,
            global_batch_size=plan.global_batch,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            yield batch
            step += 1
            if step >= plan.total_steps:
                return


# ---- restore or initialise ---------------------------------------------------------------------
def restore_or_init(
    task: Task, config: ml_collections.ConfigDict, steps: Steps, ckpt: ckpt_lib.Checkpointer
) -> tuple[TrainState, dict]:
    """The latest checkpoint of this run; else `resume_from`; else a fresh state, with its
    params from `init_from` when set. Returns (state, checkpoint meta or {})."""
    refuse = config.on_damaged_checkpoint == "refuse"
    restored = ckpt.restore_newest_intact(steps.abstract_state, refuse_damaged=refuse)
    if restored is not None:
        step, state, meta = restored
        logging.info("resumed from %s at step %d", ckpt.directory, step)
        return state, meta
    if config.resume_from:
        ref = ckpt_lib.resolve(config.resume_from)
        step = ckpt_lib.pick_step(ref, "latest")
        state, meta = ckpt_lib.restore_state(ref, step, steps.abstract_state)
        logging.info("resumed from resume_from=%s (step %d)", config.resume_from, step)
        return state, meta
    state = steps.init_state()
    if config.init_from:
        ref = ckpt_lib.resolve(config.init_from)
        step = ckpt_lib.pick_step(ref, "best")
        loaded, loaded_meta = ckpt_lib.restore_tree(ref, step, steps.replicated)
        params = task.init_from_params(
            loaded["params"], state.params, loaded_meta.get("task_state") or {}
        )
        ckpt_lib.require_params_fit(params, state.params, config.init_from)
        state = steps.with_params(state, params)
        logging.info("initialised params from init_from=%s (step %d)", config.init_from, step)
    return state, {}


# ---- stopping ----------------------------------------------------------------------------------
class _StopSignals:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (preemption)."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread (e.g. a notebook worker) no handler can be installed.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        self.received = signum
        logging.warning("received signal %d: will checkpoint and exit after this step", signum)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stop_reason(
    config: ml_collections.ConfigDict, signal_received: bool, elapsed_s: float, steps_run: int
) -> str | None:
    """Why this invocation should save and exit now, if it should."""
    if signal_received:
        return "preempted"
    hours = config.max_training_hours
    if hours is not None and elapsed_s >= float(hours) * 3600:
        return "time_limit"
    if config.stop_after_steps is not None and steps_run >= config.stop_after_steps:
        return "stopped"
    return None


def _all_agree(flag: bool) -> bool:
    """Every process must take the same stop decision (saves are collective)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


# ---- what the loop does when it is time -------------------------------------------------------
@dataclass
class _Run:
    """The fixed parts of one run and the actions the loop takes on them. Every method gets
    the state and step it acts on; nothing here changes behind the loop's back except the
    best record (fed by `eval_and_checkpoint`) and `saved_step`."""

    task: Task
    config: ml_collections.ConfigDict
    workdir: str
    data: Datasets
    plan: Plan
    mesh: Mesh
    steps: Steps
    ckpt: ckpt_lib.Checkpointer
    record: BestRecord
    writer: writers_lib.RunWriter
    saved_step: int | None = None

    def evaluate(self, state: TrainState, step: int, splits, prefix: str = "") -> dict:
        """The splits once with the params evaluation uses; logs `<prefix><split>/<metric>`."""
        results = evaluate_lib.evaluate(
            task=self.task,
            eval_step=self.steps.eval_step,
            params=self.steps.eval_params(state),
            extras=state.extras,
            controls=state.controls,
            step=state.step,
            sources={s: self.data.eval[s] for s in splits},
            batch_size=self.plan.eval_batch,
            mesh=self.mesh,
        )
        self.writer.scalars(step, evaluate_lib.flat_scalars(results, prefix))
        self.writer.images(step, evaluate_lib.flat_images(results, prefix))
        return {split: summary.scalars for split, summary in results.items()}

    def hook_context(self, state: TrainState, step: int, eval_results=None) -> HookContext:
        return HookContext(
            config=self.config,
            workdir=self.workdir,
            step=step,
            epoch=step // self.plan.steps_per_epoch,
            steps_per_epoch=self.plan.steps_per_epoch,
            total_steps=self.plan.total_steps,
            params=self.steps.eval_params(state),
            raw_params=state.params,
            extras=state.extras,
            controls={k: float(v) for k, v in jax.device_get(state.controls).items()},
            eval_results=eval_results or {},
            is_main_process=jax.process_index() == 0,
        )

    def apply_hook(
        self, state: TrainState, step: int, result: HookResult | None
    ) -> tuple[TrainState, bool]:
        """Logs what a hook returned and applies its controls; (state, stop requested)."""
        if result is None:
            return state, False
        if result.message:
            logging.info("[%s] step %d: %s", type(self.task).__name__, step, result.message)
            self.writer.texts(step, {"events": result.message})
        self.writer.scalars(step, result.scalars)
        self.writer.images(step, result.images)
        if result.controls:
            unknown = sorted(set(result.controls) - set(state.controls))
            if unknown:
                raise KeyError(
                    f"hook set unknown controls {unknown}; known: {sorted(state.controls)}"
                )
            new = {
                **state.controls,
                **{k: jnp.asarray(v, jnp.float32) for k, v in result.controls.items()},
            }
            repl = jax.tree.map(lambda _: self.steps.replicated, new)
            state = state.replace(controls=jax.device_put(new, repl))
        return state, bool(result.stop_training)

    def save(self, state: TrainState, step: int, acc, eval_metrics: dict | None = None) -> None:
        """One checkpoint per step, never after a non-finite step."""
        self.ckpt.require_finite(acc, self.plan.steps_per_epoch)
        if self.saved_step == step:
            return
        meta = ckpt_lib.run_meta(
            step=step,
            epoch=self.plan.epoch(step),
            best=self.record.to_meta(),
            task_state=self.task.state_dict(),
            config=self.config,
        )
        self.ckpt.save(step, state, meta, metrics=eval_metrics)
        self.saved_step = step

    def log_train(self, step: int, acc, progress: metrics_lib.Progress, wait_s: float) -> None:
        self.ckpt.require_finite(acc, self.plan.steps_per_epoch)
        scalars = {f"train/{k}": v for k, v in metrics_lib.compute_train_metrics(acc).items()}
        scalars["train/learning_rate"] = float(self.steps.schedule(step - 1))
        scalars.update(progress.measure(step, wait_s))
        self.writer.scalars(step, scalars)
        if jax.process_index() == 0:
            line = metrics_lib.format_line(
                step, self.plan.total_steps, self.plan.epoch(step), scalars
            )
            logging.info(line)

    def eval_and_checkpoint(self, state: TrainState, step: int, acc) -> tuple[TrainState, str]:
        """Periodic eval, best/early-stopping bookkeeping, the task's hook, a checkpoint;
        returns the state and why training should stop ("" to go on)."""
        self.ckpt.require_finite(acc, self.plan.steps_per_epoch)
        results = self.evaluate(state, step, self.plan.periodic_splits)
        flat = {f"{sp}/{k}": v for sp, r in results.items() for k, v in r.items()}
        line = " | ".join(f"{k}={v:.4g}" for k, v in sorted(flat.items()))
        logging.info("eval at step %d (epoch %.2f): %s", step, self.plan.epoch(step), line)
        self.record.observe(step, flat)
        hook = self.task.on_eval(self.hook_context(state, step, results))
        state, stop = self.apply_hook(state, step, hook)
        value = flat.get(self.record.metric)
        self.save(state, step, acc, None if value is None else {self.record.metric: float(value)})
        if stop:
            return state, "stopped_by_task"
        if self.record.patience_ran_out:
            logging.info(
                "early stopping: no %s improvement in %d evals",
                self.record.stop_metric,
                self.record.patience,
            )
            return state, "early_stopped"
        return state, ""

    def final_eval(self, state: TrainState, step: int) -> dict[str, float]:
        """The held-out splits once, with the best checkpoint (this state if it is the best)."""
        used = self.ckpt.best_step()
        if used is not None and used != step:
            state, _ = self.ckpt.restore(used, self.steps.abstract_state)
        else:
            used = step
        results = self.evaluate(state, step, self.config.final_eval_splits, prefix="final/")
        final = {f"final/{sp}/{k}": v for sp, r in results.items() for k, v in r.items()}
        final["final/checkpoint_step"] = used
        self.writer.scalars(step, {"final/checkpoint_step": used})
        if jax.process_index() == 0:
            with open(os.path.join(self.workdir, "final_metrics.json"), "w") as f:
                json.dump(final, f, indent=2)
            logging.info("final eval with checkpoint %d: %s", used, final)
        return final


def check_config_against_run(
    config: ml_collections.ConfigDict, workdir: str, safe_keys=()
) -> list[tuple[str, Any, Any]]:
    """The run directory is the source of truth: a command that resumes a run may change its
    schedule, duration and other safe keys (returned as (key, run's value, new value)), but a
    change of anything that shapes parameters or data is refused with a `ConfigError` that
    names the first such key and the ways out. Reads only."""
    path = os.path.join(workdir, "config.json")
    if not (os.path.isfile(path) and _checkpoint_steps(workdir)):
        return []
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{path} is unreadable ({ckpt_lib.one_line(e)}); it records how this run was "
            "started: restore it (every checkpoint's meta holds a copy) or use another --workdir"
        ) from e
    accepted, refused = resume_changes(saved, config.to_dict(), safe_keys)
    if refused:
        key, old, new = refused[0]
        more = f" (and {len(refused) - 1} more: {', '.join(k for k, _, _ in refused[1:4])})"
        raise ConfigError(
            f"{workdir} was started with {key}={old!r}; this command says {new!r}"
            f"{more if len(refused) > 1 else ''}. Resume with the run's value, train in "
            f"another --workdir, or start from this run with --config.init_from={workdir}"
        )
    return accepted


def write_config(
    config: ml_collections.ConfigDict, workdir: str, changes, resumed_step: int | None
) -> None:
    """Writes config.json (atomically). When a resumed run changed safe keys, the diff is
    logged and the config it replaces is kept as ``config.<step>.json``, the step from which
    the new one applies: the history of accepted changes."""
    path = os.path.join(workdir, "config.json")
    if changes and resumed_step is not None and os.path.isfile(path):
        logging.warning(
            "resuming at step %d with a changed config: %s",
            resumed_step,
            "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes),
        )
        shutil.copyfile(path, os.path.join(workdir, f"config.{resumed_step}.json"))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=str)
    os.replace(tmp, path)


def _checkpoint_steps(workdir: str) -> list[int]:
    folder = os.path.join(workdir, ckpt_lib.CHECKPOINT_DIR)
    return [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []


def _open_run_dir(
    config: ml_collections.ConfigDict, workdir: str, safe_keys=()
) -> tuple[str, Mesh, list]:
    """Creates the run directory, checks the config against the run it resumes, records a new
    run's config and logs versions and devices, first, so a failed run still says where and
    how it ran; returns (absolute workdir, mesh, the accepted config changes)."""
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file; name a directory")
    os.makedirs(workdir, exist_ok=True)
    if not os.access(workdir, os.W_OK):
        raise ConfigError(f"--workdir {workdir} is not writable; name a directory you can write")
    backend = parallel.check_platform(config)
    path = config.get("compilation_cache_dir") or ""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)
    mesh = parallel.make_mesh(config.get("num_devices"))
    changes = check_config_against_run(config, workdir, safe_keys)
    if jax.process_index() == 0 and not _checkpoint_steps(workdir):
        write_config(config, workdir, [], None)  # a new run: recorded before anything can fail
    logging.info("versions: %s", environment.versions())
    logging.info(
        "backend %s, %d processes, devices: %s; compute dtype %s",
        backend,
        jax.process_count(),
        jax.devices(),
        dtype_name(compute_dtype(config)),
    )
    return workdir, mesh, changes


def _example_batch(data: Datasets, plan: Plan) -> Batch:
    """Two rows of the first training batch: the shapes every step is built from."""
    first = next(
        data.train.batches(
            epoch=0,
            start_step=0,
            global_batch_size=plan.global_batch,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
    )
    return {k: np.asarray(v)[:2] for k, v in first.items()}


def _describe_model(state: TrainState, config, writer) -> None:
    from clu import parameter_overview

    parameter_overview.log_parameter_overview(state.params, msg="parameters")
    n_params = parallel.tree_size(state.params)
    writer.hparams({**writers_lib.flatten_config(config.to_dict()), "num_params": n_params})
    logging.info("%d parameters (%.2f MB float32)", n_params, n_params * 4 / 2**20)


class _StepWatch:
    """Host bookkeeping around each dispatched step that is not training: the bound on steps
    in flight, the first step's compile time, recompilation warnings, the profiler window and
    the throughput meter."""

    def __init__(self, config, workdir: str, plan: Plan, start_step: int, compiles, bar):
        self.config, self.workdir, self.plan, self.compiles = config, workdir, plan, compiles
        self.bar = bar
        self.profile = (start_step + 5, start_step + 5 + config.profile_steps)
        self.in_flight: collections.deque = collections.deque()
        self.progress = self._meter(start_step)

    def _meter(self, step: int) -> metrics_lib.Progress:
        return metrics_lib.Progress(
            total_steps=self.plan.total_steps, start_step=step, global_batch=self.plan.global_batch
        )

    def before(self, step: int) -> None:
        if self.config.profile_steps and step == self.profile[0]:
            jax.profiler.start_trace(os.path.join(self.workdir, "profile"))
        self._t0, self._compiled = time.perf_counter(), self.compiles.count

    def after(self, state: TrainState, step: int, steps_run: int, batch: Batch) -> None:
        # Dispatch is asynchronous: unbounded, the host runs ahead of a slow device and its
        # clock (time limit, steps/s, a preemption save) acts on steps not yet computed.
        # Waiting for the step before last keeps the device fed all the same.
        self.in_flight.append(state.step + 0)  # a copy: the state itself is donated
        if len(self.in_flight) > MAX_STEPS_AHEAD:
            self.in_flight.popleft().block_until_ready()
        # A new shape or Python value reached the step: each such step pays a compile.
        if steps_run > 1 and self.compiles.count > self._compiled:
            shapes = {k: (v.shape, str(v.dtype)) for k, v in batch.items()}
            logging.warning("the train step recompiled at step %d; batch: %s", step, shapes)
        if steps_run == 1:  # its time is compile time: rates start after it
            jax.block_until_ready(state.step)
            logging.info("first step (compile + run): %.1f s", time.perf_counter() - self._t0)
            self.progress = self._meter(step)
        if self.config.profile_steps and step == self.profile[1]:
            jax.block_until_ready(state.step)
            jax.profiler.stop_trace()
        if self.bar.enabled:  # a terminal: the ETA costs a clock read, so only then
            self.bar.update(step, self.progress.eta_minutes(step))


# ---- the loop --------------------------------------------------------------------------------
def train_and_evaluate(
    task: Task | type, config: ml_collections.ConfigDict, workdir: str
) -> TrainResult:
    """Trains `task` as configured, in `workdir`, resuming whatever is there."""
    task = task(config) if isinstance(task, type) else task

    # Run directory, devices, versions: recorded first so a failed run still says where it ran.
    workdir, mesh, changes = _open_run_dir(config, workdir, type(task).resume_safe_keys)

    # Data: its size decides the schedule, so it comes before the optimizer.
    data = task.datasets()
    plan = make_plan(config, data, mesh)
    logging.info(
        "data: %d train examples, global batch %d (%d per device on %d devices), %d steps/epoch, "
        "%d steps; eval every %d steps on %s",
        data.train.num_examples,
        plan.global_batch,
        plan.per_device_batch,
        mesh.size,
        plan.steps_per_epoch,
        plan.total_steps,
        plan.eval_every,
        list(plan.periodic_splits),
    )

    if data.summary and jax.process_index() == 0:
        with open(os.path.join(workdir, "data.json"), "w") as f:
            json.dump(data.summary, f, indent=1)

    # Model, optimizer and compiled steps: shapes first (from two rows), then arrays, placed.
    steps = build_steps(
        task,
        config,
        mesh,
        _example_batch(data, plan),
        steps_per_epoch=plan.steps_per_epoch,
        total_steps=plan.total_steps,
    )

    # Restore or initialise, with the best record and the task's host state of that checkpoint.
    record = BestRecord.from_config(config, task.best_metric)
    ckpt = ckpt_lib.Checkpointer(
        workdir, best_metric=record.metric, best_mode=record.mode, keep_every_steps=plan.keep_every
    )
    state, meta = restore_or_init(task, config, steps, ckpt)
    task.load_state_dict(meta.get("task_state", {}))
    record.restore(meta)
    start_step = int(jax.device_get(state.step))
    if jax.process_index() == 0 and (changes or meta):
        write_config(config, workdir, changes, start_step)  # only once the restore worked
    if start_step > plan.total_steps:
        logging.warning("checkpoint step %d is past the end %d", start_step, plan.total_steps)
    writer = writers_lib.RunWriter.for_run(workdir, config, is_main=jax.process_index() == 0)
    writer.set_epoch_fn(plan.epoch)
    if jax.process_index() == 0 and start_step == 0:
        _describe_model(state, config, writer)
    run = _Run(task, config, workdir, data, plan, mesh, steps, ckpt, record, writer)

    # Train; when it is time, log, evaluate and checkpoint, end an epoch, or stop and save.
    step, steps_run, status = start_step, 0, ""
    acc = steps.new_metrics()
    t_start = time.monotonic()
    place = lambda b: parallel.place_batch(b, mesh, stacked=steps.stacked)
    stream = Prefetcher(train_batches(data, plan, start_step), place, config.prefetch)
    bar = metrics_lib.ProgressBar(
        plan.total_steps, enabled=None if jax.process_index() == 0 else False
    )
    bar.install()
    try:
        with _StopSignals() as signals, metrics_lib.CompileCounter() as compiles:
            watch = _StepWatch(config, workdir, plan, start_step, compiles, bar)
            for batch in stream:
                watch.before(step)
                state, acc = steps.train_step(state, batch, acc)
                step, steps_run = step + 1, steps_run + 1
                watch.after(state, step, steps_run, batch)

                if due(step, plan.log_every, plan.total_steps):
                    run.log_train(step, acc, watch.progress, stream.wait_seconds)
                    acc = steps.new_metrics()
                if due(step, plan.eval_every, plan.total_steps):
                    state, status = run.eval_and_checkpoint(state, step, acc)
                elif due(step, plan.keep_every, plan.total_steps, at_end=False):
                    run.save(state, step, acc)
                # The last step ends an epoch too: a run of 2.5 epochs ends its third, partial
                # one there, and a hook asking for output "at the end" gets called.
                if due(step, plan.steps_per_epoch, plan.total_steps):
                    hook = task.on_epoch_end(run.hook_context(state, step))
                    state, stop = run.apply_hook(state, step, hook)
                    status = status or ("stopped_by_task" if stop else "")
                if status or step >= plan.total_steps:
                    break

                # Preemption and budgets: the same decision on every process (a collective,
                # so across processes it is taken every 10 steps); the save follows the loop.
                if jax.process_count() > 1 and step % 10:
                    continue
                elapsed = time.monotonic() - t_start
                reason = stop_reason(config, signals.received is not None, elapsed, steps_run)
                if _all_agree(reason is not None):
                    status = reason or "preempted"
                    logging.info("stopping at step %d: %s", step, status)
                    break
        status = status or "completed"

        # The last state is saved once (unless this step's checkpoint is already written),
        # then the held-out splits are evaluated once with the best checkpoint.
        run.save(state, step, acc)
        ckpt.wait()
        final_metrics: dict[str, float] = {}
        if status in ("completed", "early_stopped", "stopped_by_task") and (
            config.final_eval_splits
        ):
            final_metrics = run.final_eval(state, step)
    finally:
        bar.uninstall()
        stream.close()
        writer.close()
    ckpt.close()
    sys.stdout.flush()
    return TrainResult(
        status=status,
        step=step,
        best_step=record.step,
        best_value=record.value,
        final_metrics=final_metrics,
        workdir=workdir,
    )
