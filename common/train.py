"""THE training loop: `train_and_evaluate(task, config, workdir)`, shared by every family.

Reads top to bottom: set up the run directory and devices; build data; build model and
optimizer (shapes first, then real arrays, already placed); restore or initialise; compile the
step; train with periodic eval, checkpoints and logs; final eval of held-out splits with the
best checkpoint. Everything family-specific is a call into the `Task` (common/task.py).

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
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import checkpoint as ckpt_lib
from common import environment, parallel
from common import metrics as metrics_lib
from common import writers as writers_lib
from common.best import BestRecord
from common.config import ConfigError, due, steps_from
from common.data import Prefetcher
from common.precision import compute_dtype, dtype_name
from common.steps import TrainState, build_steps
from common.task import HookContext, HookResult, Task


@dataclass
class TrainResult:
    status: str  # completed | early_stopped | stopped_by_task | time_limit | preempted | stopped
    step: int
    best_step: int | None
    best_value: float | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    workdir: str = ""


MAX_STEPS_AHEAD = 2  # train steps the host may dispatch before the device has finished them


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf; the message names the first bad step."""


# ---- small helpers ---------------------------------------------------------------------------
def _setup_compilation_cache(config: ml_collections.ConfigDict) -> None:
    path = config.get("compilation_cache_dir") or ""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)


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


def _all_agree(flag: bool) -> bool:
    """Every process must take the same stop decision (saves are collective)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


# ---- the loop --------------------------------------------------------------------------------
def train_and_evaluate(
    task: Task | type, config: ml_collections.ConfigDict, workdir: str
) -> TrainResult:
    """Trains `task` as configured, in `workdir`, resuming whatever is there."""
    task = task(config) if isinstance(task, type) else task

    # Run directory, devices, versions: recorded first so a failed run still says where it ran.
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    backend = parallel.check_platform(config)
    _setup_compilation_cache(config)
    mesh = parallel.make_mesh(config.get("num_devices"))
    dtype = compute_dtype(config)
    if is_main:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f, indent=2, default=str)
    logging.info("versions: %s", environment.versions())
    logging.info(
        "backend %s, %d processes, devices: %s; compute dtype %s",
        backend,
        jax.process_count(),
        jax.devices(),
        dtype_name(dtype),
    )

    # Data: sizes decide the schedule, so they come before the optimizer.
    data = task.datasets()
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
    total_steps = steps_from(
        epochs=config.max_epochs,
        steps=config.max_steps,
        steps_per_epoch=steps_per_epoch,
        what="max_epochs/max_steps",
    )
    eval_every = int(
        config.eval_every_steps or max(1, round(config.eval_every_epochs * steps_per_epoch))
    )
    keep_every = steps_from(
        epochs=config.checkpoint_every_epochs,
        steps=config.checkpoint_every_steps,
        steps_per_epoch=steps_per_epoch,
        what="checkpoint_every",
        required=False,
    )
    periodic_splits = data.periodic_eval_splits or tuple(data.eval)
    unknown = [s for s in (*periodic_splits, *config.final_eval_splits) if s not in data.eval]
    if unknown:
        raise ConfigError(
            f"eval splits {unknown} not provided by the task; it has {list(data.eval)}"
        )
    logging.info(
        "data: %d train examples, global batch %d (%d per device on %d devices), %d steps/epoch, "
        "%d steps; eval every %d steps on %s",
        data.train.num_examples,
        global_batch,
        per_device,
        mesh.size,
        steps_per_epoch,
        total_steps,
        eval_every,
        list(periodic_splits),
    )
    epoch_of = lambda step: step / steps_per_epoch
    pi, pc = jax.process_index(), jax.process_count()
    example = next(
        data.train.batches(
            epoch=0,
            start_step=0,
            global_batch_size=global_batch,
            process_index=pi,
            process_count=pc,
        )
    )
    example = {k: np.asarray(v)[:2] for k, v in example.items()}

    # Model, optimizer and compiled steps: shapes first, then real arrays created placed.
    steps = build_steps(
        task, config, mesh, example, steps_per_epoch=steps_per_epoch, total_steps=total_steps
    )
    schedule, abstract_state, repl = steps.schedule, steps.abstract_state, steps.replicated
    record = BestRecord.from_config(config, task.best_metric)

    # Restore or initialise: latest in workdir, else resume_from, else fresh (+ init_from).
    ckpt = ckpt_lib.Checkpointer(
        workdir, best_metric=record.metric, best_mode=record.mode, keep_every_steps=keep_every
    )
    meta: dict = {}
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(ckpt.latest_step(), abstract_state)
        logging.info("resumed from %s at step %d", ckpt.directory, int(state.step))
    elif config.resume_from:
        ref = ckpt_lib.resolve(config.resume_from)
        step = ckpt_lib.pick_step(ref, "latest")
        state, meta = ckpt_lib.restore_state(ref, step, abstract_state)
        logging.info("resumed from resume_from=%s (step %d)", config.resume_from, step)
    else:
        state = steps.init_state()
        if config.init_from:
            ref = ckpt_lib.resolve(config.init_from)
            step = ckpt_lib.pick_step(ref, "best")
            loaded, loaded_meta = ckpt_lib.restore_tree(ref, step, repl)
            params = task.init_from_params(
                loaded["params"], state.params, loaded_meta.get("task_state") or {}
            )
            ckpt_lib.require_params_fit(params, state.params, config.init_from)
            params = jax.device_put(params, jax.tree.map(lambda _: repl, state.params))
            state = steps.with_params(state, params)
            logging.info("initialised params from init_from=%s (step %d)", config.init_from, step)
    task.load_state_dict(meta.get("task_state", {}))
    record.restore(meta)
    start_step = int(jax.device_get(state.step))
    if start_step > total_steps:
        logging.warning("checkpoint step %d is past the configured end %d", start_step, total_steps)

    writer = writers_lib.RunWriter(workdir, is_main=is_main)
    writer.set_epoch_fn(epoch_of)
    if is_main and start_step == 0:
        from clu import parameter_overview

        parameter_overview.log_parameter_overview(state.params, msg="parameters")
        n_params = parallel.tree_size(state.params)
        writer.hparams({**writers_lib.flatten_config(config.to_dict()), "num_params": n_params})
        logging.info("%d parameters (%.2f MB float32)", n_params, n_params * 4 / 2**20)

    train_step, eval_step, new_acc = steps.train_step, steps.eval_step, steps.new_metrics

    eval_params = steps.eval_params

    def evaluate(s: TrainState, splits, prefix: str = "") -> dict[str, dict[str, float]]:
        """Runs each split once; logs `<prefix><split>/<metric>` scalars and images."""
        results = {}
        for split in splits:
            batches = data.eval[split].batches(
                global_batch_size=eval_batch, process_index=pi, process_count=pc
            )
            total = metrics_lib.merge_all(
                (
                    eval_step(
                        eval_params(s), s.extras, s.controls, s.step, parallel.place_batch(b, mesh)
                    )
                    for b in batches
                ),
                what=f"eval split '{split}'",
            )
            summary = task.summarize_eval(split, total.compute())
            results[split] = summary.scalars
            writer.scalars(
                step_now, {f"{prefix}{split}/{k}": v for k, v in summary.scalars.items()}
            )
            writer.images(step_now, {f"{prefix}{split}/{k}": v for k, v in summary.images.items()})
        return results

    def hook_context(s: TrainState, eval_results=None) -> HookContext:
        return HookContext(
            config=config,
            workdir=workdir,
            step=step_now,
            epoch=step_now // steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            params=eval_params(s),
            raw_params=s.params,
            extras=s.extras,
            controls={k: float(v) for k, v in jax.device_get(s.controls).items()},
            eval_results=eval_results or {},
            is_main_process=is_main,
        )

    def apply_hook(s: TrainState, result: HookResult | None) -> tuple[TrainState, bool]:
        if result is None:
            return s, False
        if result.message:
            logging.info("[%s] step %d: %s", type(task).__name__, step_now, result.message)
            writer.texts(step_now, {"events": result.message})
        writer.scalars(step_now, result.scalars)
        writer.images(step_now, result.images)
        if result.controls:
            unknown = sorted(set(result.controls) - set(s.controls))
            if unknown:
                raise KeyError(f"hook set unknown controls {unknown}; known: {sorted(s.controls)}")
            new = {
                **s.controls,
                **{k: jnp.asarray(v, jnp.float32) for k, v in result.controls.items()},
            }
            s = s.replace(controls=jax.device_put(new, jax.tree.map(lambda _: repl, new)))
        return s, bool(result.stop_training)

    def meta_now(s: TrainState) -> dict:
        return {
            "step": step_now,
            "epoch": epoch_of(step_now),
            **record.to_meta(),
            "task_state": task.state_dict(),
            "config": config.to_dict(),
            "versions": environment.versions(),
        }

    def check_finite(acc) -> None:
        bad = metrics_lib.first_nonfinite_step(acc)
        if bad is not None:
            ckpt.wait()
            last = ckpt.latest_step()
            writer.close()
            raise NonFiniteLossError(
                f"loss or gradient became non-finite at step {bad} (epoch {epoch_of(bad):.2f}); "
                f"the last good checkpoint is step {last} in {ckpt.directory}. Lower "
                "learning_rate, set optim.grad_clip, or check the input data for NaN/inf."
            )

    def save(s: TrainState, acc, eval_metrics: dict | None = None) -> None:
        check_finite(acc)  # never write a checkpoint after a bad step
        ckpt.save(step_now, s, meta_now(s), metrics=eval_metrics)

    def log_train(acc, data_wait_seconds: float) -> None:
        check_finite(acc)
        train = metrics_lib.compute_train_metrics(acc)
        scalars = {f"train/{k}": v for k, v in train.items()}
        scalars["train/learning_rate"] = float(schedule(step_now - 1))
        scalars.update(progress.measure(step_now, data_wait_seconds))
        writer.scalars(step_now, scalars)
        if is_main:
            logging.info(
                metrics_lib.format_line(step_now, total_steps, epoch_of(step_now), scalars)
            )

    def eval_and_checkpoint(s: TrainState, acc) -> tuple[TrainState, str | None]:
        """Periodic eval: best/early-stopping bookkeeping, the task's hook, a checkpoint."""
        check_finite(acc)
        results = evaluate(s, periodic_splits)
        flat = {f"{sp}/{k}": v for sp, r in results.items() for k, v in r.items()}
        line = " | ".join(f"{k}={v:.4g}" for k, v in sorted(flat.items()))
        logging.info("eval at step %d (epoch %.2f): %s", step_now, epoch_of(step_now), line)
        record.observe(step_now, flat)
        s, stop = apply_hook(s, task.on_eval(hook_context(s, results)))
        value = flat.get(record.metric)
        save(s, acc, None if value is None else {record.metric: float(value)})
        if stop:
            return s, "stopped_by_task"
        if record.patience_ran_out:
            logging.info(
                "early stopping: no %s improvement in %d evals",
                record.stop_metric,
                record.patience,
            )
            return s, "early_stopped"
        return s, None

    def stop_reason(signals: _StopSignals, elapsed: float) -> str | None:
        if signals.received is not None:
            return "preempted"
        if time_limit is not None and elapsed >= time_limit:
            return "time_limit"
        if config.stop_after_steps is not None and steps_this_run >= config.stop_after_steps:
            return "stopped"
        return None

    def batch_stream(first_step: int):
        """Host batches from `first_step` to the end, across epoch boundaries."""
        step = first_step
        while step < total_steps:
            for batch in data.train.batches(
                epoch=step // steps_per_epoch,
                start_step=step % steps_per_epoch,
                global_batch_size=global_batch,
                process_index=pi,
                process_count=pc,
            ):
                yield batch
                step += 1
                if step >= total_steps:
                    return

    # Train: periodic eval / checkpoints / logs; stop on duration, time, signal or hooks.
    step_now = start_step
    status = "completed"
    acc = new_acc()
    progress = metrics_lib.Progress(
        total_steps=total_steps, start_step=start_step, global_batch=global_batch
    )
    t_start = time.monotonic()
    hours = config.max_training_hours
    time_limit = None if hours is None else float(hours) * 3600
    steps_this_run = 0
    profile_window = (start_step + 5, start_step + 5 + config.profile_steps)
    place = lambda b: parallel.place_batch(b, mesh, stacked=steps.stacked)
    stream = Prefetcher(batch_stream(start_step), place, config.prefetch)
    in_flight: collections.deque = collections.deque()
    with _StopSignals() as signals, metrics_lib.CompileCounter() as compiles:
        try:
            for batch in stream:
                if config.profile_steps and step_now == profile_window[0]:
                    jax.profiler.start_trace(os.path.join(workdir, "profile"))
                t0 = time.perf_counter()
                compiled_before = compiles.count
                state, acc = train_step(state, batch, acc)
                # Dispatch is asynchronous: unbounded, the host runs ahead of a slow device
                # and its clock (time limit, steps/s, a preemption save) acts on steps not yet
                # computed. Waiting for the step before last keeps the device fed all the same.
                in_flight.append(state.step + 0)  # a copy: the state itself is donated
                if len(in_flight) > MAX_STEPS_AHEAD:
                    in_flight.popleft().block_until_ready()
                step_now += 1
                steps_this_run += 1
                if steps_this_run > 1 and compiles.count > compiled_before:
                    # A new shape or Python value reached the step: every such step pays a
                    # full compile. Usually a partial batch or a non-array in the batch.
                    logging.warning(
                        "the train step recompiled at step %d; batch shapes: %s",
                        step_now,
                        {k: (v.shape, str(v.dtype)) for k, v in batch.items()},
                    )
                if steps_this_run == 1:
                    jax.block_until_ready(state.step)
                    logging.info("first step (compile + run): %.1f s", time.perf_counter() - t0)
                    progress = metrics_lib.Progress(
                        total_steps=total_steps, start_step=step_now, global_batch=global_batch
                    )
                if config.profile_steps and step_now == profile_window[1]:
                    jax.block_until_ready(state.step)
                    jax.profiler.stop_trace()
                last = step_now >= total_steps

                if due(step_now, config.log_every_steps, total_steps):
                    log_train(acc, stream.wait_seconds)
                    acc = new_acc()
                if due(step_now, eval_every, total_steps):
                    state, stopped = eval_and_checkpoint(state, acc)
                    status = stopped or status
                elif due(step_now, keep_every, total_steps, at_end=False):
                    save(state, acc)
                if due(step_now, steps_per_epoch, total_steps, at_end=False):
                    state, stop = apply_hook(state, task.on_epoch_end(hook_context(state)))
                    if stop and status == "completed":
                        status = "stopped_by_task"
                if status != "completed" or last:
                    break

                # Preemption and budgets: the same decision on every process, then save + exit.
                # Across processes that decision is a collective, so it is taken every 10 steps.
                if pc > 1 and step_now % 10:
                    continue
                reason = stop_reason(signals, time.monotonic() - t_start)
                if _all_agree(reason is not None):
                    status = reason or "preempted"
                    logging.info("stopping at step %d: %s", step_now, status)
                    save(state, acc)
                    break
        finally:
            stream.close()

    # Final checkpoint, then held-out splits once with the best checkpoint.
    check_finite(acc)
    save(state, acc)
    ckpt.wait()
    final_metrics: dict[str, float] = {}
    if status in ("completed", "early_stopped", "stopped_by_task") and config.final_eval_splits:
        final_state, used = state, step_now
        best_step = ckpt.best_step()
        if best_step is not None and best_step != step_now:
            final_state, _ = ckpt.restore(best_step, abstract_state)
            used = best_step
        results = evaluate(final_state, config.final_eval_splits, prefix="final/")
        final_metrics = {f"final/{sp}/{k}": v for sp, r in results.items() for k, v in r.items()}
        final_metrics["final/checkpoint_step"] = used
        writer.scalars(step_now, {"final/checkpoint_step": used})
        if is_main:
            with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
                json.dump(final_metrics, f, indent=2)
            logging.info("final eval with checkpoint %d: %s", used, final_metrics)
    writer.close()
    ckpt.close()
    sys.stdout.flush()
    return TrainResult(
        status=status,
        step=step_now,
        best_step=record.step,
        best_value=record.value,
        final_metrics=final_metrics,
        workdir=workdir,
    )
