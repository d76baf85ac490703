"""All checkpoint save/restore of the project (orbax v0 CheckpointManager).

Layout: ``WORKDIR/checkpoints/<step>/{state,meta}``; ``state`` is the train state (step,
params, extras, optimizer state incl. its count, EMA params, controls, rng), ``meta`` is JSON
(epoch, best-so-far, early-stopping counters, the task's host state, the config).

Policy: keep the latest checkpoint, the best one by the task's metric and, optionally, every
N-th step — through `preservation_policy` plus `best_fn` so "best" survives restarts; never
`max_to_keep` (it can delete the latest). Orbax writes to a temporary folder and renames it, so
a half-written checkpoint is never the one restored. Every restore passes an explicit target
with shardings, so a checkpoint written on 8 devices restores on 1.

Used by `common.train` (the loop) and by tools (`load_run`) that only need params.
"""

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Sharding

from common.config import fill_missing
from common.optim import path_str

_POL = ocp.checkpoint_managers
CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names it, says why and what to do."""


DAMAGED_DIR = "damaged_checkpoints"  # beside checkpoints/: damaged steps are moved, never deleted


def one_line(error: BaseException) -> str:
    """An exception as one short line (TensorStore and orbax errors run to dozens)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(error).__name__}: {text[:240]}" if text else type(error).__name__


def _shapes(tree: Any) -> dict[str, tuple]:
    return {
        path_str(k): tuple(v.shape)
        for k, v in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(v, "shape")
    }


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN/inf; the message names the first bad step."""


def run_meta(
    *, step: int, epoch: float, best: dict, task_state: dict, config: ml_collections.ConfigDict
) -> dict:
    """The JSON every loop checkpoint carries beside its arrays: where the run was (step,
    epoch), its best-so-far and early-stopping record, the task's host state, the config and
    the library versions that wrote it."""
    from common import environment

    return {
        "step": int(step),
        "epoch": float(epoch),
        **best,
        "task_state": task_state,
        "config": config.to_dict(),
        "versions": environment.versions(),
    }


def _handlers():
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


class Checkpointer:
    """Latest + best (+ periodic) checkpoints of one run directory."""

    def __init__(
        self,
        workdir: str,
        *,
        best_metric: str | None = None,
        best_mode: str = "max",
        keep_every_steps: int | None = None,
        asynchronous: bool = True,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got '{best_mode}'")
        self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))  # orbax needs abs
        self.best_metric = best_metric
        policies = [_POL.LatestN(1)]
        best_fn = None
        if best_metric:
            best_fn = lambda m: float(m[best_metric])
            policies.append(
                _POL.BestN(
                    get_metric_fn=best_fn,
                    reverse=best_mode == "min",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        if keep_every_steps:
            policies.append(_POL.EveryNSteps(int(keep_every_steps)))
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn,  # without it metrics are not persisted and "best" is lost
            best_mode=best_mode,
            preservation_policy=_POL.AnyPreservationPolicy(policies),
            enable_async_checkpointing=asynchronous,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"), item_handlers=_handlers(), options=options
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step() if self.best_metric else None

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def require_finite(self, train_metrics: dict, steps_per_epoch: int) -> None:
        """Raises `NonFiniteLossError` if a step since the last check had a NaN/inf loss or
        gradient, naming that step and the last good checkpoint (which stays the latest)."""
        from common.metrics import first_nonfinite_step

        bad = first_nonfinite_step(train_metrics)
        if bad is None:
            return
        self.wait()
        raise NonFiniteLossError(
            f"loss or gradient became non-finite at step {bad} (epoch "
            f"{bad / steps_per_epoch:.2f}); the last good checkpoint is step "
            f"{self.latest_step()} in {self.directory}. Lower learning_rate, set "
            "optim.grad_clip, or check the input data for NaN/inf."
        )

    def save(
        self, step: int, state: Any, meta: dict, metrics: dict[str, float] | None = None
    ) -> bool:
        """Saves unless this step is already on disk; every process must call it. The loop
        calls `require_finite` first, so no checkpoint is written after a bad step."""
        if step in self.manager.all_steps():
            return False
        if metrics is not None and self.best_metric and self.best_metric not in metrics:
            metrics = None  # a save without an eval does not compete for "best"
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(_jsonable(meta))
            ),
            metrics=metrics,
            force=True,  # the loop decides when to save; the policies decide what to keep
        )
        return bool(saved)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores `step` onto `abstract_state` (a pytree of ShapeDtypeStruct with shardings)."""
        return _restore(self.manager, step, abstract_state)

    def restore_newest_intact(
        self, abstract_state: Any, *, refuse_damaged: bool = False
    ) -> tuple[int, Any, dict] | None:
        """(step, state, meta) of the newest checkpoint that restores; None when there is none.

        A step that cannot be read (metadata that is not JSON, an item missing, a truncated
        array file) is damaged: it is moved to ``WORKDIR/damaged_checkpoints/<step>`` (never
        deleted), the warning says which and why, and the next older step is tried; with
        `refuse_damaged` a `CheckpointError` says so instead and nothing is moved. Checkpoints
        whose parameters have other shapes than `abstract_state` are not damaged but written
        by another model: that is a `CheckpointError` naming the first paths that differ.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                self._require_fits(step, abstract_state)
                state, meta = self.restore(step, abstract_state)
                return step, state, meta
            except CheckpointError:
                raise
            except Exception as e:  # anything that stops a read is damage
                problem = one_line(e)
            if refuse_damaged:
                raise CheckpointError(
                    f"checkpoint step {step} in {self.directory} is damaged ({problem}); it was "
                    "left as it is. Set --config.on_damaged_checkpoint=use_older to resume from "
                    "the newest intact step instead"
                )
            moved = self._set_aside(step)
            logging.warning(
                "checkpoint step %d is damaged (%s); moved it to %s and trying the next older step",
                step,
                problem,
                moved,
            )
        if steps:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: steps {sorted(steps)} are damaged "
                f"(moved to {os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)}); "
                "start over in another --workdir"
            )
        return None

    def _require_fits(self, step: int, abstract_state: Any) -> None:
        metadata = self.manager.item_metadata(step)
        state = metadata["state"] if metadata is not None else None
        if state is None:
            raise FileNotFoundError(f"item 'state' of step {step} is missing")
        saved = _shapes(state.get("params") if hasattr(state, "get") else None)
        wanted = _shapes(abstract_state.params)
        if saved and saved != wanted:
            problems = param_mismatches_of_shapes(saved, wanted)
            raise CheckpointError(
                f"the checkpoints in {self.directory} hold another model than this config "
                f"builds ({'; '.join(problems[:3])}). Use the run's own model settings "
                "(its config.json), train in another --workdir, or start from it with "
                "--config.init_from"
            )

    def _set_aside(self, step: int) -> str:
        """Moves a damaged step out of orbax's sight, keeping every file of it."""
        source = os.path.join(self.directory, str(step))
        target = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR, str(step))
        n = 1
        while os.path.exists(target):
            target = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR, f"{step}.{n}")
            n += 1
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        self.manager.reload()
        return target

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _require_step(manager: ocp.CheckpointManager, step: int) -> None:
    if step not in manager.all_steps():
        raise FileNotFoundError(
            f"step {step} not in '{manager.directory}' (have {sorted(manager.all_steps())})"
        )


def _restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict]:
    _require_step(manager, step)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], dict(restored["meta"] or {})


def _jsonable(obj: Any) -> Any:
    """Round-trips through json so a bad value fails here, at save time, with its path."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint meta must be JSON-serialisable (finite numbers): {e}") from e


# ---- locating and reading checkpoints of other runs ----------------------------------------
@dataclass
class CheckpointRef:
    directory: str  # absolute path of a `checkpoints/` folder
    step: int | None  # None: resolve with `which`


def resolve(path: str) -> CheckpointRef:
    """Accepts a run directory, its ``checkpoints/`` folder, or one ``checkpoints/<step>``."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint path '{path}' does not exist")
    base = os.path.basename(path.rstrip("/"))
    step_files = ("state", "meta", "_CHECKPOINT_METADATA")  # any: a damaged step is still one
    if base.isdigit() and any(os.path.exists(os.path.join(path, f)) for f in step_files):
        return CheckpointRef(os.path.dirname(path), int(base))
    if os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):
        return CheckpointRef(os.path.join(path, CHECKPOINT_DIR), None)
    if any(d.isdigit() for d in os.listdir(path)):
        return CheckpointRef(path, None)
    raise FileNotFoundError(
        f"no checkpoints under '{path}': expected a run directory (with checkpoints/), a "
        "checkpoints/ folder, or a checkpoints/<step> folder"
    )


def _reader(directory: str) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory,
        item_names=("state", "meta"),
        item_handlers=_handlers(),
        options=ocp.CheckpointManagerOptions(read_only=True, create=False),
    )


def pick_step(ref: CheckpointRef, which: str = "latest") -> int:
    """The step to load: the one named in the path, else "latest" or "best" of the folder."""
    if ref.step is not None:
        return ref.step
    manager = _reader(ref.directory)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"'{ref.directory}' holds no finished checkpoint")
        if which.isdigit():
            if int(which) not in steps:
                raise FileNotFoundError(f"step {which} not in '{ref.directory}' (have {steps})")
            return int(which)
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = _best_from_meta(manager, steps)
            if best is not None and best != steps[-1]:
                # A save at the time limit or on SIGTERM is never evaluated, so "best" can be
                # older than the run's end; say so, for init_from and for every tool.
                logging.warning(
                    "%s: using its best evaluated step %d, not its latest step %d "
                    "(name %s/%d to load that one)",
                    ref.directory,
                    best,
                    steps[-1],
                    ref.directory,
                    steps[-1],
                )
            return best if best is not None else steps[-1]
        raise ValueError(f"which must be 'latest', 'best' or a step number, got '{which}'")
    finally:
        manager.close()


def _best_from_meta(manager: ocp.CheckpointManager, steps: list[int]) -> int | None:
    """The loop records the best step in every checkpoint's meta; read the newest record."""
    for step in reversed(steps):
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
        except Exception as e:  # a damaged step says nothing about the best one
            logging.warning("step %d of %s: metadata unreadable (%s)", step, manager.directory, e)
            continue
        best = (meta or {}).get("best", {}).get("step")
        if best is not None and best in steps:
            return int(best)
    return None


def param_mismatches(loaded: Any, wanted: Any) -> list[str]:
    """Where a params tree does not fit the one a model needs, one line per path: "missing P",
    "unexpected P", or "P has shape A, this config needs B"."""
    shapes = lambda tree: {
        path_str(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)
    }
    return param_mismatches_of_shapes(shapes(loaded), shapes(wanted))


def param_mismatches_of_shapes(got: dict[str, tuple], want: dict[str, tuple]) -> list[str]:
    """`param_mismatches` on {path: shape} tables."""
    problems = [f"missing {k}" for k in want if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in want]
    problems += [
        f"{k} has shape {got[k]}, this config needs {v}"
        for k, v in want.items()
        if k in got and got[k] != v
    ]
    return problems


def require_params_fit(
    loaded: Any, wanted: Any, source: str, more_problems: Sequence[str] = ()
) -> None:
    """Refuses init_from params that do not fit the model, naming the first paths that differ."""
    problems = [*more_problems, *param_mismatches(loaded, wanted)]
    if problems:
        raise ValueError(
            f"config.init_from{'=' + source if source else ''} does not fit this model: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
            + ". Use the same model.* settings as that run (its config.json), or map the params "
            "in the task's init_from_params."
        )


def restore_tree(
    ref: CheckpointRef, step: int, sharding: Sharding | None = None
) -> tuple[dict, dict]:
    """Restores one checkpoint as plain nested dicts (no target class needed), plus its meta.

    Arrays are placed with `sharding` (default: the first local device), whatever mesh
    wrote them.
    """
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    manager = _reader(ref.directory)
    try:
        _require_step(manager, step)
        metadata = manager.item_metadata(step)["state"]
        abstract = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), metadata
        )
        return _restore(manager, step, abstract)
    finally:
        manager.close()


@dataclass
class LoadedRun:
    """What tools need from a run: its config and the params of one checkpoint."""

    config: ml_collections.ConfigDict
    step: int
    params: Any
    ema_params: Any  # None when the run kept no EMA
    extras: Any
    controls: dict
    meta: dict

    @property
    def eval_params(self) -> Any:
        """EMA params when the run kept them (what eval and sampling used), else params."""
        return self.ema_params if self.ema_params else self.params


def read_run_config(path: str) -> ml_collections.ConfigDict:
    """The config a run was started with (its ``config.json``; else the latest checkpoint's
    meta), without restoring any array: what tools need to find the run's Task."""
    ref = resolve(path)
    json_path = os.path.join(os.path.dirname(ref.directory), "config.json")
    if os.path.isfile(json_path):
        with open(json_path) as f:
            return ml_collections.ConfigDict(json.load(f))
    manager = _reader(ref.directory)
    try:
        step = ref.step if ref.step is not None else manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"'{ref.directory}' holds no finished checkpoint")
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    finally:
        manager.close()
    if not (meta or {}).get("config"):
        raise FileNotFoundError(f"no config.json beside '{ref.directory}' and none in its meta")
    return ml_collections.ConfigDict(meta["config"])


def load_run(
    path: str,
    which: str = "best",
    defaults: Callable[[str | None], ml_collections.ConfigDict] | None = None,
) -> LoadedRun:
    """Loads a run's config and one checkpoint's params for sampling/evaluation/analysis.

    `path`: a run directory, its checkpoints/ folder, or one checkpoints/<step> folder;
    `which`: "best" (by the run's metric; falls back to latest), "latest" or a step number;
    `defaults`: the family's ``get_config`` (called with the run's profile): keys the saved
    config lacks, because they were added after the run, take today's defaults
    (`common.config.fill_missing`), so older runs keep loading.
    """
    ref = resolve(path)
    step = pick_step(ref, which)
    try:
        state, meta = restore_tree(ref, step)
    except Exception as e:
        if ref.step is not None or str(which).isdigit():
            raise CheckpointError(
                f"checkpoint step {step} in {ref.directory} cannot be read ({one_line(e)}); "
                "name another step"
            ) from e
        step, state, meta = _newest_readable_before(ref, step, one_line(e))
    config_dict = meta.get("config")
    if config_dict is None:
        run_dir = os.path.dirname(ref.directory)
        with open(os.path.join(run_dir, "config.json")) as f:
            config_dict = json.load(f)
    config = ml_collections.ConfigDict(config_dict)
    if defaults is not None:
        config, filled = fill_missing(config, defaults(config_dict.get("profile") or None))
        if filled:
            logging.info("config keys newer than this run, at their defaults: %s", filled)
    return LoadedRun(
        config=config,
        step=step,
        params=state["params"],
        ema_params=state.get("ema_params") or None,
        extras=state.get("extras") or {},
        controls=state.get("controls") or {},
        meta=meta,
    )


def _newest_readable_before(ref: CheckpointRef, step: int, problem: str) -> tuple[int, dict, dict]:
    """A tool asked for "best" or "latest" and that step is damaged: the newest older step
    that reads, with a warning (tools never move or delete anything)."""
    manager = _reader(ref.directory)
    try:
        older = sorted((s for s in manager.all_steps() if s < step), reverse=True)
    finally:
        manager.close()
    for candidate in older:
        try:
            state, meta = restore_tree(ref, candidate)
        except Exception:
            continue
        logging.warning(
            "checkpoint step %d in %s is damaged (%s); using step %d",
            step,
            ref.directory,
            problem,
            candidate,
        )
        return candidate, state, meta
    raise CheckpointError(f"no readable checkpoint in {ref.directory}: step {step}: {problem}")


def restore_state(ref: CheckpointRef, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores a full train state from another run's folder (`config.resume_from`)."""
    manager = _reader(ref.directory)
    try:
        return _restore(manager, step, abstract_state)
    finally:
        manager.close()
