"""Image losses and image statistics of the mathart family, each a pure function with a written
definition. Used by `mathart.task` (training loss), `mathart.evaluate` and the sample-grid hook.

Images are float arrays [B, H, W, 3] in the model's range [-1, 1] unless a name says ``01``.
Every per-image function returns [B] float32 so callers can weight rows (by noise level) and mask
padding. All statistics are computed in float32.

Definitions
-----------
- ``ssim``: structural similarity (Wang et al. 2004) of each channel with a Gaussian window
  (σ = 1.5 as in the paper; 7 taps instead of 11 so 32-pixel images fit three scales), constants
  C1 = (0.01)², C2 = (0.03)² for a data range of 1, 'VALID' windows (no padding artefacts),
  averaged over pixels and channels.
- ``structural_loss`` (the weight-free perceptual loss): mean over scales s = 1, 1/2, ... (while
  the image side is >= the window) of 1 - SSIM_s, plus the mean absolute difference of the
  horizontal and vertical finite-difference gradients of each channel. We average the per-scale
  SSIMs instead of taking Wang et al.'s weighted product of powers (MS-SSIM), whose fractional
  powers of negative contrast terms give NaN gradients early in training.
- ``vgg_perceptual_loss``: for the VGG16 activations relu1_2, relu2_2, relu3_3, relu4_3, each
  feature vector is scaled to unit length over channels (as LPIPS does, without LPIPS's learned
  weights), then the squared difference is averaged over pixels; the four layers are averaged.
- ``math_loss`` (geometry agreement with the formula's ground-truth render, palette-blind):
  0.5 (1 - cos(E_pred, E_true)) + 0.25 (1 - ρ(L_pred, L_true)), where L is luminance, E the
  Sobel edge magnitude of L (curves), cos the cosine similarity of the edge maps and ρ the
  Pearson correlation of the luminance maps (filled level sets). Both are invariant to contrast
  and to affine changes of brightness, so a different palette does not count as a geometry
  error. Range [0, 1]: 0 = same curves and regions.
- ``pyramid_mse``: the sum over levels l = 1..n of the mean squared difference of the two
  images average-pooled over 2^l x 2^l blocks. A thin curve drawn a pixel off costs the plain
  MSE twice what no curve at all costs (so a regression under uncertainty draws none); the
  pooled images overlap where the curves are near, so these terms pull a curve towards its
  place (the coarse-to-fine idea of Laplacian-pyramid losses, Bojanowski et al. 2018,
  arXiv 1707.05776).
- ``hue_resultant``: the saturation-weighted mean resultant vector of hue angles,
  m = Σ_p c_p (cos h_p, sin h_p) / Σ_p c_p, where h_p is the circular hue (atan2 of the
  opponent axes √3(G-B) and 2R-G-B, Hanbury 2003) and c_p its circular chroma
  ½ |(2R-G-B, √3(G-B))| (= HSV saturation x value for pure hues; ≈ 0 for greys, whose hue is
  noise). Because c_p (cos h_p, sin h_p) is just ½ (2R-G-B, √3(G-B)), the statistic has smooth
  gradients and needs no angle. Hue is an angle: 359° and 1° are 2° apart here, unlike the
  seed's variance of raw hue (`model/loss_functions.py` of GunaSripuram7/mathy-model-project).
- ``harmony_concentration`` R = |m| in [0, 1]: 1 = all coloured pixels share one hue,
  0 = hues spread evenly round the circle (or no colour at all).
- ``colour_loss``: mode "match" (default): |m_pred - m_true|², agreement of the prediction's
  dominant hue and hue concentration with the ground truth's; mode "concentration": 1 - R_pred,
  the seed's intent (prefer concentrated hues) computed on the circle.
"""

import math

import jax
import jax.numpy as jnp
import optax

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
COLOUR_MODES = ("match", "concentration")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def to_unit(x: jax.Array) -> jax.Array:
    """[-1, 1] -> [0, 1], float32."""
    return (x.astype(jnp.float32) + 1.0) * 0.5


def luminance(rgb01: jax.Array) -> jax.Array:
    """[B, H, W, 3] -> [B, H, W] (BT.601 luma)."""
    return rgb01 @ jnp.asarray(_LUMA, jnp.float32)


def _gaussian_window(size: int, sigma: float) -> jax.Array:
    r = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: jax.Array, window_1d: jax.Array) -> jax.Array:
    """Separable filter of each channel of [B, H, W, C] with 'VALID' borders."""
    c = x.shape[-1]
    k = window_1d.shape[0]
    dn = ("NHWC", "HWIO", "NHWC")
    kh = jnp.tile(window_1d.reshape(k, 1, 1, 1), (1, 1, 1, c))
    kw = jnp.tile(window_1d.reshape(1, k, 1, 1), (1, 1, 1, c))
    x = jax.lax.conv_general_dilated(
        x, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c
    )
    return jax.lax.conv_general_dilated(
        x, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=c
    )


def ssim(x01: jax.Array, y01: jax.Array, window_size: int = 7, sigma: float = 1.5) -> jax.Array:
    """Mean SSIM per image of [B, H, W, C] images in [0, 1] -> [B] float32."""
    x01, y01 = x01.astype(jnp.float32), y01.astype(jnp.float32)
    if min(x01.shape[1:3]) < window_size:
        raise ValueError(f"SSIM window {window_size} is larger than the image {x01.shape[1:3]}")
    w = _gaussian_window(window_size, sigma)
    mu_x, mu_y = _filter_valid(x01, w), _filter_valid(y01, w)
    var_x = _filter_valid(x01 * x01, w) - mu_x**2
    var_y = _filter_valid(y01 * y01, w) - mu_y**2
    cov = _filter_valid(x01 * y01, w) - mu_x * mu_y
    lum = (2 * mu_x * mu_y + SSIM_C1) / (mu_x**2 + mu_y**2 + SSIM_C1)
    cs = (2 * cov + SSIM_C2) / (var_x + var_y + SSIM_C2)
    return (lum * cs).mean(axis=(1, 2, 3))


def _avg_pool2(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).mean((2, 4))


def pyramid_mse(pred: jax.Array, target: jax.Array, levels: int) -> jax.Array:
    """[B]: Σ_{l=1..levels} mean over pixels and channels of (pool_l(pred) - pool_l(target))²,
    pool_l the 2^l x 2^l block average (see the module docstring)."""
    total = jnp.zeros(pred.shape[0], jnp.float32)
    a, b = pred.astype(jnp.float32), target.astype(jnp.float32)
    for _ in range(levels):
        a, b = _avg_pool2(a), _avg_pool2(b)
        total = total + jnp.mean((a - b) ** 2, axis=(1, 2, 3))
    return total


def multiscale_ssim_loss(x01: jax.Array, y01: jax.Array, window_size: int = 7) -> jax.Array:
    """Mean over scales of (1 - SSIM) -> [B]; scales halve while the side >= window_size."""
    losses = []
    while min(x01.shape[1:3]) >= window_size:
        losses.append(1.0 - ssim(x01, y01, window_size))
        x01, y01 = _avg_pool2(x01), _avg_pool2(y01)
    if not losses:
        raise ValueError(f"image {x01.shape[1:3]} is smaller than the SSIM window {window_size}")
    return jnp.mean(jnp.stack(losses), axis=0)


def gradient_loss(x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean |∂x - ∂y| over horizontal and vertical finite differences, per image -> [B]."""
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
    dx = jnp.abs(jnp.diff(x, axis=2) - jnp.diff(y, axis=2)).mean(axis=(1, 2, 3))
    dy = jnp.abs(jnp.diff(x, axis=1) - jnp.diff(y, axis=1)).mean(axis=(1, 2, 3))
    return 0.5 * (dx + dy)


def structural_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """The weight-free perceptual loss: multi-scale (1 - SSIM) + gradient L1, per image [B]."""
    p01, t01 = to_unit(pred), to_unit(target)
    return multiscale_ssim_loss(p01, t01) + gradient_loss(p01, t01)


def vgg_perceptual_loss(
    features_fn, pred: jax.Array, target: jax.Array, eps: float = 1e-10
) -> jax.Array:
    """VGG16 feature distance per image [B]; ``features_fn(rgb01) -> list of [B,h,w,c]``."""
    b = pred.shape[0]
    feats = features_fn(jnp.concatenate([to_unit(pred), to_unit(target)], axis=0))
    per_layer = []
    for f in feats:
        f = f.astype(jnp.float32)
        f = f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + eps)
        per_layer.append(jnp.sum((f[:b] - f[b:]) ** 2, axis=-1).mean(axis=(1, 2)))
    return jnp.mean(jnp.stack(per_layer), axis=0)


_SOBEL_X = jnp.asarray([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], jnp.float32) / 8.0


def sobel_magnitude(gray: jax.Array, eps: float = 1e-8) -> jax.Array:
    """[B, H, W] -> [B, H, W] Sobel gradient magnitude (edge-replicated borders)."""
    x = jnp.pad(gray.astype(jnp.float32), ((0, 0), (1, 1), (1, 1)), mode="edge")[..., None]
    dn = ("NHWC", "HWIO", "NHWC")
    kx = _SOBEL_X[:, :, None, None]
    ky = _SOBEL_X.T[:, :, None, None]
    gx = jax.lax.conv_general_dilated(x, kx, (1, 1), "VALID", dimension_numbers=dn)[..., 0]
    gy = jax.lax.conv_general_dilated(x, ky, (1, 1), "VALID", dimension_numbers=dn)[..., 0]
    return jnp.sqrt(gx**2 + gy**2 + eps)


def _safe_norm(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """|x| with a finite gradient at x = 0 (jnp.linalg.norm's is NaN there)."""
    return jnp.sqrt(jnp.sum(x * x, axis=axis) + eps)


def _cosine(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return jnp.sum(a * b, -1) / (_safe_norm(a) * _safe_norm(b) + eps)


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-image Pearson correlation of two [B, ...] maps -> [B] (0 for a constant map)."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    return _cosine(a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True))


def math_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Geometry disagreement with the ground-truth render, in [0, 1], per image [B]."""
    lp, lt = luminance(to_unit(pred)), luminance(to_unit(target))
    edge_term = 1.0 - _cosine(sobel_magnitude(lp), sobel_magnitude(lt))
    level_term = 0.5 * (1.0 - pearson(lp, lt))
    return 0.5 * edge_term + 0.5 * level_term


def hue_resultant(rgb01: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Saturation-weighted mean resultant vector of hue, [B, H, W, 3] in [0,1] -> [B, 2]."""
    rgb01 = rgb01.astype(jnp.float32)
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    a_axis = 0.5 * (2 * r - g - b)  # chroma * cos(hue)
    b_axis = 0.5 * math.sqrt(3.0) * (g - b)  # chroma * sin(hue)
    chroma = jnp.sqrt(a_axis**2 + b_axis**2 + eps**2)
    total = chroma.sum(axis=(1, 2))
    vec = jnp.stack([a_axis.sum(axis=(1, 2)), b_axis.sum(axis=(1, 2))], axis=-1)
    return vec / jnp.maximum(total, eps)[:, None]


def harmony_concentration(rgb01: jax.Array) -> jax.Array:
    """R = |hue_resultant| in [0, 1] per image [B]."""
    return _safe_norm(hue_resultant(rgb01))


def hue_degrees(rgb01: jax.Array) -> jax.Array:
    """Circular hue in degrees [0, 360) of each pixel (for tests and reports; no gradients)."""
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    return jnp.degrees(jnp.arctan2(math.sqrt(3.0) * (g - b), 2 * r - g - b)) % 360.0


def colour_loss(pred: jax.Array, target: jax.Array, mode: str = "match") -> jax.Array:
    """Colour-harmony loss per image [B]; see the module docstring for the two modes."""
    m_pred = hue_resultant(to_unit(pred))
    if mode == "match":
        return jnp.sum((m_pred - hue_resultant(to_unit(target))) ** 2, axis=-1)
    if mode == "concentration":
        return 1.0 - _safe_norm(m_pred)
    raise ValueError(f"unknown colour loss mode '{mode}'; choose one of: {', '.join(COLOUR_MODES)}")


def family_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy of the formula-family head -> [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
