"""The formula language of `mathart`: normalise, tokenise, parse and validate formulas.

    >>> from mathart.formula import parse, normalize
    >>> normalize("y = 2x² + sin x")
    'y = 2*x^2 + sin(x)'
    >>> f = parse("r = cos(4θ)")
    >>> f.form, f.text
    ('polar', 'r = cos(4*theta)')

Public API (stable; used by the renderer, the dataset, the model's input pipeline and the
`mathart.sample` CLI): `normalize`, `parse`, `Formula`, `FormulaError`, `Tokenizer`, `unparse`,
`FORMS`, `Limits`. Nothing here ever evaluates text as code: names come from the whitelist in
`mathart.formula.names`, constants are folded with `math`/`cmath`.
"""

from mathart.formula.errors import FormulaError
from mathart.formula.formula import CURVE_FORMS, FORMS, Formula, parse, unparse_formula
from mathart.formula.lexer import normalize
from mathart.formula.names import DEFAULT_LIMITS, FUNCTIONS, GENERATORS, Limits
from mathart.formula.nodes import Bin, Call, Neg, Node, Num, Sym
from mathart.formula.nodes import unparse as unparse_expr
from mathart.formula.tokenizer import Tokenizer


def unparse(formula: "Formula | Node") -> str:
    """Canonical text of a `Formula` (or of one expression node)."""
    if isinstance(formula, Formula):
        return unparse_formula(formula)
    return unparse_expr(formula)


__all__ = [
    "CURVE_FORMS",
    "DEFAULT_LIMITS",
    "FORMS",
    "FUNCTIONS",
    "GENERATORS",
    "Bin",
    "Call",
    "Formula",
    "FormulaError",
    "Limits",
    "Neg",
    "Node",
    "Num",
    "Sym",
    "Tokenizer",
    "normalize",
    "parse",
    "unparse",
]
