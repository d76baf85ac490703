"""The metric maths behind `mathart.evaluate` and the sample hook, on hand-made images, and the
host-side helpers of the input pipeline and sample grids."""

import numpy as np
import pytest

from mathart import image_metrics as evaluate
from mathart.generate import pair_grid, tile, to_uint8
from mathart.input_pipeline import STYLE_DIM, style_features

S = 16


def _shapes(n: int) -> np.ndarray:
    """n distinct uint8 images: a bright square at a different place in each."""
    out = np.zeros((n, S, S, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, 4)
        out[i, 1 + 3 * r : 5 + 3 * r, 1 + 3 * c : 5 + 3 * c] = (255, 120, 30)
    return out


def test_distractors_are_other_examples_and_distinct():
    idx = evaluate.distractor_indices(25, 10, seed=3)
    assert idx.shape == (25, 9)
    for i, row in enumerate(idx):
        assert i not in row and len(set(row.tolist())) == 9
    np.testing.assert_array_equal(idx, evaluate.distractor_indices(25, 10, seed=3))
    with pytest.raises(ValueError, match="at least 10"):
        evaluate.distractor_indices(5, 10)


def test_score_counts_own_render_wins_and_chance():
    truth = _shapes(8)
    idx = evaluate.distractor_indices(8, 4)
    candidates = np.concatenate([truth[:, None], truth[idx]], axis=1)
    perfect = evaluate.score(truth, truth, candidates)
    assert perfect["top1_ssim"] == 1.0 and perfect["top1_geometry"] == 1.0
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["chance"] == 0.25
    # Every sample is some other formula's picture: never closer to its own.
    wrong = evaluate.score(truth[idx[:, 0]], truth, candidates)
    assert wrong["top1_ssim"] == 0.0 and wrong["ssim"] < 0.9
    # Harmony: the orange squares on black have one hue, so R = 1 -> 10.
    assert perfect["harmony"] == pytest.approx(10.0, abs=1e-3)


def test_breakdown_groups_the_per_sample_scores():
    truth = _shapes(8)
    idx = evaluate.distractor_indices(8, 4)
    candidates = np.concatenate([truth[:, None], truth[idx]], axis=1)
    generated = truth.copy()
    generated[::2] = truth[idx[::2, 0]]  # even samples show another formula's picture
    rows = evaluate.score_rows(generated, candidates)
    np.testing.assert_array_equal(rows["top1_ssim"], np.arange(8) % 2 == 1)
    groups = np.array([0, 1, 0, 1, 0, 1, 0, 2])
    table = evaluate.breakdown(rows, groups, ["even", "odd", "last"])
    assert list(table) == ["even", "odd", "last"]  # largest group first
    assert table["even"]["n"] == 4 and table["even"]["top1_ssim"] == 0.0
    assert table["odd"]["n"] == 3 and table["odd"]["top1_geometry"] == 1.0
    assert table["last"] == {"n": 1, "top1_ssim": 1.0, "top1_geometry": 1.0, "ssim": 1.0}


def test_diversity_within_and_across():
    shapes = _shapes(3)
    same = np.repeat(shapes[:, None], 2, axis=1)  # 3 formulas x 2 identical seeds
    d = evaluate.diversity(same)
    assert d["diversity_within_formula"] == pytest.approx(0.0, abs=1e-5)
    assert d["diversity_across_formulas"] > 0.1


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 1, (4000, 3)) + np.array([2.0, 0.0, 0.0])
    assert evaluate.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Equal covariances: the distance is |mu1 - mu2|² = 4 (up to sampling error).
    assert evaluate.frechet_distance(a, b) == pytest.approx(4.0, abs=0.3)


def test_style_features():
    feats = style_features(np.array([5, -1, 5, 7]))
    assert feats.shape == (4, STYLE_DIM) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats[1], 0.0)  # unknown style
    np.testing.assert_array_equal(feats[0], feats[2])  # a pure function of the seed
    assert feats[0, -1] == 1.0 and not np.array_equal(feats[0], feats[3])


def test_grid_helpers():
    x = np.linspace(-1.2, 1.2, 5)
    np.testing.assert_array_equal(to_uint8(x), [0, 51, 128, 204, 255])
    images = _shapes(5)
    assert tile(images, 2, pad=1).shape == (3 * (S + 1) + 1, 2 * (S + 1) + 1, 3)
    assert pair_grid(images, images, pairs_per_row=4).shape == (
        2 * (S + 3) + 3,
        4 * (2 * S + 3) + 3,
        3,
    )


def test_captioned_pairs_put_each_pair_above_its_formula():
    from mathart.generate import CAPTION_PX, captioned_pairs, upscale

    rng = np.random.default_rng(0)
    gen = rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    truth = rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    grid = captioned_pairs(
        gen, truth, ["r = sin(4*theta)", "y = x", "x^2 + y^2 = 9"], pairs_per_row=2, scale=2
    )
    w, h, top = 2 * 2 * S, 2 * S, CAPTION_PX + 3
    assert grid.shape == (top + 2 * (h + CAPTION_PX + 3) + 3, 2 * (w + 3) + 3, 3)
    # The third pair: second row, first column, enlarged, generated on the left.
    y = top + h + CAPTION_PX + 3
    np.testing.assert_array_equal(grid[y : y + h, 3 : 3 + w // 2], upscale(gen[2], 2))
    np.testing.assert_array_equal(grid[y : y + h, 3 + w // 2 : 3 + w], upscale(truth[2], 2))
    assert (grid[y + h : y + h + CAPTION_PX, 3 : 3 + w] < 128).any()  # its caption is drawn
    assert (grid[:CAPTION_PX, :] < 128).any()  # and the header
