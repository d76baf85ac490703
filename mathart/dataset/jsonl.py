"""Users' own data: a JSONL file of (image, formula or caption) pairs -> training arrays.

Each line is a JSON object with

- ``image`` or ``image_path``: path of a PNG/JPEG/... file, relative to the JSONL file's folder
  (absolute paths work too). Both keys are accepted because the original project's scraper
  wrote ``image`` while its dataloader read ``image_path`` (mathart_reference §1).
- ``formula`` or ``prompt`` (also ``caption``): the conditioning text. A text that parses as a
  formula is stored in canonical form (``is_formula`` True); anything else (a caption such as
  "a red rose curve") is kept verbatim and tokenized as words.

Images are centre-cropped to a square and resized (Lanczos) to the requested resolution.
Problems are reported together, one per line with its number and reason, e.g.
``data.jsonl line 7: image file 'img/7.png' not found (looked in /data/img/7.png)``.

`captions_to_jsonl` converts the ADR's captioned image folder (``captions.json`` mapping file
names to captions, as `data_download_hf.py` wrote it) into this format.
"""

import json
import logging
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from mathart.formula import FormulaError, parse

_IMAGE_KEYS = ("image", "image_path")
_TEXT_KEYS = ("formula", "prompt", "caption")
MAX_TEXT_CHARS = 512


class JsonlError(ValueError):
    """Bad lines in a JSONL dataset; ``problems`` lists (line number, reason)."""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        shown = problems[:20]
        lines = [f"{os.path.basename(path)} line {n}: {reason}" for n, reason in shown]
        if len(problems) > len(shown):
            lines.append(f"... and {len(problems) - len(shown)} more bad lines")
        super().__init__(f"{len(problems)} bad line(s) in {path}:\n  " + "\n  ".join(lines))


def load_image(path: str, resolution: int) -> np.ndarray:
    """``uint8 [R, R, 3]``: RGB, centre-cropped to a square, resized with Lanczos."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        if side != resolution:
            im = im.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(im, np.uint8)


def _records(path: str) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line


def load_jsonl(
    path: str, resolution: int, *, skip_bad_lines: bool = False
) -> dict[str, np.ndarray]:
    """Reads a JSONL dataset into the same arrays as `build_arrays` (plus ``is_formula``).

    ``family``, ``complexity`` and ``style_seed`` are -1 (unknown) for user data.
    Raises `JsonlError` listing every bad line, unless ``skip_bad_lines`` (then bad lines are
    dropped with a logged warning each). A file with no usable line is always an error.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"JSONL file {path!r} not found")
    base = os.path.dirname(os.path.abspath(path))
    images, texts, is_formula = [], [], []
    problems: list[tuple[int, str]] = []
    for number, line in _records(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append((number, f"not valid JSON ({e.msg} at column {e.colno})"))
            continue
        if not isinstance(obj, dict):
            problems.append((number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        image_key = next((k for k in _IMAGE_KEYS if k in obj), None)
        text_key = next((k for k in _TEXT_KEYS if k in obj), None)
        if image_key is None:
            problems.append((number, f"missing the image path (key {' or '.join(_IMAGE_KEYS)})"))
            continue
        if text_key is None:
            problems.append((number, f"missing the text (key {' or '.join(_TEXT_KEYS)})"))
            continue
        rel, text = obj[image_key], obj[text_key]
        if not isinstance(rel, str) or not rel:
            problems.append((number, f"{image_key!r} must be a non-empty string, got {rel!r}"))
            continue
        if not isinstance(text, str) or not text.strip():
            problems.append((number, f"{text_key!r} must be a non-empty string, got {text!r}"))
            continue
        if len(text) > MAX_TEXT_CHARS:
            problems.append(
                (number, f"{text_key!r} is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
            )
            continue
        full = rel if os.path.isabs(rel) else os.path.join(base, rel)
        if not os.path.isfile(full):
            problems.append((number, f"image file {rel!r} not found (looked in {full})"))
            continue
        try:
            image = load_image(full, resolution)
        except (UnidentifiedImageError, OSError) as e:
            problems.append((number, f"cannot read image {rel!r}: {e}"))
            continue
        canonical, ok = text, False
        if text_key == "formula" or len(text) < 200:
            try:
                canonical, ok = parse(text).text, True
            except FormulaError as e:
                if text_key == "formula":
                    problems.append((number, f"invalid formula: {e.reason} (at {e.position})"))
                    continue
        images.append(image)
        texts.append(canonical)
        is_formula.append(ok)
    if problems and not skip_bad_lines:
        raise JsonlError(path, problems)
    for number, reason in problems:
        logging.warning("%s line %d skipped: %s", path, number, reason)
    if not texts:
        raise JsonlError(path, problems or [(0, "the file has no examples")])
    n = len(texts)
    return {
        "image": np.stack(images),
        "formula": np.asarray(texts, dtype=np.str_),
        "family": np.full((n,), -1, np.int32),
        "complexity": np.full((n,), -1, np.int32),
        "style_seed": np.full((n,), -1, np.int32),
        "is_formula": np.asarray(is_formula, bool),
    }


def captions_to_jsonl(folder: str, out_path: str, captions_file: str = "captions.json") -> int:
    """Writes a JSONL file for a folder of images with ``captions.json`` (``{file: caption}``);
    keeps the first line of each caption, as the ADR's loader did. Returns the line count."""
    with open(os.path.join(folder, captions_file), encoding="utf-8") as f:
        captions = json.load(f)
    if not isinstance(captions, dict):
        raise ValueError(f"{captions_file} must map file names to captions")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    count = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for name in sorted(captions):
            caption = str(captions[name]).strip().splitlines()[0] if captions[name] else ""
            rel = os.path.relpath(os.path.join(os.path.abspath(folder), name), out_dir)
            out.write(json.dumps({"image_path": rel, "prompt": caption[:MAX_TEXT_CHARS]}) + "\n")
            count += 1
    return count
