"""`Style`: how a formula is drawn (palette, background, line width, glow, bands, view window).

A style is plain data, deterministic from a seed (`Style.from_seed`), and becomes a few small
float32 arrays (`Style.arrays`) that the jitted renderer takes as traced inputs, so changing a
style never recompiles. Used by `mathart.render.render` and the dataset (which stores the
``style_seed`` of every example so any image can be re-rendered).

Palettes are colour stops of our own choosing, interpolated to a 256-entry lookup table.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

LUT_SIZE = 256

# name -> stops (position in [0, 1], sRGB in [0, 1]). "rainbow" is cyclic (domain colouring).
PALETTES: dict[str, tuple[tuple[float, tuple[float, float, float]], ...]] = {
    "ember": (
        (0.0, (0.05, 0.0, 0.02)),
        (0.35, (0.6, 0.05, 0.05)),
        (0.65, (0.95, 0.45, 0.05)),
        (0.85, (1.0, 0.85, 0.25)),
        (1.0, (1.0, 1.0, 0.9)),
    ),
    "ocean": (
        (0.0, (0.01, 0.03, 0.12)),
        (0.4, (0.0, 0.3, 0.55)),
        (0.7, (0.05, 0.7, 0.75)),
        (1.0, (0.85, 1.0, 0.95)),
    ),
    "viridian": (
        (0.0, (0.25, 0.0, 0.33)),
        (0.3, (0.2, 0.3, 0.55)),
        (0.6, (0.12, 0.6, 0.5)),
        (0.85, (0.55, 0.82, 0.25)),
        (1.0, (0.98, 0.9, 0.15)),
    ),
    "sunset": (
        (0.0, (0.1, 0.02, 0.25)),
        (0.35, (0.55, 0.1, 0.5)),
        (0.65, (0.95, 0.35, 0.3)),
        (0.85, (1.0, 0.65, 0.2)),
        (1.0, (1.0, 0.95, 0.6)),
    ),
    "forest": (
        (0.0, (0.02, 0.08, 0.03)),
        (0.4, (0.1, 0.35, 0.12)),
        (0.75, (0.55, 0.6, 0.15)),
        (1.0, (0.95, 0.85, 0.4)),
    ),
    "ice": (
        (0.0, (0.02, 0.02, 0.1)),
        (0.45, (0.15, 0.3, 0.7)),
        (0.8, (0.55, 0.8, 0.95)),
        (1.0, (0.97, 0.99, 1.0)),
    ),
    "neon": (
        (0.0, (0.2, 0.0, 0.3)),
        (0.35, (0.95, 0.1, 0.75)),
        (0.7, (0.1, 0.9, 0.95)),
        (1.0, (0.7, 1.0, 0.2)),
    ),
    "copper": (
        (0.0, (0.05, 0.03, 0.02)),
        (0.5, (0.6, 0.32, 0.18)),
        (0.8, (0.9, 0.6, 0.4)),
        (1.0, (1.0, 0.9, 0.8)),
    ),
    "pastel": (
        (0.0, (0.35, 0.3, 0.5)),
        (0.35, (0.95, 0.6, 0.7)),
        (0.7, (0.6, 0.85, 0.8)),
        (1.0, (0.98, 0.95, 0.75)),
    ),
    "mono": ((0.0, (0.0, 0.0, 0.0)), (1.0, (1.0, 1.0, 1.0))),
    "rainbow": tuple(
        (k / 6, c)
        for k, c in enumerate(
            [
                (1.0, 0.15, 0.15),
                (1.0, 0.85, 0.1),
                (0.2, 0.9, 0.2),
                (0.1, 0.85, 0.9),
                (0.2, 0.25, 1.0),
                (0.9, 0.2, 0.9),
                (1.0, 0.15, 0.15),
            ]
        )
    ),
}


def palette_lut(name: str, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """``float32 [LUT_SIZE, 3]``: palette `name` sampled from position `lo` to `hi`."""
    if name not in PALETTES:
        raise ValueError(f"unknown palette {name!r}; choose one of: {', '.join(PALETTES)}")
    stops = PALETTES[name]
    pos = np.array([p for p, _ in stops])
    rgb = np.array([c for _, c in stops])
    t = np.linspace(lo, hi, LUT_SIZE)
    return np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], -1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Style:
    """How to draw. All fields are data; `arrays` turns them into renderer inputs.

    palette: a name from `PALETTES`; ``palette_range`` picks the stretch used (reversed when
        lo > hi, e.g. dark strokes on a light background). Position 1 is the colour that
        stands out most against the background.
    background: sRGB in [0, 1].
    line_width: stroke width as a fraction of the image width, so a style looks alike at
        every resolution; drawn strokes are clamped to [1 pixel, 2.5 % of the width].
    glow: strength of a soft halo around strokes (0 = none).
    bands: number of discrete colour bands in filled regions / domain colouring (0 = smooth).
    fill_alpha: opacity of filled regions (implicit forms).
    view: ``(center_x, center_y, half_width)`` in formula coordinates, or None for the form's
        default window (see `mathart.render.renderer`).
    seed: the seed this style came from (-1 for hand-made styles); kept for provenance.
    """

    palette: str = "ocean"
    palette_range: tuple[float, float] = (0.15, 1.0)
    background: tuple[float, float, float] = (0.03, 0.03, 0.06)
    line_width: float = 0.012
    glow: float = 0.0
    bands: int = 0
    fill_alpha: float = 0.85
    view: tuple[float, float, float] | None = None
    seed: int = -1

    def __post_init__(self):
        if self.palette not in PALETTES:
            raise ValueError(
                f"unknown palette {self.palette!r}; choose one of: {', '.join(PALETTES)}"
            )
        if not 0.0 < self.line_width <= 0.1:
            raise ValueError(
                f"line_width is a fraction of the image width in (0, 0.1], got {self.line_width}"
            )
        if self.view is not None and not self.view[2] > 0:
            raise ValueError(f"view half_width must be positive, got {self.view}")

    @classmethod
    def from_seed(cls, seed: int) -> "Style":
        """A varied but always legible style, a pure function of `seed`."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x57E1E])
        palette = str(rng.choice(list(PALETTES)))
        light = rng.random() < 0.25 and palette not in ("mono",)
        if light:
            background = tuple(float(v) for v in 0.93 + 0.05 * rng.random(3))
            palette_range = (0.85, 0.0)  # dark end = most contrast on paper
        else:
            base = palette_lut(palette, 0.0, 0.0)[0]
            background = tuple(float(v) for v in np.clip(0.25 * base + 0.02, 0, 1))
            palette_range = (float(rng.uniform(0.1, 0.3)), 1.0)
        return cls(
            palette=palette,
            palette_range=palette_range,
            background=background,  # type: ignore[arg-type]
            line_width=float(np.round(rng.uniform(0.006, 0.02), 4)),
            glow=float(np.round(rng.uniform(0.3, 0.9), 2)) if rng.random() < 0.4 else 0.0,
            bands=int(rng.integers(3, 9)) if rng.random() < 0.35 else 0,
            fill_alpha=float(np.round(rng.uniform(0.6, 1.0), 2)),
            seed=int(seed),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Renderer inputs (all float32): lut [256, 3], background [3], scalars, view [4]."""
        view = (0.0, 0.0, 1.0, 0.0) if self.view is None else (*self.view, 1.0)
        return {
            "lut": palette_lut(self.palette, *self.palette_range),
            "background": np.asarray(self.background, np.float32),
            "line_width": np.float32(self.line_width),
            "glow": np.float32(self.glow),
            "bands": np.float32(self.bands),
            "fill_alpha": np.float32(self.fill_alpha),
            "view": np.asarray(view, np.float32),
        }


def stack_styles(styles: Sequence[Style]) -> dict[str, np.ndarray]:
    """Batch of styles -> dict of arrays with a leading batch axis."""
    per = [s.arrays() for s in styles]
    return {k: np.stack([p[k] for p in per]) for k in per[0]}
