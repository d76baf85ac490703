"""`build_arrays`: the synthetic (formula, style, image) dataset as in-memory numpy arrays.

Pipeline (deterministic in ``seed``; identical on every machine and process):

1. A candidate stream: candidate ``j`` is sampled from ``default_rng([seed, j])`` by
   `mathart.dataset.families.sample` (complexity mix 40/35/25), parsed and canonicalised.
   Its style seed is a hash of ``(seed, j)``.
2. Formula split: the SHA-256 of the canonical formula text decides the split (80 % train,
   10 % validation, 10 % test), so a formula lives in exactly one split however it was
   spelled or styled: validation and test measure generalisation to unseen formulas.
3. Exact de-duplication by canonical text (the same formula sampled twice is kept once; a
   repeat is re-drawn from the same family, up to `DUPLICATE_RETRIES` times, so that small
   families keep their share of the mix).
4. Render (`mathart.render.render`) in batches.
5. Quality filters: images with almost no ink (an attractor collapsed to a point, a curve
   outside the window) are dropped; near-duplicate images are dropped: same perceptual hash
   of the ink map (within ``max_phash_distance`` bits) as an earlier kept image of the split
   *and* a 16x16 ink thumbnail within 15 % relative L1 of it (`mathart.dataset.phash`). The counts
   are returned by `build_dataset` and logged; the seed reports 3.2 % perceptual duplicates
   for its scraped data, ours is measured (see DATA.md).

Results can be cached as ``.npz`` (no pickle) under ``cache_dir``.
"""

import dataclasses
import hashlib
import logging
import os

import numpy as np

from mathart.dataset import families
from mathart.dataset.phash import Deduplicator, ink
from mathart.formula import FormulaError, parse
from mathart.render import Style, render

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
MIN_INK_FRACTION = 0.01  # fraction of pixels that must differ clearly from the background
DUPLICATE_RETRIES = 8
DATASET_VERSION = 2  # bump when sampling, rendering or filtering changes (invalidates caches)


def split_of(canonical_text: str) -> str:
    """The split a formula belongs to: a pure function of its canonical text."""
    digest = hashlib.sha256(canonical_text.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "little") / 2.0**64
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]:
        return "validation"
    return "test"


def style_seed_of(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"style/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclasses.dataclass
class BuildStats:
    candidates: int = 0  # formulas sampled (= other_split + exact_duplicates + rendered)
    other_split: int = 0  # belonged to another split
    exact_duplicates: int = 0  # same canonical formula as an earlier candidate of this split
    rendered: int = 0
    blank: int = 0  # too little ink
    perceptual_duplicates: int = 0  # pHash near-duplicates among non-blank renders
    kept: int = 0
    # family name -> count, for the two image filters (which families they thin out)
    blank_by_family: dict[str, int] = dataclasses.field(default_factory=dict)
    duplicates_by_family: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def perceptual_duplicate_fraction(self) -> float:
        checked = self.rendered - self.blank
        return self.perceptual_duplicates / checked if checked else 0.0


def _check_args(resolution: int, split: str, num_examples: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if not 8 <= resolution <= 4096:
        raise ValueError(f"resolution must be between 8 and 4096, got {resolution}")
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")


def build_dataset(
    resolution: int,
    split: str,
    num_examples: int,
    seed: int = 0,
    *,
    max_phash_distance: int = 0,
    render_batch: int = 64,
    draw_batch: int | None = None,
) -> tuple[dict[str, np.ndarray], BuildStats]:
    """Like `build_arrays`, also returning the filtering statistics."""
    _check_args(resolution, split, num_examples)
    if draw_batch is None:  # big images: smaller drawing batches keep memory in check
        draw_batch = 16 if resolution <= 128 else 4
    stats = BuildStats()
    dedup = Deduplicator(max_phash_distance)
    seen: set[str] = set()
    kept: dict[str, list] = {k: [] for k in ("image", "formula", "family", "complexity", "seed")}
    j = 0
    max_candidates = 200 * max(num_examples, 8) + 1000
    while len(kept["formula"]) < num_examples:
        # Collect a batch of candidates of this split, then render it in one call.
        batch = []
        while len(batch) < render_batch and j < max_candidates:
            rng = np.random.default_rng([seed, j, 0xF0])
            text, family, level = families.sample(rng)
            # An exact repeat is re-drawn from the same family (a few times), so families with
            # fewer distinct formulas keep their share of the complexity mix.
            for attempt in range(DUPLICATE_RETRIES):
                if attempt:
                    text = families.sample_family(family, rng)
                stats.candidates += 1
                try:
                    formula = parse(text)
                except FormulaError as e:  # a sampler bug: say which family
                    raise RuntimeError(
                        f"family {families.FAMILIES[family]} produced {text!r}: {e}"
                    ) from e
                canonical = formula.text
                if split_of(canonical) != split:
                    stats.other_split += 1
                    break
                if canonical in seen:
                    stats.exact_duplicates += 1
                    continue
                seen.add(canonical)
                batch.append((formula, family, level, style_seed_of(seed, j)))
                break
            j += 1
        if not batch:
            raise RuntimeError(
                f"only {len(kept['formula'])} of {num_examples} {split} examples after "
                f"{stats.candidates} candidates; the sampler is not diverse enough"
            )
        styles = [Style.from_seed(s) for *_, s in batch]
        images = render(
            [b[0] for b in batch], resolution, styles, max_batch=draw_batch, pad_to_max_batch=True
        )
        stats.rendered += len(batch)
        for (formula, family, level, sseed), style, image in zip(batch, styles, images):
            if len(kept["formula"]) >= num_examples:
                break
            amount = ink(image, np.asarray(style.background))
            name = families.FAMILIES[family]
            if (amount > 0.1).mean() < MIN_INK_FRACTION:
                stats.blank += 1
                stats.blank_by_family[name] = stats.blank_by_family.get(name, 0) + 1
                continue
            if not dedup.add(amount):
                stats.perceptual_duplicates += 1
                stats.duplicates_by_family[name] = stats.duplicates_by_family.get(name, 0) + 1
                continue
            kept["image"].append(image)
            kept["formula"].append(formula.text)
            kept["family"].append(family)
            kept["complexity"].append(level)
            kept["seed"].append(sseed)
    stats.kept = len(kept["formula"])
    arrays = {
        "image": (
            np.stack(kept["image"])
            if kept["image"]
            else np.zeros((0, resolution, resolution, 3), np.uint8)
        ),
        "formula": np.asarray(kept["formula"], dtype=np.str_),
        "family": np.asarray(kept["family"], np.int32),
        "complexity": np.asarray(kept["complexity"], np.int32),
        "style_seed": np.asarray(kept["seed"], np.int32),
    }
    logging.info(
        "mathart data %s@%dpx: kept %d of %d candidates (%d other split, %d exact duplicates, "
        "%d blank, %d perceptual duplicates = %.2f %% of non-blank renders)",
        split,
        resolution,
        stats.kept,
        stats.candidates,
        stats.other_split,
        stats.exact_duplicates,
        stats.blank,
        stats.perceptual_duplicates,
        100 * stats.perceptual_duplicate_fraction,
    )
    return arrays, stats


def build_arrays(
    resolution: int,
    split: str,
    num_examples: int,
    seed: int = 0,
    *,
    cache_dir: str | None = None,
    max_phash_distance: int = 0,
) -> dict[str, np.ndarray]:
    """The synthetic dataset for one split.

    Returns ``image`` uint8 [N, R, R, 3], ``formula`` unicode [N] (canonical text),
    ``family`` int32 [N] (index into `FAMILIES`), ``complexity`` int32 [N] (0 simple,
    1 complex, 2 artistic), ``style_seed`` int32 [N] (``Style.from_seed(s)`` re-renders it).
    Deterministic in (resolution, split, num_examples, seed); the first k examples of a larger
    build equal a build of k examples.
    """
    _check_args(resolution, split, num_examples)
    path = None
    if cache_dir is not None:
        name = (
            f"math_art_v{DATASET_VERSION}_r{resolution}_{split}_n{num_examples}_s{seed}"
            f"_d{max_phash_distance}.npz"
        )
        cache_dir = os.path.expanduser(cache_dir)
        path = os.path.join(cache_dir, name)
        if os.path.exists(path):
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
    arrays, _ = build_dataset(
        resolution, split, num_examples, seed, max_phash_distance=max_phash_distance
    )
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: a half-written cache is never read
    return arrays
