"""Classification targets and losses for the ViT family (used by `vit.task`).

The seed's loss is PyTorch's ``CrossEntropyLoss(label_smoothing=0.1)``:
``loss = -sum_k y_smooth[k] * log p[k]`` with ``y_smooth = (1 - a) * onehot + a / K``.
Targets are kept as dense [B, K] distributions so Mixup/CutMix (`vit.mixing`) can mix them.
All maths in float32.
"""

import jax
import jax.numpy as jnp


def smooth_labels(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """int labels [B] -> float32 targets [B, K]: (1 - smoothing) * onehot + smoothing / K."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {smoothing}")
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return (1.0 - smoothing) * onehot + smoothing / num_classes


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example cross-entropy [B] of logits [B, K] against target distributions [B, K]."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(targets * log_p, axis=-1)
