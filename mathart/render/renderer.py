"""`render`: formulas + styles -> ``uint8 [N, S, S, 3]`` images, batched and jitted.

How a batch is drawn:

1. Parse every formula (`mathart.formula.parse`) and lower its expressions to a template
   (structure) plus a vector of literals (`mathart.render.expressions.lower`).
2. Group by (form, template): one small jitted *evaluation* per structure samples the formula
   (curve points, values on the pixel grid, or complex values), vmapped over the group with the
   literals as a traced ``[B, k]`` array. ``y = sin(3*x)`` and ``y = sin(5*x)`` share it.
3. Group by drawing kernel: one jitted *drawing* per (kernel, size, batch bucket) turns the
   samples into pixels (`mathart.render.draw`). Fractals and attractors have no expression and
   go straight to their kernel.
Evaluations run in padded batches of `EVAL_BATCH` (one compile per structure and size);
drawings in chunks of ``max_batch`` (smaller calls pad to a power of two), so the number of
compiles grows with the number of distinct structures, not with the number of formulas.
Styles are traced arrays: changing palettes or line widths never recompiles.

Default view windows (``Style.view = None``), as ``(center_x, center_y, half_width)``:
explicit and implicit ``(0, 0, 5)``; complex ``(0, 0, 2.5)``; polar, parametric and attractors
fit the drawn points (square, 8 % margin); mandelbrot and julia use the formula's ``center``
and ``1.6 / zoom``. A style's explicit view overrides all of these.

Determinism: the output is a pure function of (formula, style, size). Same inputs give the
same pixels, in any batch and any order (tested), on a given backend.
"""

import functools
import math
from collections import defaultdict
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mathart.formula import Formula, FormulaError, parse
from mathart.render import draw
from mathart.render.expressions import Template, evaluate, lower
from mathart.render.style import Style, stack_styles

DEFAULT_VIEWS = {
    "explicit": (0.0, 0.0, 5.0),
    "implicit": (0.0, 0.0, 5.0),
    "complex": (0.0, 0.0, 2.5),
}
FRACTAL_HALF_WIDTH = 1.6
ESCAPE_ITERATIONS = 160
# Per-structure evaluations always run in batches of this many (padded): one compile per
# structure and size. Evaluating a few padded rows costs far less than a compile.
EVAL_BATCH = 8


def curve_samples(size: int) -> int:
    """Raw samples of the curve parameter (before arc-length resampling)."""
    return max(1024, 16 * size)


def resampled_points(size: int) -> int:
    """Points splatted per curve: spacing stays under half a pixel for curves up to 12 image
    widths long (longer ones, e.g. dense spirals, get slightly faint strokes)."""
    return 24 * size


# ---- per-structure evaluation (stage 1) ---------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _curve_eval(form: str, templates: tuple[Template, ...], size: int):
    m = curve_samples(size)

    def one(consts, view, interval):
        if form == "explicit":
            cx, h = view[0], view[2]
            x = cx + h * 1.02 * jnp.linspace(-1.0, 1.0, m, dtype=jnp.float32)
            y = evaluate(templates[0], consts, {"x": x}, complex_mode=False)
            return jnp.stack([x, y], -1)
        s = jnp.linspace(0.0, 1.0, m, dtype=jnp.float32)
        s = interval[0] + (interval[1] - interval[0]) * s
        if form == "polar":
            r = evaluate(templates[0], consts, {"theta": s}, complex_mode=False)
            return jnp.stack([r * jnp.cos(s), r * jnp.sin(s)], -1)
        x = evaluate(templates[0], consts, {"t": s}, complex_mode=False)
        y = evaluate(templates[1], consts, {"t": s}, complex_mode=False)
        return jnp.stack([x, y], -1)

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=512)
def _grid_eval(form: str, templates: tuple[Template, ...], size: int):
    def one(consts, view, sign):
        x, y = draw.pixel_centres(size, view)
        if form == "complex":
            z = jax.lax.complex(x, y)
            return evaluate(templates[0], consts, {"z": z}, complex_mode=True)
        lhs = evaluate(templates[0], consts, {"x": x, "y": y}, complex_mode=False)
        rhs = evaluate(templates[1], consts, {"x": x, "y": y}, complex_mode=False)
        return sign * (lhs - rhs)

    return jax.jit(jax.vmap(one))


# ---- drawing (stage 2) --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _curve_draw(size: int):
    def one(points, view, fit, style):
        v = jnp.where(fit, draw.fit_view(points), view)
        return draw.curve(points, v, style, size, resampled_points(size))

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=64)
def _region_draw(size: int):
    return jax.jit(jax.vmap(lambda f, is_eq, style: draw.region(f, is_eq, style, size)))


@functools.lru_cache(maxsize=64)
def _complex_draw(size: int):
    return jax.jit(jax.vmap(lambda w, style: draw.domain_colouring(w, style)))


@functools.lru_cache(maxsize=64)
def _escape_draw(size: int, power: int, is_julia: bool):
    k = supersampling(size)

    def one(c, view, style):
        x, y = draw.pixel_centres(size * k, view)
        return draw.escape_time(
            jax.lax.complex(x, y), c, power, is_julia, style, ESCAPE_ITERATIONS, k
        )

    return jax.jit(jax.vmap(one))


def supersampling(size: int) -> int:
    """Samples per axis per pixel for escape-time fractals: 2x2 where pixels are big enough
    for aliasing to show (up to 64 px), 1 above (four times cheaper)."""
    return 2 if size <= 64 else 1


def attractor_budget(size: int) -> tuple[int, int]:
    """(walkers, steps): about 24 orbit points per pixel."""
    total = 24 * size * size
    walkers = int(min(max(total // 1024, 256), 4096))
    return walkers, max(1, total // walkers)


@functools.lru_cache(maxsize=64)
def _attractor_draw(size: int, kind: str):
    walkers, steps = attractor_budget(size)

    def one(params, view, style):
        return draw.attractor_density(params, kind, view, style, size, walkers, steps)

    return jax.jit(jax.vmap(one))


# ---- batching -----------------------------------------------------------------------------------


def _chunks(n: int, max_batch: int, fixed: bool) -> list[tuple[int, int, int]]:
    """(start, stop, padded_size) covering range(n).

    Batches of at least `max_batch` go in chunks of exactly `max_batch` (the last one padded),
    so bulk rendering compiles one shape per kernel; a smaller batch is padded to the next
    power of two (a handful of shapes), or to `max_batch` when `fixed`.
    """
    if n >= max_batch or fixed:
        return [(s, min(s + max_batch, n), max_batch) for s in range(0, n, max_batch)]
    return [(0, n, 1 << max(0, math.ceil(math.log2(n))))]


def _run(fn, arrays: Sequence, max_batch: int, fixed: bool = False) -> np.ndarray:
    """Calls the vmapped `fn` on padded chunks of `arrays` (pytrees with a batch axis)."""
    n = len(jax.tree.leaves(arrays[0])[0])
    outs = []
    for start, stop, padded in _chunks(n, max_batch, fixed):

        def take(a, start=start, stop=stop, padded=padded):
            a = np.asarray(a)[start:stop]
            if padded > len(a):  # pad by repeating the first row: always valid input
                a = np.concatenate([a, np.repeat(a[:1], padded - len(a), axis=0)])
            return a

        args = [jax.tree.map(take, a) for a in arrays]
        outs.append(np.asarray(fn(*args))[: stop - start])
    return np.concatenate(outs)


def _view_for(f: Formula, style: Style) -> tuple[tuple[float, float, float], bool]:
    """(view, fit): the window to draw, or fit=True to fit the drawn points."""
    if style.view is not None:
        return tuple(float(v) for v in style.view), False  # type: ignore[return-value]
    if f.form in DEFAULT_VIEWS:
        return DEFAULT_VIEWS[f.form], False
    if f.form in ("mandelbrot", "julia"):
        p = f.param_values()
        h = FRACTAL_HALF_WIDTH / p["zoom"].real
        return (p["center"].real, p["center"].imag, h), False
    if f.form == "attractor":
        p = f.param_values()
        if f.generator == "clifford":
            h = 1.05 * (1.0 + max(abs(p["c"].real), abs(p["d"].real)))
        else:
            h = 2.1
        return (0.0, 0.0, h), False
    return (0.0, 0.0, 1.0), True


def render(
    formulas: Sequence["Formula | str"],
    size: int,
    styles: Sequence[Style] | None = None,
    *,
    max_batch: int = 16,
    pad_to_max_batch: bool = False,
) -> np.ndarray:
    """Draws each formula with its style: ``uint8 [N, size, size, 3]``.

    formulas: `Formula` objects or text (parsed here; a bad one raises `FormulaError` with a
        note naming its index).
    styles: one per formula, or None for `Style()` (the default look) everywhere.
    max_batch: images per drawing call; pad_to_max_batch pads every call to it (bulk
        rendering: exactly one compile per kernel, at the price of padding small groups).
    """
    if size < 8 or size > 4096:
        raise ValueError(f"size must be between 8 and 4096 pixels, got {size}")
    parsed: list[Formula] = []
    for i, f in enumerate(formulas):
        try:
            parsed.append(parse(f))
        except FormulaError as e:
            e.add_note(f"(formulas[{i}] = {str(f)[:80]!r})")
            raise
    n = len(parsed)
    if styles is None:
        styles = [Style()] * n
    if len(styles) != n:
        raise ValueError(f"got {n} formulas but {len(styles)} styles; give one style each")
    out = np.zeros((n, size, size, 3), np.uint8)
    if n == 0:
        return out
    style_arrays = stack_styles(styles)

    def styles_at(idx):
        return {k: v[idx] for k, v in style_arrays.items()}

    curve_groups: dict[tuple, list[int]] = defaultdict(list)
    grid_groups: dict[tuple, list[int]] = defaultdict(list)
    escape_groups: dict[tuple, list[int]] = defaultdict(list)
    attractor_groups: dict[str, list[int]] = defaultdict(list)
    consts: dict[int, np.ndarray] = {}
    views: dict[int, tuple] = {}
    for i, f in enumerate(parsed):
        views[i] = _view_for(f, styles[i])
        if f.form in ("explicit", "polar", "parametric", "implicit", "complex"):
            lits: list[float] = []
            templates = tuple(lower(e, lits)[0] for e in f.body)
            consts[i] = np.asarray(lits, np.float32)
            groups = curve_groups if f.form in ("explicit", "polar", "parametric") else grid_groups
            groups[(f.form, templates)].append(i)
        elif f.form in ("mandelbrot", "julia"):
            power = round(f.param_values()["power"].real)
            escape_groups[(power, f.form == "julia")].append(i)
        else:
            attractor_groups[f.generator].append(i)

    # Curves: evaluate per structure, then draw all curves together.
    if curve_groups:
        order: list[int] = []
        points = []
        for (form, templates), idx in curve_groups.items():
            fn = _curve_eval(form, templates, size)
            intervals = np.asarray(
                [parsed[i].interval_values() if form != "explicit" else (0.0, 1.0) for i in idx],
                np.float32,
            )
            view = np.asarray([views[i][0] for i in idx], np.float32)
            c = np.stack([consts[i] for i in idx])
            points.append(_run(fn, [c, view, intervals], EVAL_BATCH, fixed=True))
            order += idx
        view = np.asarray([views[i][0] for i in order], np.float32)
        fit = np.asarray([views[i][1] for i in order])
        images = _run(
            _curve_draw(size),
            [np.concatenate(points), view, fit, styles_at(order)],
            max_batch,
            pad_to_max_batch,
        )
        out[order] = images

    # Implicit regions and complex maps: evaluate on the pixel grid per structure, then draw.
    regions: dict[str, tuple[list[int], list[np.ndarray]]] = {
        "implicit": ([], []),
        "complex": ([], []),
    }
    for (form, templates), idx in grid_groups.items():
        fn = _grid_eval(form, templates, size)
        c = np.stack([consts[i] for i in idx])
        view = np.asarray([views[i][0] for i in idx], np.float32)
        sign = np.asarray(
            [-1.0 if parsed[i].relation in (">", ">=") else 1.0 for i in idx], np.float32
        )
        regions[form][0].extend(idx)
        regions[form][1].append(_run(fn, [c, view, sign], EVAL_BATCH, fixed=True))
    idx, values = regions["implicit"]
    if idx:
        is_equation = np.asarray(
            [1.0 if parsed[i].relation == "=" else 0.0 for i in idx], np.float32
        )
        out[idx] = _run(
            _region_draw(size),
            [np.concatenate(values), is_equation, styles_at(idx)],
            max_batch,
            pad_to_max_batch,
        )
    idx, values = regions["complex"]
    if idx:
        out[idx] = _run(
            _complex_draw(size),
            [np.concatenate(values), styles_at(idx)],
            max_batch,
            pad_to_max_batch,
        )

    for (power, is_julia), idx in escape_groups.items():
        c = np.asarray([parsed[i].param_values().get("c", 0j) for i in idx], np.complex64)
        view = np.asarray([views[i][0] for i in idx], np.float32)
        out[idx] = _run(
            _escape_draw(size, power, is_julia),
            [c, view, styles_at(idx)],
            max_batch,
            pad_to_max_batch,
        )

    for kind, idx in attractor_groups.items():
        p = np.asarray(
            [[parsed[i].param_values()[k].real for k in "abcd"] for i in idx], np.float32
        )
        view = np.asarray([views[i][0] for i in idx], np.float32)
        out[idx] = _run(
            _attractor_draw(size, kind), [p, view, styles_at(idx)], max_batch, pad_to_max_batch
        )
    return out
