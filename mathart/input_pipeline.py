"""Data for the mathart Task: (formula, style, image) arrays in memory, tokenized once.

Used by `mathart.task` (train/eval sources), `mathart.sample` and `mathart.evaluate`.

Sources (``config.data.source``):
- ``"procedural"``: `mathart.dataset.build_arrays` renders the synthetic dataset (held-out
  formulas in validation/test), cached as .npz under ``config.data_dir``.
- ``"jsonl"``: the user's own pairs, `mathart.dataset.load_jsonl` (``config.data.train_jsonl``,
  optional ``config.data.val_jsonl``; without it the last ``config.data.val_fraction`` of the
  training lines is held out). Lines may carry a formula or a free-text prompt.

What a model batch holds (numeric only, so it can be placed on device):
``image`` uint8 [B, R, R, 3], ``tokens`` int32 [B, L] (0 = padding), ``numbers`` float32
[B, L] (each token's number value, NaN where it is not a number), ``family`` int32 [B]
(-1 unknown), ``style`` float32 [B, STYLE_DIM] (`style_features`; zeros = unknown style).
Formula strings and style seeds stay on the host in `Split` for sample grids and evaluation.

No augmentation by default: the model is conditioned on the style, and the seed's colour jitter
would make the style label wrong; its rotations and crops would make the formula wrong
(mathart/dataset/DATA.md). Diffusion training noises every image anyway.
"""

import dataclasses
import logging
import os

import ml_collections
import numpy as np

from common.data import ArrayEvalSource, ArraySource
from common.task import Datasets
from mathart.dataset import build_arrays, load_jsonl
from mathart.formula import Tokenizer
from mathart.render import Style

STYLE_DIM = 32
MODEL_KEYS = ("image", "tokens", "numbers", "family", "style")
_LUT_POINTS = 8  # palette samples in the style vector


def style_features(style_seeds: np.ndarray) -> np.ndarray:
    """Style seeds [N] -> float32 [N, STYLE_DIM]: what the renderer's `Style.from_seed` draws.

    Layout: the palette (as used, after its range) at 8 evenly spaced points (24), the
    background RGB (3), line width x 50, glow, bands / 8, fill alpha (4), and a 1 meaning
    "style known" (1). A negative seed (user data) gives all zeros: "style unknown".
    """
    seeds = np.asarray(style_seeds).reshape(-1)
    out = np.zeros((len(seeds), STYLE_DIM), np.float32)
    cache: dict[int, np.ndarray] = {}
    for i, seed in enumerate(seeds.tolist()):
        if seed < 0:
            continue
        if seed not in cache:
            a = Style.from_seed(seed).arrays()
            lut = a["lut"][np.linspace(0, len(a["lut"]) - 1, _LUT_POINTS).round().astype(int)]
            cache[seed] = np.concatenate(
                [
                    lut.reshape(-1),
                    a["background"],
                    [50.0 * a["line_width"], a["glow"], a["bands"] / 8.0, a["fill_alpha"], 1.0],
                ]
            ).astype(np.float32)
        out[i] = cache[seed]
    return out


@dataclasses.dataclass
class Split:
    """One split: model arrays plus the host-side text and style of each example."""

    arrays: dict[str, np.ndarray]  # MODEL_KEYS
    formulas: np.ndarray  # unicode [N]
    style_seeds: np.ndarray  # int32 [N] (-1: unknown)

    def __len__(self) -> int:
        return len(self.formulas)

    def take(self, idx: np.ndarray) -> "Split":
        return Split(
            {k: v[idx] for k, v in self.arrays.items()}, self.formulas[idx], self.style_seeds[idx]
        )


@dataclasses.dataclass
class MathArtData:
    train: Split
    val: Split
    test: Split | None
    tokenizer: Tokenizer
    has_family: bool  # every example carries a family label (procedural data)


def encode_split(raw: dict[str, np.ndarray], tokenizer: Tokenizer, max_len: int) -> Split:
    """Raw dataset arrays (`build_arrays`/`load_jsonl` layout) -> a tokenized `Split`."""
    formulas = np.asarray(raw["formula"], dtype=np.str_)
    # One lexer pass per formula gives its ids, its number values and its full length.
    encoded = [tokenizer.encode_with_numbers(str(f), max_len) for f in formulas]
    tokens = np.stack([e[0] for e in encoded]) if encoded else np.zeros((0, max_len), np.int32)
    numbers = np.stack([e[1] for e in encoded]) if encoded else np.zeros((0, max_len), np.float32)
    lengths = np.asarray([e[2] for e in encoded])
    truncated = int((lengths > max_len).sum())
    if truncated:
        logging.warning(
            "%d of %d formulas are longer than model.max_formula_tokens=%d tokens (longest %d) "
            "and were truncated; raise model.max_formula_tokens",
            truncated,
            len(formulas),
            max_len,
            int(lengths.max()),
        )
    seeds = np.asarray(raw["style_seed"], np.int32)
    arrays = {
        "image": np.asarray(raw["image"], np.uint8),
        "tokens": tokens.astype(np.int32),
        "numbers": numbers,
        "family": np.asarray(raw["family"], np.int32),
        "style": style_features(seeds),
    }
    return Split(arrays, formulas, seeds)


# split -> (dataset split name, config.data field with its size)
_PROCEDURAL_SPLITS = {
    "train": ("train", "num_train"),
    "val": ("validation", "num_val"),
    "test": ("test", "num_test"),
}


def _procedural(
    config: ml_collections.ConfigDict, splits: tuple[str, ...] = tuple(_PROCEDURAL_SPLITS)
) -> dict[str, dict[str, np.ndarray] | None]:
    """The requested splits, built or read from the cache; test is optional (num_test = 0 gives
    None), train and val are not (`build_arrays` names a bad size)."""
    d = config.data
    cache = os.path.expanduser(config.data_dir) if config.data_dir else None
    raw = {}
    for split in splits:
        name, size_field = _PROCEDURAL_SPLITS[split]
        n = d[size_field]
        raw[split] = (
            None
            if split == "test" and not n
            else build_arrays(d.image_size, name, n, seed=d.data_seed, cache_dir=cache)
        )
    return raw


def _jsonl(config: ml_collections.ConfigDict) -> dict[str, dict[str, np.ndarray] | None]:
    d = config.data
    if not d.train_jsonl:
        raise ValueError(
            "config.data.source='jsonl' needs config.data.train_jsonl=/path/to/train.jsonl "
            "(lines with 'image'/'image_path' and 'formula'/'prompt'; see mathart/README.md)"
        )
    train = load_jsonl(d.train_jsonl, d.image_size, skip_bad_lines=d.skip_bad_lines)
    if d.val_jsonl:
        val = load_jsonl(d.val_jsonl, d.image_size, skip_bad_lines=d.skip_bad_lines)
    else:
        n = len(train["formula"])
        n_val = max(1, round(n * d.val_fraction))
        if n - n_val < config.batch_size:
            raise ValueError(
                f"{d.train_jsonl} has {n} examples: too few to hold out {n_val} for validation "
                f"and still fill one batch of {config.batch_size}; add data, set "
                "data.val_jsonl, or lower batch_size"
            )
        val = {k: v[n - n_val :] for k, v in train.items()}
        train = {k: v[: n - n_val] for k, v in train.items()}
    return {"train": train, "val": val, "test": None}


def _raw_splits(
    config: ml_collections.ConfigDict, splits: tuple[str, ...] = tuple(_PROCEDURAL_SPLITS)
) -> dict[str, dict[str, np.ndarray] | None]:
    """Raw arrays of (at least) the requested splits from ``config.data.source``; None marks a
    split the data does not have."""
    source = config.data.source
    if source == "procedural":
        return _procedural(config, splits)
    if source == "jsonl":
        return _jsonl(config)
    raise ValueError(f"unknown config.data.source '{source}'; choose procedural or jsonl")


def load_data(config: ml_collections.ConfigDict) -> MathArtData:
    """Builds or loads the raw splits, builds the tokenizer on the training formulas only, and
    tokenizes every split."""
    source = config.data.source
    raw = _raw_splits(config)
    tokenizer = Tokenizer.build(
        (str(f) for f in raw["train"]["formula"]),
        max_vocab=config.model.vocab_size,
        numbers=config.data.number_tokens,
    )
    max_len = config.model.max_formula_tokens
    splits = {
        k: (encode_split(v, tokenizer, max_len) if v is not None else None) for k, v in raw.items()
    }
    logging.info(
        "mathart data (%s, %d px): %d train / %d val / %s test examples; vocabulary %d of %d",
        source,
        config.data.image_size,
        len(splits["train"]),
        len(splits["val"]),
        len(splits["test"]) if splits["test"] is not None else "no",
        tokenizer.vocab_size,
        config.model.vocab_size,
    )
    return MathArtData(
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        tokenizer=tokenizer,
        has_family=source == "procedural",
    )


def grid_indices(split: Split, num: int) -> np.ndarray:
    """Fixed examples for sample grids: the first example of each family in turn (so a grid
    shows many families), then the next ones; deterministic in the split's order."""
    fams = split.arrays["family"]
    chosen: list[int] = []
    seen: set[int] = set()
    for i, f in enumerate(fams.tolist()):
        if f not in seen or f < 0:
            chosen.append(i)
            seen.add(f)
        if len(chosen) == num:
            break
    for i in range(len(fams)):
        if len(chosen) == num:
            break
        if i not in chosen:
            chosen.append(i)
    return np.asarray(chosen[:num], np.int64)


def load_eval_split(
    config: ml_collections.ConfigDict, split: str, tokenizer: Tokenizer, num: int | None = None
) -> Split:
    """The first `num` examples (all when None) of one split, tokenized with a run's saved
    tokenizer (tools): "val" or "test" (held-out formulas), or "train" (the formulas the run
    trained on, to compare against). Only those rows are tokenized."""
    if split not in _PROCEDURAL_SPLITS:
        raise ValueError(f"split must be 'train', 'val' or 'test', got '{split}'")
    raw = _raw_splits(config, (split,))[split]
    if raw is None:
        raise ValueError(
            f"this run has no '{split}' split (JSONL data has train and val; procedural data "
            "has test when data.num_test > 0); evaluate with --split val"
        )
    if num is not None:
        raw = {k: v[:num] for k, v in raw.items()}
    return encode_split(raw, tokenizer, config.model.max_formula_tokens)


def build_datasets(config: ml_collections.ConfigDict, data: MathArtData | None = None) -> Datasets:
    """The loop's sources: shuffled train rows, val (evaluated periodically) and, for
    procedural data, test; `data`: what `load_data(config)` returned, when the caller has it."""
    d = load_data(config) if data is None else data
    evals = {"val": ArrayEvalSource(d.val.arrays)}
    if d.test is not None:
        evals["test"] = ArrayEvalSource(d.test.arrays)
    return Datasets(
        train=ArraySource(d.train.arrays, seed=config.seed),
        eval=evals,
        periodic_eval_splits=("val",),
    )
