"""Formula AST -> JAX function, by structural recursion at trace time (never `eval`).

`lower` splits an expression into a hashable *template* (its structure) and a vector of its
number literals. Formulas that differ only in their numbers (``y = sin(3*x)`` and
``y = sin(5*x)``) share a template, so the renderer compiles once per structure and feeds the
numbers in as a traced array. Exponents are literals too (``x^2`` and ``x^3`` share a
structure): XLA's ``pow`` is exact in sign for a negative base with an integral exponent, so
``(-2)^3 = -8`` as in mathematics, and a non-integral one gives NaN (not drawn), as it should.

`evaluate(template, consts, env)` walks the template while JAX traces it: every node becomes
the JAX operation named in `REAL_OPS` / `COMPLEX_OPS`; a name outside those tables cannot
occur because the parser only admits whitelisted names.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mathart.formula.nodes import Bin, Call, Neg, Node, Num, Sym

Template = tuple  # nested tuples: ("slot", k) | ("sym", name) | ("neg", t) | ("bin", op, a, b)
# | ("call", fn, *args)


def lower(node: Node, consts: list[float] | None = None) -> tuple[Template, list[float]]:
    """Expression -> (template, literal values in template slot order)."""
    consts = [] if consts is None else consts

    def slot(value: float) -> Template:
        consts.append(float(value))
        return ("slot", len(consts) - 1)

    def go(n: Node) -> Template:
        if isinstance(n, Num):
            return slot(n.value)
        if isinstance(n, Sym):
            return ("sym", n.name)
        if isinstance(n, Neg):
            # -2 and 2 share a structure: the sign goes into the literal (exact in IEEE).
            return slot(-n.arg.value) if isinstance(n.arg, Num) else ("neg", go(n.arg))
        if isinstance(n, Bin):
            if n.op == "-" and isinstance(n.rhs, Num):  # a - 2 == a + (-2) exactly
                return ("bin", "+", go(n.lhs), slot(-n.rhs.value))
            return ("bin", n.op, go(n.lhs), go(n.rhs))
        if isinstance(n, Call):
            return ("call", n.fn, *(go(a) for a in n.args))
        raise TypeError(f"not a formula node: {n!r}")

    return go(node), consts


REAL_OPS = {
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "sec": lambda v: 1.0 / jnp.cos(v),
    "csc": lambda v: 1.0 / jnp.sin(v),
    "cot": lambda v: jnp.cos(v) / jnp.sin(v),
    "asin": jnp.arcsin,
    "acos": jnp.arccos,
    "atan": jnp.arctan,
    "sinh": jnp.sinh,
    "cosh": jnp.cosh,
    "tanh": jnp.tanh,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "abs": jnp.abs,
    "sign": jnp.sign,
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "re": lambda v: v,
    "im": jnp.zeros_like,
    "conj": lambda v: v,
    "arg": lambda v: jnp.where(v < 0, jnp.pi, 0.0).astype(v.dtype),
    "atan2": jnp.arctan2,
    "min": jnp.minimum,
    "max": jnp.maximum,
    "mod": jnp.mod,
    "hypot": jnp.hypot,
}
COMPLEX_OPS = {
    **{k: REAL_OPS[k] for k in ("sin", "cos", "tan", "sec", "csc", "cot", "sinh", "cosh")},
    "tanh": jnp.tanh,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "asin": jnp.arcsin,
    "acos": jnp.arccos,
    "atan": jnp.arctan,
    "abs": lambda v: jnp.abs(v).astype(v.dtype),
    "re": lambda v: jnp.real(v).astype(v.dtype),
    "im": lambda v: jnp.imag(v).astype(v.dtype),
    "conj": jnp.conj,
    "arg": lambda v: jnp.angle(v).astype(v.dtype),
}
_CONSTANTS = {"pi": np.pi, "e": np.e}


def evaluate(
    template: Template, consts: jax.Array, env: Mapping[str, jax.Array], *, complex_mode: bool
) -> jax.Array:
    """The template's value on the arrays in `env` (all broadcast together).

    consts: ``[k]`` float32, the template's literals (traced: one compile per structure).
    """
    ops = COMPLEX_OPS if complex_mode else REAL_OPS
    dtype = jnp.complex64 if complex_mode else jnp.float32

    def go(t: Template):
        kind = t[0]
        if kind == "slot":
            return consts[t[1]].astype(dtype)
        if kind == "sym":
            name = t[1]
            if name in env:
                return env[name]
            if name == "i":
                return jnp.asarray(1j, dtype)
            return jnp.asarray(_CONSTANTS[name], dtype)
        if kind == "neg":
            return -go(t[1])
        if kind == "bin":
            a, b = go(t[2]), go(t[3])
            op = t[1]
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a / b
            return jnp.power(a, b)
        if kind == "call":
            return ops[t[1]](*(go(a) for a in t[2:]))
        raise ValueError(f"bad template node {t!r}")

    out = go(template)
    # Constant formulas (y = 3) evaluate to a scalar; give them the grid's shape.
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for v in env.values()))
    return jnp.broadcast_to(jnp.asarray(out, dtype), shape)
