"""Dropout that draws a quarter of the random hashes flax's does: the same layer, cheaper bits.

flax's `nn.Dropout` draws a float32 uniform per element through `jax.random.bernoulli`; with
JAX's default partitionable threefry that is one threefry2x32 hash (20 rounds of integer
arithmetic on two words) per element, of which half the output is thrown away. On XLA:CPU that
hashing alone was 13-15 % of a ViT-Ti/4 training step (benchmarks/profile_step.py), and
dropout as a whole 25 %. A keep/drop decision needs far fewer than 32 random bits: here every
hash yields two 32-bit words (`jax.extend.random.threefry_2x32` on a counter), each word two
16-bit draws, so one hash decides four elements. An element is kept when its 16-bit draw is
below round(keep * 65536), i.e. with probability keep to within 2**-17 (0.9 -> 0.8999939), and
kept values are scaled by the inverse of that exact probability, so the expectation is
unchanged, as in flax.

Same keys as flax (`make_rng("dropout")` per call site), same `broadcast_dims`; the masks
differ from flax's (another bit stream), so switching a model changes its random draws, not
its distribution. Keys of another PRNG implementation (config.rng_impl = rbg) fall back to
`jax.random.bits` at 16 bits.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

_LEVELS = 1 << 16


def keep_mask(key: jax.Array, keep_prob: float, shape: Sequence[int]) -> tuple[jax.Array, float]:
    """(bool mask of `shape`, each True with probability ~keep_prob; the exact probability)."""
    threshold = int(min(max(round(keep_prob * _LEVELS), 1), _LEVELS - 1))
    n = int(np.prod(shape))
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else "threefry2x32"
    if "threefry" in impl:
        data = jax.random.key_data(key) if typed else key
        words = threefry_2x32(data, jax.lax.iota(jnp.uint32, -(-n // 2)))
        draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(shape)
    else:
        draws = jax.random.bits(key, tuple(shape), jnp.uint16)
    return draws.astype(jnp.uint32) < threshold, threshold / _LEVELS


class Dropout(nn.Module):
    """Drop-in for `flax.linen.Dropout` (rate, broadcast_dims, deterministic, rng_collection)
    with the cheaper random draws described in the module docstring."""

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool | None = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        dims = {d % inputs.ndim for d in self.broadcast_dims}
        shape = [1 if d in dims else s for d, s in enumerate(inputs.shape)]
        keep, prob = keep_mask(self.make_rng(self.rng_collection), 1.0 - self.rate, shape)
        scale = jnp.asarray(1.0 / prob, inputs.dtype)
        return jnp.where(keep, inputs * scale, jnp.zeros_like(inputs))
