"""The whitelist of the formula language: every name a formula may use, and the limits.

Nothing outside these tables can appear in a parsed formula, so the renderer only ever maps a
known name to a known JAX function (`mathart.render.expressions`). Used by the lexer (to split
and classify names), the parser (arity and per-form variable checks) and the tokenizer.
"""

import dataclasses

# name -> number of arguments. Real and complex forms share the table; `re`, `im`, `conj` and
# `arg` only make sense for complex values but are harmless on reals (re(x) = x, arg(x) = 0/pi).
FUNCTIONS: dict[str, int] = {
    "sin": 1,
    "cos": 1,
    "tan": 1,
    "sec": 1,
    "csc": 1,
    "cot": 1,
    "asin": 1,
    "acos": 1,
    "atan": 1,
    "sinh": 1,
    "cosh": 1,
    "tanh": 1,
    "exp": 1,
    "log": 1,
    "sqrt": 1,
    "abs": 1,
    "sign": 1,
    "floor": 1,
    "ceil": 1,
    "re": 1,
    "im": 1,
    "conj": 1,
    "arg": 1,
    "atan2": 2,
    "min": 2,
    "max": 2,
    "mod": 2,
    "hypot": 2,
}

VARIABLES = ("x", "y", "z", "t", "r", "theta")
CONSTANTS = ("pi", "e", "i")

# Generators draw a fixed family of pictures controlled by keyword parameters:
# name -> {parameter: default (None = required)}. Order here is the canonical order.
GENERATORS: dict[str, dict[str, complex | float | None]] = {
    "mandelbrot": {"power": 2.0, "center": complex(-0.6, 0.0), "zoom": 1.0},
    "julia": {"c": None, "power": 2.0, "center": 0j, "zoom": 1.0},
    # Clifford attractor: x' = sin(a y) + c cos(a x), y' = sin(b x) + d cos(b y).
    "clifford": {"a": -1.4, "b": 1.6, "c": 1.0, "d": 0.7},
    # Peter de Jong attractor: x' = sin(a y) - cos(b x), y' = sin(c x) - cos(d y).
    "dejong": {"a": 1.4, "b": -2.3, "c": 2.4, "d": -2.1},
}
GENERATOR_PARAMS = ("a", "b", "c", "d", "power", "center", "zoom")

# `f` only appears as the head of a complex map `f(z) = ...`; `in` introduces a range clause
# `theta in [0, 6*pi]`.
HEAD = "f"
KEYWORDS = ("in",)

# Names made of letters and digits; matched before the letter-only split so that `atan2` is one
# name and not `atan` times 2.
DIGIT_NAMES = ("atan2",)

ALL_NAMES = frozenset(
    [*FUNCTIONS, *VARIABLES, *CONSTANTS, *GENERATORS, *GENERATOR_PARAMS, HEAD, *KEYWORDS]
)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits that make hostile or runaway input fail fast with a clear error.

    All checks are linear in the input length and happen before anything is rendered.
    """

    max_chars: int = 512  # characters in the raw text
    max_depth: int = 32  # nesting of brackets / operators
    max_literal: float = 1e6  # |number| as written
    max_constant: float = 1e9  # |value| of any constant sub-expression after folding
    max_exponent: float = 32.0  # |constant exponent| in a ^ b
    max_number_chars: int = 40  # digits in one number literal
    max_range: float = 200.0  # |bounds| of a `t in [a, b]` range (radians)
    max_param: float = 16.0  # |value| of generator parameters (a, b, c, d, center)
    max_power: int = 8  # fractal power d in z^d + c
    max_zoom: float = 1e4  # fractal zoom (float32 pixel spacing runs out beyond)


DEFAULT_LIMITS = Limits()
