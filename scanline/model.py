"""The three scan-line classifiers, selected by ``config.model.name``.

Used by `scanline.task`. Every model maps z-scored scan lines ``lines: [B, T, L]`` (T lines of L
pixels, in scan order) to logits ``[B, P, K]`` at P read-out positions, and says how many lines
each position has seen (`lines_seen`, [P] ints): the image prediction is the last position.

* ``vit`` — `ScanLineEncoder`, the seed's model (Kronberger's Rust ScanLineEncoder): one token
  per scan line (Linear line -> embedding, or the 1-D CNN tokenizer), a learned CLS token at
  position 0, learned positions, a pre-norm Transformer encoder with full attention, a linear
  head on the CLS output. P = 1 (it sees all T lines).
* ``sequential`` — `SequentialScanLineEncoder`: CNN tokenizer per line, a causal mask (line i
  attends to lines j <= i, optionally only j > i - W in every layer, so that the read-out at i
  depends on at most num_layers * (W - 1) + 1 lines), and the head applied at *every* position:
  position i is the prediction after i + 1 lines (progressive prediction). P = T. This is the
  Rust branch's plan with its two bugs fixed: the mask is "allowed" = lower triangle (Flax's
  convention: True = may attend), and nothing is read from a CLS token at position 0, which a
  correct causal mask would blind.
* ``lrcn`` — `LRCN`, Gordon et al. (2020)'s best model: a window of W = 20 consecutive full
  lines through a small VGG-like 2-D CNN (first conv 7x7 stride 2; blocks of two 3x3 convs and a
  2x2 max-pool with 32/64/128 filters), rolled down the scan with `window_stride`, the window
  features fed to an LSTM with 256 units, a linear head at every step. P = number of windows.
  ``lrcn_window = 0`` makes the window the whole scan (P = 1): Gordon et al.'s full-image CNN,
  with the LSTM cell as a one-step gated head.

Parameters are float32; compute runs in `dtype` (`common.precision.compute_dtype`); logits are
returned in float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from common.flops import same_conv_outputs, same_conv_taps
from common.pooling import max_pool

Dtype = Any


class LinearTokenizer(nn.Module):
    """One token per line: Linear(L -> embedding_dim) (the Rust `main` branch)."""

    embedding_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, lines, *, train: bool):
        del train
        return nn.Dense(self.embedding_dim, dtype=self.dtype, name="proj")(lines)


class CNNTokenizer(nn.Module):
    """One token per line from a 1-D CNN along the line, then an average over pixels.

    Conv(c1, k5, stride) -> ReLU -> dropout -> Conv(c2, k3) -> ReLU -> dropout ->
    Conv(embedding_dim, k3) -> ReLU -> mean over the line (the Rust `vit-cnn-tokenizer` branch,
    channels (128, 256), stride 1). Lines never mix, so it keeps a causal model causal.
    """

    embedding_dim: int
    channels: Sequence[int] = (128, 256)
    stride: int = 1
    dropout: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, lines, *, train: bool):
        b, t, length = lines.shape
        x = lines.reshape(b * t, length, 1).astype(self.dtype)
        kernels = (5,) + (3,) * len(self.channels)
        widths = (*self.channels, self.embedding_dim)
        for i, (width, k) in enumerate(zip(widths, kernels)):
            stride = self.stride if i == 0 else 1
            x = nn.Conv(width, (k,), strides=(stride,), dtype=self.dtype, name=f"conv{i}")(x)
            x = nn.relu(x)
            if i < len(widths) - 1:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x.mean(axis=1).reshape(b, t, self.embedding_dim)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer layer: x + Drop(MHA(LN x)), then x + Drop(MLP(LN x)) with GELU."""

    num_heads: int
    mlp_size: int
    dropout: float = 0.1
    attention_dropout: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask, *, train: bool):
        y = nn.LayerNorm(dtype=self.dtype, name="ln_attn")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            dropout_rate=self.attention_dropout,
            deterministic=not train,
            force_fp32_for_softmax=True,
            name="attn",
        )(y, y, mask=mask)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(x)
        y = nn.gelu(nn.Dense(self.mlp_size, dtype=self.dtype, name="mlp_in")(y))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_out")(y)
        return x + nn.Dropout(self.dropout, deterministic=not train)(y)


class Encoder(nn.Module):
    """A stack of `EncoderBlock`s and a final LayerNorm."""

    num_layers: int
    num_heads: int
    mlp_size: int
    dropout: float = 0.1
    attention_dropout: float = 0.1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask, *, train: bool):
        for i in range(self.num_layers):
            x = EncoderBlock(
                self.num_heads,
                self.mlp_size,
                self.dropout,
                self.attention_dropout,
                self.dtype,
                name=f"block{i}",
            )(x, mask, train=train)
        return nn.LayerNorm(dtype=self.dtype, name="ln_final")(x)

    @classmethod
    def from_config(cls, cfg: ml_collections.ConfigDict, dtype: Dtype) -> "Encoder":
        """The encoder config.model describes, named "encoder" in the parent's parameters."""
        return cls(
            cfg.num_layers,
            cfg.num_heads,
            cfg.mlp_size,
            cfg.dropout,
            cfg.attention_dropout,
            dtype,
            name="encoder",
        )


def _tokenizer(cfg: ml_collections.ConfigDict, dtype: Dtype) -> nn.Module:
    if cfg.tokenizer == "linear":
        return LinearTokenizer(cfg.embedding_dim, dtype=dtype, name="tokenizer")
    if cfg.tokenizer == "cnn":
        return CNNTokenizer(
            cfg.embedding_dim,
            channels=tuple(cfg.tokenizer_channels),
            stride=cfg.tokenizer_stride,
            dropout=cfg.dropout,
            dtype=dtype,
            name="tokenizer",
        )
    raise ValueError(f"config.model.tokenizer must be linear|cnn, got '{cfg.tokenizer}'")


def causal_mask(num_lines: int, window: int = 0) -> np.ndarray:
    """Attention permission [1, 1, T, T]: query line i may attend key line j iff j <= i
    (and j > i - window when window > 0). True = allowed (Flax's convention)."""
    i = np.arange(num_lines)[:, None]
    j = np.arange(num_lines)[None, :]
    allowed = j <= i
    if window > 0:
        allowed &= j > i - window
    return allowed[None, None]


class ScanLineEncoder(nn.Module):
    """`vit`: bidirectional line-token Transformer with a CLS read-out -> logits [B, 1, K]."""

    cfg: ml_collections.ConfigDict
    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, lines, *, train: bool):
        c = self.cfg
        tokens = _tokenizer(c, self.dtype)(lines, train=train)  # [B, T, D]
        b, t, d = tokens.shape
        cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(tokens.dtype), tokens], 1)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, t + 1, d))
        x = nn.Dropout(c.dropout, deterministic=not train)(x + pos.astype(x.dtype))
        x = Encoder.from_config(c, self.dtype)(x, None, train=train)
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x[:, :1])
        return logits.astype(jnp.float32)

    @staticmethod
    def lines_seen(cfg: ml_collections.ConfigDict, num_lines: int) -> np.ndarray:
        del cfg
        return np.array([num_lines])


class SequentialScanLineEncoder(nn.Module):
    """`sequential`: causal line Transformer, logits at every line -> [B, T, K]."""

    cfg: ml_collections.ConfigDict
    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, lines, *, train: bool):
        c = self.cfg
        tokens = _tokenizer(c, self.dtype)(lines, train=train)  # [B, T, D]
        _, t, d = tokens.shape
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, t, d))
        x = nn.Dropout(c.dropout, deterministic=not train)(tokens + pos.astype(tokens.dtype))
        mask = jnp.asarray(causal_mask(t, c.window))
        x = Encoder.from_config(c, self.dtype)(x, mask, train=train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)

    @staticmethod
    def lines_seen(cfg: ml_collections.ConfigDict, num_lines: int) -> np.ndarray:
        del cfg
        return np.arange(1, num_lines + 1)


class WindowCNN(nn.Module):
    """Gordon et al.'s base CNN on one window [N, W, L, 1] -> features [N, F]."""

    channels: Sequence[int] = (32, 64, 128)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        for block, width in enumerate(self.channels):
            for layer in range(2):
                first = block == 0 and layer == 0
                x = nn.Conv(
                    width,
                    (7, 7) if first else (3, 3),
                    strides=(2, 2) if first else (1, 1),
                    dtype=self.dtype,
                    name=f"conv{block}_{layer}",
                )(x)
                x = nn.relu(x)
            x = max_pool(x, 2, "SAME")  # nn.max_pool's values, a cheaper backward
        return x.reshape(x.shape[0], -1)


def window_length(cfg: ml_collections.ConfigDict, num_lines: int) -> int:
    """Lines per LRCN window: ``lrcn_window``, or every line of the scan when it is 0."""
    w = int(cfg.lrcn_window)
    if w < 0:
        raise ValueError(f"config.model.lrcn_window must be >= 0 (0 = whole scan), got {w}")
    return w or num_lines


def window_starts(cfg: ml_collections.ConfigDict, num_lines: int) -> np.ndarray:
    """First line of each LRCN window; the last window always ends at the last line."""
    w, s = window_length(cfg, num_lines), cfg.lrcn_stride
    if w > num_lines:
        raise ValueError(
            f"config.model.lrcn_window={w} is longer than the {num_lines} lines of an image"
        )
    if s < 1:
        raise ValueError(f"config.model.lrcn_stride must be >= 1, got {s}")
    starts = np.arange(0, num_lines - w + 1, s)
    if starts[-1] != num_lines - w:
        starts = np.r_[starts, num_lines - w]
    return starts


class LRCN(nn.Module):
    """`lrcn`: rolling 20-line windows -> 2-D CNN -> LSTM(256) -> logits per window [B, P, K]."""

    cfg: ml_collections.ConfigDict
    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, lines, *, train: bool):
        c = self.cfg
        b, t, length = lines.shape
        starts, w = window_starts(c, t), window_length(c, t)
        idx = starts[:, None] + np.arange(w)[None, :]  # [P, W]
        windows = lines[:, idx]  # [B, P, W, L]
        p = len(starts)
        feats = WindowCNN(tuple(c.cnn_channels), self.dtype, name="cnn")(
            windows.reshape(b * p, w, length, 1).astype(self.dtype)
        )
        feats = nn.Dropout(c.dropout, deterministic=not train)(feats.reshape(b, p, -1))
        hidden = nn.RNN(
            nn.OptimizedLSTMCell(c.lstm_size, dtype=self.dtype, param_dtype=jnp.float32),
            name="lstm",
        )(feats)  # [B, P, H]
        hidden = nn.Dropout(c.dropout, deterministic=not train)(hidden)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(hidden).astype(jnp.float32)

    @staticmethod
    def lines_seen(cfg: ml_collections.ConfigDict, num_lines: int) -> np.ndarray:
        return window_starts(cfg, num_lines) + window_length(cfg, num_lines)


MODELS = {"vit": ScanLineEncoder, "sequential": SequentialScanLineEncoder, "lrcn": LRCN}

# The config.model settings each architecture reads; the others ignore them.
_TRANSFORMERS = ("vit", "sequential")
READ_BY = {
    "tokenizer": _TRANSFORMERS,
    "tokenizer_channels": _TRANSFORMERS,
    "tokenizer_stride": _TRANSFORMERS,
    "embedding_dim": _TRANSFORMERS,
    "num_layers": _TRANSFORMERS,
    "num_heads": _TRANSFORMERS,
    "mlp_size": _TRANSFORMERS,
    "attention_dropout": _TRANSFORMERS,
    "window": ("sequential",),
    "progressive_weight": ("sequential", "lrcn"),  # models with a read-out per line or window
    "progressive_from_line": ("sequential", "lrcn"),
    "lrcn_window": ("lrcn",),
    "lrcn_stride": ("lrcn",),
    "cnn_channels": ("lrcn",),
    "lstm_size": ("lrcn",),
}


def ignored_settings(cfg: ml_collections.ConfigDict) -> dict[str, str]:
    """``model.<key>`` -> why the model ``cfg`` (config.model) describes does not read it."""
    out = {
        f"model.{key}": f"only the {' and '.join(names)} model{'s' * (len(names) > 1)} "
        f"{'read' if len(names) > 1 else 'reads'} it and config.model.name is '{cfg.name}'"
        for key, names in READ_BY.items()
        if cfg.name not in names
    }
    if cfg.name in _TRANSFORMERS and cfg.tokenizer != "cnn":
        for key in ("tokenizer_channels", "tokenizer_stride"):
            out.setdefault(
                f"model.{key}",
                f"only the cnn tokenizer reads it and model.tokenizer is '{cfg.tokenizer}'",
            )
    return out


def build_model(cfg: ml_collections.ConfigDict, num_classes: int, dtype: Dtype) -> nn.Module:
    """The model named by ``cfg.name`` (config.model)."""
    if cfg.name not in MODELS:
        raise ValueError(
            f"unknown config.model.name '{cfg.name}'; choose one of: {', '.join(MODELS)}"
        )
    if cfg.name != "lrcn" and cfg.embedding_dim % cfg.num_heads:
        raise ValueError(
            f"config.model.embedding_dim={cfg.embedding_dim} is not divisible by "
            f"num_heads={cfg.num_heads}"
        )
    # Frozen: a module attribute must be hashable and must not change under the model's feet.
    return MODELS[cfg.name](ml_collections.FrozenConfigDict(cfg), num_classes, dtype)


def lines_seen(cfg: ml_collections.ConfigDict, num_lines: int) -> np.ndarray:
    """Lines each read-out position of the configured model has seen, [P] ints."""
    return MODELS[cfg.name].lines_seen(cfg, num_lines)


def forward_macs(cfg: ml_collections.ConfigDict, num_lines: int, line_length: int, k: int) -> int:
    """Analytic multiply-accumulates of one forward pass on one image (matmuls and convs).

    Counts what is computed (causal attention is not halved; convolution taps on the SAME
    padding are not counted, as XLA does not); norms, activations and the softmax are left out.
    Training FLOPs ~ 3 x 2 x this (forward + backward).
    """

    def tokenizer_macs() -> int:
        d = cfg.embedding_dim
        if cfg.tokenizer == "linear":
            return line_length * d
        widths = (*cfg.tokenizer_channels, d)
        kernels = (5,) + (3,) * len(cfg.tokenizer_channels)
        n, cin, total = line_length, 1, 0
        for i, (width, kk) in enumerate(zip(widths, kernels)):
            stride = cfg.tokenizer_stride if i == 0 else 1
            total += same_conv_taps(n, kk, stride) * cin * width
            n, cin = same_conv_outputs(n, stride), width
        return total

    if cfg.name in ("vit", "sequential"):
        d, t = cfg.embedding_dim, num_lines + (1 if cfg.name == "vit" else 0)
        per_layer = t * (4 * d * d + 2 * d * cfg.mlp_size) + 2 * t * t * d
        heads = (1 if cfg.name == "vit" else num_lines) * d * k
        return num_lines * tokenizer_macs() + cfg.num_layers * per_layer + heads
    if cfg.name == "lrcn":
        h, w, cin, total = window_length(cfg, num_lines), line_length, 1, 0
        for block, width in enumerate(cfg.cnn_channels):
            for layer in range(2):
                first = block == 0 and layer == 0
                stride, kk = (2, 7) if first else (1, 3)
                total += same_conv_taps(h, kk, stride) * same_conv_taps(w, kk, stride) * cin * width
                h, w, cin = same_conv_outputs(h, stride), same_conv_outputs(w, stride), width
            h, w = same_conv_outputs(h, 2), same_conv_outputs(w, 2)
        feats, hid = h * w * cin, cfg.lstm_size
        p = len(window_starts(cfg, num_lines))
        return p * (total + 4 * (feats + hid) * hid + hid * k)
    raise ValueError(f"unknown config.model.name '{cfg.name}'")
