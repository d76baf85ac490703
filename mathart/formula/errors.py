"""`FormulaError`: the one exception every stage of the formula language raises.

Raised by the lexer, parser and validator; caught by `mathart.sample` (prints the message and
exits), the dataset sampler (a bug if it fires) and the JSONL loader (reported per line).
"""


class FormulaError(ValueError):
    """A formula was rejected. ``position`` is a 0-based character offset into the text as
    given (or None when the whole text is at fault); ``reason`` says what is wrong and how to
    fix it. ``str(err)`` names both and, for short texts, points at the offending character."""

    def __init__(self, reason: str, position: int | None = None, text: str | None = None):
        self.reason = reason
        self.position = position
        self.text = text
        where = "formula" if position is None else f"position {position}"
        message = f"{where}: {reason}"
        # A caret line helps in a terminal; only for short, printable texts (hostile input may
        # be huge or full of control characters, and echoing it back helps nobody).
        if (
            text is not None
            and position is not None
            and len(text) <= 120
            and text.isprintable()
            and 0 <= position <= len(text)
        ):
            message += f"\n    {text}\n    {' ' * position}^"
        super().__init__(message)
