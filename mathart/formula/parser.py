"""Recursive-descent parser: canonical tokens -> clauses of expression trees.

Grammar (after `lexer.tokens_for` made every operator explicit)::

    formula   := generator | clause (',' clause)*
    generator := GEN [ '(' [ param '=' expr (',' param '=' expr)* ] ')' ]
    clause    := NAME 'in' '[' expr ',' expr ']'          (a range: theta in [0, 6*pi])
               | 'f' '(' 'z' ')' '=' expr                  (a complex map)
               | expr [ REL expr ]                         (an equation, inequality or bare expr)
    expr      := term (('+' | '-') term)*
    term      := unary (('*' | '/') unary)*
    unary     := ('-' | '+') unary | power
    power     := atom [ '^' unary ]                       (right-associative; -x^2 = -(x^2))
    atom      := NUM | NAME | FUNC '(' expr (',' expr)* ')' | '(' expr ')'

Recursion depth is bounded (`Limits.max_depth`), so no input can exhaust the Python stack.
What the clauses mean (which form, which variables are allowed) is decided in
`mathart.formula.formula`.
"""

import dataclasses

from mathart.formula import lexer, names
from mathart.formula.errors import FormulaError
from mathart.formula.lexer import Token
from mathart.formula.nodes import Bin, Call, Neg, Node, Num, Sym


@dataclasses.dataclass(frozen=True)
class Relation:
    lhs: Node
    op: str  # '=', '<', '>', '<=', '>='
    rhs: Node
    pos: int = dataclasses.field(default=-1, compare=False)


@dataclasses.dataclass(frozen=True)
class Bare:
    expr: Node
    pos: int = dataclasses.field(default=-1, compare=False)


@dataclasses.dataclass(frozen=True)
class Range:
    var: str
    lo: Node
    hi: Node
    pos: int = dataclasses.field(default=-1, compare=False)


@dataclasses.dataclass(frozen=True)
class ComplexMap:
    expr: Node
    pos: int = dataclasses.field(default=-1, compare=False)


@dataclasses.dataclass(frozen=True)
class Generator:
    name: str
    params: tuple[tuple[str, Node, int], ...]  # (name, value, position)
    pos: int = dataclasses.field(default=-1, compare=False)


Clause = Relation | Bare | Range | ComplexMap


class _Parser:
    def __init__(self, tokens: list[Token], text: str, limits: names.Limits):
        self.tokens = tokens
        self.text = text
        self.limits = limits
        self.i = 0
        self.depth = 0
        self.end = Token(lexer.END, "end of formula", len(text))

    # -- helpers -------------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Token:
        j = self.i + k
        return self.tokens[j] if j < len(self.tokens) else self.end

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def error(self, reason: str, tok: Token | None = None) -> FormulaError:
        tok = tok or self.peek()
        return FormulaError(reason, tok.pos, self.text)

    def expect(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok.kind != kind:
            raise self.error(f"expected {what} but found {_describe(tok)}")
        return self.take()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise self.error(f"the expression is nested more than {self.limits.max_depth} deep")

    # -- top level -----------------------------------------------------------------------------
    def formula(self) -> Generator | list[Clause]:
        if self.peek().kind == lexer.GEN:
            gen = self.generator()
            if self.peek().kind != lexer.END:
                raise self.error(
                    f"unexpected {_describe(self.peek())} after {gen.name}(...); a generator "
                    "is a formula on its own"
                )
            return gen
        clauses = [self.clause()]
        while self.peek().kind == lexer.COMMA:
            self.take()
            clauses.append(self.clause())
        if self.peek().kind != lexer.END:
            raise self.error(f"unexpected {_describe(self.peek())}; missing an operator?")
        return clauses

    def generator(self) -> Generator:
        tok = self.take()
        allowed = names.GENERATORS[tok.text]
        params: list[tuple[str, Node, int]] = []
        if self.peek().kind == lexer.LPAREN:
            self.take()
            while self.peek().kind != lexer.RPAREN:
                if params:
                    self.expect(lexer.COMMA, "',' between parameters")
                ptok = self.take()
                if ptok.kind != lexer.NAME or ptok.text not in allowed:
                    raise self.error(
                        f"{tok.text} takes the parameters {', '.join(allowed)}; "
                        f"found {_describe(ptok)}",
                        ptok,
                    )
                if any(p[0] == ptok.text for p in params):
                    raise self.error(f"parameter {ptok.text!r} given twice", ptok)
                rel = self.peek()
                if rel.kind != lexer.REL or rel.text != "=":
                    raise self.error(f"expected '=' after parameter {ptok.text!r}")
                self.take()
                params.append((ptok.text, self.expr(), ptok.pos))
            self.take()
        return Generator(tok.text, tuple(params), tok.pos)

    def clause(self) -> Clause:
        tok = self.peek()
        if tok.kind == lexer.NAME and self.peek(1).kind == lexer.IN:
            return self.range_clause()
        if tok.kind == lexer.HEAD:
            self.take()
            self.expect(lexer.LPAREN, "'(' after f (a complex map is written f(z) = ...)")
            var = self.take()
            if var.kind != lexer.NAME or var.text != "z":
                raise self.error("a complex map is written f(z) = ...; the variable is z", var)
            self.expect(lexer.RPAREN, "')' in f(z)")
            rel = self.peek()
            if rel.kind != lexer.REL or rel.text != "=":
                raise self.error("expected '=' after f(z)")
            self.take()
            return ComplexMap(self.expr(), tok.pos)
        lhs = self.expr()
        if self.peek().kind == lexer.REL:
            op = self.take()
            rhs = self.expr()
            if self.peek().kind == lexer.REL:
                raise self.error("chained relations (a < b < c) are not supported")
            return Relation(lhs, op.text, rhs, op.pos)
        return Bare(lhs, tok.pos)

    def range_clause(self) -> Range:
        var = self.take()
        self.take()  # 'in'
        self.expect(lexer.LBRACK, "'[' to open the range, as in t in [0, 2*pi]")
        lo = self.expr()
        self.expect(lexer.COMMA, "',' between the range bounds")
        hi = self.expr()
        self.expect(lexer.RBRACK, "']' to close the range")
        return Range(var.text, lo, hi, var.pos)

    # -- expressions ---------------------------------------------------------------------------
    def expr(self) -> Node:
        self.enter()
        node = self.term()
        while self.peek().kind == lexer.OP and self.peek().text in "+-":
            op = self.take()
            node = Bin(op.text, node, self.term(), op.pos)
        self.depth -= 1
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek().kind == lexer.OP and self.peek().text in "*/":
            op = self.take()
            node = Bin(op.text, node, self.unary(), op.pos)
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == lexer.OP and tok.text in "+-":
            self.take()
            self.enter()
            arg = self.unary()
            self.depth -= 1
            return Neg(arg, tok.pos) if tok.text == "-" else arg
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek().kind == lexer.OP and self.peek().text == "^":
            op = self.take()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return Bin("^", base, exponent, op.pos)
        return base

    def atom(self) -> Node:
        tok = self.peek()
        if tok.kind == lexer.NUM:
            self.take()
            return Num(tok.value, tok.pos)
        if tok.kind == lexer.NAME:
            self.take()
            return Sym(tok.text, tok.pos)
        if tok.kind == lexer.FUNC:
            self.take()
            self.expect(lexer.LPAREN, f"'(' after {tok.text}")
            args = [self.expr()]
            while self.peek().kind == lexer.COMMA:
                self.take()
                args.append(self.expr())
            self.expect(lexer.RPAREN, f"')' to close {tok.text}(...)")
            arity = names.FUNCTIONS[tok.text]
            if len(args) != arity:
                raise self.error(
                    f"{tok.text} takes {arity} argument{'s' if arity > 1 else ''}, got {len(args)}",
                    tok,
                )
            return Call(tok.text, tuple(args), tok.pos)
        if tok.kind == lexer.LPAREN:
            self.take()
            node = self.expr()
            self.expect(lexer.RPAREN, "')'")
            return node
        if tok.kind == lexer.GEN:
            raise self.error(f"{tok.text}(...) is a formula on its own, not part of one")
        if tok.kind == lexer.HEAD:
            raise self.error("f may only appear as the head of a complex map f(z) = ...")
        raise self.error(f"expected a number, variable, function or '(' but found {_describe(tok)}")


def _describe(tok: Token) -> str:
    if tok.kind == lexer.END:
        return "the end of the formula"
    return f"{tok.text!r}"


def parse_clauses(
    text: str, limits: names.Limits = names.DEFAULT_LIMITS
) -> Generator | list[Clause]:
    """Text -> a `Generator` or a list of clauses (syntax only; no form checks)."""
    tokens = lexer.tokens_for(text, limits)
    return _Parser(tokens, text, limits).formula()
