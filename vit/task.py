"""CIFAR-10 classification with a Vision Transformer: the ViT family's `Task`.

`common.train.train_and_evaluate` drives it (through `vit.main` or `common.bench`). This file
says only what is special about the family: data (`vit.input_pipeline`), model (`vit.model`),
on-device augmentation (`vit.augment`, `vit.image_ops`, `vit.mixing`), the label-smoothed loss
(`vit.losses`), eval metrics with a confusion matrix (`vit.eval_metrics`) and the analytic FLOP
count for MFU. Optimizer, schedule, clipping, checkpoints, logging and time limits are the
shared loop's, configured in `configs/vit.py`.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common.task import Batch, Datasets, EvalSummary, Params, StepContext, Task
from vit import augment, eval_metrics, input_pipeline, losses, mixing
from vit.model import build_model, forward_macs_per_example


def repeat_examples(batch: Batch, repeats: int) -> Batch:
    """Repeated augmentation (Hoffer et al. 2020; DeiT's RASampler): the batch keeps its size
    but holds only its first ceil(B / r) examples, each r times (the last one fewer when r does
    not divide B), so every image is seen under r independent augmentations."""
    if repeats <= 1:
        return batch
    b = batch["label"].shape[0]
    rows = jnp.arange(b) % -(-b // repeats)
    return {k: jnp.take(jnp.asarray(v), rows, axis=0) for k, v in batch.items()}


class VitTask(Task):
    """CIFAR-10 classification with a ViT: data, model, loss, metrics."""

    best_metric = ("val/accuracy", "max")

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.class_names = input_pipeline.CLASS_NAMES
        self.num_classes = len(self.class_names)
        self.model = build_model(config)

    # ---- data and variables ---------------------------------------------------------------
    def datasets(self) -> Datasets:
        return input_pipeline.build_datasets(self.config)

    def synthetic_batch(self, global_batch_size: int, rng: np.random.Generator) -> Batch:
        """Random uint8 images and labels shaped like CIFAR-10 (`common.bench` without data)."""
        shape = (global_batch_size, *input_pipeline.IMAGE_SHAPE)
        return {
            "image": rng.integers(0, 256, shape, dtype=np.uint8),
            "label": rng.integers(0, self.num_classes, global_batch_size).astype(np.int32),
        }

    def init_variables(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
        return self.model.init({"params": rng}, augment.normalize(batch["image"]), train=False)

    # ---- train ------------------------------------------------------------------------------
    def augment_batch(
        self, aug_rng: jax.Array, mix_rng: jax.Array, batch: Batch
    ) -> tuple[Batch, jax.Array, jax.Array]:
        """The on-device training input: repeated augmentation, crop/flip/policy/erasing,
        label smoothing, Mixup/CutMix. Returns (the batch after repetition, images, soft
        targets); `vit.bench_augment` times exactly this."""
        aug = self.config.augment
        batch = repeat_examples(batch, int(aug.repeated_aug))
        images = augment.train_images(aug_rng, batch["image"], aug)
        targets = losses.smooth_labels(
            batch["label"], self.num_classes, float(self.config.label_smoothing)
        )
        images, targets = mixing.mix_batch(
            mix_rng,
            images,
            targets,
            mixup_alpha=float(aug.mixup_alpha),
            cutmix_alpha=float(aug.cutmix_alpha),
            mix_prob=float(aug.mix_prob),
            switch_prob=float(aug.switch_prob),
        )
        return batch, images, targets

    def loss_fn(
        self, params: Params, batch: Batch, rng: jax.Array, ctx: StepContext
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], Any]]:
        k_aug, k_mix, k_dropout = jax.random.split(rng, 3)
        batch, images, targets = self.augment_batch(k_aug, k_mix, batch)
        logits = self.model.apply(
            {"params": params}, images, train=True, rngs={"dropout": k_dropout}
        )
        loss = jnp.mean(losses.cross_entropy(logits, targets))
        # On augmented (and possibly mixed) images, against the unmixed labels, as the seed logs.
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, ({"accuracy": accuracy}, ctx.extras)

    # ---- eval -------------------------------------------------------------------------------
    def eval_step(self, params: Params, batch: Batch, ctx: StepContext) -> eval_metrics.EvalMetrics:
        del ctx
        logits = self.model.apply(
            {"params": params}, augment.normalize(batch["image"]), train=False
        )
        labels = batch["label"]
        smoothed = losses.smooth_labels(
            labels, self.num_classes, float(self.config.label_smoothing)
        )
        onehot = jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
        return eval_metrics.EvalMetrics.single_from_model_output(
            loss=losses.cross_entropy(logits, smoothed),
            nll=losses.cross_entropy(logits, onehot),
            correct=(jnp.argmax(logits, -1) == labels).astype(jnp.float32),
            logits=logits,
            labels=labels,
            mask=batch["mask"],
        )

    def predict(self, params: Params, extras, batch: Batch, rng: jax.Array) -> dict:
        """{"image": uint8 [B, 32, 32, 3]} -> {"probs": [B, 10], "label": [B]}
        (class names: `vit.input_pipeline.CLASS_NAMES`)."""
        del extras, rng
        logits = self.model.apply(
            {"params": params}, augment.normalize(batch["image"]), train=False
        )
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        return {"probs": probs, "label": jnp.argmax(probs, -1)}

    def summarize_eval(self, split: str, computed: dict) -> EvalSummary:
        return eval_metrics.summarize(split, computed, self.class_names)

    # ---- accounting -------------------------------------------------------------------------
    def forward_macs_per_example(self) -> int:
        m = self.config.model
        h, _, c = input_pipeline.IMAGE_SHAPE
        return forward_macs_per_example(
            image_size=h,
            channels=c,
            patch_size=int(m.patch_size),
            embedding_dim=int(m.embedding_dim),
            num_layers=int(m.num_layers),
            mlp_size=int(m.mlp_size),
            num_classes=self.num_classes,
            pool=str(m.pool),
        )

    def flops_per_example(self) -> float:
        """Training FLOPs per example: 3 x forward (forward + 2x backward), 2 FLOPs per MAC;
        repeated augmentation does not change it (the batch size is unchanged)."""
        return 3.0 * 2.0 * self.forward_macs_per_example()
