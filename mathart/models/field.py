"""The regression mean as a conditional neural field: the image drawn pixel by pixel, as a
function of the pixel's position and the formula.

Why a second kind of mean network. The regression U-Net (`mathart.models.unet`, fed pixel
coordinates instead of noise) spends its FLOPs on many small convolutions, which XLA:CPU runs at
a fraction of its matrix-multiply rate, and it draws a curve by moving features through a
pyramid of 16x16 ... 4x4 maps. What a formula says, though, is where each pixel lies relative to
a curve: `y - (a x^2 + b x + c)` for a parabola, `(x - p)^2 + (y - q)^2 - r^2` for a circle. A
network that sees one pixel's coordinates and the formula's embedding computes such a function
directly, and its work is a stack of dense layers over all B x H x W pixels at once. (Measured
on one CPU core, the norms, activations and attention over 32,768 pixels keep it at about a
fifth of the matmul rate: its step costs what the 32-channel U-Net mean's does.)

The network (one pixel; all pixels share the weights):
- the pixel's x, y, r (`pixel_coordinates`) and their Fourier features sin/cos(pi 2^k c),
  k = 0 .. frequencies - 1 (Tancik et al. 2020, arXiv 2006.10739: without them an MLP of the
  coordinates learns only smooth images; at 32 px, 5 frequencies reach a 2-pixel period);
- ``depth`` residual blocks LayerNorm -> Dense -> FiLM -> GELU -> Dense, where FiLM is a scale
  and shift of the hidden units computed from the pooled formula + style vector (Perez et al.
  2018, arXiv 1709.07871; conditioning a coordinate network by FiLM as pi-GAN, Chan et al.
  2021, arXiv 2012.00926): the formula's numbers multiply the coordinates' features, which is
  what a polynomial or a distance needs;
- optionally (``cross_attention``) one attention of every pixel to the formula's tokens after
  the first block, so a pixel can look up the token that concerns it (a term of a sum);
- a Dense to RGB.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def fourier_features(coords: jax.Array, frequencies: int) -> jax.Array:
    """[..., C] -> [..., C * (1 + 2 * frequencies)]: the coordinates, then sin and cos of
    pi 2^k times each (k = 0 .. frequencies - 1)."""
    scales = jnp.pi * 2.0 ** jnp.arange(frequencies, dtype=jnp.float32)
    angles = (coords[..., None] * scales).reshape(*coords.shape[:-1], -1)
    return jnp.concatenate([coords, jnp.sin(angles), jnp.cos(angles)], axis=-1)


class FieldBlock(nn.Module):
    """Pre-LayerNorm residual MLP block whose hidden units are scaled and shifted by ``film``
    ([B, 2 * width], broadcast over the pixels)."""

    width: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, film: jax.Array) -> jax.Array:
        scale, shift = jnp.split(film, 2, axis=-1)
        u = nn.LayerNorm(dtype=self.dtype, name="norm")(h)
        u = nn.Dense(self.width, dtype=self.dtype, name="dense_in")(u)
        u = u * (1.0 + scale[:, None, :]) + shift[:, None, :]
        u = nn.Dense(self.width, dtype=self.dtype, name="dense_out")(nn.gelu(u))
        return h + u


class ConditionalField(nn.Module):
    """(coordinates [B, H, W, C], pooled [B, D], tokens [B, L, D], mask [B, L]) -> image
    [B, H, W, 3] float32 (module docstring)."""

    width: int = 128
    depth: int = 3
    frequencies: int = 5
    cross_attention: bool = True
    num_heads: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, coords: jax.Array, pooled: jax.Array, tokens: jax.Array, mask: jax.Array
    ) -> jax.Array:
        b, height, width_px = coords.shape[:3]
        h = fourier_features(coords.reshape(b, height * width_px, -1), self.frequencies)
        h = nn.Dense(self.width, dtype=self.dtype, name="coords_in")(h.astype(self.dtype))
        cond = nn.silu(nn.Dense(self.width, name="cond_in")(pooled.astype(jnp.float32)))
        # One projection for every block's FiLM; zero-initialised, so every block starts as an
        # unconditioned MLP and the formula's influence grows from there.
        films = nn.Dense(
            2 * self.width * self.depth, kernel_init=nn.initializers.zeros, name="film"
        )(cond)
        films = jnp.split(films.astype(self.dtype), self.depth, axis=-1)
        for i in range(self.depth):
            h = FieldBlock(self.width, self.dtype, name=f"block_{i}")(h, films[i])
            if i == 0 and self.cross_attention:
                q = nn.LayerNorm(dtype=self.dtype, name="attn_norm")(h)
                h = h + nn.MultiHeadDotProductAttention(
                    num_heads=self.num_heads,
                    qkv_features=self.width,
                    out_features=self.width,
                    dtype=self.dtype,
                    force_fp32_for_softmax=True,
                    deterministic=True,
                    name="attn",
                )(q, tokens.astype(self.dtype), mask=mask[:, None, None, :])
        h = nn.LayerNorm(dtype=self.dtype, name="norm_out")(h)
        out = nn.Dense(3, dtype=self.dtype, name="to_rgb")(h)
        return out.reshape(b, height, width_px, 3).astype(jnp.float32)


def field_flops(
    *,
    pixels: int,
    width: int,
    depth: int,
    frequencies: int,
    cross_attention: bool,
    ctx: int,
    d: int,
) -> float:
    """Forward FLOPs of one image (2 per multiply-add; dense layers and attention products,
    norms and activations left out): ``pixels`` points, ``ctx`` condition tokens of width ``d``."""
    inputs = 3 * (1 + 2 * frequencies)
    per_pixel = inputs * width + depth * 2 * width * width + width * 3
    flops = 2.0 * pixels * per_pixel + 2.0 * (d * width + width * 2 * width * depth)
    if cross_attention:  # q, out per pixel; k, v per token; q.k and attention.v
        flops += 2.0 * (2 * pixels * width * width + 2 * ctx * d * width)
        flops += 2.0 * 2 * pixels * ctx * width
    return flops
