"""A tiny test-only Task (an MLP on generated Gaussian blobs) that exercises the shared loop
without any model family: every loop behaviour is tested through it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metrics as clu_metrics
from flax import struct

from common.data import ArrayEvalSource, ArraySource
from common.task import Datasets, EvalSummary, HookContext, HookResult, Task


@struct.dataclass
class TinyEvalMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")
    accuracy: clu_metrics.Average.from_output("correct")


class MLP(nn.Module):
    hidden: int
    classes: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.relu(nn.Dense(self.hidden, name="encoder")(x))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.classes, name="head")(x)


def make_blobs(n: int, dim: int, classes: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.int32)
    centers = np.random.default_rng(1234).normal(size=(classes, dim)) * 2.0
    x = centers[labels] + rng.normal(size=(n, dim))
    return {"x": x.astype(np.float32), "label": labels}


class TinyTask(Task):
    """Classification of Gaussian blobs; knobs in config.tiny (NaN injection, a controller)."""

    best_metric = ("val/accuracy", "max")

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        t = config.tiny
        self.model = MLP(hidden=t.hidden, classes=t.classes, dropout=t.dropout)
        self.hook_calls = {"eval": 0, "epoch_end": 0}
        self.freeze_log: list[int] = []

    def datasets(self) -> Datasets:
        t = self.config.tiny
        train = make_blobs(t.num_train, t.dim, t.classes, seed=self.config.seed)
        val = make_blobs(t.num_val, t.dim, t.classes, seed=self.config.seed + 1)
        return Datasets(
            train=ArraySource(train, seed=self.config.seed),
            eval={"val": ArrayEvalSource(val), "test": ArrayEvalSource(val)},
            periodic_eval_splits=("val",),
        )

    def init_variables(self, rng, batch):
        return self.model.init(rng, batch["x"], train=False)

    def param_groups(self):
        return {"encoder": r"^encoder/", "head": r"^head/"}

    def initial_controls(self):
        return {"loss_scale": 1.0}

    def loss_fn(self, params, batch, rng, ctx):
        logits = self.model.apply(
            {"params": params}, batch["x"], train=True, rngs={"dropout": rng}
        ).astype(jnp.float32)
        onehot = jax.nn.one_hot(batch["label"], self.config.tiny.classes)
        loss = -(jax.nn.log_softmax(logits) * onehot).sum(-1).mean()
        nan_at = self.config.tiny.nan_at_step
        if nan_at >= 0:  # fault injection for the non-finite guard test
            loss = jnp.where(ctx.step == nan_at, jnp.nan, loss)
        loss = loss * ctx.controls["loss_scale"]
        acc = (logits.argmax(-1) == batch["label"]).mean()
        n = self.config.tiny.device_matmuls_per_step
        if n > 0:  # a device slower than the host: real work it cannot skip (a host callback
            # would make the CPU client run the step synchronously)
            m = jnp.full((512, 512), 1e-3, jnp.float32) + loss * 1e-9
            m = jax.lax.fori_loop(0, n, lambda _, a: jnp.tanh(a @ a), m)
            loss = loss + 0.0 * m[0, 0]
        return loss, ({"accuracy": acc}, ctx.extras)

    def eval_step(self, params, batch, ctx):
        logits = self.model.apply({"params": params}, batch["x"], train=False).astype(jnp.float32)
        onehot = jax.nn.one_hot(batch["label"], self.config.tiny.classes)
        loss = -(jax.nn.log_softmax(logits) * onehot).sum(-1)
        correct = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
        return TinyEvalMetrics.single_from_model_output(
            loss=loss, correct=correct, mask=batch["mask"]
        )

    def summarize_eval(self, split, computed):
        summary = super().summarize_eval(split, computed)
        summary.images["checker"] = np.indices((8, 8)).sum(0) % 2 * 255
        return EvalSummary(scalars=summary.scalars, images=summary.images)

    def on_eval(self, ctx: HookContext) -> HookResult | None:
        self.hook_calls["eval"] += 1
        freeze_at = self.config.tiny.freeze_encoder_after_epoch
        if 0 <= freeze_at <= ctx.epoch and ctx.controls["lr_scale/encoder"] != 0.0:
            self.freeze_log.append(ctx.step)
            return HookResult(controls={"lr_scale/encoder": 0.0}, message="froze encoder")
        return None

    def on_epoch_end(self, ctx: HookContext) -> HookResult | None:
        self.hook_calls["epoch_end"] += 1
        return HookResult(scalars={"hooks/epoch_end_calls": float(self.hook_calls["epoch_end"])})

    def state_dict(self):
        return {"freeze_log": list(self.freeze_log)}

    def load_state_dict(self, state):
        self.freeze_log = list(state.get("freeze_log", []))

    def flops_per_example(self) -> float:
        t = self.config.tiny
        return 3 * 2 * (t.dim * t.hidden + t.hidden * t.classes)
