"""Mixup and CutMix on device, for the `strong` profile (called by `vit.task.VitTask.loss_fn`).

Batch mode, as timm's `Mixup(mode="batch")` and the SPT/LSA ViT recipe: with probability
`mix_prob` the whole batch is mixed with its reverse (example i with example B-1-i); then with
probability `switch_prob` CutMix (a box pasted from the partner, lambda ~ Beta(cutmix_alpha),
corrected to the box's true area) else Mixup (a convex blend, lambda ~ Beta(mixup_alpha)).
Targets are mixed with the same lambda. A disabled mode (alpha 0) is never chosen.

Zhang et al. 2018 (mixup, arXiv 1710.09412); Yun et al. 2019 (CutMix, arXiv 1905.04899).
"""

import jax
import jax.numpy as jnp


def cutmix_box(rng: jax.Array, lam: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """A box covering ~(1 - lam) of an h x w image, centred uniformly (clipped at the edges).

    Returns (mask [h, w] bool, true kept fraction lam_corrected = 1 - box_area / (h * w)).
    """
    k_y, k_x = jax.random.split(rng)
    cut = jnp.sqrt(1.0 - lam)
    ch, cw = jnp.floor(h * cut), jnp.floor(w * cut)
    cy = jax.random.randint(k_y, (), 0, h).astype(jnp.float32)
    cx = jax.random.randint(k_x, (), 0, w).astype(jnp.float32)
    y0, y1 = jnp.clip(cy - jnp.floor(ch / 2), 0, h), jnp.clip(cy + jnp.floor(ch / 2), 0, h)
    x0, x1 = jnp.clip(cx - jnp.floor(cw / 2), 0, w), jnp.clip(cx + jnp.floor(cw / 2), 0, w)
    rows = jnp.arange(h, dtype=jnp.float32)[:, None]
    cols = jnp.arange(w, dtype=jnp.float32)[None, :]
    mask = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return mask, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def mix_batch(
    rng: jax.Array,
    images: jax.Array,
    targets: jax.Array,
    *,
    mixup_alpha: float,
    cutmix_alpha: float,
    mix_prob: float,
    switch_prob: float,
) -> tuple[jax.Array, jax.Array]:
    """images [B, H, W, C] float, targets [B, K] -> mixed (images, targets); identity when
    both alphas are 0 or mix_prob is 0."""
    if (mixup_alpha <= 0 and cutmix_alpha <= 0) or mix_prob <= 0:
        return images, targets
    _, h, w, _ = images.shape
    k_apply, k_switch, k_mix, k_cut, k_box = jax.random.split(rng, 5)
    apply = jax.random.bernoulli(k_apply, mix_prob)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.bernoulli(k_switch, switch_prob)
    else:
        use_cutmix = jnp.asarray(cutmix_alpha > 0)
    lam_mix = jax.random.beta(k_mix, max(mixup_alpha, 1e-3), max(mixup_alpha, 1e-3))
    lam_cut = jax.random.beta(k_cut, max(cutmix_alpha, 1e-3), max(cutmix_alpha, 1e-3))
    box, lam_box = cutmix_box(k_box, lam_cut, h, w)

    partner_images, partner_targets = images[::-1], targets[::-1]
    mixed = lam_mix * images + (1.0 - lam_mix) * partner_images
    pasted = jnp.where(box[None, :, :, None], partner_images, images)
    out_images = jnp.where(use_cutmix, pasted, mixed)
    lam = jnp.where(use_cutmix, lam_box, lam_mix)
    out_targets = lam * targets + (1.0 - lam) * partner_targets
    return (
        jnp.where(apply, out_images, images),
        jnp.where(apply, out_targets, targets),
    )
