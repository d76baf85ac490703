"""The full network: formula encoder + conditional U-Net + a style embedding + a learned
"no formula" condition and an optional formula-family head. Built by
`mathart.models.build_model` from ``config.model``.

The condition the U-Net sees is the formula's token embeddings plus one extra token for the
drawing style (palette, background, line width: `mathart.input_pipeline.style_features`), and
a pooled vector (mean formula token + style embedding) added to the time embedding. A formula
fixes the geometry; the style fixes the colours, which the formula does not name. An all-zero
style vector means "style unknown" (captioned user data, or style dropout in training).

Entry points (Flax ``method=``):
- ``__call__(x_t, t_frac, token_ids, token_mask, style, drop, x0_prev)`` -> (U-Net output,
  family logits): training; rows with ``drop`` True see the null formula (classifier-free
  guidance training) but keep their style;
- ``training_conditions(token_ids, token_mask, style, drop)`` -> (denoiser `Condition`,
  whole-formula `Condition`, family logits): the first half of ``__call__``, for callers that
  run the U-Nets themselves;
- ``regression_mean(condition, image_shape)`` -> the regression U-Net's mean image (models
  built with ``regression``);
- ``conditions(token_ids, token_mask, style)`` -> (conditional, unconditional) `Condition`s:
  run once per sampling call;
- ``denoise(x_t, t_frac, condition, x0_prev)`` -> U-Net output: run at every sampling step.

``x0_prev`` is the previous estimate of the clean image when the model is built with
``self_condition`` (`mathart.diffusion` feeds it back while sampling; None means "none yet").

With ``regression`` (Mardani et al. 2023, "Residual corrective diffusion", arXiv 2309.15214:
regression first, diffusion on the residual) a second, deterministic U-Net draws the mean image
of a formula, ``regression_mean(condition, image_shape)``: trained with plain MSE, so every
step of it teaches geometry, at every noise level alike. Its input is not noise but the pixel
coordinates x, y and r (CoordConv, Liu et al. 2018, arXiv 1807.03247): a convolution cannot
otherwise tell where in the picture it is, and a formula is a statement about positions. The
denoiser then sees that mean beside x_t (in the stem's second input, the one self-conditioning
uses) and denoises only the residual image - mean.
"""

from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from mathart.models.encoder import FormulaEncoder
from mathart.models.field import ConditionalField
from mathart.models.unet import ConditionalUNet

Dtype = Any


@flax.struct.dataclass
class Condition:
    """What the U-Net sees of a formula."""

    tokens: jax.Array  # [B, L, D] float32
    mask: jax.Array  # [B, L] bool
    pooled: jax.Array  # [B, D] float32


def select_condition(use_null: jax.Array, cond: Condition, null: Condition) -> Condition:
    """Row-wise choice: rows where ``use_null`` [B] is True take the null condition."""

    def pick(a, b):
        return jnp.where(use_null.reshape((-1,) + (1,) * (a.ndim - 1)), b, a)

    return jax.tree.map(pick, cond, null)


def concat_conditions(a: Condition, b: Condition) -> Condition:
    """Stacks two conditions along the batch (the CFG pair in one network call)."""
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y], axis=0), a, b)


def pixel_coordinates(height: int, width: int) -> jax.Array:
    """[H, W, 3] float32: x and y of each pixel centre in [-1, 1] (y up) and the
    distance r from the centre (1 at the edge midpoints)."""
    ys = 1.0 - (2.0 * jnp.arange(height, dtype=jnp.float32) + 1.0) / height
    xs = (2.0 * jnp.arange(width, dtype=jnp.float32) + 1.0) / width - 1.0
    y, x = jnp.meshgrid(ys, xs, indexing="ij")
    return jnp.stack([x, y, jnp.sqrt(x * x + y * y)], axis=-1)


REGRESSION_NETS = ("unet", "field")  # config.model.regression_net


class MathArtDenoiser(nn.Module):
    """Formula-conditioned denoiser; sizes come from ``config.model`` (see configs/mathart.py)."""

    vocab_size: int
    max_formula_tokens: int
    encoder_width: int
    encoder_layers: int
    encoder_heads: int
    encoder_mlp_dim: int
    base_channels: int
    channel_mult: Sequence[int]
    num_res_blocks: int
    time_embed_dim: int
    cross_attention_scales: Sequence[int]
    self_attention_scales: Sequence[int] = ()
    extra_skip_scales: Sequence[int] = ()
    patch_size: int = 1
    num_attention_heads: int = 4
    norm_groups: int = 32
    style_dim: int = 32  # length of the style feature vector (0: no style input)
    num_families: int = 0  # > 0 adds the family-classification head on the pooled formula
    remat: bool = False
    self_condition: bool = False  # the U-Net also sees the previous x0 estimate
    full_res_channels: int = 0  # width of the U-Net's full-resolution refinement (0: none)
    regression: bool = False  # a regression U-Net draws the mean; diffusion on the residual
    regression_channels: int = 0  # base channels of the regression U-Net (0: base_channels)
    # The regression mean's network: "unet" (a U-Net on pixel coordinates) or "field" (a
    # conditional neural field, `mathart.models.field`, of field_* sizes).
    regression_net: str = "unet"
    field_width: int = 128
    field_depth: int = 3
    field_frequencies: int = 5
    field_cross_attention: bool = True
    output_modulation: bool = False  # the U-Nets' output norm scaled/shifted by the condition
    number_features: int = 0  # > 0: the encoder reads number values (Fourier features)
    dtype: Dtype = jnp.float32

    def setup(self):
        if self.regression and self.self_condition:
            raise ValueError(
                "config.model.regression and config.diffusion.self_condition both use the "
                "U-Net's second input (the regression mean / the previous x0 estimate); turn "
                "one of them off"
            )
        self.encoder = FormulaEncoder(
            vocab_size=self.vocab_size,
            max_len=self.max_formula_tokens,
            width=self.encoder_width,
            num_layers=self.encoder_layers,
            num_heads=self.encoder_heads,
            mlp_dim=self.encoder_mlp_dim,
            remat=self.remat,
            number_features=self.number_features,
            dtype=self.dtype,
        )
        # The denoiser and the regression U-Net share their shape; only width and inputs differ.
        shape = dict(
            channel_mult=tuple(self.channel_mult),
            num_res_blocks=self.num_res_blocks,
            time_embed_dim=self.time_embed_dim,
            cross_attention_scales=tuple(self.cross_attention_scales),
            self_attention_scales=tuple(self.self_attention_scales),
            patch_size=self.patch_size,
            num_heads=self.num_attention_heads,
            norm_groups=self.norm_groups,
            remat=self.remat,
            full_res_channels=self.full_res_channels,
            output_modulation=self.output_modulation,
            dtype=self.dtype,
        )
        self.unet = ConditionalUNet(
            base_channels=self.base_channels,
            extra_skip_scales=tuple(self.extra_skip_scales),
            self_condition=self.self_condition or self.regression,
            **shape,
        )
        if self.regression and self.regression_net == "field":
            self.mean_field = ConditionalField(
                width=self.field_width,
                depth=self.field_depth,
                frequencies=self.field_frequencies,
                cross_attention=self.field_cross_attention,
                num_heads=self.num_attention_heads,
                dtype=self.dtype,
            )
        elif self.regression:
            if self.regression_net not in REGRESSION_NETS:
                raise ValueError(
                    f"config.model.regression_net '{self.regression_net}' unknown; choose one "
                    f"of: {', '.join(REGRESSION_NETS)}"
                )
            self.mean_unet = ConditionalUNet(
                base_channels=self.regression_channels or self.base_channels, **shape
            )
        # The "no formula" condition for classifier-free guidance: one learned token.
        self.null_token = self.param(
            "null_token", nn.initializers.normal(stddev=0.02), (self.encoder_width,)
        )
        if self.num_families > 0:
            self.family_head = nn.Dense(self.num_families, name="family_head")
        if self.style_dim > 0:
            self.style_in = nn.Dense(self.encoder_width, name="style_in")
            self.style_out = nn.Dense(self.encoder_width, name="style_out")

    def encode(
        self, token_ids: jax.Array, token_mask: jax.Array, numbers: jax.Array | None = None
    ) -> Condition:
        tokens, pooled = self.encoder(token_ids, token_mask, numbers)
        return Condition(tokens=tokens, mask=token_mask.astype(bool), pooled=pooled)

    def null_condition(self, like: Condition) -> Condition:
        b, length, width = like.tokens.shape
        first = jnp.arange(length) == 0
        tokens = jnp.where(first[None, :, None], self.null_token, 0.0)
        return Condition(
            tokens=jnp.broadcast_to(tokens, (b, length, width)).astype(jnp.float32),
            mask=jnp.broadcast_to(first, (b, length)),
            pooled=jnp.broadcast_to(self.null_token, (b, width)).astype(jnp.float32),
        )

    def with_style(self, formula: Condition, style: jax.Array | None) -> Condition:
        """Appends the style token and adds it to the pooled vector."""
        if self.style_dim <= 0:
            return formula
        if style is None or style.shape[-1] != self.style_dim:
            got = None if style is None else style.shape
            raise ValueError(f"style features must have shape [B, {self.style_dim}], got {got}")
        emb = self.style_out(nn.silu(self.style_in(style.astype(jnp.float32))))
        b = emb.shape[0]
        return Condition(
            tokens=jnp.concatenate([formula.tokens, emb[:, None, :]], axis=1),
            mask=jnp.concatenate([formula.mask, jnp.ones((b, 1), bool)], axis=1),
            pooled=formula.pooled + emb,
        )

    def conditions(
        self,
        token_ids: jax.Array,
        token_mask: jax.Array,
        style: jax.Array | None,
        numbers: jax.Array | None = None,
    ) -> tuple[Condition, Condition]:
        """(formula + style, null formula + same style): the pair classifier-free guidance
        contrasts, so guidance strengthens the formula and leaves the style alone."""
        formula = self.encode(token_ids, token_mask, numbers)
        null = self.null_condition(formula)
        return self.with_style(formula, style), self.with_style(null, style)

    def family_logits(self, condition: Condition) -> jax.Array | None:
        if self.num_families <= 0:
            return None
        return self.family_head(condition.pooled).astype(jnp.float32)

    def denoise(
        self,
        x_t: jax.Array,
        t_frac: jax.Array,
        condition: Condition,
        x0_prev: jax.Array | None = None,
    ) -> jax.Array:
        return self.unet(x_t, t_frac, condition.pooled, condition.tokens, condition.mask, x0_prev)

    def regression_mean(self, condition: Condition, image_shape: Sequence[int]) -> jax.Array:
        """The regression U-Net's image [B, H, W, 3] float32 for ``condition`` (a formula and
        style; never the null formula: the mean is a function of what the user gives)."""
        if not self.regression:
            raise ValueError("regression_mean of a model built without config.model.regression")
        b, h, w = image_shape[0], image_shape[1], image_shape[2]
        grid = jnp.broadcast_to(pixel_coordinates(h, w), (b, h, w, 3))
        if self.regression_net == "field":
            return self.mean_field(grid, condition.pooled, condition.tokens, condition.mask)
        # The U-Net's time input is a constant: there is no noise level to tell it.
        return self.mean_unet(
            grid, jnp.ones((b,), jnp.float32), condition.pooled, condition.tokens, condition.mask
        )

    def training_conditions(
        self,
        token_ids: jax.Array,
        token_mask: jax.Array,
        style: jax.Array | None = None,
        drop: jax.Array | None = None,
        numbers: jax.Array | None = None,
    ) -> tuple[Condition, Condition, jax.Array | None]:
        """(denoiser condition, whole formula, family logits) of training rows: rows with
        ``drop`` True get the null formula in the first; the second has no row dropped (the
        regression U-Net's). Computed once per step even when the U-Net runs twice."""
        formula = self.encode(token_ids, token_mask, numbers)
        logits = self.family_logits(formula)
        cond = formula
        if drop is not None:
            cond = select_condition(drop, formula, self.null_condition(formula))
        return self.with_style(cond, style), self.with_style(formula, style), logits

    def __call__(
        self,
        x_t: jax.Array,
        t_frac: jax.Array,
        token_ids: jax.Array,
        token_mask: jax.Array,
        style: jax.Array | None = None,
        drop: jax.Array | None = None,
        x0_prev: jax.Array | None = None,
        numbers: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        cond, formula, logits = self.training_conditions(
            token_ids, token_mask, style, drop, numbers
        )
        if self.regression and x0_prev is None:  # the denoiser's second input is the mean
            x0_prev = self.regression_mean(formula, x_t.shape)
        return self.denoise(x_t, t_frac, cond, x0_prev), logits
