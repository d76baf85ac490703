"""On-device training augmentation for CIFAR-sized images: jitted, vectorised over the batch.

Called by `vit.task.VitTask.loss_fn` with the step's rng, so augmentation is part of the compiled
train step (no host work, nothing for the input thread to keep up with) and is reproducible:
the loop derives the rng from (seed, step), so a resumed run augments exactly as an
uninterrupted one would.

Pipeline (`train_images`), each stage switchable from `config.augment`:
    uint8 [B, H, W, C]
    -> random crop with zero padding (torchvision `RandomCrop(32, padding=4)`)
    -> horizontal flip with probability 0.5 (`RandomHorizontalFlip`)
    -> optional RandAugment / AutoAugment (`vit.image_ops`), on uint8-valued pixels
    -> normalise: (x / 255 - mean) / std, float32                           (`Normalize`)
    -> optional random erasing (timm "pixel" mode: N(0, 1) noise in normalised space)
Mixup / CutMix act on the normalised batch and the labels together: see `vit.mixing`.

Eval images only get `normalize`.
"""

import jax
import jax.numpy as jnp
import ml_collections

from vit import image_ops

# CIFAR-10 statistics used by the seed (and many CIFAR repos). Note the std triple is the
# historical per-image-averaged value (0.2023, 0.1994, 0.2010), not the dataset-wide pixel std
# (~0.247, 0.243, 0.261); we keep the seed's numbers so checkpoints see the same inputs.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def normalize(images: jax.Array) -> jax.Array:
    """uint8 (or 0..255 float) [..., C=3] -> float32 (x / 255 - mean) / std per channel."""
    x = images.astype(jnp.float32) / 255.0
    mean = jnp.asarray(CIFAR10_MEAN, jnp.float32)
    std = jnp.asarray(CIFAR10_STD, jnp.float32)
    return (x - mean) / std


def random_crop(rng: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Zero-pads each side by `padding` and crops a random window of the original size.

    `images`: [B, H, W, C] (any dtype). Each example gets its own offset, uniform over the
    (2 * padding + 1)^2 positions, as torchvision's `RandomCrop(size, padding)` with fill 0.
    """
    if padding <= 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)

    def crop_one(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(rng: jax.Array, images: jax.Array, prob: float = 0.5) -> jax.Array:
    """Mirrors each example left-right with probability `prob`. `images`: [B, H, W, C]."""
    flip = jax.random.bernoulli(rng, prob, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def random_erasing(
    rng: jax.Array,
    images: jax.Array,
    prob: float,
    *,
    area: tuple[float, float] = (0.02, 1 / 3),
    log_aspect: tuple[float, float] = (-1.2040, 1.2040),  # log(0.3), log(1/0.3)
) -> jax.Array:
    """Replaces one random rectangle per example (with probability `prob`) by N(0, 1) noise.

    `images`: normalised float [B, H, W, C]. Rectangle area is uniform in `area` (fraction of
    the image) and aspect ratio log-uniform in `log_aspect`; the rectangle is clipped to the
    image (Zhong et al. 2017; timm's `RandomErasing(mode="pixel")` draws one box per image with
    up to 10 tries, we draw once and clip, which only matters for extreme aspect ratios).
    """
    if prob <= 0:
        return images
    b, h, w, _ = images.shape
    k_apply, k_area, k_aspect, k_y, k_x, k_noise = jax.random.split(rng, 6)
    frac = jax.random.uniform(k_area, (b,), minval=area[0], maxval=area[1])
    aspect = jnp.exp(jax.random.uniform(k_aspect, (b,), minval=log_aspect[0], maxval=log_aspect[1]))
    eh = jnp.clip(jnp.round(jnp.sqrt(frac * h * w * aspect)), 1, h)
    ew = jnp.clip(jnp.round(jnp.sqrt(frac * h * w / aspect)), 1, w)
    y0 = jnp.floor(jax.random.uniform(k_y, (b,)) * (h - eh + 1))
    x0 = jnp.floor(jax.random.uniform(k_x, (b,)) * (w - ew + 1))
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    inside = (
        (rows >= y0[:, None, None])
        & (rows < (y0 + eh)[:, None, None])
        & (cols >= x0[:, None, None])
        & (cols < (x0 + ew)[:, None, None])
    )
    apply = jax.random.bernoulli(k_apply, prob, (b, 1, 1))
    noise = jax.random.normal(k_noise, images.shape, images.dtype)
    return jnp.where((inside & apply)[..., None], noise, images)


def train_images(rng: jax.Array, images: jax.Array, aug: ml_collections.ConfigDict) -> jax.Array:
    """uint8 [B, H, W, C] -> augmented, normalised float32 [B, H, W, C] (see module docstring)."""
    k_crop, k_flip, k_policy, k_erase = jax.random.split(rng, 4)
    x = random_crop(k_crop, images, int(aug.crop_padding))
    if aug.flip:
        x = random_flip(k_flip, x)
    if aug.policy != "none":
        x = image_ops.apply_policy(k_policy, x, aug)
    x = normalize(x)
    return random_erasing(
        k_erase, x, float(aug.random_erasing), area=(0.02, float(aug.random_erasing_max_area))
    )
