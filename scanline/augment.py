"""Train-time augmentation of z-scored scan lines, on device inside `ScanlineTask.loss_fn`.

Only transformations that keep scan-line semantics: a horizontal flip (a line read
right-to-left looks like the retrace), additive Gaussian noise, and line dropout (a whole line
set to 0, its mean after the z-score, like a lost line). Never rotations or vertical flips:
they would move slow-axis artefacts (drift, creep, tip changes) onto the fast axis. Pure
function of the step rng, so resumes repeat it exactly.
"""

import jax
import jax.numpy as jnp


def augment_lines(
    images: jax.Array,
    rng: jax.Array,
    *,
    hflip_prob: float,
    noise_std: float,
    line_dropout: float,
) -> jax.Array:
    """images: [B, T, L] float -> same shape; each knob at 0 switches its transform off."""
    k_flip, k_noise, k_drop = jax.random.split(rng, 3)
    b, t, _ = images.shape
    if hflip_prob > 0:
        flip = jax.random.bernoulli(k_flip, hflip_prob, (b, 1, 1))
        images = jnp.where(flip, images[:, :, ::-1], images)
    if noise_std > 0:
        images = images + noise_std * jax.random.normal(k_noise, images.shape, images.dtype)
    if line_dropout > 0:
        drop = jax.random.bernoulli(k_drop, line_dropout, (b, t, 1))
        images = jnp.where(drop, jnp.zeros_like(images), images)
    return images
