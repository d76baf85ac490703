"""Procedural formula families: the sampler behind the synthetic (formula, style, image) data.

Each family is a small function ``rng -> formula text`` with a few structural variants and
parameters drawn from ranges chosen to look good in the renderer's default windows. Numbers
are rounded to one or two decimals so formulas stay short and the tokenizer sees recurring
pieces. Every sampled text is parsed (a sampler bug would raise `FormulaError`).

Complexity levels follow the seed's mix (training notes, "Dataset Composition Impact"):
simple 40 %, complex 35 %, artistic 25 %. `sample` draws the level first, then a family
uniformly within it. ``FAMILIES`` (names, in id order) is the label set of the family head.
"""

import math
from collections.abc import Callable

import numpy as np

SIMPLE, COMPLEX, ARTISTIC = 0, 1, 2
COMPLEXITY_NAMES = ("simple", "complex", "artistic")
COMPLEXITY_MIX = (0.40, 0.35, 0.25)


def _n(v: float, decimals: int = 2) -> str:
    """A number as text: rounded, no trailing zeros, no '-0'."""
    v = round(float(v), decimals)
    if v == 0:
        return "0"
    text = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return text


def _signed(v: float, decimals: int = 2) -> str:
    """' + 1.5' or ' - 1.5' (for appending a term)."""
    v = round(float(v), decimals)
    return f" - {_n(-v, decimals)}" if v < 0 else f" + {_n(v, decimals)}"


def _pick(rng: np.random.Generator, values):
    return values[int(rng.integers(len(values)))]


def _nonzero(rng, lo, hi, step):
    grid = [v for v in np.arange(lo, hi + step / 2, step) if abs(v) > 1e-9]
    return float(_pick(rng, grid))


# ---- simple -------------------------------------------------------------------------------------
# Parameter grids are sized so that each family has thousands of distinct formulas: at
# 20 000 examples a family draws about 900, and exact repeats are skipped (see build.py).


def line(rng):
    slope, icpt = _nonzero(rng, -4, 4, 0.25), _nonzero(rng, -4, 4, 0.25)
    return f"y = {_n(slope)}*x{_signed(icpt)}"


def parabola(rng):
    a = _nonzero(rng, -1, 1, 0.05)
    return f"y = {_n(a)}*x^2{_signed(rng.uniform(-2, 2), 1)}*x{_signed(rng.uniform(-3, 3), 1)}"


def sine(rng):
    fn = _pick(rng, ["sin", "cos"])
    amp, k = _nonzero(rng, 0.5, 4, 0.25), _nonzero(rng, 0.5, 3, 0.25)
    phase = _pick(rng, np.arange(0.0, 3.01, 0.25))
    inner = f"{_n(k)}*x" + (_signed(phase) if phase else "")
    return f"y = {_n(amp)}*{fn}({inner})"


def circle(rng):
    h, k = (_pick(rng, np.arange(-2, 2.01, 0.25)) for _ in range(2))
    r = _pick(rng, np.arange(1, 3.51, 0.25))
    xs = "x^2" if h == 0 else f"(x{_signed(-h)})^2"
    ys = "y^2" if k == 0 else f"(y{_signed(-k)})^2"
    return f"{xs} + {ys} = {_n(r * r, 4)}"


def ellipse(rng):
    a, b = _pick(rng, np.arange(1, 4.01, 0.25)), _pick(rng, np.arange(1, 4.01, 0.25))
    h, k = (_pick(rng, np.arange(-1.5, 1.51, 0.5)) for _ in range(2))
    xs = f"x/{_n(a)}" if h == 0 else f"(x{_signed(-h)})/{_n(a)}"
    ys = f"y/{_n(b)}" if k == 0 else f"(y{_signed(-k)})/{_n(b)}"
    rel = _pick(rng, ["=", "=", "<"])
    return f"({xs})^2 + ({ys})^2 {rel} 1"


def rose(rng):
    k = int(rng.integers(2, 13))
    offset = _pick(rng, np.arange(0.0, 1.51, 0.1))
    phase = _pick(rng, np.arange(0.0, 0.71, 0.1))
    inner = f"{k}*theta" + (_signed(phase, 1) if phase else "")
    return f"r = {_pick(rng, ['cos', 'sin'])}({inner})" + (_signed(offset, 1) if offset else "")


def limacon(rng):
    b = _nonzero(rng, 0.3, 3, 0.05)
    phase = _pick(rng, np.arange(0.0, 3.01, 0.25))
    inner = "theta" + (_signed(phase) if phase else "")
    return f"r = 1 + {_n(b)}*{_pick(rng, ['cos', 'sin'])}({inner})"


def spiral(rng):
    turns = int(rng.integers(2, 9))
    kind = _pick(
        rng,
        [
            *(f"theta^{p}" for p in ("0.5", "0.75", "1.25", "1.5", "1.75", "2")),
            "theta",
            *(f"exp({k}*theta)" for k in ("0.03", "0.05", "0.08", "0.1", "0.15", "0.2")),
            "log(1 + theta)",
        ],
    )
    offset = _pick(rng, [0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    start = _pick(rng, [0, 1])
    body = kind + (_signed(offset, 1) if offset else "")
    return f"r = {body}, theta in [{start}*pi, {2 * turns + start}*pi]"


def lissajous(rng):
    a, b = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    while math.gcd(a, b) != 1 or a == b:
        a, b = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    p = _pick(rng, np.arange(0.0, 1.61, 0.1))
    amp = _pick(rng, [1.0, 1.0, 0.5, 0.75, 1.25, 1.5])
    inner = f"{a}*t" + (_signed(p, 1) if p else "")
    return f"x = sin({inner}), y = {_n(amp)}*sin({b}*t)"


# ---- complex ------------------------------------------------------------------------------------


def damped_wave(rng):
    amp, k = _nonzero(rng, 1, 4, 0.25), _nonzero(rng, 0.05, 0.8, 0.05)
    w = _nonzero(rng, 1, 6, 0.25)
    env = _pick(rng, [f"exp(-{_n(k)}*abs(x))", f"exp(-{_n(k / 4, 3)}*x^2)"])
    return f"y = {_n(amp)}*{env}*{_pick(rng, ['cos', 'sin'])}({_n(w)}*x)"


def cubic(rng):
    roots = sorted(_nonzero(rng, -4, 4, 0.25) for _ in range(3))
    a = _nonzero(rng, -0.3, 0.3, 0.025)
    factors = "*".join(f"(x{_signed(-r)})" for r in roots)
    return f"y = {_n(a, 3)}*{factors}"


def sine_sum(rng):
    a, c = _nonzero(rng, 0.5, 2.5, 0.25), _nonzero(rng, 0.5, 2.5, 0.25)
    b, d = _nonzero(rng, 0.5, 4, 0.25), _nonzero(rng, 0.5, 4, 0.25)
    return f"y = {_n(a)}*sin({_n(b)}*x) + {_n(c)}*cos({_n(d)}*x)"


def superellipse(rng):
    n = _pick(rng, [0.4, 0.5, 0.6, 0.7, 0.8, 1, 1.2, 1.5, 2.5, 3, 4, 5, 6, 8])
    a, b = _pick(rng, np.arange(1.5, 4.51, 0.25)), _pick(rng, np.arange(1.5, 4.51, 0.25))
    rel = _pick(rng, ["=", "=", "<"])
    return f"abs(x/{_n(a)})^{_n(n)} + abs(y/{_n(b)})^{_n(n)} {rel} 1"


def wave_lattice(rng):
    a, b = _nonzero(rng, 0.5, 3, 0.25), _nonzero(rng, 0.5, 3, 0.25)
    c = round(float(rng.uniform(-0.8, 0.8)), 1)
    if rng.random() < 0.5:
        return f"sin({_n(a)}*x) + cos({_n(b)}*y) = {_n(c, 1)}"
    return f"sin({_n(a)}*x)*sin({_n(b)}*y) > {_n(c, 1)}"


def trochoid(rng):
    big, small = int(rng.integers(3, 11)), int(rng.integers(1, 8))
    while big == small or math.gcd(big, small) != 1:
        big, small = int(rng.integers(3, 11)), int(rng.integers(1, 8))
    d = round(float(rng.uniform(0.5, 4.0)), 1)
    period = 2 * small  # in units of pi: the curve closes after 2*pi*small / gcd
    if rng.random() < 0.5:
        k = round((big + small) / small, 3)
        return (
            f"x = {big + small}*cos(t) - {_n(d, 1)}*cos({_n(k, 3)}*t), "
            f"y = {big + small}*sin(t) - {_n(d, 1)}*sin({_n(k, 3)}*t), t in [0, {period}*pi]"
        )
    k = round((big - small) / small, 3)
    return (
        f"x = {big - small}*cos(t) + {_n(d, 1)}*cos({_n(k, 3)}*t), "
        f"y = {big - small}*sin(t) - {_n(d, 1)}*sin({_n(k, 3)}*t), t in [0, {period}*pi]"
    )


def rose_fraction(rng):
    p, q = int(rng.integers(1, 12)), int(rng.integers(2, 12))
    while math.gcd(p, q) != 1:
        p, q = int(rng.integers(1, 12)), int(rng.integers(2, 12))
    span = q if (p * q) % 2 else 2 * q
    offset = _pick(rng, np.arange(0.0, 1.01, 0.1))
    fn = _pick(rng, ["cos", "sin"])
    body = f"{fn}({p}/{q}*theta)" + (_signed(offset, 1) if offset else "")
    return f"r = {body}, theta in [0, {span}*pi]"


def butterfly(rng):
    a = _nonzero(rng, 0.5, 3, 0.1)
    b = _pick(rng, [0.5, 0.75, 1.0, 1.25, 1.5])
    k = int(rng.integers(2, 7))
    m = _pick(rng, [3, 5, 7])
    return (
        f"r = exp({_n(b)}*sin(theta)) - {_n(a, 1)}*cos({k}*theta) "
        f"+ sin((2*theta - pi)/24)^{m}, "
        "theta in [0, 12*pi]"
    )


def complex_polynomial(rng):
    n = int(rng.integers(2, 8))
    c = complex(round(float(rng.uniform(-1.5, 1.5)), 1), round(float(rng.uniform(-1.5, 1.5)), 1))
    return f"f(z) = z^{n}{_signed(-c.real, 1)}{_signed(-c.imag, 1)}*i"


def complex_rational(rng):
    a, b = round(float(rng.uniform(0.5, 2)), 1), round(float(rng.uniform(0.5, 2)), 1)
    m, n = int(rng.integers(2, 4)), int(rng.integers(2, 5))
    return f"f(z) = (z^{n} - {_n(a, 1)})/(z^{m} + {_n(b, 1)}*i)"


# ---- artistic -----------------------------------------------------------------------------------

# Centres and zooms that show structure (seahorse valley, elephant valley, spirals, minibrots);
# each sample jitters the centre by up to 15 % of the window and the zoom by up to 40 %.
_MANDELBROT_SPOTS = (
    (-0.745, 0.11, 12.0),
    (0.275, 0.007, 20.0),
    (-1.25, 0.02, 8.0),
    (-0.1, 0.9, 6.0),
    (-1.77, 0.0, 25.0),
    (-0.16, 1.035, 25.0),
    (0.36, 0.1, 8.0),
    (-0.6, 0.0, 1.0),
    (-0.5, 0.55, 4.0),
)


def mandelbrot(rng):
    power = int(_pick(rng, [2, 2, 2, 3, 4, 5, 6]))
    if power == 2:
        cx, cy, zoom = _pick(rng, _MANDELBROT_SPOTS)
    else:
        cx, cy, zoom = 0.0, 0.0, 1.0
    zoom = zoom * float(rng.uniform(0.7, 1.4))
    half = 1.6 / zoom
    cx += float(rng.uniform(-0.15, 0.15)) * half
    cy += float(rng.uniform(-0.15, 0.15)) * half
    decimals = 2 + math.ceil(math.log10(max(zoom, 1.0)))
    centre = f"{_n(cx, decimals)}{_signed(cy, decimals)}*i"
    head = f"mandelbrot(power = {power}, " if power != 2 else "mandelbrot("
    return f"{head}center = {centre}, zoom = {_n(zoom, 1)})"


def julia(rng):
    # c on a circle near the main cardioid's boundary gives connected, detailed sets.
    angle = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(0.6, 0.85)
    c = radius * complex(math.cos(angle), math.sin(angle))
    power = int(_pick(rng, [2, 2, 2, 3, 4]))
    zoom = _pick(rng, [1.0, 1.0, 1.0, 1.5, 2.0])
    text = f"julia(c = {_n(c.real, 3)}{_signed(c.imag, 3)}*i"
    text += f", power = {power}" if power != 2 else ""
    return text + (f", zoom = {_n(zoom, 1)})" if zoom != 1 else ")")


def clifford(rng):
    a, b, c, d = (round(float(v), 2) for v in rng.uniform(-2.0, 2.0, 4))
    return f"clifford(a = {_n(a)}, b = {_n(b)}, c = {_n(c)}, d = {_n(d)})"


def dejong(rng):
    a, b, c, d = (round(float(v), 2) for v in rng.uniform(-3.0, 3.0, 4))
    return f"dejong(a = {_n(a)}, b = {_n(b)}, c = {_n(c)}, d = {_n(d)})"


def domain_art(rng):
    a = round(float(rng.uniform(0.5, 2.0)), 1)
    b = round(float(rng.uniform(-1.5, 1.5)), 1)
    k = int(rng.integers(2, 6))
    return _pick(
        rng,
        [
            f"f(z) = sin({_n(a, 1)}*z)/z^{k}{_signed(b, 1)}",
            f"f(z) = exp({_n(a, 1)}/z){_signed(b, 1)}*z",
            f"f(z) = z^{k} + {_n(a, 1)}/z^{k}{_signed(b, 1)}",
            f"f(z) = cos(z^{k - 1})*{_n(a, 1)}{_signed(b, 1)}*i",
            f"f(z) = tan({_n(a, 1)}*z)*z{_signed(b, 1)}",
            f"f(z) = log(z^{k}{_signed(b, 1)})*{_n(a, 1)}",
        ],
    )


def interference(rng):
    a, b = round(float(rng.uniform(0.5, 3.0)), 1), round(float(rng.uniform(0.5, 3.0)), 1)
    c = round(float(rng.uniform(-0.5, 0.5)), 1)
    return _pick(
        rng,
        [
            f"sin({_n(a, 1)}*sqrt(x^2 + y^2)) + sin({_n(b, 1)}*x) > {_n(c, 1)}",
            f"sin({_n(a, 1)}*x*y) = cos({_n(b, 1)}*(x + y)){_signed(c, 1)}",
            f"cos({_n(a, 1)}*x^2 - {_n(b, 1)}*y^2) < {_n(c, 1)}",
        ],
    )


def farris_wheel(rng):
    a, b = int(rng.integers(2, 10)), int(rng.integers(5, 20))
    u, v = round(float(rng.uniform(0.2, 0.8)), 2), round(float(rng.uniform(0.15, 0.6)), 2)
    return (
        f"x = cos(t) + {_n(u)}*cos({a}*t) + {_n(v)}*sin({b}*t), "
        f"y = sin(t) + {_n(u)}*sin({a}*t) + {_n(v)}*cos({b}*t)"
    )


# name -> (complexity, sampler). Order fixes the family ids; append only.
_REGISTRY: dict[str, tuple[int, Callable[[np.random.Generator], str]]] = {
    "line": (SIMPLE, line),
    "parabola": (SIMPLE, parabola),
    "sine": (SIMPLE, sine),
    "circle": (SIMPLE, circle),
    "ellipse": (SIMPLE, ellipse),
    "rose": (SIMPLE, rose),
    "limacon": (SIMPLE, limacon),
    "spiral": (SIMPLE, spiral),
    "lissajous": (SIMPLE, lissajous),
    "damped_wave": (COMPLEX, damped_wave),
    "cubic": (COMPLEX, cubic),
    "sine_sum": (COMPLEX, sine_sum),
    "superellipse": (COMPLEX, superellipse),
    "wave_lattice": (COMPLEX, wave_lattice),
    "trochoid": (COMPLEX, trochoid),
    "rose_fraction": (COMPLEX, rose_fraction),
    "butterfly": (COMPLEX, butterfly),
    "complex_polynomial": (COMPLEX, complex_polynomial),
    "complex_rational": (COMPLEX, complex_rational),
    "mandelbrot": (ARTISTIC, mandelbrot),
    "julia": (ARTISTIC, julia),
    "clifford": (ARTISTIC, clifford),
    "dejong": (ARTISTIC, dejong),
    "domain_art": (ARTISTIC, domain_art),
    "interference": (ARTISTIC, interference),
    "farris_wheel": (ARTISTIC, farris_wheel),
}

FAMILIES: list[str] = list(_REGISTRY)
FAMILY_COMPLEXITY: list[int] = [c for c, _ in _REGISTRY.values()]
_BY_LEVEL = [[i for i, c in enumerate(FAMILY_COMPLEXITY) if c == level] for level in range(3)]


def sample_family(family: int | str, rng: np.random.Generator) -> str:
    """One formula text from a given family (id or name)."""
    name = FAMILIES[family] if isinstance(family, int) else family
    if name not in _REGISTRY:
        raise ValueError(f"unknown family {name!r}; choose one of: {', '.join(FAMILIES)}")
    return _REGISTRY[name][1](rng)


def sample(rng: np.random.Generator) -> tuple[str, int, int]:
    """(formula text, family id, complexity level) with the seed's complexity mix."""
    level = int(rng.choice(3, p=COMPLEXITY_MIX))
    family = int(_pick(rng, _BY_LEVEL[level]))
    return sample_family(family, rng), family, level
