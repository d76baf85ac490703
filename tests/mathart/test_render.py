"""Renderer: exact pixel properties, determinism, every form, hypothesis round trip.

Few shapes on purpose (one size, small batches): every new shape is a compile.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mathart.formula import FormulaError, parse
from mathart.render import Style, render
from tests.mathart.test_formula import formulas

S = 32  # the size the dataset tests use too: compiles are shared within a pytest process
# One colour everywhere (white on black), no glow: pixel value = coverage * 255.
INK = Style(
    palette="mono",
    palette_range=(1.0, 1.0),
    background=(0.0, 0.0, 0.0),
    line_width=1.0 / S,
    fill_alpha=1.0,
)


def test_horizontal_line_lights_exactly_the_middle_rows():
    """y = 0 lies on the boundary between rows 15 and 16 of a 32-pixel image: a one-pixel
    stroke covers half of each (coverage 1 - 0.5 = 0.5), and nothing else."""
    img = render(["y = 0"], S, [INK])[0].astype(int)
    assert (np.abs(img[15] - 127.5) <= 1.5).all(), img[15, :, 0]
    assert (np.abs(img[16] - 127.5) <= 1.5).all(), img[16, :, 0]
    assert (np.delete(img, [15, 16], axis=0) == 0).all()


def test_line_on_a_pixel_centre_is_one_full_row():
    # Half-width S/2 makes one unit one pixel; centring the window at y = 0.5 puts y = 0 on
    # the centre of row 16, which is fully covered while its neighbours get nothing.
    style = Style(**{**INK.__dict__, "view": (0.0, 0.5, S / 2)})
    img = render(["y = 0"], S, [style])[0]
    # Coverage is 1 minus the distance to the nearest resampled point (spacing 1/24 px).
    assert (img[16] >= 245).all()
    assert (np.delete(img, 16, axis=0) == 0).all()
    # Moving the window moves the curve: centred at y = 8.5, y = 0 lands on row 24.
    style = Style(**{**INK.__dict__, "view": (0.0, 8.5, S / 2)})
    rows = np.nonzero(render(["y = 0"], S, [style])[0][..., 0].max(axis=1))[0]
    assert rows.tolist() == [24]


def test_vertical_edge_of_a_half_plane():
    img = render(["x < 0"], S, [INK])[0].astype(int)  # implicit: the left half is filled
    col = img[:, :, 0].mean(axis=0)
    # The boundary x = 0 splits columns 15 | 16 exactly: full, full, ..., full | 0, ..., 0.
    assert (col[:16] > 250).all() and (col[16:] < 5).all()


def test_filled_circle_area_fraction():
    img = render(["x^2 + y^2 < 4"], S, [INK])[0]
    fraction = img[..., 0].astype(np.float64).sum() / 255 / S**2
    expected = np.pi * 2.0**2 / 10.0**2  # default window is [-5, 5]^2
    assert fraction == pytest.approx(expected, rel=0.03)


def test_every_form_renders_something():
    texts = [
        "y = sin(x)",
        "r = cos(4*theta)",
        "x = sin(3*t), y = sin(4*t)",
        "x^2 + y^2 = 4",
        "f(z) = z^3 - 1",
        "mandelbrot",
        "julia(c = -0.8 + 0.156*i)",
        "clifford",
        "dejong",
    ]
    imgs = render(texts, S, [Style.from_seed(i) for i in range(len(texts))])
    assert imgs.shape == (len(texts), S, S, 3) and imgs.dtype == np.uint8
    for text, img in zip(texts, imgs):
        assert img.std() > 5, f"{text} rendered (almost) flat"


def test_same_formula_same_style_same_pixels_in_any_batch():
    texts = ["y = sin(2*x)", "r = cos(3*theta)", "x^2 - y^2 = 1", "julia(c = 0.3 + 0.5*i)"]
    styles = [Style.from_seed(7 + i) for i in range(len(texts))]
    a = render(texts, S, styles)
    b = render(texts[::-1], S, styles[::-1])[::-1]
    c = np.stack([render([t], S, [s])[0] for t, s in zip(texts, styles)])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # A different style or a different number changes the picture.
    assert (render(texts[:1], S, [Style.from_seed(99)]) != a[:1]).any()
    assert (render(["y = sin(3*x)"], S, styles[:1]) != a[:1]).any()


def test_style_seed_determinism():
    assert Style.from_seed(5) == Style.from_seed(5)
    assert Style.from_seed(5) != Style.from_seed(6)


def test_invalid_formula_in_a_batch_names_its_index():
    with pytest.raises(FormulaError) as info:
        render(["y = x", "y = import(x)"], 32)
    assert "formulas[1]" in "".join(getattr(info.value, "__notes__", []))
    with pytest.raises(ValueError, match="one style each"):
        render(["y = x"], 32, [])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(formulas(), min_size=1, max_size=3))
def test_generated_formulas_normalise_parse_render(fs):
    """Random formulas go through text -> normalise -> parse -> render without error."""
    texts = []
    for f in fs:
        try:
            texts.append(parse(f.text).text)
        except FormulaError:
            continue  # e.g. a constant sqrt(-1): rightly rejected
    images = render(texts, 32)
    assert images.shape == (len(texts), 32, 32, 3)
    np.testing.assert_array_equal(images, render(texts, 32))
