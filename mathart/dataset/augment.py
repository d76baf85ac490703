"""On-device augmentation that keeps the formula-image correspondence true.

A formula fixes the *geometry* of its picture in the renderer's window (where the curve is,
which way it turns, how big it is); the *colours* come from the style, which the formula does
not name. So only colour-space changes and mild noise are safe for formula-conditioned data.
Of the seed's pipeline (training notes, "Augmentation Strategies"):

==========================  ===========  =================================================
seed augmentation           formulas     why
==========================  ===========  =================================================
ColorJitter(brightness 0.1, kept         colour is style, not formula
hue 0.05)
GaussianNoise(std 0.01)     kept         does not move anything
RandomRotation(15 deg)      dropped      ``y = x`` rotated is no longer ``y = x``
RandomCrop(scale 0.8-1)     dropped      changes the window, so the scale and position
                                         that the numbers in the formula encode
horizontal / vertical flip  dropped      only true for formulas with that symmetry; for
                                         them the flip is a no-op, for others it is wrong
==========================  ===========  =================================================

For captioned images (the JSONL loader's free-text prompts, the ADR's setting) the geometric
ones are fine, so `augment` takes ``geometric=True`` there. A stronger formula-safe
augmentation is re-rendering the same formula with another style seed
(`mathart.render.Style.from_seed`); the dataset stores ``style_seed`` for that.

All functions are pure JAX on float images in [0, 1], ``[B, H, W, 3]``, and take a PRNG key,
so they run inside the jitted loss with the step's rng.
"""

import jax
import jax.numpy as jnp

# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane (linear, cheap, exact
# inverse), a standard approximation of an HSV hue shift.
_RGB_TO_YIQ = jnp.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], jnp.float32
)
_YIQ_TO_RGB = jnp.linalg.inv(_RGB_TO_YIQ)


def colour_jitter(
    images: jax.Array, rng: jax.Array, brightness: float = 0.1, hue: float = 0.05
) -> jax.Array:
    """Per-image brightness scale in [1 - b, 1 + b] and hue rotation by up to ``hue`` turns."""
    b = images.shape[0]
    k1, k2 = jax.random.split(rng)
    scale = 1.0 + jax.random.uniform(k1, (b, 1, 1, 1), minval=-brightness, maxval=brightness)
    angle = 2 * jnp.pi * jax.random.uniform(k2, (b,), minval=-hue, maxval=hue)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
    rot = jnp.stack(
        [
            jnp.stack([one, zero, zero], -1),
            jnp.stack([zero, cos, -sin], -1),
            jnp.stack([zero, sin, cos], -1),
        ],
        -2,
    )  # [B, 3, 3]
    m = jnp.einsum("ij,bjk,kl->bil", _YIQ_TO_RGB, rot, _RGB_TO_YIQ)
    out = jnp.einsum("bhwc,bdc->bhwd", images, m) * scale
    return jnp.clip(out, 0.0, 1.0)


def gaussian_noise(images: jax.Array, rng: jax.Array, std: float = 0.01) -> jax.Array:
    return jnp.clip(images + std * jax.random.normal(rng, images.shape, images.dtype), 0.0, 1.0)


def rotate_and_crop(
    images: jax.Array, rng: jax.Array, max_degrees: float = 15.0, min_scale: float = 0.8
) -> jax.Array:
    """Random rotation and zoom-in crop (bilinear, edge padding). Captions only: this changes
    the geometry a formula describes."""
    b, h, w, _ = images.shape
    k1, k2, k3 = jax.random.split(rng, 3)
    angle = jnp.deg2rad(jax.random.uniform(k1, (b,), minval=-max_degrees, maxval=max_degrees))
    scale = jax.random.uniform(k2, (b,), minval=min_scale, maxval=1.0)
    shift = jax.random.uniform(k3, (b, 2), minval=-1.0, maxval=1.0) * (1.0 - scale)[:, None]
    ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")

    def one(img, a, s, t):
        c, sn = jnp.cos(a), jnp.sin(a)
        u = s * (c * xs - sn * ys) + t[0]
        v = s * (sn * xs + c * ys) + t[1]
        coords = jnp.stack([(v + 1) * (h - 1) / 2, (u + 1) * (w - 1) / 2])
        return jnp.stack(
            [
                jax.scipy.ndimage.map_coordinates(img[..., ch], coords, order=1, mode="nearest")
                for ch in range(img.shape[-1])
            ],
            -1,
        )

    return jax.vmap(one)(images, angle, scale, shift)


def augment(images: jax.Array, rng: jax.Array, *, geometric: bool = False) -> jax.Array:
    """The seed's augmentations that are valid for the data: colour jitter and noise always;
    rotation and crop only when ``geometric`` (captioned data, not formulas)."""
    k1, k2, k3 = jax.random.split(rng, 3)
    if geometric:
        images = rotate_and_crop(images, k3)
    return gaussian_noise(colour_jitter(images, k1), k2)
