"""Eval metrics of the ViT family: a clu Collection with a confusion matrix, and its rendering.

`vit.task.VitTask.eval_step` builds `EvalMetrics` per (masked) batch inside jit; the loop merges
them; `summarize` turns the result into scalars (loss, accuracy, per-class accuracy) and a
confusion-matrix image that the loop writes to TensorBoard and as PNG.

No `from __future__ import annotations` here: clu reads the Collection's annotations at runtime.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from common.task import EvalSummary


@flax.struct.dataclass
class ConfusionMatrix(clu_metrics.Metric):
    """counts[t, p] = number of (unmasked) examples of true class t predicted as p (float32)."""

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


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")  # the training criterion (label-smoothed CE)
    nll: clu_metrics.Average.from_output("nll")  # plain cross-entropy
    accuracy: clu_metrics.Average.from_output("correct")
    confusion: ConfusionMatrix


def render_confusion(counts: np.ndarray, class_names: tuple[str, ...], title: str) -> np.ndarray:
    """Row-normalised confusion matrix as an HWC uint8 image (rows: true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(counts, np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=80)
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for t in range(k):
        for p in range(k):
            ax.text(
                p,
                t,
                f"{rates[t, p]:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if rates[t, p] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def summarize(split: str, computed: dict, class_names: tuple[str, ...]) -> EvalSummary:
    """Scalars: loss, nll, accuracy, accuracy/<class>; image: confusion_matrix."""
    counts = np.asarray(computed["confusion"], np.float64)
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1.0)
    scalars = {
        "loss": float(computed["loss"]),
        "nll": float(computed["nll"]),
        "accuracy": float(computed["accuracy"]),
    }
    for name, acc in zip(class_names, per_class):
        scalars[f"accuracy/{name}"] = float(acc)
    title = f"{split}: accuracy {scalars['accuracy']:.4f} ({int(counts.sum())} images)"
    return EvalSummary(
        scalars=scalars, images={"confusion_matrix": render_confusion(counts, class_names, title)}
    )
