"""Formula encoder: a pre-LayerNorm transformer over formula tokens with learned positions.

Gives the U-Net two views of a formula (used by `mathart.models.denoiser`):
- ``tokens`` [B, L, D]: one embedding per formula token, the keys/values of the U-Net's
  cross-attention (token-level, so the U-Net can attend to "sin", "4", "theta" separately);
- ``pooled`` [B, D]: the mask-weighted mean of the tokens, added to the time embedding.

The layers run under `nn.scan` (one compiled layer body, stacked params) so a 12-layer encoder
compiles as fast as a 1-layer one; `nn.remat` optionally recomputes activations in backward.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


class EncoderLayer(nn.Module):
    """Self-attention + MLP, each with a pre-LayerNorm residual. Carry-in/carry-out for scan."""

    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, attn_mask: jax.Array) -> tuple[jax.Array, None]:
        h = nn.LayerNorm(dtype=self.dtype, name="ln_attn")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            force_fp32_for_softmax=True,
            deterministic=True,
            name="attn",
        )(h, h, mask=attn_mask)
        x = x + h
        h = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(x)
        h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_in")(h)
        h = nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_out")(nn.gelu(h))
        return x + h, None


class FormulaEncoder(nn.Module):
    """Token ids [B, L] int32 + mask [B, L] bool -> (tokens [B, L, D], pooled [B, D]) float32.

    Padding positions (mask False) are never attended to and do not enter the pooled mean.
    """

    vocab_size: int
    max_len: int
    width: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    remat: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, token_ids: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        length = token_ids.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"formula token length {length} exceeds the encoder's max_len {self.max_len}; "
                "raise config.model.max_formula_tokens or shorten the formulas"
            )
        x = nn.Embed(self.vocab_size, self.width, name="token_embed")(token_ids)
        pos = self.param(
            "pos_embed", nn.initializers.normal(stddev=0.02), (self.max_len, self.width)
        )
        x = (x + pos[None, :length]).astype(self.dtype)
        attn_mask = nn.make_attention_mask(mask, mask)  # [B, 1, L, L]

        layer_cls = nn.remat(EncoderLayer) if self.remat else EncoderLayer
        stack = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=nn.broadcast,
            length=self.num_layers,
        )
        x, _ = stack(self.num_heads, self.mlp_dim, self.dtype, name="layers")(x, attn_mask)
        x = nn.LayerNorm(dtype=jnp.float32, name="ln_out")(x).astype(jnp.float32)

        weights = mask.astype(jnp.float32)[..., None]
        pooled = (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
        return x, pooled
