"""Levelling as STM programs do it, on planted tilts, bows and line offsets."""

import jax.numpy as jnp
import numpy as np
import pytest

from scanline import levelling

N, LINES, LENGTH = 3, 24, 40


def _surface(seed=0):
    """A corrugated surface with no plane or polynomial component to speak of."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.arange(LINES), np.arange(LENGTH), indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, (N, 1, 1))
    return (0.3 * np.sin(2 * np.pi * x / 8 + phase) * np.cos(2 * np.pi * y / 6)).astype(np.float32)


def _grid():
    y, x = np.meshgrid(np.linspace(-1, 1, LINES), np.linspace(-1, 1, LENGTH), indexing="ij")
    return x, y


def test_plane_removes_a_planted_tilt_exactly():
    x, y = _grid()
    tilt = 5.0 + 2.0 * x - 3.0 * y
    flat = levelling.level(_surface() + tilt, ["plane"])
    np.testing.assert_allclose(flat, levelling.level(_surface(), ["plane"]), atol=2e-5)
    assert (
        np.abs(levelling.level(np.broadcast_to(tilt, (N, LINES, LENGTH)), ["plane"])).max() < 1e-5
    )


def test_poly2_removes_a_bow_that_plane_leaves():
    x, y = _grid()
    bow = 1.5 * x**2 - 0.7 * x * y + 0.4 * y**2 + x
    images = _surface() + bow
    assert (
        np.abs(levelling.level(images, ["plane"]) - levelling.level(_surface(), ["plane"])).max()
        > 0.1
    )
    np.testing.assert_allclose(
        levelling.level(images, ["poly2"]), levelling.level(_surface(), ["poly2"]), atol=3e-5
    )


@pytest.mark.parametrize("step", ["rows_mean", "rows_median", "rows_poly1"])
def test_align_rows_removes_line_offsets(step):
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 2.0, (N, LINES, 1)).astype(np.float32)
    images = _surface() + offsets
    np.testing.assert_allclose(
        levelling.level(images, [step]), levelling.level(_surface(), [step]), atol=2e-5
    )


def test_steps_apply_in_order_on_host_and_device_alike_and_bad_names_are_refused():
    x, y = _grid()
    rng = np.random.default_rng(2)
    images = _surface() + 2 * x - y + rng.normal(0, 1, (N, LINES, 1)).astype(np.float32)
    steps = ("plane", "rows_median")
    host = levelling.level(images, steps)
    device = np.asarray(levelling.level(jnp.asarray(images), steps, xp=jnp))
    np.testing.assert_allclose(host, device, atol=1e-5)
    np.testing.assert_allclose(levelling.level_in_chunks(images, steps, chunk=2), host, atol=1e-6)
    with pytest.raises(ValueError, match="step 'align_rows' unknown; use plane, polyN"):
        levelling.level(images, ["align_rows"])
