"""Evaluate a trained ViT checkpoint on a CIFAR-10 split.

    python -m vit.evaluate RUN_DIR [--which best|latest] [--split test|val]
                                   [--data_dir DIR] [--batch_size 500]

Loads the run's config and checkpoint (`common.checkpoint.load_run`; EMA params when the run
kept them), rebuilds the same `VitTask` and data split, and runs the task's own eval step:
loss, NLL, accuracy, per-class accuracy, and the confusion matrix written as
RUN_DIR/images/eval_<split>_step<step>_confusion_matrix.png. Prints one JSON object.
Use it for a run that stopped at its time limit (the loop evaluates the test split only when
the schedule completes), or to evaluate the latest instead of the best checkpoint.
"""

import argparse
import json
import os
import sys

import jax

from common import metrics as metrics_lib
from common.checkpoint import load_run
from common.task import StepContext
from common.writers import write_png
from vit.task import VitTask


def evaluate(
    run_dir: str,
    *,
    which: str = "best",
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int = 500,
) -> dict:
    run = load_run(run_dir, which)
    config = run.config
    if data_dir is not None:
        config.data_dir = data_dir
    task = VitTask(config)
    source = task.datasets().eval.get(split)
    if source is None:
        raise ValueError(f"unknown split '{split}'; choose val or test")
    params = run.ema_params if run.ema_params is not None else run.params
    ctx = StepContext(step=jax.numpy.int32(run.step), extras=run.extras, controls=run.controls)
    step_fn = jax.jit(lambda p, b: task.eval_step(p, b, ctx))
    batches = source.batches(global_batch_size=batch_size, process_index=0, process_count=1)
    total = metrics_lib.merge_all((step_fn(params, b) for b in batches), what=f"split '{split}'")
    summary = task.summarize_eval(split, total.compute())
    for name, image in summary.images.items():
        path = os.path.join(run_dir, "images", f"eval_{split}_step{run.step}_{name}.png")
        write_png(path, image)
    return {"run": run_dir, "checkpoint_step": run.step, "split": split, **summary.scalars}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate a ViT checkpoint on a CIFAR-10 split.")
    ap.add_argument("run_dir", help="a workdir written by python -m vit.main")
    ap.add_argument("--which", default="best", choices=("best", "latest"))
    ap.add_argument("--split", default="test", choices=("test", "val"))
    ap.add_argument("--data_dir", default=None, help="override the run's config.data_dir")
    ap.add_argument("--batch_size", type=int, default=500)
    args = ap.parse_args(argv)
    result = evaluate(
        args.run_dir,
        which=args.which,
        split=args.split,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
    )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
