"""On-device augmentation: crop/flip/normalise properties, PIL parity of the image ops,
policies, random erasing, Mixup/CutMix, and the label-smoothed loss by hand."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from vit import augment, image_ops, losses, mixing

apply_op = jax.jit(image_ops.apply_op)


def coordinate_images(n: int) -> np.ndarray:
    """Pixel (i, j) holds (i + 1, j + 1, 255): every pixel names its own source position."""
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    img = np.stack([i + 1, j + 1, np.full_like(i, 255)], -1).astype(np.uint8)
    return np.repeat(img[None], n, 0)


def test_random_crop_stays_within_padding_and_reaches_every_offset():
    n, pad = 2000, 4
    crop = jax.jit(augment.random_crop, static_argnums=2)
    out = np.asarray(crop(jax.random.key(0), jnp.asarray(coordinate_images(n)), pad))
    assert out.shape == (n, 32, 32, 3)
    inside = out[..., 2] == 255  # padding is zero in every channel
    assert np.all(out[~inside] == 0)
    offsets = set()
    for k in range(n):
        rows, cols = np.nonzero(inside[k])
        # Content is the original shifted by one (dy, dx) with |dy|, |dx| <= pad.
        dy = out[k, rows, cols, 0].astype(int) - 1 - rows
        dx = out[k, rows, cols, 1].astype(int) - 1 - cols
        assert len(set(dy)) == 1 and len(set(dx)) == 1
        assert abs(dy[0]) <= pad and abs(dx[0]) <= pad
        # The visible window is exactly the part of the shifted image that lies inside.
        assert inside[k].sum() == (32 - abs(dy[0])) * (32 - abs(dx[0]))
        offsets.add((int(dy[0]), int(dx[0])))
    assert len(offsets) == (2 * pad + 1) ** 2  # all 81 positions, as torchvision's RandomCrop


def test_flip_is_an_exact_mirror_half_the_time():
    x = jnp.asarray(coordinate_images(4000))
    out = np.asarray(jax.jit(augment.random_flip)(jax.random.key(3), x))
    flipped = np.all(out == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert abs(flipped.mean() - 0.5) < 0.03  # 4000 draws: sd 0.008


def test_normalize_uses_the_seed_constants():
    mean = np.array([0.4914, 0.4822, 0.4465])
    std = np.array([0.2023, 0.1994, 0.2010])
    assert tuple(mean) == augment.CIFAR10_MEAN
    assert tuple(std) == augment.CIFAR10_STD
    pixels = np.array([[[[0, 128, 255]]]], np.uint8)
    expected = (pixels / 255.0 - mean) / std
    out = augment.normalize(jnp.asarray(pixels))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_random_erasing_boxes():
    x = jnp.full((500, 32, 32, 3), 7.0)
    erase = jax.jit(lambda k, im: augment.random_erasing(k, im, 0.5, area=(0.02, 0.4)))
    out = np.asarray(erase(jax.random.key(0), x))
    erased = np.any(out != 7.0, axis=-1)  # noise is never exactly 7
    frac = erased.mean(axis=(1, 2))
    hit = frac > 0
    assert 0.4 < hit.mean() < 0.6
    assert np.all(frac[hit] <= 0.4 + 0.05) and np.all(frac[hit] >= 0.01)
    for k in np.flatnonzero(hit)[:50]:  # one axis-aligned rectangle per image
        rows, cols = np.nonzero(erased[k])
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == erased[k].sum()


# ---- image ops against PIL -----------------------------------------------------------------
@pytest.fixture(scope="module")
def pil_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.uint8)
    imgs[1] = imgs[1] // 4 + 60  # low contrast: autocontrast/equalize have work to do
    imgs[2] = np.clip(np.cumsum(rng.integers(0, 5, (32, 32, 3)), axis=1), 0, 255)
    return imgs


def pil_apply(imgs, fn):
    return np.stack([np.asarray(fn(Image.fromarray(im))) for im in imgs]).astype(np.float32)


def test_pixel_ops_match_pil(pil_images):
    x = jnp.asarray(pil_images, jnp.float32)
    full = lambda v: jnp.full((len(pil_images),), v, jnp.float32)

    @jax.jit
    def ours(x):
        return {
            "equalize": image_ops.equalize(x),
            "invert": image_ops.invert(x),
            "posterize": image_ops.posterize(x, full(3)),
            "solarize": image_ops.solarize(x, full(100)),
            "contrast": image_ops.contrast(x, full(1.7)),
            "sharpness": image_ops.sharpness(x, full(0.3)),
            "brightness": image_ops.brightness(x, full(0.3)),
            "color": image_ops.color(x, full(0.3)),
            "autocontrast": image_ops.autocontrast(x),
        }

    out = ours(x)
    exact = {
        "equalize": ImageOps.equalize,
        "invert": ImageOps.invert,
        "posterize": lambda i: ImageOps.posterize(i, 3),
        "solarize": lambda i: ImageOps.solarize(i, 100),
        "contrast": lambda i: ImageEnhance.Contrast(i).enhance(1.7),
        "sharpness": lambda i: ImageEnhance.Sharpness(i).enhance(0.3),
        "brightness": lambda i: ImageEnhance.Brightness(i).enhance(0.3),
    }
    for name, ref in exact.items():
        np.testing.assert_array_equal(out[name], pil_apply(pil_images, ref), err_msg=name)
    # PIL's fixed-point luma (convert("L")) and its autocontrast LUT can differ by one level.
    for name, ref in [
        ("color", lambda i: ImageEnhance.Color(i).enhance(0.3)),
        ("autocontrast", ImageOps.autocontrast),
    ]:
        diff = np.abs(np.asarray(out[name]) - pil_apply(pil_images, ref))
        assert diff.max() <= 1.0 and diff.mean() < 0.25, name


def test_geometric_ops_match_pil_inside_the_border(pil_images):
    x = jnp.asarray(pil_images, jnp.float32)
    n = len(pil_images)
    fill = (128, 128, 128)
    cases = [
        (
            image_ops.TRANSLATE_X,
            5.0,
            lambda i: i.transform(i.size, Image.AFFINE, (1, 0, 5, 0, 1, 0)),
        ),
        (
            image_ops.TRANSLATE_Y,
            -3.3,
            lambda i: i.transform(i.size, Image.AFFINE, (1, 0, 0, 0, 1, -3.3), Image.BILINEAR),
        ),
        (
            image_ops.SHEAR_X,
            0.2,
            lambda i: i.transform(i.size, Image.AFFINE, (1, 0.2, 0, 0, 1, 0), Image.BILINEAR),
        ),
        (image_ops.ROTATE, 20.0, lambda i: i.rotate(20, Image.BILINEAR, fillcolor=fill)),
    ]
    for op, arg, ref in cases:
        ours = apply_op(x, jnp.full((n,), op), jnp.full((n,), arg))
        diff = np.abs(np.asarray(ours) - pil_apply(pil_images, ref))[:, 8:24, 8:24]
        assert diff.max() <= 1.0, image_ops.OP_NAMES[op]
    # An integer translation is exact everywhere, including the grey fill.
    ours = apply_op(x, jnp.full((n,), image_ops.TRANSLATE_X), jnp.full((n,), 5.0))
    ref = pil_apply(
        pil_images, lambda i: i.transform(i.size, Image.AFFINE, (1, 0, 5, 0, 1, 0), fillcolor=fill)
    )
    np.testing.assert_array_equal(ours, ref)


def test_apply_op_selects_per_example(pil_images):
    x = jnp.asarray(pil_images, jnp.float32)[:3]
    op = jnp.asarray([image_ops.IDENTITY, image_ops.INVERT, image_ops.SOLARIZE])
    out = np.asarray(apply_op(x, op, jnp.asarray([0.0, 0.0, 256.0])))
    np.testing.assert_array_equal(out[0], pil_images[0])
    np.testing.assert_array_equal(out[1], 255 - pil_images[1].astype(np.float32))
    np.testing.assert_array_equal(out[2], pil_images[2])  # threshold 256: nothing solarised


@pytest.mark.parametrize("policy", ["randaugment", "autoaugment_cifar10"])
def test_policies_are_valid_and_reproducible(policy, pil_images):
    aug = ml_collections.ConfigDict(
        dict(
            policy=policy,
            randaugment_num_ops=2,
            randaugment_magnitude=9.0,
            randaugment_magnitude_std=0.5,
            randaugment_prob=0.5,
        )
    )
    x = jnp.asarray(np.tile(pil_images, (20, 1, 1, 1)))
    fn = jax.jit(lambda k, im: image_ops.apply_policy(k, im, aug))
    out = np.asarray(fn(jax.random.key(0), x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert np.all(out == np.round(out))  # stays on the uint8 lattice
    np.testing.assert_array_equal(out, fn(jax.random.key(0), x))
    changed = np.any(out != np.asarray(x), axis=(1, 2, 3)).mean()
    assert 0.3 < changed < 1.0  # some images untouched (op probabilities), most changed


def test_full_train_pipeline_output():
    aug = ml_collections.ConfigDict(
        dict(
            crop_padding=4,
            flip=True,
            policy="none",
            random_erasing=0.0,
            random_erasing_max_area=1 / 3,
        )
    )
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype(np.uint8))
    out = augment.train_images(jax.random.key(0), x, aug)
    assert out.shape == (16, 32, 32, 3) and out.dtype == jnp.float32
    zero = (0.0 - np.asarray(augment.CIFAR10_MEAN)) / np.asarray(augment.CIFAR10_STD)
    lo, hi = zero.min(), ((1.0 - np.asarray(augment.CIFAR10_MEAN)) / augment.CIFAR10_STD).max()
    assert lo - 1e-5 <= float(out.min()) and float(out.max()) <= hi + 1e-5


# ---- Mixup / CutMix and the loss ----------------------------------------------------------
def test_mixup_and_cutmix_mix_images_and_targets_consistently():
    b = 8
    images = jnp.broadcast_to(jnp.arange(b, dtype=jnp.float32)[:, None, None, None], (b, 32, 32, 3))
    targets = jax.nn.one_hot(jnp.arange(b), 10)
    mix = jax.jit(
        mixing.mix_batch,
        static_argnames=("mixup_alpha", "cutmix_alpha", "mix_prob", "switch_prob"),
    )
    kw = dict(mix_prob=1.0, switch_prob=0.5)
    mixed_x, mixed_y = mix(
        jax.random.key(0), images, targets, mixup_alpha=1.0, cutmix_alpha=0.0, **kw
    )
    lam = float(mixed_y[0, 0])
    assert 0.0 < lam < 1.0
    np.testing.assert_allclose(mixed_x[0], (1 - lam) * (b - 1), rtol=1e-5)  # 0 * lam + 7 * (1-lam)
    np.testing.assert_allclose(mixed_y.sum(-1), 1.0, rtol=1e-6)
    areas = []
    for seed in range(5):
        cut_x, cut_y = mix(
            jax.random.key(seed), images, targets, mixup_alpha=0.0, cutmix_alpha=1.0, **kw
        )
        pasted = float(np.mean(np.asarray(cut_x[0, :, :, 0]) == b - 1))  # partner of 0 is b-1
        np.testing.assert_allclose(float(cut_y[0, 0]), 1.0 - pasted, atol=1e-6)
        np.testing.assert_allclose(float(cut_y[0, b - 1]), pasted, atol=1e-6)
        areas.append(pasted)
    assert len(set(areas)) > 1
    off_x, off_y = mixing.mix_batch(
        jax.random.key(0),
        images,
        targets,
        mixup_alpha=1.0,
        cutmix_alpha=1.0,
        mix_prob=0.0,
        switch_prob=0.5,
    )
    assert off_x is images and off_y is targets


def test_label_smoothing_against_a_hand_computation():
    logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = jnp.array([0, 1])
    targets = losses.smooth_labels(labels, 3, 0.1)
    # (1 - 0.1) * onehot + 0.1 / 3
    np.testing.assert_allclose(
        targets, [[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3], [0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3]], rtol=1e-6
    )
    per = losses.cross_entropy(logits, targets)
    for row, label in enumerate([0, 1]):
        z = np.asarray(logits[row], np.float64)
        logp = z - np.log(np.sum(np.exp(z)))
        expected = -(0.9 * logp[label] + 0.1 * logp.mean())  # smoothing spreads 0.1 uniformly
        np.testing.assert_allclose(per[row], expected, rtol=1e-6)
    # Row 0 by hand: logsumexp(2, 0.5, -1) = 2.24131 and mean(z) = 0.5, so
    # loss = 0.9 * (2.24131 - 2) + 0.1 * (2.24131 - 0.5).
    np.testing.assert_allclose(per[0], 0.9 * 0.24131 + 0.1 * (2.24131 - 0.5), rtol=1e-4)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.smooth_labels(labels, 3, 1.0)


def test_augmentation_benchmark_times_the_tasks_own_augmentation():
    from common.cli import load_config_file
    from vit.bench_augment import benchmark

    record = benchmark(load_config_file("configs/vit.py:smoke"), steps=1)
    assert record["global_batch"] == 32 and record["augment_ms_per_batch"] > 0
