"""One command, two stages: the `train_fn` that `ternary_vae.main` hands to `common.cli.run`.

    stage 0  WORKDIR/stage0   encoder A + decoder as a VAE until coverage = 100 %
    stage 1  WORKDIR          hyperbolic stage, init_from = the stage-0 run (A -> B copy in
                              `TernaryVaeTask.init_from_params`)

Both stages are ordinary `common.train.train_and_evaluate` runs, so each resumes on its own.
Re-running the command after an interruption: if stage 1 already has a checkpoint it simply
resumes; otherwise a finished stage 0 (marker file ``stage0/STAGE0_DONE.json``) is skipped and
an unfinished one resumes. ``--config.init_from=DIR`` (an earlier stage-0 run) skips stage 0.
``--config.stage=vae`` runs stage 0 alone, in WORKDIR.
"""

import json
import logging
import os

import ml_collections

from common import checkpoint as ckpt_lib
from common.train import TrainResult, train_and_evaluate

STAGE0_DIR = "stage0"
STAGE0_MARKER = "STAGE0_DONE.json"
FINISHED = ("completed", "early_stopped", "stopped_by_task")


def stage0_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The stage-0 (VAE) run derived from a stage-1 config: same model and data."""
    c = config.copy_and_resolve_references()
    s0 = config.stage0
    with c.unlocked():
        c.stage = "vae"
        c.model.dropout = s0.dropout  # no parameters: stage 1 loads the same tree
        c.init_from = None
        c.resume_from = None
        c.learning_rate = s0.learning_rate
        c.max_epochs = s0.max_epochs
        c.max_steps = s0.max_steps  # steps win over epochs when set (smoke tests)
        c.optim.schedule = s0.schedule
        c.optim.warmup_epochs = s0.warmup_epochs
        c.optim.warmup_steps = None
        c.optim.end_lr = s0.end_lr
        c.optim.weight_decay = s0.weight_decay
        c.optim.grad_clip = s0.grad_clip
        c.optim.lr_scales = ml_collections.ConfigDict(s0.lr_scales.to_dict())
        c.final_eval_splits = ()
        c.best_metric = s0.best_metric
        c.best_mode = "max"
        c.early_stopping.patience = 0
        if s0.max_steps is not None:  # a few steps (smoke): evaluate once, at the end
            c.eval_every_steps = s0.max_steps
            c.optim.warmup_epochs, c.optim.warmup_steps = None, 1
    return c


def stage1_started(workdir: str) -> bool:
    try:
        ref = ckpt_lib.resolve(workdir)
        ckpt_lib.pick_step(ref, "latest")
        return True
    except FileNotFoundError:
        return False


def train_two_stages(task_cls: type, config: ml_collections.ConfigDict, workdir: str):
    """Runs stage 0 (unless done, skipped or not wanted), then stage 1; returns stage 1's result."""
    if config.stage == "vae":
        return train_and_evaluate(task_cls, stage0_config(config), workdir)
    if config.init_from or stage1_started(workdir):
        return train_and_evaluate(task_cls, config, workdir)

    stage0_dir = os.path.join(workdir, STAGE0_DIR)
    marker = os.path.join(stage0_dir, STAGE0_MARKER)
    if os.path.exists(marker):
        logging.info("stage 0 already finished (%s); skipping it", marker)
    else:
        logging.info("stage 0: VAE on encoder A + decoder in %s", stage0_dir)
        result: TrainResult = train_and_evaluate(task_cls, stage0_config(config), stage0_dir)
        if result.status not in FINISHED:
            logging.info("stage 0 interrupted (%s); rerun the command to resume", result.status)
            return result
        if result.best_value is None or result.best_value < config.stage0.target_coverage:
            logging.warning(
                "stage 0 ended with best coverage %s < %s; stage 1 starts from it anyway",
                result.best_value,
                config.stage0.target_coverage,
            )
        with open(marker, "w") as f:
            json.dump(
                {
                    "status": result.status,
                    "step": result.step,
                    "best_step": result.best_step,
                    "best_coverage": result.best_value,
                },
                f,
                indent=2,
            )
    stage1 = config.copy_and_resolve_references()
    with stage1.unlocked():
        stage1.init_from = stage0_dir
    logging.info("stage 1: hyperbolic stage in %s (init_from %s)", workdir, stage0_dir)
    return train_and_evaluate(task_cls, stage1, workdir)
