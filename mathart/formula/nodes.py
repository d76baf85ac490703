"""AST nodes of formula expressions, and `unparse` back to canonical text.

Nodes are frozen dataclasses: hashable (the renderer groups formulas by structure) and compared
by content only (``pos``, the character offset used in error messages, is excluded), so
``parse(unparse(f)) == f`` is a meaningful property. Number literals are non-negative; a minus
sign is a `Neg` node.
"""

import dataclasses

from mathart.formula.lexer import _format_number


@dataclasses.dataclass(frozen=True)
class Num:
    value: float
    pos: int = dataclasses.field(default=-1, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Sym:
    """A variable (x, y, z, t, theta) or constant (pi, e, i)."""

    name: str
    pos: int = dataclasses.field(default=-1, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Neg:
    arg: "Node"
    pos: int = dataclasses.field(default=-1, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Bin:
    op: str  # one of + - * / ^
    lhs: "Node"
    rhs: "Node"
    pos: int = dataclasses.field(default=-1, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Call:
    fn: str
    args: tuple["Node", ...]
    pos: int = dataclasses.field(default=-1, compare=False, repr=False)


Node = Num | Sym | Neg | Bin | Call

# Binding strength: higher binds tighter. Unary minus sits between * and ^, so -x^2 = -(x^2)
# and 2*-x is written 2*(-x) by `unparse` to stay unambiguous to human readers.
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "^": 4}


def _prec(node: Node) -> int:
    if isinstance(node, Bin):
        return _PRECEDENCE[node.op]
    if isinstance(node, Neg):
        return _PRECEDENCE["neg"]
    return 5


def unparse(node: Node) -> str:
    """Canonical text with the fewest brackets that re-parse to the same tree."""
    if isinstance(node, Num):
        return _format_number(node.value)
    if isinstance(node, Sym):
        return node.name
    if isinstance(node, Call):
        return f"{node.fn}({', '.join(unparse(a) for a in node.args)})"
    if isinstance(node, Neg):
        inner = unparse(node.arg)
        # -(a + b) needs brackets; -(-x) is kept as written with brackets to avoid "--x".
        if _prec(node.arg) < _PRECEDENCE["neg"] or isinstance(node.arg, Neg):
            inner = f"({inner})"
        return f"-{inner}"
    if isinstance(node, Bin):
        p = _PRECEDENCE[node.op]
        left, right = unparse(node.lhs), unparse(node.rhs)
        if node.op == "^":
            # Right-associative: the base needs brackets unless it is an atom; the exponent
            # needs them unless it is an atom or another power.
            if _prec(node.lhs) <= p:
                left = f"({left})"
            if _prec(node.rhs) < p:
                right = f"({right})"
            return f"{left}^{right}"
        if _prec(node.lhs) < p:
            left = f"({left})"
        # Left-associative: a right operand of equal precedence needs brackets (a - (b - c));
        # a negation as right operand is bracketed for readability (a - (-b), a*(-b)).
        if _prec(node.rhs) <= p or isinstance(node.rhs, Neg):
            right = f"({right})"
        if node.op in "+-":
            return f"{left} {node.op} {right}"
        return f"{left}{node.op}{right}"
    raise TypeError(f"not a formula node: {node!r}")


def walk(node: Node):
    """Yields every node of the tree, parents before children."""
    yield node
    if isinstance(node, Neg):
        yield from walk(node.arg)
    elif isinstance(node, Bin):
        yield from walk(node.lhs)
        yield from walk(node.rhs)
    elif isinstance(node, Call):
        for a in node.args:
            yield from walk(a)
