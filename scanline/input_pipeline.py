"""From files (or the synthetic generator) to normalised, leak-free train/val/test arrays.

Used by `scanline.task.ScanlineTask.datasets`. Steps, in order:

1. Load `config.data.path` (NPZ or MATLAB v7.3, `scanline.loaders`), or, when it is empty,
   generate the synthetic dataset into a cache under `config.data_dir` (`scanline.synth`).
2. Per-scan-line z-score (eps 1e-8; a zero-variance line is only centred), as Gordon et al.
   and the originals do, once at load.
3. Split train/val/test (default 70/15/15), seeded and stratified, *by group*: all copies of a
   source image land in the same split, so pre-augmented copies cannot leak into evaluation.
   With `config.data.test_path` (the synthetic default: a file generated with another seed),
   the test split is that whole file and the main file is split into train/val only.
4. Class weights: inverse frequency N / (K * n_c) on the training split (the original's
   formula, which gives [2.845, 0.569, 1.478, 0.823] on its class counts), or explicit.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import ml_collections
import numpy as np

from common.data import ArrayEvalSource, ArraySource
from common.task import Datasets
from scanline import loaders, synth


@dataclass
class Splits:
    """Normalised arrays per split: images float32 [N, lines, line_length], labels int32 [N]."""

    arrays: dict[str, dict[str, np.ndarray]]  # split -> {"image", "label", "group"}
    class_names: tuple[str, ...]
    class_weights: np.ndarray  # float32 [K]
    train_counts: np.ndarray  # int [K]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def zscore_lines(images: np.ndarray, eps: float = 1e-8, chunk: int = 1024) -> np.ndarray:
    """Per-scan-line z-score over the last axis: (x - mean) / std, float32.

    A line whose std is <= eps (e.g. a dropped, constant line) is only centred, so it becomes
    zeros instead of noise amplified by 1/eps.
    """
    out = np.empty(images.shape, np.float32)
    for s in range(0, len(images), chunk):
        x = np.asarray(images[s : s + chunk], np.float64)
        mean = x.mean(-1, keepdims=True)
        std = x.std(-1, keepdims=True)
        out[s : s + chunk] = (x - mean) / np.where(std > eps, std, 1.0)
    return out


def inverse_frequency_weights(counts: Sequence[int]) -> np.ndarray:
    """w_c = N / (K * n_c): the balanced weighting of the originals (and sklearn)."""
    counts = np.asarray(counts, np.float64)
    if np.any(counts <= 0):
        empty = np.nonzero(counts <= 0)[0].tolist()
        raise ValueError(
            f"classes {empty} have no training examples (counts {counts.astype(int).tolist()}); "
            "inverse-frequency weights are undefined. Give explicit config.loss.class_weights "
            "or check the labels / split"
        )
    return (counts.sum() / (len(counts) * counts)).astype(np.float32)


def class_weights(
    train_labels: np.ndarray, num_classes: int, weighting: str, explicit: Sequence[float] = ()
) -> np.ndarray:
    """Loss weights per class from the training labels (or the explicit list)."""
    if len(explicit):
        w = np.asarray(explicit, np.float32)
        if w.shape != (num_classes,) or np.any(w < 0):
            raise ValueError(
                f"config.loss.class_weights has {len(w)} values {w.tolist()}, expected "
                f"{num_classes} non-negative weights (one per class)"
            )
        return w
    if weighting == "none":
        return np.ones(num_classes, np.float32)
    if weighting == "inverse_frequency":
        return inverse_frequency_weights(np.bincount(train_labels, minlength=num_classes))
    raise ValueError(
        f"config.loss.class_weighting must be inverse_frequency|none, got '{weighting}' "
        "(or set config.loss.class_weights explicitly)"
    )


def split_by_group(
    labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Stratified, seeded split of example indices where a group never straddles two splits.

    Within each class the groups are shuffled and laid end to end; a group goes to the split
    whose share of the class's images its midpoint falls into, so every split gets close to its
    fraction of every class. A group whose images carry different labels is an error.
    """
    fractions = np.asarray(fractions, np.float64)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions.tolist()}")
    uniq, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)
    group_label = np.full(len(uniq), -1)
    group_label[inverse] = labels
    mixed = np.nonzero(np.bincount(inverse, weights=labels != group_label[inverse]))[0]
    if len(mixed):
        raise ValueError(
            f"group {uniq[mixed[0]]} holds images with different labels; a group must be one "
            "source image (or one labelled session)"
        )
    rng = np.random.default_rng([seed, 0x5B17])
    edges = np.cumsum(fractions)[:-1]
    split_of_group = np.empty(len(uniq), int)
    for c in np.unique(group_label):
        members = rng.permutation(np.nonzero(group_label == c)[0])
        cum = np.cumsum(sizes[members])
        mid = (cum - sizes[members] / 2) / cum[-1]
        split_of_group[members] = np.searchsorted(edges, mid, side="right")
    split_of_example = split_of_group[inverse]
    return [np.nonzero(split_of_example == k)[0] for k in range(len(fractions))]


def synthetic_path(data_dir: str, n: int, seed: int, size: int, copies: int, shares) -> str:
    """Cache file name: every generator argument and the generator version are in it."""
    share_tag = "-".join(f"{s:.4f}" for s in shares)
    name = f"synth_v{synth.VERSION}_n{n}_seed{seed}_size{size}_copies{copies}_p{share_tag}.npz"
    return os.path.join(os.path.expanduser(data_dir), name)


def synthetic_file(config: ml_collections.ConfigDict, n: int, seed: int) -> str:
    """Where the synthetic set of `n` images from `seed` is cached for this config."""
    data_dir = config.data_dir or "~/.cache/jaxfam/scanline"
    s = config.synth
    return synthetic_path(data_dir, n, seed, int(config.data.line_length), s.copies, s.shares)


def _synthetic(config: ml_collections.ConfigDict, n: int, seed: int) -> loaders.ScanData:
    s, d = config.synth, config.data
    size = int(d.line_length)
    if d.lines_per_image and d.lines_per_image != size:
        raise ValueError(
            f"the synthetic generator makes square images; data.lines_per_image="
            f"{d.lines_per_image} must equal data.line_length={size} (or be unset)"
        )
    path = synthetic_file(config, n, seed)
    if not os.path.isfile(path):
        logging.info("generating %d synthetic images (seed %d) into %s", n, seed, path)
        data = synth.generate(
            n, seed, shares=s.shares, copies=s.copies, size=size, workers=s.workers
        )
        synth.write_npz(path, data)
    return loaders.load_npz(path, line_length=size, class_names=tuple(d.class_names) or None)


def load_dataset(
    config: ml_collections.ConfigDict,
) -> tuple[loaders.ScanData, loaders.ScanData | None]:
    """(main data, optional separate test data) as configured; synthetic when no path is set."""
    d = config.data
    if not d.path:
        if d.test_path:
            raise ValueError("config.data.test_path needs config.data.path (the training file)")
        main = _synthetic(config, config.synth.n, config.synth.seed)
        test = None
        if config.synth.test_n:
            if config.synth.test_seed == config.synth.seed:
                raise ValueError(
                    f"config.synth.test_seed ({config.synth.test_seed}) equals synth.seed: the "
                    "held-out synthetic test set must come from a different seed"
                )
            test = _synthetic(config, config.synth.test_n, config.synth.test_seed)
        return main, test
    kwargs = dict(
        fmt=d.format,
        line_length=int(d.line_length),
        lines_per_image=d.lines_per_image,
        class_names=tuple(d.class_names) or None,
        line_label_rule=d.line_label_rule,
    )
    main = loaders.load_file(d.path, **kwargs)
    test = loaders.load_file(d.test_path, **kwargs) if d.test_path else None
    if test is not None and test.images.shape[1:] != main.images.shape[1:]:
        raise loaders.DataFormatError(
            f"{d.test_path}: images of shape {list(test.images.shape[1:])} differ from the "
            f"training file's {list(main.images.shape[1:])}"
        )
    return main, test


def build_splits(config: ml_collections.ConfigDict) -> Splits:
    """Loads, normalises and splits the data; computes the training split's class weights."""
    main, test = load_dataset(config)
    fractions = list(config.data.split)
    if len(fractions) != 3:
        raise ValueError(f"config.data.split needs 3 fractions (train, val, test), got {fractions}")
    if test is not None:
        # The held-out file is the test split; the main file feeds train and val only.
        train_val = fractions[0] + fractions[1]
        fractions = [fractions[0] / train_val, fractions[1] / train_val, 0.0]
    idx = split_by_group(main.labels, main.groups, fractions, config.data.split_seed)
    num_classes = max(main.num_classes, test.num_classes if test is not None else 0)
    names = main.class_names if main.num_classes >= num_classes else test.class_names
    normalize = config.data.normalize
    if normalize not in ("per_line", "none"):
        raise ValueError(f"config.data.normalize must be per_line|none, got '{normalize}'")

    def arrays(data: loaders.ScanData, rows: np.ndarray) -> dict[str, np.ndarray]:
        images = data.images[rows]
        if normalize == "per_line":
            images = zscore_lines(images, float(config.data.eps))
        return {
            "image": np.ascontiguousarray(images, np.float32),
            "label": data.labels[rows].astype(np.int32),
            "group": data.groups[rows].astype(np.int64),
        }

    out = {"train": arrays(main, idx[0]), "val": arrays(main, idx[1])}
    out["test"] = (
        arrays(test, np.arange(len(test.labels))) if test is not None else arrays(main, idx[2])
    )
    for name, a in out.items():
        if len(a["label"]) == 0:
            raise ValueError(
                f"the {name} split is empty ({len(main.labels)} images, split "
                f"{list(config.data.split)}); use more data or other fractions"
            )
    counts = np.bincount(out["train"]["label"], minlength=num_classes)
    weights = class_weights(
        out["train"]["label"], num_classes, config.loss.class_weighting, config.loss.class_weights
    )
    logging.info(
        "scanline data: %s; train/val/test = %d/%d/%d images; train class counts %s; class "
        "weights %s",
        main.source,
        *(len(out[k]["label"]) for k in ("train", "val", "test")),
        counts.tolist(),
        np.round(weights, 3).tolist(),
    )
    return Splits(arrays=out, class_names=names, class_weights=weights, train_counts=counts)


def build_datasets(config: ml_collections.ConfigDict, splits: Splits | None = None) -> Datasets:
    """The loop's sources: shuffled train images, val (evaluated periodically) and test;
    `splits`: what `build_splits(config)` returned, when the caller has it."""
    s = build_splits(config) if splits is None else splits
    keep = ("image", "label")
    arrays = {name: {k: a[k] for k in keep} for name, a in s.arrays.items()}
    return Datasets(
        train=ArraySource(arrays["train"], seed=config.seed),
        eval={"val": ArrayEvalSource(arrays["val"]), "test": ArrayEvalSource(arrays["test"])},
        periodic_eval_splits=("val",),
    )
