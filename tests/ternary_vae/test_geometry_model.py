"""Poincaré-ball geometry and the model's projections."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ternary_vae import hyperbolic
from ternary_vae.model import BallProjection, TernaryVAE


def test_radius_distance_maps():
    z = jnp.array([[0.0, 0.5], [0.3, -0.4], [0.6, 0.0]])
    r = hyperbolic.hyperbolic_radius(z)
    np.testing.assert_allclose(r, 2 * np.arctanh([0.5, 0.5, 0.6]), rtol=1e-6)
    # d(0, z) = radius; d symmetric, zero on the diagonal.
    d0 = hyperbolic.distance(jnp.zeros_like(z), z)
    np.testing.assert_allclose(d0, r, rtol=1e-5)
    np.testing.assert_allclose(hyperbolic.distance(z[0], z[1]), hyperbolic.distance(z[1], z[0]))
    np.testing.assert_allclose(hyperbolic.distance(z, z), 0.0, atol=1e-3)
    # Along a diameter the distance adds: d(-a, b) = r(a) + r(b).
    a, b = jnp.array([-0.3, 0.0]), jnp.array([0.6, 0.0])
    np.testing.assert_allclose(
        hyperbolic.distance(a, b), 2 * np.arctanh(0.3) + 2 * np.arctanh(0.6), rtol=1e-5
    )
    np.testing.assert_allclose(hyperbolic.exp_map_zero(hyperbolic.log_map_zero(z)), z, atol=1e-6)
    np.testing.assert_allclose(
        hyperbolic.norm_from_radius(hyperbolic.radius_from_norm(jnp.array(0.7))), 0.7, rtol=1e-6
    )
    assert hyperbolic.max_hyperbolic_radius(0.95) == pytest.approx(3.6636, abs=1e-4)
    assert hyperbolic.max_hyperbolic_radius(0.99) == pytest.approx(5.2933, abs=1e-4)
    # Curvature c: (2/sqrt c) artanh(sqrt c |z|).
    want = 2 / math.sqrt(2) * np.arctanh(math.sqrt(2) * 0.5)
    np.testing.assert_allclose(hyperbolic.hyperbolic_radius(z[:1], c=2.0), want, rtol=1e-6)


def test_geometry_stays_float32_for_bf16_inputs():
    z = jnp.array([[0.9, 0.1]], jnp.bfloat16)
    assert hyperbolic.hyperbolic_radius(z).dtype == jnp.float32
    assert hyperbolic.distance(z, -z).dtype == jnp.float32


def test_projection_stays_inside_the_ball():
    proj = BallProjection(hidden_dim=16, max_radius=0.95)
    z = jax.random.normal(jax.random.key(0), (512, 8)) * jnp.array([1e-3, 1, 10, 100, 1e4, 0, 1, 1])
    params = proj.init(jax.random.key(1), z, train=False)
    # Push the radius head to saturation in both directions.
    for bias in (-50.0, 0.0, 50.0):
        p = jax.tree.map(lambda x: x, params)
        p["params"]["radius_out"]["bias"] = jnp.full((1,), bias)
        out = proj.apply(p, z, train=False)
        norm = np.asarray(jnp.linalg.norm(out, axis=-1))
        # |z| <= max_radius up to float32 rounding of the unit direction (a few ulps)
        assert np.all(np.isfinite(norm)) and np.all(norm <= 0.95 * (1 + 1e-6))
        assert np.all(norm >= 0)
        r = hyperbolic.hyperbolic_radius(out)
        assert np.all(np.isfinite(np.asarray(r))) and float(r.max()) <= 3.6637


def test_model_shapes_and_parameter_counts():
    m = TernaryVAE()
    x = jnp.zeros((4, 9))
    v = m.init({"params": jax.random.key(0)}, x, train=False)
    sizes = {k: sum(a.size for a in jax.tree.leaves(t)) for k, t in v["params"].items()}
    # The reference's improved encoder 46,688 and decoder 4,603; projection 2,834 there holds
    # geoopt's (gradient-less) curvature parameter, which we do not have.
    assert sizes == {
        "encoder_a": 46688,
        "encoder_b": 46688,
        "decoder": 4603,
        "projection_a": 2833,
        "projection_b": 2833,
    }
    out = m.apply(v, x, train=False)
    assert out["logits_mean"].shape == (4, 9, 3) and out["z_b"].shape == (4, 16)
    assert all(o.dtype == jnp.float32 for o in out.values())
    # eval is deterministic (mu, no dropout); train samples
    np.testing.assert_array_equal(m.apply(v, x, train=False)["z_a"], out["z_a"])
    rngs = {"sample": jax.random.key(1), "dropout": jax.random.key(2)}
    train_out = m.apply(v, x + 1, train=True, rngs=rngs)
    assert not np.allclose(train_out["z_a"], m.apply(v, x + 1, train=False)["z_a"])
