"""The scan-line tip-state classification Task for the shared loop (`common.train`).

Data: `scanline.input_pipeline` (file or synthetic, per-line z-score, group-wise splits,
inverse-frequency class weights from the training split). Model: `scanline.model`, chosen by
``config.model.name``. Loss: class-weighted cross-entropy, normalised by the summed weights of
the batch (PyTorch's ``CrossEntropyLoss(weight=w)``); for models with progressive read-outs
(`sequential`, `lrcn`) optionally mixed with the mean loss over every read-out position that
has seen at least ``model.progressive_from_line`` lines. Augmentation runs on device
(`scanline.augment`).

Evaluation collects log-probabilities and per-position predictions on host and reports, per
split: loss (the same weighted cross-entropy at the last position), accuracy, balanced accuracy,
macro one-vs-rest AUROC, per-class recall and AUROC, a confusion-matrix image and, for
progressive models, accuracy and balanced accuracy against the number of lines seen (scalars
``lines_<k>/...`` and a curve image).
"""

import logging
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics

from common import plots, stats
from common.metrics import unmasked_rows
from common.precision import compute_dtype
from common.task import Datasets, EvalSummary, StepContext, Task
from scanline import input_pipeline, levelling
from scanline import model as model_lib
from scanline.augment import augment_lines

# Numbers of lines seen at which progressive accuracy is logged as scalars.
_PROGRESS_LINES = (8, 16, 32, 64, 96, 128)


@flax.struct.dataclass
class ScanlineEvalOutputs(clu_metrics.Collection):
    """Everything the host needs for exact metrics; padded rows are dropped via `mask`."""

    outputs: clu_metrics.CollectingMetric.from_outputs(("log_probs", "preds", "label", "mask"))


def weighted_cross_entropy(
    log_probs: jax.Array, labels: jax.Array, weights: jax.Array
) -> jax.Array:
    """sum_i w[y_i] * nll_i / sum_i w[y_i] over all leading axes (float32)."""
    nll = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    w = weights[labels]
    return (w * nll).sum() / jnp.maximum(w.sum(), 1e-12)


class ScanlineTask(Task):
    """Image-level tip-state classification from scan lines (seed 002, issue 5)."""

    best_metric = ("val/balanced_accuracy", "max")

    @classmethod
    def ignored_settings(cls, config) -> dict[str, str]:
        return model_lib.ignored_settings(config.model)

    def __init__(self, config):
        super().__init__(config)
        self._splits: input_pipeline.Splits | None = None
        self._model = None

    # ---- data ---------------------------------------------------------------------------------
    @property
    def splits(self) -> input_pipeline.Splits:
        if self._splits is None:
            self._splits = input_pipeline.build_splits(self.config)
        return self._splits

    def datasets(self) -> Datasets:
        return input_pipeline.build_datasets(self.config, self.splits)

    @property
    def num_lines(self) -> int:
        return int(self.splits.arrays["train"]["image"].shape[1])

    def state_dict(self) -> dict:
        """The class names travel in every checkpoint: a labelled folder's names come from
        its CSV, and tools (scanline.predict) must name classes without the data."""
        return {"class_names": list(self._splits.class_names)} if self._splits else {}

    def init_from_params(self, loaded, fresh, loaded_task_state=None):
        """Fine-tuning from another run (`config.init_from`, e.g. a synthetic pretraining run
        on a group's own labelled scans): every layer is taken over except the classifier
        ``head`` when the classes differ (by name and order, or by number), which starts
        fresh: the features transfer, a head trained on other classes would only mislead."""
        before = tuple((loaded_task_state or {}).get("class_names") or ())
        now = tuple(self.splits.class_names)
        same_shape = loaded["head"]["kernel"].shape == fresh["head"]["kernel"].shape
        if same_shape and (not before or before == now):
            return loaded
        logging.info(
            "init_from: classes %s -> %s: the head starts fresh, every other layer is loaded",
            list(before) or "(unnamed)",
            list(now),
        )
        return {**loaded, "head": fresh["head"]}

    # ---- model --------------------------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            self._model = model_lib.build_model(
                self.config.model, self.splits.num_classes, compute_dtype(self.config)
            )
        return self._model

    @property
    def lines_seen(self) -> np.ndarray:
        return model_lib.lines_seen(self.config.model, self.num_lines)

    def init_variables(self, rng, batch):
        return self.model.init({"params": rng}, batch["image"], train=False)

    def _progressive_positions(self) -> np.ndarray:
        """Read-out positions that enter the progressive loss term."""
        return np.nonzero(self.lines_seen >= self.config.model.progressive_from_line)[0]

    # ---- loss and eval ------------------------------------------------------------------------
    def loss_fn(self, params, batch, rng, ctx: StepContext):
        a = self.config.augment
        aug_rng, drop_rng = jax.random.split(rng)
        images = augment_lines(
            batch["image"],
            aug_rng,
            hflip_prob=a.hflip_prob,
            noise_std=a.noise_std,
            line_dropout=a.line_dropout,
        )
        logits = self.model.apply(
            {"params": params}, images, train=True, rngs={"dropout": drop_rng}
        )  # [B, P, K] float32
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        weights = jnp.asarray(self.splits.class_weights)
        labels = batch["label"]
        loss = weighted_cross_entropy(log_probs[:, -1], labels, weights)
        lam = float(self.config.model.progressive_weight)
        metrics = {"image_loss": loss}
        if lam > 0 and log_probs.shape[1] > 1:
            pos = self._progressive_positions()
            lp = log_probs[:, pos]
            prog = weighted_cross_entropy(
                lp, jnp.broadcast_to(labels[:, None], lp.shape[:2]), weights
            )
            loss = (1 - lam) * loss + lam * prog
            metrics["progressive_loss"] = prog
        metrics["accuracy"] = (logits[:, -1].argmax(-1) == labels).mean()
        return loss, (metrics, ctx.extras)

    def eval_step(self, params, batch, ctx: StepContext):
        del ctx
        logits = self.model.apply({"params": params}, batch["image"], train=False)
        log_probs = jax.nn.log_softmax(logits[:, -1], axis=-1)
        return ScanlineEvalOutputs.single_from_model_output(
            log_probs=log_probs,
            preds=logits.argmax(-1).astype(jnp.int8),  # [B, P]: progressive predictions
            label=batch["label"],
            mask=batch["mask"],
        )

    def predict(self, params, extras, batch, rng) -> dict:
        """{"image": [B, lines, line_length] heights as scanned} -> {"probs": [B, K] at the
        last read-out (the whole scan), "label": [B], "probs_by_readout": [B, P, K]} (P
        read-outs for progressive models). The run's levelling and per-line z-score are applied
        here; K comes from the trained head, so no data is read."""
        del extras, rng
        x = levelling.level(batch["image"], self.config.data.get("levelling", ()), xp=jnp)
        if self.config.data.normalize == "per_line":
            x = input_pipeline.zscore(x, float(self.config.data.eps), xp=jnp)
        num_classes = params["head"]["kernel"].shape[-1]
        model = model_lib.build_model(self.config.model, num_classes, compute_dtype(self.config))
        probs = jax.nn.softmax(model.apply({"params": params}, x, train=False), axis=-1)
        return {"probs": probs[:, -1], "label": probs[:, -1].argmax(-1), "probs_by_readout": probs}

    def summarize_eval(self, split: str, computed: Mapping[str, Any]) -> EvalSummary:
        out = unmasked_rows(computed["outputs"])
        log_probs = out["log_probs"].astype(np.float64)
        labels = out["label"].astype(np.int64)
        preds = out["preds"].astype(np.int64)  # [N, P]
        names = self.splits.class_names
        k = len(names)
        w = self.splits.class_weights.astype(np.float64)
        nll = -log_probs[np.arange(len(labels)), labels]
        scalars: dict[str, float] = {
            "loss": float((w[labels] * nll).sum() / max(w[labels].sum(), 1e-12)),
            "unweighted_loss": float(nll.mean()),
            "num_examples": float(len(labels)),
        }
        cm = stats.confusion_matrix(labels, preds[:, -1], k)
        scalars["accuracy"] = float(np.trace(cm) / max(cm.sum(), 1))
        scalars["balanced_accuracy"] = stats.balanced_accuracy(cm)
        auroc, per_class_auroc = stats.macro_ovr_auroc(labels, np.exp(log_probs))
        scalars["auroc"] = auroc
        for c, (name, rec, auc) in enumerate(
            zip(names, stats.per_class_recall(cm), per_class_auroc)
        ):
            scalars[f"recall/{c}_{name}"] = float(rec)
            scalars[f"auroc/{c}_{name}"] = float(auc)
        title = (
            f"{split}: acc {scalars['accuracy']:.3f}, bal. acc {scalars['balanced_accuracy']:.3f}"
        )
        images = {"confusion_matrix": plots.confusion_matrix_image(cm, names, title)}
        seen = self.lines_seen
        if preds.shape[1] > 1:
            curve_acc, curve_bal = [], []
            for p in range(preds.shape[1]):
                cm_p = stats.confusion_matrix(labels, preds[:, p], k)
                curve_acc.append(np.trace(cm_p) / max(cm_p.sum(), 1))
                curve_bal.append(stats.balanced_accuracy(cm_p))
            for lines in _PROGRESS_LINES:
                p = np.searchsorted(seen, lines, side="right") - 1  # last read-out within k lines
                if p >= 0 and lines <= seen[-1]:
                    scalars[f"lines_{lines}/accuracy"] = float(curve_acc[p])
                    scalars[f"lines_{lines}/balanced_accuracy"] = float(curve_bal[p])
            images["accuracy_vs_lines"] = _curve_image(seen, curve_acc, curve_bal, split)
        return EvalSummary(scalars=scalars, images=images)

    def synthetic_batch(self, global_batch_size: int, rng: np.random.Generator) -> dict:
        """Random z-scored scans of the configured shape for `common.bench`. When the data
        set was not loaded yet it is not loaded at all (60,000 synthetic scans take minutes
        to generate): the model is then built from `Splits.shapes_only`."""
        if self._splits is None:
            self._splits = input_pipeline.Splits.shapes_only(self.config)
        size = int(self.config.data.line_length)
        return {
            "image": rng.standard_normal((global_batch_size, size, size)).astype(np.float32),
            "label": rng.integers(0, self.splits.num_classes, global_batch_size).astype(np.int32),
        }

    def flops_per_example(self) -> float:
        """Training FLOPs per image: 3 (forward + backward) x 2 x forward MACs (analytic)."""
        _, t, length = self.splits.arrays["train"]["image"].shape
        macs = model_lib.forward_macs(self.config.model, t, length, self.splits.num_classes)
        return 6.0 * macs


def _curve_image(seen, acc, bal, split: str) -> np.ndarray:
    """Accuracy and balanced accuracy against the number of scan lines seen (HWC uint8)."""
    fig, ax = plots.pyplot().subplots(figsize=(4.5, 3.2), dpi=80)
    ax.plot(seen, acc, label="accuracy")
    ax.plot(seen, bal, label="balanced accuracy")
    ax.set_xlabel("scan lines seen")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{split}: progressive prediction", fontsize=9)
    fig.tight_layout()
    return plots.figure_to_image(fig)
