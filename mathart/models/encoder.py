"""Formula encoder: a pre-LayerNorm transformer over formula tokens with learned positions.

Gives the U-Net two views of a formula (used by `mathart.models.denoiser`):
- ``tokens`` [B, L, D]: one embedding per formula token, the keys/values of the U-Net's
  cross-attention (token-level, so the U-Net can attend to "sin", "4", "theta" separately);
- ``pooled`` [B, D]: the mask-weighted mean of the tokens, added to the time embedding.

Number values (``number_features`` > 0): each token's number value (`Tokenizer.numbers`; NaN
where the token is not a number) enters as continuous features added to its embedding -
Fourier features of the value (Tancik et al. 2020, arXiv 2006.10739) at periods 1/16 ... 2^k,
a signed log1p of its size and a "this is a number" flag, through one linear map. The
encoder then reads 2.6 and 2.65 as neighbours and an unseen value as a point between known
ones, where an embedding per number learns each one separately (the idea of xVal, Golkar et al.
2023, arXiv 2310.02989, which scales one [NUM] embedding by the value; a linear scaling alone
cannot tell a circle of radius 0.5 from one of 5 once LayerNorm rescales the token).

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


def number_features(numbers: jax.Array, count: int) -> jax.Array:
    """float32 [..., 2 * count + 2] of number values [...] (NaN = not a number): zeros where
    NaN, else (1, sign(v) log(1 + |v|), sin(2 pi v / P_k), cos(2 pi v / P_k)) for the periods
    P_k = 2^(k-4), k = 0 .. count - 1 (1/16, 1/8, ..., so 10 periods reach 32)."""
    is_num = ~jnp.isnan(numbers)
    v = jnp.where(is_num, numbers, 0.0).astype(jnp.float32)
    periods = 2.0 ** (jnp.arange(count, dtype=jnp.float32) - 4.0)
    angles = 2.0 * jnp.pi * v[..., None] / periods
    feats = jnp.concatenate(
        [
            jnp.ones_like(v)[..., None],
            (jnp.sign(v) * jnp.log1p(jnp.abs(v)))[..., None],
            jnp.sin(angles),
            jnp.cos(angles),
        ],
        axis=-1,
    )
    return jnp.where(is_num[..., None], feats, 0.0)


class FormulaEncoder(nn.Module):
    """Token ids [B, L] int32 + mask [B, L] bool -> (tokens [B, L, D], pooled [B, D]) float32.

    Padding positions (mask False) are never attended to and do not enter the pooled mean.
    ``numbers`` [B, L] float32 (NaN = not a number) is required when ``number_features`` > 0.
    """

    vocab_size: int
    max_len: int
    width: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    remat: bool = False
    number_features: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, token_ids: jax.Array, mask: jax.Array, numbers: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        length = token_ids.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"formula token length {length} exceeds the encoder's max_len {self.max_len}; "
                "raise config.model.max_formula_tokens or shorten the formulas"
            )
        x = nn.Embed(self.vocab_size, self.width, name="token_embed")(token_ids)
        if self.number_features > 0:
            if numbers is None or numbers.shape != token_ids.shape:
                got = None if numbers is None else numbers.shape
                raise ValueError(
                    f"this encoder reads number values (model.number_features="
                    f"{self.number_features}): pass numbers shaped like the token ids "
                    f"{token_ids.shape} (Tokenizer.numbers_batch), got {got}"
                )
            feats = number_features(numbers, self.number_features)
            x = x + nn.Dense(self.width, use_bias=False, name="number_in")(feats)
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
