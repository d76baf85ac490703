"""One evaluation path, for the training loop and for offline use, so both give the same figures.

    python -m common.evaluate RUN_DIR [--split test] [--which best|latest|STEP]
                              [--batch_size N] [--out FILE.json] [--config.data_dir=...]

`evaluate(...)` is a module-level function of keyword-only inputs that captures nothing from
the loop (the shape of flax/examples' `wmt/train.py::evaluate`): the loop calls it at every
periodic evaluation and once at the end; `open_run(...)` rebuilds the same task, data and
compiled eval step from a run directory, so an offline number is the loop's number.

Offline, the task is the one the run's `config.json` names (`config.task`), the params are the
ones evaluation used (EMA params when the run kept them), and `--config.x=y` changes the run's
config for this evaluation only (e.g. a data_dir on another machine). Images a task draws (a
confusion matrix) go to ``RUN_DIR/images/eval_<split>_step<step>_<name>.png``; the scalars are
printed as one JSON object keyed ``<split>/<metric>``.
"""

import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from common import checkpoint as ckpt_lib
from common import parallel
from common.config import ConfigError, set_from_text, set_value
from common.metrics import merge_all
from common.task import Datasets, EvalSource, EvalSummary, Task, task_class
from common.writers import write_png


# ---- the evaluation itself ------------------------------------------------------------------
def compute(
    *,
    eval_step: Any,
    params: Any,
    extras: Any,
    controls: Any,
    step: Any,
    source: EvalSource,
    batch_size: int,
    mesh: Mesh,
    what: str = "eval split",
) -> Mapping[str, Any]:
    """The computed clu Collection of one split: every example once, padded rows masked."""
    batches = source.batches(
        global_batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    total = merge_all(
        (eval_step(params, extras, controls, step, parallel.place_batch(b, mesh)) for b in batches),
        what=what,
    )
    return total.compute()


def evaluate(
    *,
    task: Task,
    eval_step: Any,
    params: Any,
    extras: Any,
    controls: Any,
    step: Any,
    sources: Mapping[str, EvalSource],
    batch_size: int,
    mesh: Mesh,
) -> dict[str, EvalSummary]:
    """Each split of `sources` once, summarised by the task: split -> scalars and images.

    `eval_step(params, extras, controls, step, batch)` is `common.steps.Steps.eval_step`;
    `params` are the ones evaluation uses (EMA params when on)."""
    return {
        split: task.summarize_eval(
            split,
            compute(
                eval_step=eval_step,
                params=params,
                extras=extras,
                controls=controls,
                step=step,
                source=source,
                batch_size=batch_size,
                mesh=mesh,
                what=f"eval split '{split}'",
            ),
        )
        for split, source in sources.items()
    }


def flat_scalars(results: Mapping[str, EvalSummary], prefix: str = "") -> dict[str, float]:
    """``{"<prefix><split>/<metric>": value}``: the keys metrics.jsonl and TensorBoard use."""
    return {f"{prefix}{sp}/{k}": v for sp, r in results.items() for k, v in r.scalars.items()}


def flat_images(results: Mapping[str, EvalSummary], prefix: str = "") -> dict[str, np.ndarray]:
    return {f"{prefix}{sp}/{k}": v for sp, r in results.items() for k, v in r.images.items()}


# ---- a run directory, reopened --------------------------------------------------------------
@dataclasses.dataclass
class OpenRun:
    """A run's task, data and compiled eval step, with one checkpoint's variables placed."""

    run: ckpt_lib.LoadedRun
    task: Task
    data: Datasets
    mesh: Mesh
    eval_step: Any
    batch_size: int
    variables: dict  # params (EMA when kept), extras, controls, step: placed on the mesh

    def source(self, split: str) -> EvalSource:
        if split not in self.data.eval:
            raise ConfigError(
                f"unknown split '{split}' for {type(self.task).__name__}; "
                f"choose one of: {', '.join(self.data.eval)}"
            )
        return self.data.eval[split]

    def compute(self, split: str) -> Mapping[str, Any]:
        """The split's computed eval outputs, before the task summarises them."""
        return compute(
            eval_step=self.eval_step,
            source=self.source(split),
            batch_size=self.batch_size,
            mesh=self.mesh,
            what=f"eval split '{split}'",
            **self.variables,
        )

    def evaluate(self, splits: Sequence[str]) -> dict[str, EvalSummary]:
        return evaluate(
            task=self.task,
            eval_step=self.eval_step,
            sources={s: self.source(s) for s in splits},
            batch_size=self.batch_size,
            mesh=self.mesh,
            **self.variables,
        )


def family_defaults(config: ml_collections.ConfigDict):
    """The family's ``get_config`` (``configs/<family>.py``), for keys newer than the run;
    None where the configs package is not importable (an installed wheel without it)."""
    family = str(config.get("task", "")).split(".")[0]
    try:
        return importlib.import_module(f"configs.{family}").get_config
    except (ImportError, AttributeError):
        return None


def open_run(
    path: str,
    *,
    which: str = "best",
    overrides: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> OpenRun:
    """Reopens `path` (run dir, its checkpoints/ or one checkpoints/<step>) for evaluation.

    `which`: "best", "latest" or a step number; `overrides`: dotted config keys changed for
    this evaluation only; `batch_size`: default the run's eval batch (the loop's)."""
    from common.steps import build_eval_step  # jax-heavy; keeps `--help` fast

    probe = ckpt_lib.read_run_config(path)
    run = ckpt_lib.load_run(path, which, defaults=family_defaults(probe))
    config = run.config
    if overrides:
        config = apply_overrides(config, overrides)
    task = task_class(config)(config)
    data = task.datasets()
    task.load_state_dict(run.meta.get("task_state") or {})  # as the loop does after a restore
    mesh = parallel.make_mesh(None)
    batch = int(batch_size or config.get("eval_batch_size") or config.batch_size)
    parallel.per_device_batch(batch, mesh, "--batch_size")
    repl = parallel.replicated(mesh)
    place = lambda tree: jax.device_put(tree, jax.tree.map(lambda _: repl, tree))
    variables = {
        "params": place(run.eval_params),
        "extras": place(run.extras),
        "controls": place({k: jnp.asarray(v, jnp.float32) for k, v in run.controls.items()}),
        "step": place(jnp.asarray(run.step, jnp.int32)),
    }
    return OpenRun(
        run=run,
        task=task,
        data=data,
        mesh=mesh,
        eval_step=build_eval_step(task, mesh),
        batch_size=batch,
        variables=variables,
    )


@dataclasses.dataclass
class Trained:
    """A trained run, ready to use from Python (``common.load_run(run_dir)``): its config,
    Task (``task.model`` is the Flax module), the params evaluation uses (EMA when the run
    kept them) and `predict`. Nothing of the training data is loaded."""

    config: ml_collections.ConfigDict
    task: Task
    step: int
    params: Any
    extras: Any
    meta: dict
    _compiled: Any = None

    def predict(self, batch: Mapping[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
        """The Task's `predict` on a host batch (numpy arrays), as numpy arrays."""
        if self._compiled is None:
            self._compiled = jax.jit(self.task.predict)
        inputs = {k: jnp.asarray(v) for k, v in batch.items()}
        out = self._compiled(self.params, self.extras, inputs, jax.random.key(seed))
        return {k: np.asarray(v) for k, v in out.items()}


def load_trained(path: str, which: str = "best") -> Trained:
    """Loads a run for use from Python: ``common.load_run(path).predict(batch)``.

    `path`: a run directory, its checkpoints/ or one checkpoints/<step>; `which`: "best",
    "latest" or a step number."""
    probe = ckpt_lib.read_run_config(path)
    run = ckpt_lib.load_run(path, which, defaults=family_defaults(probe))
    task = task_class(run.config)(run.config)
    return Trained(
        config=run.config,
        task=task,
        step=run.step,
        params=run.eval_params,
        extras=run.extras,
        meta=run.meta,
    )


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with dotted keys set (text is typed like the field); unknown keys
    are refused with the valid ones."""
    config = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in overrides.items():
        if isinstance(value, str):
            set_from_text(config, dotted, value)
        else:
            set_value(config, dotted, value)
    return config


def evaluate_run(
    path: str,
    *,
    splits: Sequence[str] | None = None,
    which: str = "best",
    overrides: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    write_images: bool = True,
) -> dict[str, Any]:
    """Offline evaluation of one checkpoint; the result is keyed like the loop's eval scalars.

    `splits` default: the run's ``final_eval_splits`` (what the loop reports as ``final/*``)."""
    opened = open_run(path, which=which, overrides=overrides, batch_size=batch_size)
    splits = list(splits or opened.run.config.final_eval_splits or opened.data.eval)
    results = opened.evaluate(splits)
    run_dir = run_directory(path)
    if write_images and jax.process_index() == 0:
        for key, image in flat_images(results).items():
            split, name = key.split("/", 1)
            name = name.replace("/", "_")
            write_png(
                os.path.join(run_dir, "images", f"eval_{split}_step{opened.run.step}_{name}.png"),
                image,
            )
    return {
        "run": run_dir,
        "checkpoint_step": opened.run.step,
        **flat_scalars(results),
    }


def run_directory(path: str) -> str:
    """The run directory of any path `common.checkpoint.resolve` accepts."""
    ref = ckpt_lib.resolve(path)
    return os.path.dirname(ref.directory)


# ---- command line ---------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from common.cli import add_run_arguments, parse_config_overrides, run_arguments, user_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    plain = [a for a in argv if not a.startswith("--config.")]
    ap = argparse.ArgumentParser(
        prog="python -m common.evaluate",
        description="Evaluate a run's checkpoint with the loop's own evaluation.",
    )
    add_run_arguments(ap)
    ap.add_argument(
        "--split",
        action="append",
        help="split to evaluate (repeatable); default: the run's final_eval_splits",
    )
    ap.add_argument("--batch_size", type=int, default=None, help="default: the run's eval batch")
    ap.add_argument("--out", default=None, help="also write the JSON result here")
    args = ap.parse_args(plain)
    run_dir, which = run_arguments(ap, args)
    with user_errors(args.verbose):
        config = ckpt_lib.read_run_config(run_dir)
        overrides = parse_config_overrides(config, [a for a in argv if a.startswith("--config.")])
        result = evaluate_run(
            run_dir,
            splits=args.split,
            which=which,
            overrides=overrides,
            batch_size=args.batch_size,
        )
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
