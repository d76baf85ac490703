"""Vision Transformer (ViT) for small images, in Flax Linen.

Used by `vit.task.VitTask` (training, eval) and by `common.bench` through the task. The
architecture matches timm's `VisionTransformer(img_size=32, patch_size=4, class_token=True,
global_pool="token", qkv_bias=True)`, so parameter counts agree exactly (5,362,762 for
D192/L12/H3/MLP768/patch 4, see tests/vit/test_model.py):

    image [B, H, W, C] -> patches [B, N, p*p*C] -> Dense(D)      (patch embedding, no conv)
    -> prepend CLS token -> + learned position embedding [1, N+1, D] -> dropout
    -> L x pre-LN block:  x + DropPath(Dropout(MHSA(LN(x))))
                          x + DropPath(MLP(LN(x)))      MLP: Dense(M) GELU Dropout Dense(D) Dropout
    -> LN -> CLS token (or mean of patch tokens when pool="gap") -> Dense(num_classes)

The patch embedding is a reshape + Dense rather than a strided conv: the two are the same linear
map, and XLA on CPU lowers the conv much more slowly. LayerNorm eps is 1e-6 (timm, vit_jax).
GELU is the exact erf form (PyTorch's `nn.GELU()` default), not the tanh approximation.

Initialisation follows timm's default ("timm" mode): truncated-normal(0.02) Dense kernels with
zero biases, truncated-normal(0.02) position embeddings, normal(1e-6) CLS token; the patch
embedding uses LeCun-normal (fan-in scaling, like PyTorch's default conv init).

Precision: params are float32; `dtype` is the compute dtype (bfloat16 on GPU/TPU). LayerNorm
statistics and the attention softmax are computed in float32, and the logits are returned as
float32, whatever `dtype` is.

`scan_layers=True` stacks the blocks' params along a leading layer axis and runs them with
`nn.scan`: one compiled block instead of L copies, which cuts compile time roughly by L. Param
trees of the two layouts differ (checkpoints do not transfer between them); the maths is equal.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from common.dropout import Dropout
from common.precision import compute_dtype

LN_EPS = 1e-6
_dense_init = nn.initializers.truncated_normal(stddev=0.02)


def gelu_exact(x: jax.Array) -> jax.Array:
    """GELU with the exact erf (PyTorch `nn.GELU()` default; flax defaults to tanh)."""
    return nn.gelu(x, approximate=False)


def drop_path(x: jax.Array, rate: jax.Array | float, rng: jax.Array) -> jax.Array:
    """Stochastic depth: zeroes the whole residual branch of a random subset of examples.

    `x`: [B, ...]. Each example's branch survives with probability 1 - rate and is rescaled by
    1 / (1 - rate) so its expectation is unchanged (Huang et al. 2016; timm `DropPath`).
    `rate` may be a traced scalar (per-layer rates under `nn.scan`).
    """
    keep_prob = 1.0 - jnp.asarray(rate, jnp.float32)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(rng, keep_prob, shape)
    # rate == 0 must be the identity (keep_prob == 1 divides by 1).
    return jnp.where(keep, x / keep_prob.astype(x.dtype), jnp.zeros_like(x))


class MlpBlock(nn.Module):
    """Transformer MLP: Dense(mlp_size) -> GELU -> Dropout -> Dense(D) -> Dropout."""

    mlp_size: int
    dropout_rate: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        width = x.shape[-1]
        x = nn.Dense(self.mlp_size, dtype=self.dtype, kernel_init=_dense_init, name="fc1")(x)
        x = gelu_exact(x)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(width, dtype=self.dtype, kernel_init=_dense_init, name="fc2")(x)
        return Dropout(self.dropout_rate, deterministic=not train)(x)


class EncoderBlock(nn.Module):
    """One pre-LN transformer block. `drop_path_rate` may be traced (it is scanned over)."""

    num_heads: int
    mlp_size: int
    dropout_rate: float
    attention_dropout_rate: float
    use_drop_path: bool
    train: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, drop_path_rate: jax.Array) -> tuple[jax.Array, None]:
        width = x.shape[-1]
        y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm1")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            qkv_features=width,
            dtype=self.dtype,
            dropout_rate=self.attention_dropout_rate,
            deterministic=not self.train,
            kernel_init=_dense_init,
            # bf16 softmax loses the small attention weights; keep it in f32.
            force_fp32_for_softmax=jnp.dtype(self.dtype) != jnp.float32,
            name="attn",
        )(y, y)
        y = Dropout(self.dropout_rate, deterministic=not self.train)(y)
        if self.use_drop_path and self.train:
            y = drop_path(y, drop_path_rate, self.make_rng("dropout"))
        x = x + y

        y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm2")(x)
        y = MlpBlock(self.mlp_size, self.dropout_rate, dtype=self.dtype, name="mlp")(
            y, train=self.train
        )
        if self.use_drop_path and self.train:
            y = drop_path(y, drop_path_rate, self.make_rng("dropout"))
        # Second output: nn.scan expects (carry, per-layer output).
        return x + y, None


class VisionTransformer(nn.Module):
    """ViT classifier for [B, H, W, C] float images (already normalised); returns f32 logits."""

    num_classes: int = 10
    patch_size: int = 4
    embedding_dim: int = 192
    num_layers: int = 12
    num_heads: int = 3
    mlp_size: int = 768
    dropout_rate: float = 0.1  # embeddings, attention output, MLP (timm `drop_rate`)
    attention_dropout_rate: float = 0.1  # attention probabilities (timm `attn_drop_rate`)
    stochastic_depth_rate: float = 0.0  # last block's drop-path rate; linear from 0 (timm)
    pool: str = "cls"  # "cls": CLS token | "gap": mean of patch tokens (no CLS token)
    scan_layers: bool = False
    dtype: Any = jnp.float32

    def patchify(self, images: jax.Array) -> jax.Array:
        """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C], patches in row-major order."""
        b, h, w, c = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"image size {h}x{w} is not divisible by patch_size {p}; "
                "choose a patch_size that divides both sides"
            )
        x = images.reshape(b, h // p, p, w // p, p, c)
        x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, H/p, W/p, p, p, C]
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        if self.pool not in ("cls", "gap"):
            raise ValueError(f"unknown pool '{self.pool}' for VisionTransformer; use cls or gap")
        if self.embedding_dim % self.num_heads:
            raise ValueError(
                f"embedding_dim {self.embedding_dim} is not divisible by num_heads "
                f"{self.num_heads}; choose sizes with embedding_dim % num_heads == 0"
            )
        x = self.patchify(images.astype(self.dtype))
        x = nn.Dense(
            self.embedding_dim,
            dtype=self.dtype,
            kernel_init=nn.initializers.lecun_normal(),
            name="patch_embed",
        )(x)
        b, n, d = x.shape
        if self.pool == "cls":
            cls = self.param("cls_token", nn.initializers.normal(stddev=1e-6), (1, 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
            n += 1
        pos = self.param("pos_embedding", _dense_init, (1, n, d))
        x = x + pos.astype(x.dtype)
        x = Dropout(self.dropout_rate, deterministic=not train)(x)

        # Per-layer drop-path rates rise linearly from 0 to stochastic_depth_rate (timm `dpr`).
        rates = jnp.linspace(0.0, self.stochastic_depth_rate, self.num_layers)
        block_kwargs = dict(
            num_heads=self.num_heads,
            mlp_size=self.mlp_size,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            use_drop_path=self.stochastic_depth_rate > 0,
            train=train,
            dtype=self.dtype,
        )
        if self.scan_layers:
            blocks = nn.scan(
                EncoderBlock,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=0,
                length=self.num_layers,
            )(**block_kwargs, name="blocks")
            x, _ = blocks(x, rates)
        else:
            for i in range(self.num_layers):
                x, _ = EncoderBlock(**block_kwargs, name=f"block{i}")(x, rates[i])

        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm")(x)
        x = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_dense_init, name="head")(
            x
        )
        return logits.astype(jnp.float32)


def forward_macs_per_example(
    *,
    image_size: int,
    channels: int,
    patch_size: int,
    embedding_dim: int,
    num_layers: int,
    mlp_size: int,
    num_classes: int,
    pool: str = "cls",
) -> int:
    """Multiply-accumulates of one forward pass (matmuls only; norms/softmax/GELU ignored).

    Per block with N tokens and width D: 4*N*D^2 (q, k, v, out projections) + 2*N*D*M (MLP) +
    2*N^2*D (scores and the weighted sum); plus the patch embedding (N_patch * p*p*C * D) and
    the head (D * classes). ViT-Ti/4 at 32 px: ~0.36 GMAC.
    """
    n_patch = (image_size // patch_size) ** 2
    n = n_patch + (1 if pool == "cls" else 0)
    d, m = embedding_dim, mlp_size
    per_block = 4 * n * d * d + 2 * n * d * m + 2 * n * n * d
    embed = n_patch * patch_size * patch_size * channels * d
    head = d * num_classes
    return num_layers * per_block + embed + head


def build_model(config: ml_collections.ConfigDict, num_classes: int = 10) -> VisionTransformer:
    """The ViT described by ``config.model`` with the run's compute dtype (CIFAR-10: 10
    classes)."""
    m = config.model
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=int(m.patch_size),
        embedding_dim=int(m.embedding_dim),
        num_layers=int(m.num_layers),
        num_heads=int(m.num_heads),
        mlp_size=int(m.mlp_size),
        dropout_rate=float(m.dropout_rate),
        attention_dropout_rate=float(m.attention_dropout_rate),
        stochastic_depth_rate=float(m.stochastic_depth_rate),
        pool=str(m.pool),
        scan_layers=bool(m.scan_layers),
        dtype=compute_dtype(config),
    )
