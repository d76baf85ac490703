"""Conditional U-Net: ResNet blocks with GroupNorm, a time embedding, and token-level
cross-attention to the formula encoder's tokens. Used by `mathart.models.denoiser`.

Layout (a level ``i`` works at ``patch_size * 2**i`` times below the input resolution; a
"scale" below is that factor, e.g. 4 means 1/4 of the image side):

    x [B,H,W,3] (+ the previous x0 estimate, self-conditioning) -> space-to-depth(patch_size)
      -> conv
      -> per level: num_res_blocks x (ResBlock [+ attention]) -> downsample (stride-2 conv)
      -> middle: ResBlock, attention, ResBlock
      -> per level, reversed: (num_res_blocks+1) x (concat skip, ResBlock [+ attention])
         [+ extra input skip] -> upsample (nearest resize + conv; transposed convs are slow on
         XLA:CPU, DESIGN.md)
      -> GroupNorm, SiLU, conv (zero-init) -> depth-to-space -> [B,H,W,3] float32
         [+ with full_res_channels: conv -> depth-to-space -> concat the stem's input ->
            conv, SiLU, conv (zero-init), all at full resolution]

Attention blocks (at ``cross_attention_scales``) normalise, then optionally self-attend over
pixels, then cross-attend with queries from every pixel and keys/values from every formula token
(padding masked out), then an MLP: real per-token attention, not the single-token "attention"
of the small reference model (jasher4994/Diffusion), where a softmax over one key is always 1
and the block collapses to a bias.

GroupNorm uses ``norm_groups`` (32, the seed's value) groups where the channel count allows it;
for channel counts that 32 does not divide (e.g. 48) it uses the largest divisor below 32
(`group_count`), so small debug models still normalise in groups of whole channels.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is <= ``max_groups``."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def timestep_embedding(t_frac: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal features of the noise level ``t_frac`` in (0, 1] (scaled to (0, 1000]).

    Using the fraction of the chain rather than the integer step keeps the network independent
    of ``T``. [B] -> [B, dim] float32.
    """
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = 1000.0 * t_frac.astype(jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def zero_conv(features: int, kernel: int, dtype: Dtype, name: str) -> nn.Conv:
    """A conv whose kernel starts at zero: the layer it ends (or adds) is a no-op at init."""
    return nn.Conv(
        features, (kernel, kernel), dtype=dtype, kernel_init=nn.initializers.zeros, name=name
    )


def space_to_depth(x: jax.Array, p: int) -> jax.Array:
    """[B, H, W, C] -> [B, H/p, W/p, C·p²] (a lossless patchify)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x: jax.Array, p: int) -> jax.Array:
    """Inverse of `space_to_depth`."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * p, w * p, c // (p * p))


class ResBlock(nn.Module):
    """GN-SiLU-conv, scale/shift by the time(+formula) embedding, GN-SiLU-conv, residual."""

    out_channels: int
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array) -> jax.Array:
        c_in = x.shape[-1]
        h = nn.GroupNorm(group_count(c_in, self.norm_groups), dtype=self.dtype, name="norm1")(x)
        h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, name="conv1")(nn.silu(h))
        scale_shift = nn.Dense(2 * self.out_channels, dtype=self.dtype, name="temb")(nn.silu(temb))
        scale, shift = jnp.split(scale_shift[:, None, None, :], 2, axis=-1)
        h = nn.GroupNorm(
            group_count(self.out_channels, self.norm_groups), dtype=self.dtype, name="norm2"
        )(h)
        h = h * (1 + scale) + shift
        # Zero-init output conv: every block starts as the identity (Goyal et al. 2017 style).
        h = zero_conv(self.out_channels, 3, self.dtype, "conv2")(nn.silu(h))
        if c_in != self.out_channels:
            x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype, name="skip")(x)
        return x + h


class AttentionBlock(nn.Module):
    """Pixels attend to themselves (optional) and to the formula tokens, then an MLP."""

    num_heads: int
    self_attention: bool
    norm_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array) -> jax.Array:
        b, hgt, wid, c = x.shape
        if c % self.num_heads:
            raise ValueError(
                f"attention over {c} channels cannot be split into {self.num_heads} heads; "
                "choose config.model.num_attention_heads dividing every attended channel count"
            )
        h = nn.GroupNorm(group_count(c, self.norm_groups), dtype=self.dtype, name="norm")(x)
        h = nn.Dense(c, dtype=self.dtype, name="proj_in")(h).reshape(b, hgt * wid, c)

        def mha(name):
            return nn.MultiHeadDotProductAttention(
                num_heads=self.num_heads,
                dtype=self.dtype,
                force_fp32_for_softmax=True,
                deterministic=True,
                name=name,
            )

        if self.self_attention:
            q = nn.LayerNorm(dtype=self.dtype, name="ln_self")(h)
            h = h + mha("self_attn")(q, q)
        q = nn.LayerNorm(dtype=self.dtype, name="ln_cross")(h)
        # [B, 1, 1, L]: every pixel query may see every real (unpadded) formula token.
        mask = context_mask[:, None, None, :]
        h = h + mha("cross_attn")(q, context.astype(self.dtype), mask=mask)
        m = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(h)
        m = nn.Dense(4 * c, dtype=self.dtype, name="mlp_in")(m)
        h = h + nn.Dense(c, dtype=self.dtype, name="mlp_out")(nn.gelu(m))
        h = nn.Dense(c, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="proj_out")(h)
        return x + h.reshape(b, hgt, wid, c)


class Downsample(nn.Module):
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype, name="conv")(x)


class Upsample(nn.Module):
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")
        return nn.Conv(c, (3, 3), dtype=self.dtype, name="conv")(x)


def level_scales(patch_size: int, num_levels: int) -> list[int]:
    """Downsampling factor of each U-Net level: patch_size * 2**level."""
    return [patch_size * 2**i for i in range(num_levels)]


class ConditionalUNet(nn.Module):
    """(x_t [B,H,W,3], t_frac [B], pooled [B,D], context [B,L,D], context_mask [B,L]
    [, x0_prev [B,H,W,3]]) -> [B,H,W,3].

    With ``self_condition`` the stem also sees ``x0_prev``, an earlier estimate of the clean
    image (zeros when there is none; Chen et al. 2023, "Analog Bits", §2.2). The output is
    float32 whatever the compute dtype.
    """

    base_channels: int
    channel_mult: Sequence[int]
    num_res_blocks: int
    time_embed_dim: int
    cross_attention_scales: Sequence[int]
    self_attention_scales: Sequence[int] = ()
    extra_skip_scales: Sequence[int] = ()
    patch_size: int = 1
    num_heads: int = 4
    norm_groups: int = 32
    remat: bool = False
    self_condition: bool = False
    full_res_channels: int = 0  # > 0 (patch_size > 1): add a full-resolution refinement
    # Scale/shift the output norm by the time(+formula) embedding (DiT's adaLN final layer).
    output_modulation: bool = False
    dtype: Dtype = jnp.float32

    def _check_config(self, height: int, width: int) -> list[int]:
        """Refuses attention/skip scales that are not level scales, a full-resolution
        refinement without a patchify stem, and images the coarsest level does not divide;
        returns the level scales."""
        scales = level_scales(self.patch_size, len(self.channel_mult))
        for name in ("cross_attention_scales", "self_attention_scales", "extra_skip_scales"):
            bad = [s for s in getattr(self, name) if s not in scales]
            if bad:
                raise ValueError(
                    f"config.model.{name} has {bad}, which are not U-Net level scales; with "
                    f"patch_size {self.patch_size} and {len(self.channel_mult)} levels the "
                    f"scales are {scales}"
                )
        bad = [s for s in self.self_attention_scales if s not in self.cross_attention_scales]
        if bad:
            raise ValueError(
                f"self_attention_scales {bad} must also be cross_attention_scales (self-attention "
                "lives inside the cross-attention block)"
            )
        if self.full_res_channels and self.patch_size == 1:
            raise ValueError(
                "config.model.full_res_channels > 0 needs config.model.patch_size > 1 (with "
                "patch_size 1 the output head already works at full resolution); set it to 0"
            )
        if height % scales[-1] or width % scales[-1]:
            raise ValueError(
                f"image {height}x{width} is not divisible by the coarsest scale {scales[-1]} "
                f"(patch_size {self.patch_size}, {len(self.channel_mult)} levels)"
            )
        return scales

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        t_frac: jax.Array,
        pooled: jax.Array,
        context: jax.Array,
        context_mask: jax.Array,
        x0_prev: jax.Array | None = None,
    ) -> jax.Array:
        scales = self._check_config(x.shape[1], x.shape[2])
        if x0_prev is not None and not self.self_condition:
            raise ValueError("x0_prev given to a U-Net built without self_condition")
        res_cls = nn.remat(ResBlock) if self.remat else ResBlock
        attn_cls = nn.remat(AttentionBlock) if self.remat else AttentionBlock
        groups = self.norm_groups

        # Time embedding (sinusoid -> MLP) plus the pooled formula: every ResBlock sees both.
        temb = timestep_embedding(t_frac, self.base_channels)
        temb = nn.Dense(self.time_embed_dim, name="time_mlp_in")(temb)
        temb = nn.Dense(self.time_embed_dim, name="time_mlp_out")(nn.silu(temb))
        temb = temb + nn.Dense(self.time_embed_dim, name="formula_to_temb")(pooled)
        temb = temb.astype(self.dtype)

        def attend(h, scale, name):
            if scale not in self.cross_attention_scales:
                return h
            return attn_cls(
                self.num_heads, scale in self.self_attention_scales, groups, self.dtype, name=name
            )(h, context, context_mask)

        x_in = x.astype(self.dtype)
        h = x_in
        if self.self_condition:
            prev = jnp.zeros_like(x_in) if x0_prev is None else x0_prev.astype(self.dtype)
            h = jnp.concatenate([x_in, prev], axis=-1)
        stem_input = h
        h = space_to_depth(h, self.patch_size) if self.patch_size > 1 else h
        h = nn.Conv(self.base_channels, (3, 3), dtype=self.dtype, name="conv_in")(h)
        skips = [h]
        for level, mult in enumerate(self.channel_mult):
            for block in range(self.num_res_blocks):
                h = res_cls(
                    self.base_channels * mult, groups, self.dtype, name=f"down{level}_res{block}"
                )(h, temb)
                h = attend(h, scales[level], f"down{level}_attn{block}")
                skips.append(h)
            if level != len(self.channel_mult) - 1:
                h = Downsample(self.dtype, name=f"down{level}_sample")(h)
                skips.append(h)

        mid_channels = self.base_channels * self.channel_mult[-1]
        h = res_cls(mid_channels, groups, self.dtype, name="mid_res0")(h, temb)
        h = attend(h, scales[-1], "mid_attn")
        h = res_cls(mid_channels, groups, self.dtype, name="mid_res1")(h, temb)

        for level in reversed(range(len(self.channel_mult))):
            for block in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = res_cls(
                    self.base_channels * self.channel_mult[level],
                    groups,
                    self.dtype,
                    name=f"up{level}_res{block}",
                )(h, temb)
                h = attend(h, scales[level], f"up{level}_attn{block}")
            if scales[level] in self.extra_skip_scales:
                # Extra skip: the noisy input itself, pooled to this scale, enters the decoder
                # through a zero-initialised 1x1 conv (a no-op at init).
                s = scales[level]
                pooled_in = nn.avg_pool(x_in, (s, s), strides=(s, s))
                h = h + zero_conv(h.shape[-1], 1, self.dtype, f"up{level}_input_skip")(pooled_in)
            if level != 0:
                h = Upsample(self.dtype, name=f"up{level}_sample")(h)

        h = nn.GroupNorm(group_count(h.shape[-1], groups), dtype=self.dtype, name="norm_out")(h)
        if self.output_modulation:
            # The output norm removes each group's mean over the image: with one or two
            # channels per group (32 groups of a 32-64 channel top level) no global colour or
            # brightness survives it, and the image's mean colour would be the same constant
            # for every formula and style. A scale/shift from the embedding puts it back
            # (zero-initialised: the block starts as the plain norm).
            mod = nn.Dense(
                2 * h.shape[-1],
                kernel_init=nn.initializers.zeros,
                dtype=self.dtype,
                name="out_modulation",
            )(nn.silu(temb))
            scale, shift = jnp.split(mod[:, None, None, :], 2, axis=-1)
            h = h * (1 + scale) + shift
        h = nn.silu(h)
        out = zero_conv(3 * self.patch_size**2, 3, self.dtype, "conv_out")(h)
        if self.patch_size > 1:
            out = depth_to_space(out, self.patch_size)
        if self.full_res_channels:
            # Full-resolution refinement, added to the patch read-out above, in which every 2x2
            # patch is one linear function of one feature vector (the samples show a 2x2
            # pattern). Here the features are un-patchified and meet the stem's input in 3x3
            # convs at full resolution, so an output pixel mixes neighbouring patches and the
            # noisy pixels themselves. Zero-initialised: the model starts as without it (making
            # this the only output instead fitted measurably worse: mathart/README.md).
            c, p = self.full_res_channels, self.patch_size
            r = nn.Conv(c * p * p, (3, 3), dtype=self.dtype, name="to_full_res")(h)
            r = jnp.concatenate([depth_to_space(r, p), stem_input], axis=-1)
            r = nn.silu(nn.Conv(c, (3, 3), dtype=self.dtype, name="full_res_conv")(r))
            out = out + zero_conv(3, 3, self.dtype, "full_res_out")(r)
        return out.astype(jnp.float32)
