"""Drawing kernels: one image from sampled formula values and a style (pure JAX, per example).

The renderer (`mathart.render.renderer`) vmaps and jits these over a batch. Conventions:
pixel (row, col) has its centre at world point ``(cx - h + (col + 0.5) * 2h / S,
cy + h - (row + 0.5) * 2h / S)`` for the view ``(cx, cy, h)``: row 0 is the top, x grows to
the right, y grows upwards, and the image spans exactly ``[cx - h, cx + h]`` horizontally.

Kernels:
- `curve`: anti-aliased strokes from a polyline (explicit, polar, parametric). The polyline
  is clipped to the image, broken at non-finite values and jumps (asymptotes), resampled
  uniformly by arc length (spacing well under a pixel) and splatted: every pixel within the
  stroke's reach takes coverage ``clip(w/2 + 1/2 - d, 0, 1)`` from its distance ``d`` to the
  nearest resampled point (a scatter-max, so order-independent and deterministic). Colour runs
  along the curve through the palette.
- `region`: implicit formulas. An equation F = 0 is drawn as an anti-aliased stroke along its
  zero set, an inequality F < 0 as a region filled with level-set bands of F; both use the
  first-order signed distance ``F / |grad F|`` (one-sided differences, robust at poles).
- `domain_colouring`: hue from ``arg f(z)`` through the palette, brightness steps at powers of
  two of ``|f(z)|``.
- `escape_time`: Mandelbrot / Julia with a fixed iteration count, smooth (continuous) colouring
  and 2x2 supersampling.
- `attractor_density`: orbit of many walkers of a Clifford / de Jong map, histogram in int32
  (exact, order-independent), log density through the palette.
"""

import math

import jax
import jax.numpy as jnp

from mathart.render.style import LUT_SIZE


def pixel_centres(size: int, view: jax.Array) -> tuple[jax.Array, jax.Array]:
    """World coordinates ``(x [S, S], y [S, S])`` of the pixel centres of `view` (cx, cy, h)."""
    cx, cy, h = view[0], view[1], view[2]
    k = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2.0 - 1.0  # (-1, 1)
    xs = cx + h * k
    ys = cy - h * k
    return jnp.broadcast_to(xs[None, :], (size, size)), jnp.broadcast_to(ys[:, None], (size, size))


def lookup(lut: jax.Array, t: jax.Array) -> jax.Array:
    """Palette colour at positions `t` in [0, 1] (linear interpolation): ``t.shape + (3,)``."""
    x = jnp.clip(jnp.nan_to_num(t), 0.0, 1.0) * (LUT_SIZE - 1)
    i0 = jnp.floor(x).astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, LUT_SIZE - 1)
    f = (x - i0)[..., None]
    return lut[i0] * (1.0 - f) + lut[i1] * f


def _blur(img: jax.Array, sigma_px: jax.Array, radius: int) -> jax.Array:
    """Separable Gaussian blur of ``[S, S, C]`` as two banded matrix products (exact, simple)."""
    size = img.shape[0]
    d = jnp.arange(size, dtype=jnp.float32)
    diff = d[:, None] - d[None, :]
    w = jnp.exp(-0.5 * (diff / jnp.maximum(sigma_px, 0.3)) ** 2) * (jnp.abs(diff) <= radius)
    w = w / jnp.sum(w, axis=1, keepdims=True)
    return jnp.einsum("ij,jkc,lk->ilc", w, img, w)


def _finish(rgb: jax.Array) -> jax.Array:
    return jnp.round(jnp.clip(rgb, 0.0, 1.0) * 255.0).astype(jnp.uint8)


MAX_STROKE_FRACTION = 0.025  # widest stroke drawn, as a fraction of the image width


def max_half_width(size: int) -> float:
    """Half the widest stroke in pixels (strokes are at least one pixel wide)."""
    return max(0.5, 0.5 * MAX_STROKE_FRACTION * size)


def stroke_reach(size: int) -> int:
    """Static splat radius in pixels: the widest stroke's half width, the half-pixel
    anti-aliasing ramp, and half a pixel for rounding the splat centre."""
    return math.ceil(max_half_width(size) + 1.0)


def fit_view(points: jax.Array) -> jax.Array:
    """Square view ``(cx, cy, h)`` around the finite points ``[M, 2]`` with an 8 % margin."""
    finite = jnp.all(jnp.isfinite(points), axis=-1)
    p = jnp.clip(jnp.where(finite[:, None], points, 0.0), -1e4, 1e4)
    big = 1e9
    lo = jnp.min(jnp.where(finite[:, None], p, big), axis=0)
    hi = jnp.max(jnp.where(finite[:, None], p, -big), axis=0)
    any_finite = jnp.any(finite)
    lo = jnp.where(any_finite, lo, -1.0)
    hi = jnp.where(any_finite, hi, 1.0)
    centre = 0.5 * (lo + hi)
    half = jnp.maximum(0.5 * jnp.max(hi - lo) * 1.08, 1e-3)
    return jnp.stack([centre[0], centre[1], half])


def curve(
    points: jax.Array, view: jax.Array, style: dict, size: int, num_resampled: int
) -> jax.Array:
    """Anti-aliased stroke of the polyline ``points [M, 2]`` (world coordinates, NaN breaks it).

    Returns ``uint8 [S, S, 3]``.
    """
    cx, cy, h = view[0], view[1], view[2]
    scale = size / (2.0 * h)
    px = (points[:, 0] - (cx - h)) * scale - 0.5
    py = ((cy + h) - points[:, 1]) * scale - 0.5
    p = jnp.stack([px, py], -1)
    p = jnp.clip(jnp.nan_to_num(p, nan=jnp.inf), -1e7, 1e7)  # keeps sides, avoids overflow
    finite = jnp.all(jnp.isfinite(jnp.stack([px, py], -1)), axis=-1)
    a, b = p[:-1], p[1:]
    valid = finite[:-1] & finite[1:]

    # Clip every segment to the image plus the stroke's reach (Liang-Barsky, vectorised).
    reach = float(stroke_reach(size))
    lo, hi = -reach, size - 1.0 + reach
    d = b - a
    t0 = jnp.zeros(a.shape[0])
    t1 = jnp.ones(a.shape[0])
    for k in range(2):
        dk = d[:, k]
        safe = jnp.where(dk == 0, 1.0, dk)
        ta, tb = (lo - a[:, k]) / safe, (hi - a[:, k]) / safe
        enter, leave = jnp.minimum(ta, tb), jnp.maximum(ta, tb)
        inside = (a[:, k] >= lo) & (a[:, k] <= hi)
        t0 = jnp.where(dk == 0, jnp.where(inside, t0, 2.0), jnp.maximum(t0, enter))
        t1 = jnp.where(dk == 0, jnp.where(inside, t1, -1.0), jnp.minimum(t1, leave))
    ca, cb = a + t0[:, None] * d, a + t1[:, None] * d
    seg = jnp.linalg.norm(cb - ca, axis=-1)
    # A visible piece longer than a quarter of the image between two consecutive samples is a
    # jump across an asymptote (tan x, 1/x), not a stroke: break the curve there.
    valid = valid & (t0 <= t1) & (seg < 0.25 * size)
    seg = jnp.where(valid, seg, 0.0)

    # Resample uniformly by arc length so strokes have no gaps however fast the curve moves.
    ends = jnp.cumsum(seg)
    total = ends[-1]
    s = (jnp.arange(num_resampled, dtype=jnp.float32) + 0.5) / num_resampled * total
    idx = jnp.clip(jnp.searchsorted(ends, s, side="left"), 0, seg.shape[0] - 1)
    frac = jnp.clip((s - (ends[idx] - seg[idx])) / jnp.maximum(seg[idx], 1e-12), 0.0, 1.0)
    q = ca[idx] + frac[:, None] * (cb[idx] - ca[idx])
    u = (idx.astype(jnp.float32) + frac) / max(seg.shape[0], 1)  # position along the curve
    drawn = total > 0

    # Splat: each resampled point offers coverage to the pixels around it; keep the best.
    half_w = jnp.clip(0.5 * style["line_width"] * size, 0.5, max_half_width(size))
    r = stroke_reach(size)
    off = jnp.arange(-r, r + 1)
    oy, ox = jnp.meshgrid(off, off, indexing="ij")
    base = jnp.round(q).astype(jnp.int32)
    cols = base[:, 0, None, None] + ox[None]
    rows = base[:, 1, None, None] + oy[None]
    dist = jnp.hypot(cols - q[:, 0, None, None], rows - q[:, 1, None, None])
    cov = jnp.clip(half_w + 0.5 - dist, 0.0, 1.0) * drawn
    # Pack (coverage, position) into one int32 so a single scatter-max keeps both consistent.
    key = (jnp.round(cov * 1023).astype(jnp.int32) << 16) | jnp.round(
        jnp.broadcast_to(u[:, None, None], cov.shape) * 65535
    ).astype(jnp.int32)
    key = jnp.where(cov > 0, key, 0)
    inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    flat = jnp.where(inside, rows * size + cols, size * size)
    canvas = jnp.zeros((size * size,), jnp.int32).at[flat.ravel()].max(key.ravel(), mode="drop")
    canvas = canvas.reshape(size, size)
    coverage = (canvas >> 16).astype(jnp.float32) / 1023.0
    along = (canvas & 0xFFFF).astype(jnp.float32) / 65535.0

    colour = lookup(style["lut"], 0.25 + 0.75 * along)
    bg = style["background"]
    rgb = bg * (1.0 - coverage[..., None]) + colour * coverage[..., None]
    glow_radius = max(2, math.ceil(0.05 * size))
    halo = _blur(colour * coverage[..., None], 0.02 * size, glow_radius)
    rgb = rgb + style["glow"] * 1.5 * halo * (1.0 - coverage[..., None])
    return _finish(rgb)


def _signed_distance(f: jax.Array) -> jax.Array:
    """First-order signed distance ``F / |grad F|`` in pixels (inf where F is undefined).

    Per axis the gradient is the smaller (in magnitude) of the forward and backward
    differences: equal to the central one where F is smooth, but across a jump (a pole of
    tan, 1/x) it takes the smooth side, so a jump does not look like a zero crossing.
    """
    finite = jnp.isfinite(f)
    f0 = jnp.where(finite, f, 0.0)
    # Odd reflection continues F linearly past the border, so edge pixels get a gradient too.
    p = jnp.pad(f0, 1, mode="reflect", reflect_type="odd")

    def smaller(a, b):
        return jnp.where(jnp.abs(a) < jnp.abs(b), a, b)

    gx = smaller(p[1:-1, 2:] - p[1:-1, 1:-1], p[1:-1, 1:-1] - p[1:-1, :-2])
    gy = smaller(p[2:, 1:-1] - p[1:-1, 1:-1], p[1:-1, 1:-1] - p[:-2, 1:-1])
    grad = jnp.hypot(gx, gy)
    return jnp.where(finite, f0 / jnp.maximum(grad, 1e-20), jnp.inf)


def region(values: jax.Array, is_equation: jax.Array, style: dict, size: int) -> jax.Array:
    """Implicit formula from ``values [S, S]`` = F = lhs − rhs on the pixel centres.

    An equation (``is_equation`` = 1) is its zero set F = 0: an anti-aliased stroke with
    coverage ``clip(w/2 + 1/2 − |d|, 0, 1)`` for the signed distance d. An inequality is the
    region F < 0 (the renderer flips the sign for > and >=), filled with level-set bands of
    F: palette position grows with depth below zero, quantised into ``bands`` when set.
    """
    f = values
    dist = _signed_distance(f)
    finite = jnp.isfinite(f)
    f0 = jnp.where(finite, f, 0.0)

    inside = jnp.clip(0.5 - dist, 0.0, 1.0) * (1.0 - is_equation)
    depth = jnp.where(finite & (f0 < 0), -f0, 0.0)
    level = depth / jnp.maximum(jnp.max(depth), 1e-20)  # 0 at the edge, 1 deepest
    bands = style["bands"]
    level = jnp.where(bands > 0, jnp.floor(level * bands) / jnp.maximum(bands - 1, 1), level)
    fill = lookup(style["lut"], 0.2 + 0.6 * jnp.clip(level, 0, 1))
    alpha = (inside * style["fill_alpha"])[..., None]
    rgb = style["background"] * (1.0 - alpha) + fill * alpha

    half_w = jnp.clip(0.5 * style["line_width"] * size, 0.5, max_half_width(size))
    line = jnp.clip(half_w + 0.5 - jnp.abs(dist), 0.0, 1.0) * is_equation
    line_colour = style["lut"][-1]
    rgb = rgb * (1.0 - line[..., None]) + line_colour * line[..., None]
    halo = _blur(line[..., None] * line_colour, 0.02 * size, max(2, math.ceil(0.05 * size)))
    rgb = rgb + style["glow"] * 1.5 * halo * (1.0 - line[..., None])
    return _finish(rgb)


def domain_colouring(w: jax.Array, style: dict) -> jax.Array:
    """Colour of ``w = f(z)`` ``[S, S]`` complex: hue = arg w through the palette, brightness
    steps at each doubling of ``|w|``; undefined points take the background."""
    finite = jnp.isfinite(w.real) & jnp.isfinite(w.imag)
    w0 = jnp.where(finite, w, 1.0)
    hue = (jnp.angle(w0) / (2 * jnp.pi)) % 1.0
    bands = style["bands"]
    hue = jnp.where(bands > 0, jnp.floor(hue * bands * 2) / (bands * 2), hue)
    mag = jnp.log2(jnp.maximum(jnp.abs(w0), 1e-30))
    shade = 0.62 + 0.38 * (mag - jnp.floor(mag))
    rgb = lookup(style["lut"], hue) * shade[..., None]
    rgb = jnp.where(finite[..., None], rgb, style["background"])
    return _finish(rgb)


def escape_time(
    c_or_z0: jax.Array,
    julia_c: jax.Array,
    power: int,
    is_julia: bool,
    style: dict,
    num_iterations: int,
    supersampling: int,
) -> jax.Array:
    """Escape-time fractal on ``[S*k, S*k]`` complex sample points, averaged down by k.

    Mandelbrot: z0 = 0, c = point. Julia: z0 = point, c = `julia_c`. Smooth colouring with
    the continuous iteration count ``n + 1 - log(log|z|) / log(power)``.
    """
    points = c_or_z0
    if is_julia:
        z, c = points, jnp.broadcast_to(julia_c, points.shape)
    else:
        z, c = jnp.zeros_like(points), points
    radius2 = 256.0**2

    def body(n, carry):
        z, escaped_at = carry
        z_next = jax.lax.integer_pow(z, power) + c
        alive = escaped_at < 0
        z = jnp.where(alive, z_next, z)
        escaped = alive & (z.real**2 + z.imag**2 > radius2)
        return z, jnp.where(escaped, n, escaped_at)

    z, escaped_at = jax.lax.fori_loop(
        0, num_iterations, body, (z, jnp.full(points.shape, -1, jnp.int32))
    )
    log_mod = 0.5 * jnp.log(jnp.maximum(z.real**2 + z.imag**2, 1.0 + 1e-6))
    nu = escaped_at + 1.0 - jnp.log(jnp.maximum(log_mod, 1e-6)) / math.log(power)
    t = jnp.log1p(jnp.maximum(nu, 0.0)) / math.log1p(num_iterations)
    bands = style["bands"]
    t = jnp.where(bands > 0, jnp.floor(t * bands * 3) / (bands * 3), t)
    rgb = jnp.where((escaped_at >= 0)[..., None], lookup(style["lut"], t), style["background"])
    k = supersampling
    s = rgb.shape[0] // k
    rgb = rgb.reshape(s, k, s, k, 3).mean(axis=(1, 3))
    return _finish(rgb)


def attractor_density(
    params: jax.Array,
    kind: str,
    view: jax.Array,
    style: dict,
    size: int,
    walkers: int,
    steps: int,
) -> jax.Array:
    """Histogram of the orbit of a 2-D map: ``params = (a, b, c, d)``; kind 'clifford' or
    'dejong'. Walkers start from a fixed PRNG key, so the image is a function of the formula
    and the style only."""
    a, b, c, d = params[0], params[1], params[2], params[3]

    def step(x, y):
        if kind == "clifford":
            return jnp.sin(a * y) + c * jnp.cos(a * x), jnp.sin(b * x) + d * jnp.cos(b * y)
        return jnp.sin(a * y) - jnp.cos(b * x), jnp.sin(c * x) - jnp.cos(d * y)

    start = jax.random.uniform(jax.random.key(0), (2, walkers), minval=-1.0, maxval=1.0)
    x, y = start[0], start[1]
    for _ in range(16):  # burn-in: leave the transient before counting
        x, y = step(x, y)
    cx, cy, h = view[0], view[1], view[2]
    scale = size / (2.0 * h)

    def body(_, carry):
        x, y, hist = carry
        x, y = step(x, y)
        col = jnp.floor((x - (cx - h)) * scale).astype(jnp.int32)
        row = jnp.floor(((cy + h) - y) * scale).astype(jnp.int32)
        ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        flat = jnp.where(ok, row * size + col, size * size)
        return x, y, hist.at[flat].add(1, mode="drop")

    _, _, hist = jax.lax.fori_loop(0, steps, body, (x, y, jnp.zeros((size * size,), jnp.int32)))
    hist = hist.reshape(size, size).astype(jnp.float32)
    t = jnp.log1p(hist) / jnp.log1p(jnp.maximum(jnp.max(hist), 1.0))
    alpha = jnp.clip(1.6 * t, 0.0, 1.0)[..., None]
    rgb = style["background"] * (1.0 - alpha) + lookup(style["lut"], 0.15 + 0.85 * t) * alpha
    return _finish(rgb)
