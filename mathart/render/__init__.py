"""JAX renderer for `mathart` formulas: anti-aliased curves, filled level sets, domain
colouring, escape-time fractals and attractor densities, batched and jitted.

    >>> from mathart.render import render, Style
    >>> images = render(["r = cos(4*theta)", "x^2 + y^2 = 4"], 64, [Style.from_seed(0)] * 2)
    >>> images.shape, images.dtype
    ((2, 64, 64, 3), dtype('uint8'))

Public API (stable): `render`, `Style`, `PALETTES`, `DEFAULT_VIEWS`.
"""

from mathart.render.renderer import DEFAULT_VIEWS, render
from mathart.render.style import PALETTES, Style, palette_lut

__all__ = ["DEFAULT_VIEWS", "PALETTES", "Style", "palette_lut", "render"]
