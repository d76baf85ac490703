"""Dtype policy: float32 params and optimizer state, configurable compute dtype.

Families build modules with ``dtype=compute_dtype(config)`` and keep params in float32 (Flax's
default ``param_dtype``). Losses, logits, softmax, norm statistics and hyperbolic geometry stay
in float32; bf16 needs no loss scaling (big_vision, maxtext).
"""

import jax
import jax.numpy as jnp
import ml_collections

from common.config import ConfigError

# float16 is left out on purpose: its range needs loss scaling, which the loop does not do.
_NAMES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
    """Resolves ``config.dtype``; "auto" is bfloat16 on GPU/TPU and float32 on CPU.

    On CPU, XLA's bf16 matmuls are slower than f32 ones, so "auto" keeps f32 there.
    """
    name = str(config.get("dtype", "auto"))
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in _NAMES:
        hint = " (float16 needs loss scaling, which the loop does not do)" * (name == "float16")
        raise ConfigError(
            f"config.dtype='{name}' is not supported{hint}; choose one of: auto, "
            f"{', '.join(_NAMES)}"
        )
    return _NAMES[name]


def dtype_name(dtype: jnp.dtype) -> str:
    return jnp.dtype(dtype).name
