"""common.dropout: flax's Dropout semantics (rate, broadcast_dims, deterministic, the
expectation kept) from a quarter of the threefry hashes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.dropout import Dropout, keep_mask


def apply(module, x, key, **kw):
    return module.apply({}, x, rngs={"dropout": key}, **kw)


def test_keeps_the_rate_and_the_expectation():
    x = jnp.ones((1000, 1000))
    out = np.asarray(apply(Dropout(0.1), x, jax.random.PRNGKey(0), deterministic=False))
    kept = out != 0
    p = 58982 / 65536  # round(0.9 * 65536) / 65536: the exact keep probability
    assert abs(kept.mean() - p) < 5 * np.sqrt(p * (1 - p) / kept.size)  # 5 sigma
    np.testing.assert_allclose(out[kept], 1 / p, rtol=1e-6)  # E[out] = x exactly
    # Rows and columns are not correlated (each decision has its own 16 bits).
    assert abs(kept[:, ::2].mean() - kept[:, 1::2].mean()) < 0.005


def test_deterministic_zero_and_one_rates_and_keys():
    x = jnp.arange(24.0).reshape(4, 6)
    key = jax.random.PRNGKey(1)
    assert (apply(Dropout(0.5), x, key, deterministic=True) == x).all()
    assert (apply(Dropout(0.0), x, key, deterministic=False) == x).all()
    assert (apply(Dropout(1.0), x, key, deterministic=False) == 0).all()
    a = apply(Dropout(0.5), x, key, deterministic=False)
    assert (a == apply(Dropout(0.5), x, key, deterministic=False)).all()
    assert (a != apply(Dropout(0.5), x, jax.random.PRNGKey(2), deterministic=False)).any()


def test_broadcast_dims_share_the_mask_like_flax():
    x = jnp.ones((8, 5, 7))
    out = apply(Dropout(0.5, broadcast_dims=(0, 2)), x, jax.random.PRNGKey(3), deterministic=False)
    kept = np.asarray(out) != 0
    assert (kept == kept[:1, :, :1]).all() and 0 < kept[0, :, 0].sum() < 5
    ref = nn.Dropout(0.5, broadcast_dims=(0, 2)).apply(
        {}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)}
    )
    assert ref.shape == out.shape  # same interface as flax's


def test_one_threefry_hash_decides_four_elements():
    jaxpr = jax.make_jaxpr(lambda k: keep_mask(k, 0.9, (130, 77))[0])(jax.random.PRNGKey(0))
    hashes = [
        e.invars[2].aval.shape
        for e in jaxpr.jaxpr.eqns + [q for e in jaxpr.jaxpr.eqns for q in _inner(e)]
        if e.primitive.name == "threefry2x32"
    ]
    assert hashes == [(-(-130 * 77 // 4),)]  # 2503 hashes for 10,010 decisions


def _inner(eqn):
    for param in eqn.params.values():
        sub = getattr(param, "jaxpr", None)
        if sub is not None:
            sub = getattr(sub, "jaxpr", sub)
            for e in sub.eqns:
                yield e
                yield from _inner(e)


@pytest.mark.parametrize("impl", ["threefry2x32", "unsafe_rbg"])
def test_typed_keys_of_either_implementation(impl):
    key = jax.random.key(0, impl=impl)
    mask, p = keep_mask(key, 0.75, (64, 64))
    assert mask.shape == (64, 64) and p == 0.75 and 0.6 < float(mask.mean()) < 0.9
