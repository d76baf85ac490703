"""Non-overlapping max pooling written as a reshape and a max, for a cheaper backward pass.

`flax.linen.max_pool` lowers to XLA's reduce-window, whose gradient is a select-and-scatter;
XLA:CPU runs that as iotas, gathers and scatters, which were ~20 % of the LRCN's train step
(benchmarks/profile_step.py on configs/scanline.py:lrcn_full_cpu). When windows do not overlap
(window == stride), the same pooling is a reshape to [..., H/k, k, W/k, k, C] and a max over
the two k axes, whose gradient is a compare and a select. Forward values are identical,
including "SAME" padding (the missing row/column counts as -inf, as in flax). Gradients are
identical except where a window holds the same maximum twice: reduce-window gives it to one
of them, the max here splits it between them (after a ReLU such ties are zeros, whose
gradient is zero either way).
"""

import jax
import jax.numpy as jnp


def max_pool(x: jax.Array, k: int = 2, padding: str = "SAME") -> jax.Array:
    """`nn.max_pool(x, (k, k), strides=(k, k), padding=padding)` for x [N, H, W, C]."""
    n, h, w, c = x.shape
    if padding == "SAME":
        ph, pw = -h % k, -w % k
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-jnp.inf)
    elif padding == "VALID":
        x = x[:, : h - h % k, : w - w % k]
    else:
        raise ValueError(f"padding must be SAME or VALID, got '{padding}'")
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))
