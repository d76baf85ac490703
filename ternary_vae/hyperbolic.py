"""Poincaré-ball geometry (curvature -c, c > 0), always evaluated in float32.

The model builds points directly in ball coordinates (norm < max_radius < 1/sqrt(c)); these
functions give the hyperbolic radius used by every metric and loss, the geodesic distance used
by the geodesic loss, and the log map at the origin that feeds the decoder from the ball.
bf16 keeps ~3 significant digits, far too few near the boundary where 1 - c|z|^2 is small, so
inputs are cast to float32 first (DESIGN "Precision").
"""

import math

import jax.numpy as jnp

# Keeps artanh / arccosh arguments strictly inside their domains. Points never reach the
# boundary (norm <= max_radius), so this only guards rounding.
_EPS = 1e-6


def _f32(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.asarray(x, jnp.float32)


def safe_norm(x: jnp.ndarray, axis: int = -1, keepdims: bool = False) -> jnp.ndarray:
    """Euclidean norm with a finite gradient at 0."""
    x = _f32(x)
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    return jnp.sqrt(jnp.maximum(sq, 1e-15))


def radius_from_norm(norm: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """Hyperbolic distance to the origin at Euclidean norm `norm`: (2/√c)·artanh(√c·norm)."""
    sqrt_c = jnp.sqrt(jnp.float32(c))
    arg = jnp.clip(sqrt_c * _f32(norm), 0.0, 1.0 - _EPS)
    return 2.0 / sqrt_c * jnp.arctanh(arg)


def hyperbolic_radius(z: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """z: [..., D] ball points -> [...] hyperbolic distance d_c(0, z)."""
    return radius_from_norm(safe_norm(z), c)


def norm_from_radius(radius: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """Inverse of `radius_from_norm`: tanh(√c·r/2)/√c."""
    sqrt_c = jnp.sqrt(jnp.float32(c))
    return jnp.tanh(sqrt_c * _f32(radius) / 2.0) / sqrt_c


def distance(x: jnp.ndarray, y: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """Geodesic distance between ball points x, y: [..., D] -> [...].

    d_c(x, y) = (1/√c)·arccosh(1 + 2c|x-y|² / ((1 - c|x|²)(1 - c|y|²))), written with
    arccosh(1 + t) = log1p(t + sqrt(t(t + 2))) so that d is accurate (and differentiable)
    for nearby points, where arccosh's argument is ~1.
    """
    x, y = _f32(x), _f32(y)
    c = jnp.float32(c)
    diff2 = jnp.sum((x - y) ** 2, axis=-1)
    denom = (1.0 - c * jnp.sum(x * x, -1)) * (1.0 - c * jnp.sum(y * y, -1))
    t = 2.0 * c * diff2 / jnp.maximum(denom, _EPS)
    return jnp.log1p(t + jnp.sqrt(jnp.maximum(t * (t + 2.0), 1e-15))) / jnp.sqrt(c)


def log_map_zero(z: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """Logarithmic map at the origin: ball -> tangent space, artanh(√c|z|)·z/(√c|z|)."""
    z = _f32(z)
    sqrt_c = jnp.sqrt(jnp.float32(c))
    norm = safe_norm(z, keepdims=True)
    arg = jnp.clip(sqrt_c * norm, 0.0, 1.0 - _EPS)
    return jnp.arctanh(arg) / (sqrt_c * norm) * z


def exp_map_zero(u: jnp.ndarray, c: float = 1.0) -> jnp.ndarray:
    """Exponential map at the origin (inverse of `log_map_zero`): tanh(√c|u|)·u/(√c|u|)."""
    u = _f32(u)
    sqrt_c = jnp.sqrt(jnp.float32(c))
    norm = safe_norm(u, keepdims=True)
    return jnp.tanh(sqrt_c * norm) / (sqrt_c * norm) * u


def max_hyperbolic_radius(max_norm: float, c: float = 1.0) -> float:
    """Largest hyperbolic radius a point of Euclidean norm <= max_norm can have (3.664 at 0.95)."""
    return 2.0 / math.sqrt(c) * math.atanh(math.sqrt(c) * max_norm)
