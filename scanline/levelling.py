"""The levelling STM programs apply before anyone looks at a scan, as config.data.levelling.

A raw topograph carries the sample's tilt, the scanner's bow and a height offset that jumps
from line to line (feedback and drift); Gwyddion's "plane level", "polynomial background" and
"align rows" remove them. Steps, applied in the order given (e.g. ``("plane", "rows_median")``):

- ``plane`` (= ``poly1``), ``polyN``: subtract the least-squares 2-D polynomial of total
  degree N (x^i y^j, i + j <= N) fitted to the whole image;
- ``rows_mean``, ``rows_median``: subtract each scan line's mean or median (Gwyddion's align rows
  by offset);
- ``rows_polyN``: subtract each scan line's least-squares polynomial of degree N along the line.

Every step is a fixed linear projection or a per-line median, written once for numpy and
jax.numpy (`xp`), so the input pipeline (host) and `ScanlineTask.predict` (device) level alike.
"""

import re
from collections.abc import Sequence
from functools import cache

import numpy as np

_STEP = re.compile(r"^(plane|poly([1-5])|rows_mean|rows_median|rows_poly([0-5]))$")


def check_steps(steps: Sequence[str]) -> tuple[str, ...]:
    """The steps as a tuple; an unknown one is an error naming the valid forms."""
    steps = tuple(str(s) for s in steps)
    for step in steps:
        if not _STEP.match(step):
            raise ValueError(
                f"config.data.levelling step '{step}' unknown; use plane, polyN (N 1-5), "
                "rows_mean, rows_median or rows_polyN (N 0-5), in the order to apply them"
            )
    return steps


@cache
def _fit(lines: int, length: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """(design [lines*length, m], its pseudo-inverse [m, lines*length]) of a 2-D polynomial of
    total degree `degree` on coordinates scaled to [-1, 1] (well conditioned)."""
    y, x = np.meshgrid(np.linspace(-1, 1, lines), np.linspace(-1, 1, length), indexing="ij")
    powers = [(i, total - i) for total in range(degree + 1) for i in range(total + 1)]
    columns = [(x**i * y**j).ravel() for i, j in powers]
    design = np.stack(columns, axis=1)
    return design.astype(np.float32), np.linalg.pinv(design).astype(np.float32)


@cache
def _row_fit(length: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-1, 1, length)
    design = np.stack([x**i for i in range(degree + 1)], axis=1)
    return design.astype(np.float32), np.linalg.pinv(design).astype(np.float32)


def level(images, steps: Sequence[str], xp=np):
    """`images` [N, lines, length] with the levelling `steps` applied (float32)."""
    out = xp.asarray(images, xp.float32)
    n, lines, length = out.shape
    for step in check_steps(steps):
        m = _STEP.match(step)
        if step == "rows_mean":
            out = out - out.mean(-1, keepdims=True)
        elif step == "rows_median":
            out = out - xp.median(out, axis=-1, keepdims=True)
        elif step.startswith("rows_poly"):
            design, pinv = _row_fit(length, int(m.group(3)))
            out = out - (out @ pinv.T) @ design.T
        else:
            design, pinv = _fit(lines, length, 1 if step == "plane" else int(m.group(2)))
            flat = out.reshape(n, lines * length)
            out = (flat - (flat @ pinv.T) @ design.T).reshape(n, lines, length)
    return out


def level_in_chunks(images: np.ndarray, steps: Sequence[str], chunk: int = 1024) -> np.ndarray:
    """`level` on the host, `chunk` images at a time (a 60,000-scan set is 4 GB of floats)."""
    if not steps:
        return images
    out = np.empty(images.shape, np.float32)
    for start in range(0, len(images), chunk):
        out[start : start + chunk] = level(images[start : start + chunk], steps)
    return out
