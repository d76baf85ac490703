"""Eval metrics of the ViT family: a clu Collection with a confusion matrix, and its rendering.

`vit.task.VitTask.eval_step` builds `EvalMetrics` per (masked) batch inside jit; the loop merges
them; `summarize` turns the result into scalars (loss, accuracy, per-class accuracy) and a
confusion-matrix image (`common.plots`) that the loop writes to TensorBoard and as PNG.

No `from __future__ import annotations` here: clu reads the Collection's annotations at runtime.
"""

import flax
import numpy as np
from clu import metrics as clu_metrics

from common.metrics import ConfusionMatrix
from common.plots import confusion_matrix_image
from common.task import EvalSummary


@flax.struct.dataclass
class EvalMetrics(clu_metrics.Collection):
    loss: clu_metrics.Average.from_output("loss")  # the training criterion (label-smoothed CE)
    nll: clu_metrics.Average.from_output("nll")  # plain cross-entropy
    accuracy: clu_metrics.Average.from_output("correct")
    confusion: ConfusionMatrix


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
    image = confusion_matrix_image(counts, class_names, title)
    return EvalSummary(scalars=scalars, images={"confusion_matrix": image})
