"""The ternary universe: all 3^9 vectors of {-1, 0, 1}^9 and their 3-adic valuations.

Row i of the dataset is operation index i, written little-endian in base 3 with every digit
shifted by -1 (digit 0 -> trit -1). The label of interest is the 3-adic valuation v3(i): the
largest k with 3^k | i, with v3(0) := 9. It equals the number of leading -1 trits.

Used by the input pipeline, the losses (valuations of index differences, on device), the
metrics (level structure) and `ternary_vae.geometry_budget`.
"""

import jax.numpy as jnp
import numpy as np

NUM_TRITS = 9
NUM_OPERATIONS = 3**NUM_TRITS  # 19,683
MAX_VALUATION = NUM_TRITS  # v3(0) := 9
NUM_LEVELS = MAX_VALUATION + 1  # valuations 0..9


def index_to_trits(indices: np.ndarray) -> np.ndarray:
    """indices: int [...] in [0, 3^9) -> trits float32 [..., 9] in {-1, 0, 1}, little-endian."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= NUM_OPERATIONS):
        raise ValueError(
            f"operation indices must lie in [0, {NUM_OPERATIONS}), got range "
            f"[{indices.min()}, {indices.max()}]"
        )
    powers = 3 ** np.arange(NUM_TRITS, dtype=np.int64)
    digits = (indices[..., None] // powers) % 3
    return (digits - 1).astype(np.float32)


def trits_to_index(trits: np.ndarray) -> np.ndarray:
    """trits [..., 9] in {-1, 0, 1} -> int64 indices [...] (inverse of `index_to_trits`)."""
    trits = np.asarray(trits)
    if trits.shape[-1] != NUM_TRITS:
        raise ValueError(f"trit vectors must have {NUM_TRITS} entries, got shape {trits.shape}")
    digits = np.rint(trits).astype(np.int64) + 1
    if digits.size and (digits.min() < 0 or digits.max() > 2):
        raise ValueError("trits must be -1, 0 or 1")
    return (digits * 3 ** np.arange(NUM_TRITS, dtype=np.int64)).sum(-1)


def valuation(n: np.ndarray) -> np.ndarray:
    """3-adic valuation of non-negative integers, capped at 9, with v3(0) := 9 (int32)."""
    n = np.asarray(n, dtype=np.int64)
    if n.size and n.min() < 0:
        raise ValueError(f"valuation needs non-negative integers, got {n.min()}")
    v = np.zeros(n.shape, np.int32)
    for k in range(1, MAX_VALUATION + 1):  # 9 vectorised passes, not a per-element loop
        v += (n % 3**k == 0).astype(np.int32)
    return v


def valuation_jnp(n: jnp.ndarray) -> jnp.ndarray:
    """`valuation` on device for int32 n >= 0 (used for index differences inside the losses)."""
    n = jnp.abs(n.astype(jnp.int32))
    powers = jnp.asarray(3 ** np.arange(1, MAX_VALUATION + 1), jnp.int32)
    return jnp.sum((n[..., None] % powers) == 0, axis=-1).astype(jnp.int32)


def level_sizes() -> np.ndarray:
    """t_v = #{i : v3(i) = v} for v = 0..9: 13122, 4374, ..., 2, 1 (t_v = 2*3^(8-v), t_9 = 1)."""
    sizes = np.array([2 * 3 ** (MAX_VALUATION - 1 - v) for v in range(MAX_VALUATION)] + [1])
    return sizes.astype(np.int64)


def all_operations() -> dict[str, np.ndarray]:
    """The whole universe in index order: trits float32 [N, 9], index int32 [N], valuation int32."""
    index = np.arange(NUM_OPERATIONS, dtype=np.int64)
    return {
        "trits": index_to_trits(index),
        "index": index.astype(np.int32),
        "valuation": valuation(index),
    }
