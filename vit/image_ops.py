"""Batched, jittable PIL-style image operations and the AutoAugment / RandAugment policies.

Used by `vit.augment.train_images` (the `strong` profile) inside the jitted train step. Every
example of a batch draws its own operation and magnitude; all operations are evaluated for the
whole batch and the chosen one is selected per example. On 32x32 images that costs far less than
one ViT forward pass and keeps the step a single static XLA program (no Python branching on
data, no host round trip).

Pixels are float32 in [0, 255] throughout (uint8 input is accepted); each operation rounds and
clips its result like PIL's uint8 arithmetic. Semantics follow PIL's `ImageOps`/`ImageEnhance`
as used by torchvision and timm; geometric operations sample bilinearly with grey (128) fill.

Policies:
- ``autoaugment_cifar10``: the 25 learned CIFAR-10 sub-policies of Cubuk et al. 2019
  ("AutoAugment", arXiv 1805.09501), magnitudes binned 0..9 as in torchvision's
  `AutoAugment(AutoAugmentPolicy.CIFAR10)`.
- ``randaugment``: Cubuk et al. 2020 (arXiv 1909.13719) in timm's ``rand-mM-nN-mstdS-inc1``
  form: N operations drawn uniformly (with replacement) from 15, each applied with
  probability `randaugment_prob`, magnitude ~ Normal(M, S) clipped to [0, 10], "increasing"
  variants of posterize / solarize / enhance ops so larger M is always stronger.
"""

import jax
import jax.numpy as jnp
import ml_collections

# ---- operation ids --------------------------------------------------------------------------
IDENTITY, AUTOCONTRAST, EQUALIZE, INVERT, ROTATE, POSTERIZE, SOLARIZE, SOLARIZE_ADD = range(8)
COLOR, CONTRAST, BRIGHTNESS, SHARPNESS, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y = range(8, 16)
OP_NAMES = (
    "Identity", "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
    "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
    "TranslateX", "TranslateY",
)  # fmt: skip
NUM_OPS = len(OP_NAMES)
_GEOMETRIC = (ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y)
FILL = 128.0  # grey fill for pixels that a geometric op brings in from outside (timm, DeepVoltaire)


def _finish(x: jax.Array) -> jax.Array:
    """Back to the uint8 lattice: round and clip to [0, 255] (PIL ops produce uint8)."""
    return jnp.clip(jnp.round(x), 0.0, 255.0)


def _per_example(arg: jax.Array) -> jax.Array:
    """[B] -> [B, 1, 1, 1] for broadcasting against [B, H, W, C]."""
    return arg[:, None, None, None]


def _grayscale(x: jax.Array) -> jax.Array:
    """ITU-R 601-2 luma as PIL's convert("L"): [B, H, W, 3] -> [B, H, W, 1]."""
    weights = jnp.asarray([0.299, 0.587, 0.114], jnp.float32)
    return jnp.round(jnp.sum(x * weights, axis=-1, keepdims=True))


def _blend(degenerate: jax.Array, x: jax.Array, factor: jax.Array) -> jax.Array:
    """PIL `ImageEnhance`: degenerate + factor * (x - degenerate); factor 1 is the identity."""
    return jnp.clip(jnp.floor(degenerate + _per_example(factor) * (x - degenerate)), 0.0, 255.0)


# ---- pixel (colour) operations: x [B, H, W, C] in [0, 255], arg [B] ---------------------------
def autocontrast(x: jax.Array) -> jax.Array:
    """Stretches each channel to span 0..255 (PIL `autocontrast`, cutoff 0)."""
    lo = jnp.min(x, axis=(1, 2), keepdims=True)
    hi = jnp.max(x, axis=(1, 2), keepdims=True)
    scale = 255.0 / jnp.maximum(hi - lo, 1.0)
    return jnp.where(hi > lo, jnp.clip(jnp.floor((x - lo) * scale), 0.0, 255.0), x)


def equalize(x: jax.Array) -> jax.Array:
    """Per-channel histogram equalisation with PIL's `ImageOps.equalize` look-up table."""
    b, h, w, c = x.shape
    values = x.astype(jnp.int32).transpose(0, 3, 1, 2).reshape(b * c, h * w)  # [BC, HW]
    hist = jax.vmap(lambda v: jnp.zeros(256, jnp.int32).at[v].add(1))(values)  # [BC, 256]
    # PIL: step = (total - count of the last non-empty bin) // 255; identity when step == 0.
    last_nonzero = 255 - jnp.argmax(hist[:, ::-1] > 0, axis=1)
    last_count = jnp.take_along_axis(hist, last_nonzero[:, None], axis=1)[:, 0]
    step = (h * w - last_count) // 255
    safe_step = jnp.maximum(step, 1)
    exclusive_cumsum = jnp.cumsum(hist, axis=1) - hist
    lut = jnp.clip((exclusive_cumsum + safe_step[:, None] // 2) // safe_step[:, None], 0, 255)
    out = jnp.take_along_axis(lut, values, axis=1)
    out = jnp.where(step[:, None] > 0, out, values)
    return out.reshape(b, c, h, w).transpose(0, 2, 3, 1).astype(jnp.float32)


def invert(x: jax.Array) -> jax.Array:
    return 255.0 - x


def posterize(x: jax.Array, bits: jax.Array) -> jax.Array:
    """Keeps the top `bits` (0..8) bits of every channel value."""
    quantum = jnp.exp2(8.0 - jnp.clip(jnp.round(bits), 0.0, 8.0))
    return jnp.floor(x / _per_example(quantum)) * _per_example(quantum)


def solarize(x: jax.Array, threshold: jax.Array) -> jax.Array:
    """Inverts the values at or above `threshold`."""
    return jnp.where(x >= _per_example(threshold), 255.0 - x, x)


def solarize_add(x: jax.Array, addition: jax.Array, threshold: float = 128.0) -> jax.Array:
    """Adds `addition` to the values below `threshold`, clipped at 255 (timm `solarize_add`)."""
    return jnp.where(x < threshold, jnp.minimum(x + _per_example(addition), 255.0), x)


def color(x: jax.Array, factor: jax.Array) -> jax.Array:
    """Saturation: blend with the greyscale image (0 = grey, 1 = identity)."""
    return _blend(jnp.broadcast_to(_grayscale(x), x.shape), x, factor)


def contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the image's mean grey level (PIL rounds the mean to an integer)."""
    mean = jnp.floor(jnp.mean(_grayscale(x), axis=(1, 2, 3), keepdims=True) + 0.5)
    return _blend(jnp.broadcast_to(mean, x.shape), x, factor)


def brightness(x: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with black."""
    return _blend(jnp.zeros_like(x), x, factor)


def sharpness(x: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with PIL's SMOOTH filter (3x3, centre weight 5, sum 13); the 1-pixel border keeps
    its original values, as in PIL."""
    _, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    total = sum(padded[:, dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3))
    smooth = jnp.round((total + 4.0 * x) / 13.0)  # 8 neighbours + 5 x centre
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    interior = ((rows > 0) & (rows < h - 1) & (cols > 0) & (cols < w - 1))[None, :, :, None]
    return _blend(jnp.where(interior, smooth, x), x, factor)


# ---- geometric operations: one bilinear warp per example -------------------------------------
def _inverse_affine(op: jax.Array, arg: jax.Array, h: int, w: int) -> jax.Array:
    """[B] op ids and args -> [B, 2, 3] maps from output to input pixel coordinates (PIL's
    `Image.transform(AFFINE)` convention). Non-geometric ops get the identity."""
    one, zero = jnp.ones_like(arg), jnp.zeros_like(arg)
    # PIL `rotate(deg)` turns content counter-clockwise about the centre.
    a = -jnp.deg2rad(arg)
    cx, cy = w / 2.0, h / 2.0
    cos, sin = jnp.cos(a), jnp.sin(a)
    rotate = jnp.stack(
        [
            jnp.stack([cos, sin, cx - cos * cx - sin * cy], -1),
            jnp.stack([-sin, cos, cy + sin * cx - cos * cy], -1),
        ],
        -2,
    )

    def affine(a11, a12, a13, a21, a22, a23):
        return jnp.stack([jnp.stack([a11, a12, a13], -1), jnp.stack([a21, a22, a23], -1)], -2)

    candidates = {
        ROTATE: rotate,
        SHEAR_X: affine(one, arg, zero, zero, one, zero),
        SHEAR_Y: affine(one, zero, zero, arg, one, zero),
        TRANSLATE_X: affine(one, zero, arg, zero, one, zero),
        TRANSLATE_Y: affine(one, zero, zero, zero, one, arg),
    }
    matrix = affine(one, zero, zero, zero, one, zero)
    for op_id, m in candidates.items():
        matrix = jnp.where((op == op_id)[:, None, None], m, matrix)
    return matrix


def warp_affine(x: jax.Array, matrix: jax.Array, fill: float = FILL) -> jax.Array:
    """Bilinear resampling: output pixel centre (i + 0.5, j + 0.5) reads the input at
    `matrix @ (x, y, 1)`; samples from outside the image read `fill`. x: [B, H, W, C]."""
    b, h, w, c = x.shape
    ys, xs = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")
    grid = jnp.stack([xs.ravel(), ys.ravel(), jnp.ones(h * w)], 0)  # [3, HW]
    src = jnp.einsum("bij,jn->bin", matrix, grid) - 0.5  # [B, 2, HW] in index coordinates
    sx, sy = src[:, 0], src[:, 1]
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    wx, wy = sx - x0, sy - y0
    flat = x.reshape(b, h * w, c)

    def tap(yy, xx):
        valid = (xx >= 0) & (xx <= w - 1) & (yy >= 0) & (yy <= h - 1)
        idx = (jnp.clip(yy, 0, h - 1) * w + jnp.clip(xx, 0, w - 1)).astype(jnp.int32)
        values = jnp.take_along_axis(flat, idx[..., None], axis=1)
        return jnp.where(valid[..., None], values, fill)

    out = (
        tap(y0, x0) * ((1 - wy) * (1 - wx))[..., None]
        + tap(y0, x0 + 1) * ((1 - wy) * wx)[..., None]
        + tap(y0 + 1, x0) * (wy * (1 - wx))[..., None]
        + tap(y0 + 1, x0 + 1) * (wy * wx)[..., None]
    )
    return _finish(out.reshape(b, h, w, c))


def apply_op(x: jax.Array, op: jax.Array, arg: jax.Array) -> jax.Array:
    """Applies operation `op[i]` with argument `arg[i]` to example i.

    x: [B, H, W, C] in [0, 255]; op: [B] int ids (see OP_NAMES); arg: [B] float, in the op's
    own unit (degrees, shear factor, pixels, bits, threshold, enhance factor).
    """
    x = x.astype(jnp.float32)
    _, h, w, _ = x.shape
    geometric = jnp.isin(op, jnp.asarray(_GEOMETRIC))
    out = jnp.where(_per_example(geometric), warp_affine(x, _inverse_affine(op, arg, h, w)), x)
    pixel_ops = {
        AUTOCONTRAST: lambda: autocontrast(x),
        EQUALIZE: lambda: equalize(x),
        INVERT: lambda: invert(x),
        POSTERIZE: lambda: posterize(x, arg),
        SOLARIZE: lambda: solarize(x, arg),
        SOLARIZE_ADD: lambda: solarize_add(x, arg),
        COLOR: lambda: color(x, arg),
        CONTRAST: lambda: contrast(x, arg),
        BRIGHTNESS: lambda: brightness(x, arg),
        SHARPNESS: lambda: sharpness(x, arg),
    }
    for op_id, fn in pixel_ops.items():
        out = jnp.where(_per_example(op == op_id), fn(), out)
    return out


# ---- policies ---------------------------------------------------------------------------------
# Cubuk et al. 2019, Table (CIFAR-10 policy), as listed by torchvision: ((op, prob, bin), ...).
_AA_CIFAR10 = (
    (("Invert", 0.1, 0), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 0)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
    (("AutoContrast", 0.8, 0), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 0)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 0), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
)
_SIGNED = (ROTATE, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, COLOR, CONTRAST, BRIGHTNESS)
_SIGNED += (SHARPNESS,)
_ENHANCE = (COLOR, CONTRAST, BRIGHTNESS, SHARPNESS)


def _autoaugment_arg(op: jax.Array, bin_: jax.Array, sign: jax.Array, size: int) -> jax.Array:
    """torchvision's CIFAR/ImageNet AutoAugment magnitude bins (0..9) -> op arguments."""
    frac = bin_.astype(jnp.float32) / 9.0
    arg = jnp.zeros_like(frac)
    arg = jnp.where(op == ROTATE, 30.0 * frac, arg)
    arg = jnp.where((op == SHEAR_X) | (op == SHEAR_Y), 0.3 * frac, arg)
    arg = jnp.where((op == TRANSLATE_X) | (op == TRANSLATE_Y), 150.0 / 331.0 * size * frac, arg)
    arg = jnp.where(jnp.isin(op, jnp.asarray(_ENHANCE)), 0.9 * frac, arg)
    arg = jnp.where(jnp.isin(op, jnp.asarray(_SIGNED)), arg * sign, arg)
    arg = jnp.where(jnp.isin(op, jnp.asarray(_ENHANCE)), 1.0 + arg, arg)
    arg = jnp.where(op == POSTERIZE, 8.0 - jnp.round(bin_ / (9.0 / 4.0)), arg)
    return jnp.where(op == SOLARIZE, 255.0 * (1.0 - frac), arg)


def autoaugment_cifar10(rng: jax.Array, x: jax.Array) -> jax.Array:
    """One random CIFAR-10 sub-policy per example, its two ops applied with their probabilities."""
    b, _, w, _ = x.shape
    table_op = jnp.asarray([[OP_NAMES.index(o) for o, _, _ in sp] for sp in _AA_CIFAR10])
    table_p = jnp.asarray([[p for _, p, _ in sp] for sp in _AA_CIFAR10], jnp.float32)
    table_bin = jnp.asarray([[m for _, _, m in sp] for sp in _AA_CIFAR10], jnp.float32)
    k_pick, k_apply, k_sign = jax.random.split(rng, 3)
    pick = jax.random.randint(k_pick, (b,), 0, len(_AA_CIFAR10))
    u = jax.random.uniform(k_apply, (b, 2))
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (b, 2)), 1.0, -1.0)
    x = x.astype(jnp.float32)
    for slot in range(2):
        op = jnp.where(u[:, slot] < table_p[pick, slot], table_op[pick, slot], IDENTITY)
        arg = _autoaugment_arg(op, table_bin[pick, slot], sign[:, slot], size=w)
        x = apply_op(x, op, arg)
    return x


# timm `_RAND_INCREASING_TRANSFORMS` (rand-...-inc1): 15 ops, no identity.
_RANDAUGMENT_OPS = (
    AUTOCONTRAST, EQUALIZE, INVERT, ROTATE, POSTERIZE, SOLARIZE, SOLARIZE_ADD,
    COLOR, CONTRAST, BRIGHTNESS, SHARPNESS, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y,
)  # fmt: skip


def _randaugment_arg(op: jax.Array, level: jax.Array, sign: jax.Array, size: int) -> jax.Array:
    """timm's "increasing" level (0..10) -> op arguments; `sign` negates the signed ones."""
    frac = level / 10.0
    arg = jnp.zeros_like(frac)
    arg = jnp.where(op == ROTATE, 30.0 * frac * sign, arg)
    arg = jnp.where((op == SHEAR_X) | (op == SHEAR_Y), 0.3 * frac * sign, arg)
    arg = jnp.where((op == TRANSLATE_X) | (op == TRANSLATE_Y), 0.45 * size * frac * sign, arg)
    enhance = jnp.clip(1.0 + 0.9 * frac * sign, 0.1, 1.9)
    arg = jnp.where(jnp.isin(op, jnp.asarray(_ENHANCE)), enhance, arg)
    arg = jnp.where(op == POSTERIZE, 4.0 - jnp.floor(frac * 4.0), arg)
    arg = jnp.where(op == SOLARIZE, 256.0 - jnp.floor(frac * 256.0), arg)
    return jnp.where(op == SOLARIZE_ADD, jnp.floor(frac * 110.0), arg)


def randaugment(
    rng: jax.Array,
    x: jax.Array,
    *,
    num_ops: int,
    magnitude: float,
    magnitude_std: float,
    prob: float,
) -> jax.Array:
    """RandAugment: `num_ops` rounds; each example draws an op, a magnitude and a coin."""
    b, _, w, _ = x.shape
    ops = jnp.asarray(_RANDAUGMENT_OPS)
    x = x.astype(jnp.float32)
    for key in jax.random.split(rng, num_ops):
        k_op, k_apply, k_mag, k_sign = jax.random.split(key, 4)
        op = ops[jax.random.randint(k_op, (b,), 0, len(_RANDAUGMENT_OPS))]
        op = jnp.where(jax.random.bernoulli(k_apply, prob, (b,)), op, IDENTITY)
        level = magnitude + magnitude_std * jax.random.normal(k_mag, (b,))
        level = jnp.clip(level, 0.0, 10.0)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (b,)), 1.0, -1.0)
        x = apply_op(x, op, _randaugment_arg(op, level, sign, size=w))
    return x


POLICIES = ("none", "randaugment", "autoaugment_cifar10")


def apply_policy(rng: jax.Array, x: jax.Array, aug: ml_collections.ConfigDict) -> jax.Array:
    """Dispatches on ``aug.policy`` (a static config string): see POLICIES."""
    if aug.policy == "randaugment":
        return randaugment(
            rng,
            x,
            num_ops=int(aug.randaugment_num_ops),
            magnitude=float(aug.randaugment_magnitude),
            magnitude_std=float(aug.randaugment_magnitude_std),
            prob=float(aug.randaugment_prob),
        )
    if aug.policy == "autoaugment_cifar10":
        return autoaugment_cifar10(rng, x)
    if aug.policy == "none":
        return x
    raise ValueError(f"unknown augment.policy '{aug.policy}'; choose one of: {', '.join(POLICIES)}")
