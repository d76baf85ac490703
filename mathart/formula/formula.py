"""`Formula`: a parsed, validated formula that knows its form; `parse` builds one from text.

Forms (``Formula.form``), with the text they come from:

==============  ===========================================  ==================================
form            written as                                   drawn as
==============  ===========================================  ==================================
explicit        ``y = f(x)`` (or a bare expression in x)     anti-aliased curve
implicit        ``f(x, y) = g(x, y)``; ``<``, ``<=``,        equation: stroke along its zero
                ``>``, ``>=`` (or a bare expr in x and y)    set; inequality: filled region
                                                             with level-set bands
polar           ``r = f(theta)[, theta in [a, b]]``          anti-aliased curve
parametric      ``x = f(t), y = g(t)[, t in [a, b]]``        anti-aliased curve
complex         ``f(z) = g(z)`` (or a bare expression in z)  domain colouring
mandelbrot      ``mandelbrot(power = 2, center = ..., ...)`` escape-time fractal
julia           ``julia(c = -0.8 + 0.156*i, ...)``           escape-time fractal
attractor       ``clifford(a = .., b = .., c = .., d = ..)``, point density of the orbit
                ``dejong(a = .., ...)``
==============  ===========================================  ==================================

Validation (all before rendering; each error names the position and the reason):
variables allowed per form; function arity; constant sub-expressions are folded with Python's
`math`/`cmath` (never `eval`) and must be finite, defined and within `Limits.max_constant`;
a constant exponent is limited to `Limits.max_exponent` (so ``9**9**9**9`` is rejected at its
second ``**``); generator parameters and ranges are range-checked.
"""

import cmath
import dataclasses
import functools
import math

from mathart.formula import names, parser
from mathart.formula.errors import FormulaError
from mathart.formula.nodes import Bin, Call, Neg, Node, Num, Sym, unparse, walk

FORMS = (
    "explicit",
    "implicit",
    "polar",
    "parametric",
    "complex",
    "mandelbrot",
    "julia",
    "attractor",
)
CURVE_FORMS = ("explicit", "polar", "parametric")
DEFAULT_INTERVAL = (0.0, 2.0 * math.pi)  # polar theta / parametric t when no range is given

# Variables (besides the constants pi and e) each form's expressions may use.
_FORM_VARIABLES = {
    "explicit": ("x",),
    "implicit": ("x", "y"),
    "polar": ("theta",),
    "parametric": ("t",),
    "complex": ("z", "i"),
}
_FORM_WORDS = {
    "explicit": "an explicit curve y = f(x)",
    "implicit": "an implicit equation in x and y",
    "polar": "a polar curve r = f(theta)",
    "parametric": "a parametric curve x = f(t), y = g(t)",
    "complex": "a complex map f(z) = ...",
}
# Functions of real numbers only; rejected in complex maps rather than silently taking re().
REAL_ONLY_FUNCTIONS = frozenset({"floor", "ceil", "min", "max", "mod", "atan2", "hypot", "sign"})


@dataclasses.dataclass(frozen=True)
class Formula:
    """A validated formula. Compare with ``==`` (structure, not spelling); ``.text`` is canonical.

    ``body`` holds the expressions: explicit ``(f,)``, implicit ``(lhs, rhs)``, polar ``(r,)``,
    parametric ``(x, y)``, complex ``(f,)``, generators ``()``. ``interval`` is the written
    ``theta``/``t`` range (None: the default [0, 2*pi]). ``params`` are generator parameters as
    written, in canonical order; `param_values` fills in defaults.
    """

    form: str
    body: tuple[Node, ...] = ()
    relation: str = "="
    interval: tuple[Node, Node] | None = None
    generator: str = ""
    params: tuple[tuple[str, Node], ...] = ()

    @functools.cached_property
    def text(self) -> str:
        return unparse_formula(self)

    def __str__(self) -> str:
        return self.text

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(
            n.name
            for e in self.body
            for n in walk(e)
            if isinstance(n, Sym) and n.name in names.VARIABLES
        )

    def interval_values(self) -> tuple[float, float]:
        """The curve parameter's (start, end) in radians; polar and parametric forms only."""
        if self.interval is None:
            return DEFAULT_INTERVAL
        lo, hi = (_fold(n, complex_mode=False) for n in self.interval)
        return float(lo.real), float(hi.real)

    def param_values(self) -> dict[str, complex]:
        """Generator parameters with defaults filled in (complex; real ones have imag 0)."""
        values = {
            k: complex(v)
            for k, v in names.GENERATORS.get(self.generator, {}).items()
            if v is not None
        }
        for k, node in self.params:
            values[k] = complex(_fold(node, complex_mode=True))
        return values


def unparse_formula(f: Formula) -> str:
    """Canonical text: ``parse(unparse_formula(f)) == f`` for every valid formula."""
    interval = ""
    if f.interval is not None:
        var = "theta" if f.form == "polar" else "t"
        interval = f", {var} in [{unparse(f.interval[0])}, {unparse(f.interval[1])}]"
    if f.form == "explicit":
        return f"y = {unparse(f.body[0])}"
    if f.form == "implicit":
        return f"{unparse(f.body[0])} {f.relation} {unparse(f.body[1])}"
    if f.form == "polar":
        return f"r = {unparse(f.body[0])}{interval}"
    if f.form == "parametric":
        return f"x = {unparse(f.body[0])}, y = {unparse(f.body[1])}{interval}"
    if f.form == "complex":
        return f"f(z) = {unparse(f.body[0])}"
    if not f.params:
        return f.generator
    inner = ", ".join(f"{k} = {unparse(v)}" for k, v in f.params)
    return f"{f.generator}({inner})"


# ---- constant folding (Python math/cmath, never eval) -------------------------------------------

_REAL_FUNCTIONS = {
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "sec": lambda v: 1.0 / math.cos(v),
    "csc": lambda v: 1.0 / math.sin(v),
    "cot": lambda v: math.cos(v) / math.sin(v),
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "abs": abs,
    "sign": lambda v: float((v > 0) - (v < 0)),
    "floor": lambda v: float(math.floor(v)),
    "ceil": lambda v: float(math.ceil(v)),
    "re": lambda v: v,
    "im": lambda v: 0.0,
    "conj": lambda v: v,
    "arg": lambda v: 0.0 if v >= 0 else math.pi,
    "atan2": math.atan2,
    "min": min,
    "max": max,
    "mod": lambda a, b: a % b,
    "hypot": math.hypot,
}
_COMPLEX_FUNCTIONS = {
    "sin": cmath.sin,
    "cos": cmath.cos,
    "tan": cmath.tan,
    "sec": lambda v: 1.0 / cmath.cos(v),
    "csc": lambda v: 1.0 / cmath.sin(v),
    "cot": lambda v: cmath.cos(v) / cmath.sin(v),
    "asin": cmath.asin,
    "acos": cmath.acos,
    "atan": cmath.atan,
    "sinh": cmath.sinh,
    "cosh": cmath.cosh,
    "tanh": cmath.tanh,
    "exp": cmath.exp,
    "log": cmath.log,
    "sqrt": cmath.sqrt,
    "abs": lambda v: complex(abs(v)),
    "re": lambda v: complex(v.real),
    "im": lambda v: complex(v.imag),
    "conj": lambda v: v.conjugate(),
    "arg": lambda v: complex(cmath.phase(v)),
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _fold(
    node: Node,
    *,
    complex_mode: bool,
    limits: names.Limits = names.DEFAULT_LIMITS,
    text: str | None = None,
) -> complex | float | None:
    """Value of a constant sub-expression, None if it depends on a variable.

    Checks every power's constant exponent and every constant's magnitude on the way, so a
    formula is validated by one call on each of its expressions.
    """

    def fail(reason: str, at: Node) -> FormulaError:
        return FormulaError(reason, at.pos if at.pos >= 0 else None, text)

    def check(value, at: Node):
        if isinstance(value, complex) and not complex_mode:
            raise fail(f"{unparse(at)} is not a real number", at)
        if not (math.isfinite(abs(value)) and abs(value) <= limits.max_constant):
            raise fail(
                f"the constant {unparse(at)} evaluates to {value:.4g}, beyond the limit "
                f"{limits.max_constant:g}",
                at,
            )
        return value

    def go(n: Node):
        if isinstance(n, Num):
            return complex(n.value) if complex_mode else n.value
        if isinstance(n, Sym):
            if n.name in _CONSTANTS:
                return complex(_CONSTANTS[n.name]) if complex_mode else _CONSTANTS[n.name]
            if n.name == "i" and complex_mode:
                return 1j
            return None
        if isinstance(n, Neg):
            v = go(n.arg)
            return None if v is None else -v
        if isinstance(n, Bin):
            a, b = go(n.lhs), go(n.rhs)
            if n.op == "^" and b is not None and abs(b) > limits.max_exponent:
                raise fail(
                    f"the exponent {unparse(n.rhs)} = {abs(b):.6g} is too large "
                    f"(|exponent| <= {limits.max_exponent:g})",
                    n,
                )
            if a is None or b is None:
                return None
            try:
                if n.op == "+":
                    v = a + b
                elif n.op == "-":
                    v = a - b
                elif n.op == "*":
                    v = a * b
                elif n.op == "/":
                    v = a / b
                elif complex_mode:
                    v = complex(a) ** b
                else:
                    v = math.pow(a, b)
            except ZeroDivisionError:
                raise fail(f"division by zero in {unparse(n)}", n) from None
            except (ValueError, OverflowError) as e:
                raise fail(f"{unparse(n)} is undefined or too large ({e})", n) from None
            return check(v, n)
        if isinstance(n, Call):
            args = [go(a) for a in n.args]
            if any(a is None for a in args):
                return None
            table = _COMPLEX_FUNCTIONS if complex_mode else _REAL_FUNCTIONS
            try:
                v = table[n.fn](*args)
            except ZeroDivisionError:
                raise fail(f"division by zero in {unparse(n)}", n) from None
            except (ValueError, OverflowError) as e:
                raise fail(f"{unparse(n)} is undefined ({e})", n) from None
            return check(v, n)
        raise TypeError(f"not a formula node: {n!r}")

    return go(node)


# ---- form detection and validation --------------------------------------------------------------


def _syms(node: Node) -> list[Sym]:
    return [n for n in walk(node) if isinstance(n, Sym)]


def _check_variables(form: str, exprs: list[Node], text: str) -> None:
    allowed = set(_FORM_VARIABLES[form]) | set(_CONSTANTS)
    for e in exprs:
        for s in _syms(e):
            if s.name not in allowed:
                raise FormulaError(
                    f"{s.name!r} is not allowed in {_FORM_WORDS[form]}; it may use "
                    f"{', '.join(sorted(allowed))}",
                    s.pos,
                    text,
                )
    if form == "complex":
        for e in exprs:
            for n in walk(e):
                if isinstance(n, Call) and n.fn in REAL_ONLY_FUNCTIONS:
                    raise FormulaError(
                        f"{n.fn} is defined for real numbers only and cannot be used in a "
                        "complex map",
                        n.pos,
                        text,
                    )


def _vars_of(nodes: list[Node]) -> set[str]:
    return {s.name for e in nodes for s in _syms(e) if s.name in names.VARIABLES}


def _classify(clauses: list[parser.Clause], text: str) -> Formula:
    ranges = [c for c in clauses if isinstance(c, parser.Range)]
    rest = [c for c in clauses if not isinstance(c, parser.Range)]
    if len(ranges) > 1:
        raise FormulaError("at most one range clause is allowed", ranges[1].pos, text)
    if not rest:
        raise FormulaError("a range alone is not a formula", ranges[0].pos, text)

    def is_sym(node: Node, name: str) -> bool:
        return isinstance(node, Sym) and node.name == name

    if len(rest) == 2:
        a, b = rest
        ok = all(isinstance(c, parser.Relation) and c.op == "=" for c in rest)
        if ok and is_sym(a.lhs, "y") and is_sym(b.lhs, "x"):
            a, b = b, a
        if not (ok and is_sym(a.lhs, "x") and is_sym(b.lhs, "y")):
            raise FormulaError(
                "two clauses must be a parametric curve x = f(t), y = g(t)", rest[1].pos, text
            )
        form, body = "parametric", (a.rhs, b.rhs)
    elif len(rest) > 2:
        raise FormulaError(
            "too many clauses: a formula is one equation, or x = f(t), y = g(t)",
            rest[2].pos,
            text,
        )
    else:
        (c,) = rest
        relation = "="
        if isinstance(c, parser.Bare):
            used = _vars_of([c.expr])
            if used <= {"x"}:
                form, body = "explicit", (c.expr,)
            elif used == {"theta"}:
                form, body = "polar", (c.expr,)
            elif used == {"z"}:
                form, body = "complex", (c.expr,)
            elif used <= {"x", "y"}:
                # "expr" means "expr = 0"; classify exactly as that text would be, so the
                # canonical text re-parses to the same formula ("y" is the line y = 0).
                c = parser.Relation(c.expr, "=", Num(0.0), c.pos)
            else:
                raise FormulaError(
                    f"cannot tell the form of an expression in {', '.join(sorted(used))}; "
                    "write y = f(x), f(x, y) = 0, r = f(theta), x = f(t), y = g(t) or "
                    "f(z) = ...",
                    c.pos,
                    text,
                )
        if isinstance(c, parser.ComplexMap):
            form, body = "complex", (c.expr,)
        elif isinstance(c, parser.Bare):
            pass  # classified above
        elif c.op == "=" and is_sym(c.lhs, "y") and "y" not in _vars_of([c.rhs]):
            # y = <no y>: explicit (a stray z or theta is then reported as not allowed in
            # y = f(x), which is what the writer meant).
            form, body = "explicit", (c.rhs,)
        elif is_sym(c.lhs, "r"):
            if c.op != "=":
                raise FormulaError("a polar curve is written r = f(theta)", c.pos, text)
            form, body = "polar", (c.rhs,)
        else:
            form, body = "implicit", (c.lhs, c.rhs)
            relation = c.op
        if form != "implicit" and isinstance(c, parser.Relation) and c.op != "=":
            raise FormulaError(f"{c.op!r} is only meaningful in an implicit formula", c.pos, text)
    _check_variables(form, list(body), text)
    interval = None
    if ranges:
        (rng,) = ranges
        expected = {"polar": "theta", "parametric": "t"}.get(form)
        if expected is None:
            raise FormulaError(
                f"a range only applies to polar (theta) and parametric (t) curves, not to "
                f"{_FORM_WORDS[form]}",
                rng.pos,
                text,
            )
        if rng.var != expected:
            raise FormulaError(
                f"the range variable of {_FORM_WORDS[form]} is {expected}, not {rng.var}",
                rng.pos,
                text,
            )
        interval = (rng.lo, rng.hi)
    return Formula(
        form=form,
        body=tuple(body),
        relation=relation if form == "implicit" else "=",
        interval=interval,
    )


def _generator_formula(gen: parser.Generator, text: str, limits: names.Limits) -> Formula:
    spec = names.GENERATORS[gen.name]
    given = {k: (node, pos) for k, node, pos in gen.params}
    for k, default in spec.items():
        if default is None and k not in given:
            raise FormulaError(
                f"{gen.name} needs the parameter {k} (e.g. {gen.name}(c = ...))", gen.pos, text
            )
    for k, (node, pos) in given.items():
        if _vars_of([node]):
            raise FormulaError(f"parameter {k} must be a constant", pos, text)
        complex_ok = k in ("c", "center") and gen.name in ("mandelbrot", "julia")
        value = _fold(node, complex_mode=True, limits=limits, text=text)
        assert value is not None
        value = complex(value)
        if not complex_ok and abs(value.imag) > 1e-12:
            raise FormulaError(f"parameter {k} must be real, got {value}", pos, text)
        if k == "power":
            if value.real != round(value.real) or not 2 <= value.real <= limits.max_power:
                raise FormulaError(
                    f"power must be an integer from 2 to {limits.max_power}, got {value.real:g}",
                    pos,
                    text,
                )
        elif k == "zoom":
            if not 1e-2 <= value.real <= limits.max_zoom:
                raise FormulaError(
                    f"zoom must lie in [0.01, {limits.max_zoom:g}], got {value.real:g}", pos, text
                )
        elif abs(value) > limits.max_param:
            raise FormulaError(
                f"|{k}| must be at most {limits.max_param:g}, got {abs(value):.4g}", pos, text
            )
    order = list(spec)
    params = tuple((k, given[k][0]) for k in sorted(given, key=order.index))
    form = gen.name if gen.name in ("mandelbrot", "julia") else "attractor"
    return Formula(form=form, generator=gen.name, params=params)


def parse(text: "str | Formula", limits: names.Limits = names.DEFAULT_LIMITS) -> Formula:
    """Text (unicode and implicit notation welcome) -> a validated `Formula`.

    >>> parse("y = 2x² + sin x").text
    'y = 2*x^2 + sin(x)'
    >>> parse("x^2 + y^2 = 1").form
    'implicit'

    Raises `FormulaError` (a ValueError) naming the position and the reason. Never evaluates
    the text as code: it is lexed against a whitelist and folded with `math`/`cmath`.
    """
    if isinstance(text, Formula):
        return text
    tree = parser.parse_clauses(text, limits)
    if isinstance(tree, parser.Generator):
        return _generator_formula(tree, text, limits)
    formula = _classify(tree, text)
    complex_mode = formula.form == "complex"
    for e in formula.body:
        _fold(e, complex_mode=complex_mode, limits=limits, text=text)
    if formula.interval is not None:
        lo, hi = (_fold(n, complex_mode=False, limits=limits, text=text) for n in formula.interval)
        where = formula.interval[0].pos
        if lo is None or hi is None:
            raise FormulaError("range bounds must be constants", where, text)
        if not (abs(lo) <= limits.max_range and abs(hi) <= limits.max_range):
            raise FormulaError(
                f"range bounds must lie within ±{limits.max_range:g}, got [{lo:.4g}, {hi:.4g}]",
                where,
                text,
            )
        if not lo < hi:
            raise FormulaError(f"empty range [{lo:.4g}, {hi:.4g}]", where, text)
    return formula


__all__ = ["FORMS", "Formula", "FormulaError", "parse", "unparse_formula"]
