"""`Tokenizer`: formula (or free-text prompt) -> fixed-length int32 ids for the formula encoder.

Pieces. A text that the formula lexer accepts is split into its canonical mathematical tokens
(numbers, names, operators, brackets; ``2x²`` gives ``2 * x ^ 2``), so every spelling of a
formula encodes the same way. Any other text (a caption such as "a red rose curve", from the
JSONL loader) is split into words, punctuation and single spaces.

Numbers (``numbers``): ``"digits"`` spells every number with its characters (``2.6`` ->
``2 . 6``), so the encoder sees every digit often and a number it never met in training is
made of pieces it knows; ``"whole"`` keeps each number one piece (``2.6``); ``"shared"``
makes every number the one piece ``<num>``, so the model learns its value only from
`Tokenizer.numbers` (below), the same way for a number it saw and one it never met. The 18,000
procedural training formulas of the first runs hold ~1,400 distinct numbers, a third of them
once: whole, each is its own embedding, unrelated to its neighbours' (2.6 and 2.65), and an
unseen one falls back to a character spelling the model never trained on (3 % of the numbers
in the first 200 test formulas are seen fewer than 5 times in training). Tokenizers saved
before this option (format version 1) are whole.

Number values (`Tokenizer.numbers`, any mode): float32 beside the ids, the value of the number
each id spells (every digit of ``2.6`` carries 2.6) and NaN where the id is not part of a number.
A minus sign stays its own piece (``-2`` is ``-`` then 2), as the formula language parses it. The
formula encoder can read these values as continuous inputs (``model.number_features``), instead
of learning what every number means from its embedding alone.

Vocabulary (`Tokenizer.build`): the four specials, then a base that can spell anything in the
formula language (printable ASCII and every whitelisted name), then the corpus's most frequent
remaining pieces until ``max_vocab`` (default 5000, the seed's figure). A piece outside the
vocabulary falls back to its characters; a character outside it becomes ``<unk>``.

Ids: ``0 = <pad>``, ``1 = <unk>``, ``2 = <bos>``, ``3 = <eos>``. ``encode(text, max_len)``
returns ``[<bos>, pieces..., <eos>, 0, 0, ...]``; a text too long keeps its first
``max_len - 2`` ids and still ends in ``<eos>``. The attention mask is ``ids != 0``.
Saved as plain JSON (`to_json` / `from_json`); never pickled.
"""

import collections
import json
import math
import re
import string
from collections.abc import Iterable, Sequence

import numpy as np

from mathart.formula import lexer, names
from mathart.formula.errors import FormulaError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
NUMBER_MODES = ("digits", "whole", "shared")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
NUM_PIECE = "<num>"  # every number, in the "shared" mode
_FORMAT = "mathart.tokenizer"
_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


def pieces(text: str, numbers: str = "whole") -> list[str]:
    """Pre-tokenisation: canonical formula tokens if `text` lexes as a formula, else words.

    ``numbers="digits"`` splits each number into its characters, ``"shared"`` makes it
    ``<num>`` (module docstring)."""
    return [p for p, _ in _valued_pieces(text, numbers)]


def _valued_pieces(text: str, numbers: str) -> list[tuple[str, float]]:
    """`pieces` with the value of the number each piece belongs to (NaN: not a number)."""
    try:
        out: list[tuple[str, float]] = []
        for t in lexer.tokens_for(text):
            if t.kind != lexer.NUM:
                out.append((t.text, math.nan))
            elif numbers == "digits":
                out.extend((c, t.value) for c in t.text)
            else:
                out.append((NUM_PIECE if numbers == "shared" else t.text, t.value))
        return out
    except FormulaError:
        return [(" " if p.isspace() else p, math.nan) for p in _WORDS.findall(text)]


def _base_vocab(numbers: str = "whole") -> list[str]:
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    extra = sorted(set(names.ALL_NAMES) | {"<=", ">="}, key=lambda s: (len(s), s))
    shared = [NUM_PIECE] if numbers == "shared" else []
    return [*SPECIALS, *shared, *chars, *[p for p in extra if p not in chars]]


class Tokenizer:
    """Maps text to ids and back. Build from a corpus; save and load as JSON."""

    def __init__(self, vocab: Sequence[str], numbers: str = "whole"):
        if numbers not in NUMBER_MODES:
            raise ValueError(
                f"unknown number tokenisation '{numbers}'; choose one of: {', '.join(NUMBER_MODES)}"
            )
        self.numbers = numbers
        vocab = list(vocab)
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {vocab[:4]}")
        if len(set(vocab)) != len(vocab):
            dupes = [p for p, n in collections.Counter(vocab).items() if n > 1][:5]
            raise ValueError(f"duplicate pieces in the vocabulary: {dupes}")
        if numbers == "shared" and NUM_PIECE not in vocab:
            raise ValueError(f"a 'shared' numbers vocabulary must hold the piece {NUM_PIECE}")
        self.vocab = vocab
        self.index = {p: i for i, p in enumerate(vocab)}

    @classmethod
    def build(
        cls, corpus: Iterable[str], max_vocab: int = 5000, numbers: str = "whole"
    ) -> "Tokenizer":
        """Base vocabulary plus the most frequent corpus pieces, ``max_vocab`` ids in all."""
        base = _base_vocab(numbers)
        if max_vocab < len(base):
            raise ValueError(
                f"max_vocab={max_vocab} is smaller than the base vocabulary ({len(base)} "
                "pieces: specials, printable ASCII and the formula language's names); "
                f"use at least {len(base)}"
            )
        counts: collections.Counter[str] = collections.Counter()
        for text in corpus:
            counts.update(pieces(text, numbers))
        known = set(base)
        ranked = sorted((p for p in counts if p not in known), key=lambda p: (-counts[p], p))
        return cls(base + ranked[: max_vocab - len(base)], numbers)

    def __eq__(self, other: object) -> bool:
        """Same ids for every text: the same pieces in the same rows, numbers split the same way."""
        if not isinstance(other, Tokenizer):
            return NotImplemented
        return (self.vocab, self.numbers) == (other.vocab, other.numbers)

    __hash__ = None  # compared by content, so not hashable (like a list)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def ids(self, text: str) -> list[int]:
        """Ids of `text` without specials or padding."""
        return [i for i, _ in self._valued_ids(text)]

    def _valued_ids(self, text: str) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for p, value in _valued_pieces(text, self.numbers):
            i = self.index.get(p)
            if i is not None:
                out.append((i, value))
            else:  # character fallback
                out.extend((self.index.get(c, UNK), value) for c in p)
        return out

    def encode(self, text: str, max_len: int) -> np.ndarray:
        """``int32 [max_len]``: ``<bos> ids <eos>`` then zeros (see the module docstring)."""
        return self.encode_with_numbers(text, max_len)[0]

    def encode_with_numbers(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(`encode`, `numbers_of`, the untruncated length with <bos>/<eos>) from one pass
        of the lexer."""
        if max_len < 3:
            raise ValueError(f"max_len must be at least 3 (<bos>, one id, <eos>), got {max_len}")
        valued = self._valued_ids(text)
        body = valued[: max_len - 2]
        ids = np.zeros((max_len,), np.int32)
        ids[0] = BOS
        ids[1 : 1 + len(body)] = [i for i, _ in body]
        ids[1 + len(body)] = EOS
        numbers = np.full((max_len,), np.nan, np.float32)
        numbers[1 : 1 + len(body)] = [v for _, v in body]
        return ids, numbers, len(valued) + 2

    def encode_batch(self, texts: Iterable[str], max_len: int) -> np.ndarray:
        """``int32 [N, max_len]``."""
        rows = [self.encode(str(t), max_len) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, max_len), np.int32)

    def numbers_of(self, text: str, max_len: int) -> np.ndarray:
        """``float32 [max_len]`` aligned with `encode`: each id's number value, NaN elsewhere
        (specials, padding, pieces that are not numbers)."""
        return self.encode_with_numbers(text, max_len)[1]

    def numbers_batch(self, texts: Iterable[str], max_len: int) -> np.ndarray:
        """``float32 [N, max_len]``, `numbers_of` each text."""
        rows = [self.numbers_of(str(t), max_len) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, max_len), np.float32)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; specials are dropped, formulas come back in canonical spelling."""
        parts = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS) or not 0 <= i < len(self.vocab):
                continue
            parts.append(self.vocab[i])
        text = "".join(parts)
        try:
            return lexer.normalize(text)
        except FormulaError:
            return text

    def to_json(self) -> str:
        doc = {"format": _FORMAT, "version": 2, "numbers": self.numbers, "vocab": self.vocab}
        return json.dumps(doc)

    @classmethod
    def from_json(cls, data: str) -> "Tokenizer":
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"not a {_FORMAT} JSON document (missing 'format': '{_FORMAT}')")
        version = obj.get("version")
        if version not in (1, 2):
            raise ValueError(f"unsupported tokenizer version {version!r}; expected 1 or 2")
        vocab = obj.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(p, str) for p in vocab):
            raise ValueError("tokenizer JSON: 'vocab' must be a list of strings")
        # Version 1 predates the number option (no "numbers" key) and always kept numbers whole.
        return cls(vocab, obj.get("numbers", "whole"))

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())
