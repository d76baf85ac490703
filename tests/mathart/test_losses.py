"""Each loss of `mathart.losses` on hand-made images with known answers, and the VGG16 loader on
weight files written here in the published layouts (random values, real structure)."""

import colorsys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathart import losses
from mathart.models import vgg16

S = 32


def _ring(cx=16.0, cy=16.0, radius=9.0, width=1.5, fg=(1.0, 1.0, 1.0), bg=(0.0, 0.0, 0.0)):
    """An anti-aliased circle outline, [S, S, 3] in [0, 1]."""
    y, x = np.mgrid[0:S, 0:S] + 0.5
    dist = np.abs(np.hypot(x - cx, y - cy) - radius)
    ink = np.clip(width - dist, 0.0, 1.0)[..., None]
    return (1 - ink) * np.asarray(bg) + ink * np.asarray(fg)


def _cross(fg=(1.0, 1.0, 1.0)):
    img = np.zeros((S, S, 3))
    img[15:17, 4:28] = fg
    img[4:28, 15:17] = fg
    return img


def _m11(*images01):
    """[0,1] HWC images -> a [-1, 1] batch."""
    return jnp.asarray(np.stack(images01) * 2.0 - 1.0, jnp.float32)


def test_ssim_identity_and_closed_form_for_constant_images():
    ring = _ring()
    np.testing.assert_allclose(
        losses.ssim(_m11(ring) * 0.5 + 0.5, _m11(ring) * 0.5 + 0.5), 1.0, atol=1e-5
    )
    # Constant images: variances are 0, so SSIM = (2 μx μy + C1) / (μx² + μy² + C1) exactly.
    a, b = 0.2, 0.7
    x = jnp.full((1, S, S, 3), a)
    y = jnp.full((1, S, S, 3), b)
    expected = (2 * a * b + losses.SSIM_C1) / (a * a + b * b + losses.SSIM_C1)
    np.testing.assert_allclose(losses.ssim(x, y), expected, rtol=2e-4)  # E[x²]-μ² in f32


def test_structural_loss_ranks_geometry_errors():
    ring = _ring()
    same = losses.structural_loss(_m11(ring), _m11(ring))
    np.testing.assert_allclose(same, 0.0, atol=1e-5)
    noisy = np.clip(ring + np.random.default_rng(0).normal(0, 0.02, ring.shape), 0, 1)
    shifted = _ring(cx=21.0)
    d_noisy = float(losses.structural_loss(_m11(noisy), _m11(ring))[0])
    d_shift = float(losses.structural_loss(_m11(shifted), _m11(ring))[0])
    d_cross = float(losses.structural_loss(_m11(_cross()), _m11(ring))[0])
    assert 0 < d_noisy < d_shift and d_noisy < d_cross


def test_math_loss_is_palette_blind_but_sees_geometry():
    ring_white = _ring()
    ring_red_on_blue = _ring(fg=(0.9, 0.1, 0.1), bg=(0.1, 0.1, 0.6))
    batch_pred = _m11(ring_red_on_blue, _ring(cx=22.0), _cross())
    batch_true = _m11(ring_white, ring_white, ring_white)
    palette, shifted, cross = (float(v) for v in losses.math_loss(batch_pred, batch_true))
    assert palette < 0.01, "same curve in another palette must count as the same geometry"
    assert shifted > 0.3 and cross > 0.3
    assert palette >= 0.0 and max(shifted, cross) <= 1.0
    # Inverted brightness flips the luminance correlation: a geometry-blind metric would not care.
    inverted = losses.math_loss(_m11(1.0 - ring_white), _m11(ring_white))
    assert float(inverted[0]) > 0.4


def _hsv_pixels(hues_deg, s=1.0, v=1.0):
    return np.array([colorsys.hsv_to_rgb((h % 360) / 360.0, s, v) for h in hues_deg])


def _image_from_pixels(pixels):
    reps = S * S // len(pixels)
    return np.tile(pixels, (reps, 1)).reshape(S, S, 3)


def test_pyramid_mse_is_the_pooled_mse_and_sees_a_curve_near_its_place():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 8, 8, 3)), rng.normal(size=(2, 8, 8, 3))
    pool = lambda x, k: x.reshape(2, 8 // k, k, 8 // k, k, 3).mean((2, 4))
    expected = sum(((pool(a, k) - pool(b, k)) ** 2).mean((1, 2, 3)) for k in (2, 4))
    got = losses.pyramid_mse(jnp.asarray(a), jnp.asarray(b), levels=2)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert float(losses.pyramid_mse(jnp.asarray(a), jnp.asarray(b), levels=0)[0]) == 0.0
    # A one-pixel vertical line at column 2: drawn at column 3 it costs the plain MSE twice
    # what a blank image costs; the pooled levels rank near above absent.
    line = lambda col: jnp.zeros((1, 8, 8, 3)).at[:, :, col].set(1.0)
    blank, near = jnp.zeros((1, 8, 8, 3)), line(3)
    mse = lambda x: float(jnp.mean((x - line(2)) ** 2))
    assert mse(near) == pytest.approx(2 * mse(blank))
    pyr = lambda x: float(losses.pyramid_mse(x, line(2), levels=2)[0])
    assert pyr(near) < pyr(blank)


def test_hue_statistic_wraps_at_360_degrees():
    wrap = _image_from_pixels(_hsv_pixels([350, 10]))
    red = _image_from_pixels(_hsv_pixels([0]))
    complementary = _image_from_pixels(_hsv_pixels([0, 180]))
    r_wrap, r_red, r_comp = (
        float(v)
        for v in losses.harmony_concentration(jnp.asarray(np.stack([wrap, red, complementary])))
    )
    # 350° and 10° are 20° apart on the circle: R = cos(10°) up to the hexcone/circle hue map.
    assert r_wrap == pytest.approx(np.cos(np.radians(10)), abs=0.02)
    assert r_red == pytest.approx(1.0, abs=1e-4)
    assert r_comp == pytest.approx(0.0, abs=1e-4)
    # The seed's statistic, the variance of raw hue in degrees, puts the 350°/10° image (6400)
    # next to the complementary red/cyan one (8100); the circular statistic separates them.
    assert r_wrap - r_comp > 0.9
    hues = np.asarray(losses.hue_degrees(jnp.asarray(_hsv_pixels([350, 10, 0.5]))))
    assert np.all((hues >= 0) & (hues < 360))
    assert abs(hues[0] - 350) < 3 and abs(hues[1] - 10) < 3


def test_hue_statistic_ignores_greys():
    red = _image_from_pixels(_hsv_pixels([0]))
    half_grey = red.copy()
    half_grey[: S // 2] = 0.5
    r = losses.harmony_concentration(jnp.asarray(np.stack([half_grey])))
    assert float(r[0]) == pytest.approx(1.0, abs=1e-4)


def test_colour_loss_modes():
    red = _image_from_pixels(_hsv_pixels([0]))
    cyan = _image_from_pixels(_hsv_pixels([180]))
    mixed = _image_from_pixels(_hsv_pixels([0, 180]))
    match = losses.colour_loss(_m11(red, red), _m11(red, cyan), mode="match")
    np.testing.assert_allclose(match, [0.0, 4.0], atol=1e-4)
    conc = losses.colour_loss(_m11(red, mixed), _m11(red, red), mode="concentration")
    np.testing.assert_allclose(conc, [0.0, 1.0], atol=1e-4)
    with pytest.raises(ValueError, match="colour loss mode"):
        losses.colour_loss(_m11(red), _m11(red), mode="variance")


def test_losses_have_finite_gradients_on_flat_images():
    flat = jnp.zeros((2, S, S, 3))
    for fn in (
        losses.structural_loss,
        losses.math_loss,
        lambda p, t: losses.colour_loss(p, t, "match"),
        lambda p, t: losses.colour_loss(p, t, "concentration"),
    ):
        grads = jax.jit(jax.grad(lambda p, fn=fn: fn(p, flat).sum()))(flat)
        assert bool(jnp.all(jnp.isfinite(grads)))


def test_family_cross_entropy():
    logits = jnp.array([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ce = losses.family_cross_entropy(logits, jnp.array([0, 2]))
    np.testing.assert_allclose(ce, [np.log1p(2 * np.exp(-10.0)), np.log(3.0)], atol=1e-6)


# ---- VGG16 -------------------------------------------------------------------------------------
def _random_vgg(seed=0):
    rng = np.random.default_rng(seed)
    weights, c_in = {}, 3
    for name, channels in vgg16.VGG16_LAYERS:
        if name == "pool":
            continue
        std = np.sqrt(2.0 / (9 * c_in))
        weights[name] = (
            rng.normal(0, std, (3, 3, c_in, channels)).astype(np.float32),
            rng.normal(0, 0.01, (channels,)).astype(np.float32),
        )
        c_in = channels
    return weights


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    """The same random VGG16 in the Keras .h5 layout and in a torchvision-keyed .npz."""
    d = tmp_path_factory.mktemp("vgg")
    weights = _random_vgg()
    h5_path = str(d / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with h5py.File(h5_path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in weights]
        for name, (k, b) in weights.items():
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g.create_dataset(f"{name}_W_1:0", data=k)
            g.create_dataset(f"{name}_b_1:0", data=b)
    npz_path = str(d / "vgg16_torchvision.npz")
    arrays = {}
    for name, (k, b) in weights.items():
        i = vgg16.TORCHVISION_INDEX[name]
        arrays[f"features.{i}.weight"] = np.transpose(k, (3, 2, 0, 1))  # HWIO -> OIHW
        arrays[f"features.{i}.bias"] = b
    np.savez(npz_path, **arrays)
    return h5_path, npz_path


def test_vgg_loader_reads_both_layouts_identically(vgg_files):
    h5_path, npz_path = vgg_files
    p_h5, pre_h5 = vgg16.load_vgg16_weights(h5_path)
    p_npz, pre_npz = vgg16.load_vgg16_weights(npz_path)
    assert (pre_h5, pre_npz) == ("caffe", "torch")
    jax.tree.map(np.testing.assert_array_equal, p_h5, p_npz)
    net = vgg16.VGG16Features(preprocessing=pre_h5)
    img = jnp.asarray(np.stack([_ring(), _cross()]), jnp.float32)
    feats = net.apply(p_h5, img)
    assert [f.shape for f in feats] == [
        (2, 32, 32, 64),
        (2, 16, 16, 128),
        (2, 8, 8, 256),
        (2, 4, 4, 512),
    ]
    dist = losses.vgg_perceptual_loss(
        lambda x: net.apply(p_h5, x), _m11(_ring(), _ring()), _m11(_ring(), _cross())
    )
    assert float(dist[0]) == pytest.approx(0.0, abs=1e-6) and float(dist[1]) > 0.01


def test_vgg_loader_rejects_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg16.load_vgg16_weights(str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ValueError, match="unrecognised VGG16 keys"):
        vgg16.load_vgg16_weights(str(bad))
    pkl = tmp_path / "vgg.pth"
    pkl.write_bytes(b"not read")
    with pytest.raises(ValueError, match="not pickles"):
        vgg16.load_vgg16_weights(str(pkl))
