"""common.pooling.max_pool is flax's non-overlapping max pool, forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.pooling import max_pool


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 7, 5, 3)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_values_and_gradients_equal_flax(shape, padding):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)  # no ties
    ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding=padding)
    ours = lambda x: max_pool(x, 2, padding)
    np.testing.assert_array_equal(ours(x), ref(x))
    weights = jax.random.normal(jax.random.PRNGKey(1), ref(x).shape)
    grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)
    np.testing.assert_array_equal(grad(ours), grad(ref))
