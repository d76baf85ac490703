"""Lexer and normaliser: raw (possibly unicode, possibly sloppy) text -> canonical tokens.

Steps, each linear in the input and each failing fast with a positioned `FormulaError`:

1. Limits and characters: length cap, control characters, characters outside the language.
2. Tokens: numbers, names (split into known names: ``sinx`` -> ``sin x``), operators, brackets,
   unicode maths (``²`` ``×`` ``·`` ``π`` ``θ`` ``√`` ``−`` ``≤``). Bracket nesting is checked
   here, so ten thousand ``(`` fail at the 33rd, before any recursion.
3. Rewrite: paren-less function application (``sin x`` -> ``sin(x)``, ``sin 2x + 1`` ->
   ``sin(2*x) + 1``, ``sin x cos x`` -> ``sin(x)*cos(x)``, ``sin²x`` -> ``sin(x)^2``,
   ``√2x`` -> ``sqrt(2)*x``) and implicit multiplication (``2x``, ``2pi``, ``x(y+1)``,
   ``0.3i``).

Tokens keep the offset of the character they came from, so every later error (parser,
validator) points into the text the user typed. `normalize` joins the rewritten tokens with
canonical spacing; the parser (`mathart.formula.parser`) consumes them directly.
"""

import dataclasses
import re
import unicodedata

from mathart.formula import names
from mathart.formula.errors import FormulaError

# Token kinds.
NUM, NAME, FUNC, GEN, HEAD, IN = "num", "name", "func", "gen", "head", "in"
OP, REL, LPAREN, RPAREN, LBRACK, RBRACK, COMMA, END = (
    "op",
    "rel",
    "(",
    ")",
    "[",
    "]",
    ",",
    "end",
)


@dataclasses.dataclass(frozen=True)
class Token:
    kind: str
    text: str  # canonical spelling (ASCII)
    pos: int  # offset of the originating character in the raw text
    value: float = 0.0  # numbers only
    tight: bool = False  # `√`: binds to a single atom when written without brackets


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_SUPERSCRIPTS = {
    "⁰": "0",
    "¹": "1",
    "²": "2",
    "³": "3",
    "⁴": "4",
    "⁵": "5",
    "⁶": "6",
    "⁷": "7",
    "⁸": "8",
    "⁹": "9",
    "⁻": "-",
    "⁺": "+",
}
_UNICODE_OPS = {
    "×": "*",
    "·": "*",
    "⋅": "*",
    "∗": "*",
    "•": "*",
    "÷": "/",
    "∕": "/",
    "−": "-",
    "–": "-",
    "‐": "-",
    "≤": "<=",
    "≥": ">=",
}
_UNICODE_NAMES = {"π": "pi", "θ": "theta", "ϑ": "theta", "Θ": "theta"}
# Characters with a known misuse get a specific hint; anything else gets the generic message.
_HINTS = {
    "_": "names are plain letters; underscores (and so dunder names) are not part of the language",
    "'": "quotes are not part of the formula language (a formula is not a program)",
    '"': "quotes are not part of the formula language (a formula is not a program)",
    ".": "a '.' must be part of a number such as 0.5 (there is no attribute access)",
    "|": "write abs(x) for an absolute value",
    "!": "factorials are not supported",
    "%": "write mod(a, b) for a remainder",
    ";": "separate the clauses of a parametric formula with ','",
    "{": "use ( ) for grouping",
    "}": "use ( ) for grouping",
    "\\": "LaTeX commands are not supported; write sqrt(x), x^2, pi, theta",
}
_OPERATORS = {"+", "-", "*", "/", "^"}
_DIGITS = frozenset("0123456789")
_WHITESPACE = " \t\n\r"
_CLOSERS = {")": "(", "]": "["}


def _known_name_kind(name: str) -> str:
    if name in names.FUNCTIONS:
        return FUNC
    if name in names.GENERATORS:
        return GEN
    if name == names.HEAD:
        return HEAD
    if name in names.KEYWORDS:
        return IN
    return NAME


def _split_name(run: str, pos: int, text: str) -> list[Token]:
    """Splits a run of letters into known names, longest match first (``sinx`` -> sin, x)."""
    out, i = [], 0
    longest = max(len(n) for n in names.ALL_NAMES)
    while i < len(run):
        for n in range(min(longest, len(run) - i), 0, -1):
            piece = run[i : i + n]
            if piece in names.ALL_NAMES:
                out.append(Token(_known_name_kind(piece), piece, pos + i))
                i += n
                break
        else:
            hint = " (names are lower case)" if run != run.lower() else ""
            raise FormulaError(
                f"unknown name {run!r}{hint}; functions: {', '.join(names.FUNCTIONS)}; "
                f"variables: {', '.join(names.VARIABLES)}; constants: "
                f"{', '.join(names.CONSTANTS)}; generators: {', '.join(names.GENERATORS)}",
                pos,
                text,
            )
    return out


def lex(text: str, limits: names.Limits = names.DEFAULT_LIMITS) -> list[Token]:
    """Raw text -> tokens (not yet rewritten). Raises `FormulaError` on the first problem."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a str, got {type(text).__name__}")
    if len(text) > limits.max_chars:
        raise FormulaError(
            f"the formula is {len(text)} characters long; the limit is {limits.max_chars}",
            limits.max_chars,
        )
    tokens: list[Token] = []
    brackets: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE or (ch.isspace() and unicodedata.category(ch).startswith("Z")):
            i += 1
            continue
        category = unicodedata.category(ch)
        if category[0] == "C":  # Cc control, Cf format (bidi overrides, zero-width), Cs, Co, Cn
            raise FormulaError(
                f"control or invisible character U+{ord(ch):04X} is not allowed", i, text
            )
        if ch in _DIGITS or (ch == "." and text[i + 1 : i + 2] in _DIGITS):
            m = _NUMBER.match(text, i)
            assert m is not None
            literal = m.group(0)
            if len(literal) > limits.max_number_chars:
                raise FormulaError(
                    f"number literal of {len(literal)} characters; the limit is "
                    f"{limits.max_number_chars}",
                    i,
                    text,
                )
            value = float(literal)
            if not value <= limits.max_literal:  # also catches inf from 1e999
                raise FormulaError(
                    f"number {literal} is too large; numbers are limited to "
                    f"|x| <= {limits.max_literal:g}",
                    i,
                    text,
                )
            tokens.append(Token(NUM, _format_number(value), i, value))
            i = m.end()
            continue
        if ch.isascii() and ch.isalpha():
            j = i
            while j < n and text[j].isascii() and text[j].isalpha():
                j += 1
            run = text[i:j]
            for digit_name in names.DIGIT_NAMES:
                if text.startswith(digit_name, i) and len(digit_name) > len(run):
                    run, j = digit_name, i + len(digit_name)
            if run in names.DIGIT_NAMES:
                tokens.append(Token(FUNC, run, i))
            else:
                tokens.extend(_split_name(run, i, text))
            i = j
            continue
        if ch in _SUPERSCRIPTS:
            j = i
            while j < n and text[j] in _SUPERSCRIPTS:
                j += 1
            sup = "".join(_SUPERSCRIPTS[c] for c in text[i:j])
            sign, digits = ("-", sup[1:]) if sup[0] in "+-" else ("", sup)
            if not digits.isdigit():
                raise FormulaError(f"malformed superscript {text[i:j]!r}", i, text)
            value = float(digits)
            tokens.append(Token(OP, "^", i))
            if sign == "-":
                tokens += [Token(LPAREN, "(", i), Token(OP, "-", i)]
                tokens.append(Token(NUM, _format_number(value), i, value))
                tokens.append(Token(RPAREN, ")", i))
            else:
                tokens.append(Token(NUM, _format_number(value), i, value))
            i = j
            continue
        if ch in _UNICODE_NAMES:
            tokens.append(Token(NAME, _UNICODE_NAMES[ch], i))
            i += 1
            continue
        if ch == "√":
            tokens.append(Token(FUNC, "sqrt", i, tight=True))
            i += 1
            continue
        two = text[i : i + 2]
        if two == "**":
            tokens.append(Token(OP, "^", i))
            i += 2
            continue
        if two in ("<=", ">="):
            tokens.append(Token(REL, two, i))
            i += 2
            continue
        if two == "==":
            tokens.append(Token(REL, "=", i))
            i += 2
            continue
        op = _UNICODE_OPS.get(ch, ch)
        if op in _OPERATORS:
            tokens.append(Token(OP, op, i))
        elif op in ("=", "<", ">", "<=", ">="):
            tokens.append(Token(REL, op, i))
        elif op in "([":
            brackets.append((op, i))
            if len(brackets) > limits.max_depth:
                raise FormulaError(f"brackets nested more than {limits.max_depth} deep", i, text)
            tokens.append(Token(op, op, i))
        elif op in ")]":
            if not brackets or brackets[-1][0] != _CLOSERS[op]:
                raise FormulaError(f"unmatched {op!r}", i, text)
            brackets.pop()
            tokens.append(Token(op, op, i))
        elif op == ",":
            tokens.append(Token(COMMA, ",", i))
        else:
            hint = _HINTS.get(ch, "it is not part of the formula language")
            raise FormulaError(f"character {ch!r} is not allowed: {hint}", i, text)
        i += 1
    if brackets:
        opener, at = brackets[-1]
        closer = ")" if opener == "(" else "]"
        raise FormulaError(f"{opener!r} is never closed (missing {closer!r})", at, text)
    if not tokens:
        raise FormulaError("the formula is empty", 0, text)
    return tokens


def _format_number(value: float) -> str:
    """Canonical spelling of a number literal: integers without a point, others via repr."""
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


# ---- rewrite: paren-less application and implicit multiplication --------------------------------

_ATOM_START = (NUM, NAME, LPAREN)


def _group_end(tokens: list[Token], i: int) -> int:
    """Index one past the bracket group opening at `i` (brackets are balanced by `lex`)."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind in (LPAREN, LBRACK):
            depth += 1
        elif tokens[j].kind in (RPAREN, RBRACK):
            depth -= 1
            if depth == 0:
                return j + 1
    raise AssertionError("unbalanced brackets after lex")


def _atom_end(tokens: list[Token], i: int, text: str) -> int:
    """One atom (number, name, bracket group, or a nested paren-less function) plus any
    `^ exponent` suffixes; returns the index past it."""
    tok = tokens[i]
    if tok.kind == LPAREN:
        j = _group_end(tokens, i)
    elif tok.kind in (NUM, NAME):
        j = i + 1
    elif tok.kind == FUNC:
        j = _application_end(tokens, i, text)
    else:
        raise FormulaError(f"expected an argument but found {tok.text!r}", tok.pos, text)
    while j < len(tokens) and tokens[j].kind == OP and tokens[j].text == "^":
        k = j + 1
        while k < len(tokens) and tokens[k].kind == OP and tokens[k].text in "+-":
            k += 1
        if k >= len(tokens):
            raise FormulaError("'^' needs an exponent", tokens[j].pos, text)
        j = _atom_end(tokens, k, text)
    return j


def _application_end(tokens: list[Token], i: int, text: str) -> int:
    """Index past the function application starting at FUNC token `i` (bracketed or not)."""
    j = i + 1
    if j < len(tokens) and tokens[j].kind == OP and tokens[j].text == "^":
        j = _atom_end(tokens, j + 1, text) if j + 1 < len(tokens) else j + 1
    if j < len(tokens) and tokens[j].kind == LPAREN:
        return _group_end(tokens, j)
    return _argument_end(tokens, j, tokens[i], text)


def _argument_end(tokens: list[Token], j: int, func: Token, text: str) -> int:
    """A paren-less argument: optional sign, then atoms multiplied by juxtaposition, stopping
    at an explicit operator or at a second function name (so `sin x cos x` is a product)."""
    start = j
    while j < len(tokens) and tokens[j].kind == OP and tokens[j].text in "+-":
        j += 1
    if j >= len(tokens) or tokens[j].kind not in (*_ATOM_START, FUNC):
        raise FormulaError(f"function {func.text!r} needs an argument", func.pos, text)
    j = _atom_end(tokens, j, text)
    if not func.tight:
        while j < len(tokens) and tokens[j].kind in _ATOM_START:
            j = _atom_end(tokens, j, text)
    if j == start:
        raise FormulaError(f"function {func.text!r} needs an argument", func.pos, text)
    return j


def _rewrite_applications(tokens: list[Token], text: str) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind != FUNC:
            out.append(tok)
            i += 1
            continue
        j = i + 1
        power: list[Token] = []
        if j < len(tokens) and tokens[j].kind == OP and tokens[j].text == "^":
            # sin^2 x and sin²(x) mean (sin x)^2.
            if j + 1 >= len(tokens):
                raise FormulaError("'^' needs an exponent", tokens[j].pos, text)
            k = j + 1
            while k < len(tokens) and tokens[k].kind == OP and tokens[k].text in "+-":
                k += 1
            end = _atom_end(tokens, k, text) if k < len(tokens) else k
            power = [tokens[j], *_rewrite_applications(tokens[j + 1 : end], text)]
            j = end
        if j < len(tokens) and tokens[j].kind == LPAREN:
            end = _group_end(tokens, j)
            call = [Token(FUNC, tok.text, tok.pos), *_rewrite_applications(tokens[j:end], text)]
        else:
            end = _argument_end(tokens, j, tok, text)
            arg = _rewrite_applications(tokens[j:end], text)
            call = [
                Token(FUNC, tok.text, tok.pos),
                Token(LPAREN, "(", tok.pos),
                *arg,
                Token(RPAREN, ")", tokens[end - 1].pos),
            ]
        if power:
            call = [Token(LPAREN, "(", tok.pos), *call, Token(RPAREN, ")", tok.pos), *power]
        out.extend(call)
        i = end
    return out


def _insert_products(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    for tok in tokens:
        if out:
            prev = out[-1]
            if prev.kind in (NUM, NAME, RPAREN) and tok.kind in (NAME, FUNC, LPAREN):
                out.append(Token(OP, "*", tok.pos))
        out.append(tok)
    return out


def tokens_for(text: str, limits: names.Limits = names.DEFAULT_LIMITS) -> list[Token]:
    """Lex and rewrite: the canonical token list the parser consumes."""
    tokens = lex(text, limits)
    return _insert_products(_rewrite_applications(tokens, text))


def _is_unary(prev: Token | None) -> bool:
    return prev is None or prev.kind in (OP, REL, LPAREN, LBRACK, COMMA, IN)


def join_tokens(tokens: list[Token]) -> str:
    """Canonical spacing: ``a + b``, ``-x``, ``a*b``, ``x^2``, ``f(x, y)``, ``y = ...``."""
    parts: list[str] = []
    prev: Token | None = None
    for tok in tokens:
        if tok.kind == REL or (tok.kind == OP and tok.text in "+-" and not _is_unary(prev)):
            parts.append(f" {tok.text} ")
        elif tok.kind == COMMA:
            parts.append(", ")
        elif tok.kind == IN:
            parts.append(" in ")
        else:
            parts.append(tok.text)
        prev = tok
    return "".join(parts)


def normalize(text: str, limits: names.Limits = names.DEFAULT_LIMITS) -> str:
    """Unicode and sloppy notation -> canonical ASCII text with explicit operators.

    >>> normalize("y = 2x² + sin x")
    'y = 2*x^2 + sin(x)'
    >>> normalize("r = √(1 − θ)·π")
    'r = sqrt(1 - theta)*pi'

    Purely lexical (it keeps the user's brackets); `parse(text).text` is the fully canonical
    form (minimal brackets, bare expressions completed to equations).
    """
    return join_tokens(tokens_for(text, limits))
