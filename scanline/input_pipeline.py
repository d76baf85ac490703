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
from scanline import levelling, loaders, synth


@dataclass
class Splits:
    """Normalised arrays per split: images float32 [N, lines, line_length], labels int32 [N]."""

    arrays: dict[str, dict[str, np.ndarray]]  # split -> {"image", "label", "group"}
    class_names: tuple[str, ...]
    class_weights: np.ndarray  # float32 [K]
    train_counts: np.ndarray  # int [K]
    group_names: tuple[str, ...] = ()  # session names of group ids 0.. (labelled folders)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def shapes_only(cls, config: ml_collections.ConfigDict) -> "Splits":
        """No data, only the shapes a model is built from: square scans of
        ``data.line_length`` and the configured class names (else the generator's four), unit
        class weights. For timing a step (`common.bench`) without generating or reading a
        data set."""
        size = int(config.data.line_length)
        names = tuple(config.data.class_names) or synth.CLASS_NAMES
        empty = {
            "image": np.zeros((0, size, size), np.float32),
            "label": np.zeros(0, np.int32),
            "group": np.zeros(0, np.int64),
        }
        k = len(names)
        return cls(
            arrays={name: dict(empty) for name in ("train", "val", "test")},
            class_names=names,
            class_weights=np.ones(k, np.float32),
            train_counts=np.zeros(k, np.int64),
        )


def zscore(x, eps: float, xp=np):
    """Per-scan-line z-score over the last axis, (x - mean) / std, for numpy or jax.numpy.

    A line whose std is <= eps (e.g. a dropped, constant line) is only centred, so it becomes
    zeros instead of noise amplified by 1/eps."""
    mean = x.mean(-1, keepdims=True)
    std = x.std(-1, keepdims=True)
    return (x - mean) / xp.where(std > eps, std, 1.0)


def zscore_lines(images: np.ndarray, eps: float = 1e-8, chunk: int = 1024) -> np.ndarray:
    """`zscore` on the host in float64, `chunk` images at a time; float32 out."""
    out = np.empty(images.shape, np.float32)
    for s in range(0, len(images), chunk):
        out[s : s + chunk] = zscore(np.asarray(images[s : s + chunk], np.float64), eps)
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


def split_whole_groups(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    *,
    held_out: Sequence[int] = (),
    trials: int = 256,
) -> list[np.ndarray]:
    """Seeded split of example indices that keeps every group whole, whatever its labels: the
    honest evaluation for sessions that mix classes (never test on a session you trained on).

    Groups named in `held_out` form the last split (test) and the others share the remaining
    splits in proportion. Among `trials` seeded assignments (groups in a random order, each to
    the split furthest below its target size) the one whose split sizes and class mixes are
    closest to the requested ones wins: score = sum over splits of |share of images - target|
    + mean over splits of the total variation distance between the split's class mix and the
    whole set's.
    """
    fractions = np.asarray(fractions, np.float64)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions.tolist()}")
    uniq, inverse = np.unique(groups, return_inverse=True)
    unknown = sorted(set(held_out) - set(uniq.tolist()))
    if unknown:
        raise ValueError(f"config.data.test_groups names groups {unknown} the data does not hold")
    k, n_splits = int(labels.max()) + 1, len(fractions)
    counts = np.zeros((len(uniq), k))
    np.add.at(counts, (inverse, labels), 1)
    sizes = counts.sum(1)
    fixed = np.isin(uniq, np.asarray(held_out, uniq.dtype))
    free = np.nonzero(~fixed)[0]
    targets = fractions.copy()
    if fixed.any():
        # Named sessions are the test split; train and val keep their proportion of the rest.
        targets[:-1] = (
            fractions[:-1] / fractions[:-1].sum() * (1 - sizes[fixed].sum() / sizes.sum())
        )
        targets[-1] = sizes[fixed].sum() / sizes.sum()
        n_free = n_splits - 1
    else:
        n_free = n_splits
    overall = counts.sum(0) / counts.sum()
    best, best_score = None, np.inf
    for trial in range(trials):
        rng = np.random.default_rng([seed, 0x6E55, trial])
        split = np.full(len(uniq), n_splits - 1)
        filled = np.zeros(n_splits)
        filled[-1] = sizes[fixed].sum()
        for g in rng.permutation(free):
            deficit = targets[:n_free] * sizes.sum() - filled[:n_free]
            split[g] = int(np.argmax(deficit))
            filled[split[g]] += sizes[g]
        per_split = np.stack([counts[split == s].sum(0) for s in range(n_splits)])
        share = per_split.sum(1) / sizes.sum()
        mix = per_split / np.maximum(per_split.sum(1, keepdims=True), 1)
        score = np.abs(share - targets).sum() + 0.5 * np.abs(mix - overall).sum(1).mean()
        if np.any(per_split.sum(1)[targets > 0] == 0):
            score += 10.0  # a requested split left empty
        if score < best_score:
            best, best_score = split, score
    split_of_example = best[inverse]
    return [np.nonzero(split_of_example == s)[0] for s in range(n_splits)]


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
        labels_csv=d.labels_csv,
        channel=d.channel,
        direction=d.direction,
    )
    main = loaders.load_file(d.path, **kwargs)
    test = loaders.load_file(d.test_path, **kwargs) if d.test_path else None
    if test is not None and test.images.shape[1:] != main.images.shape[1:]:
        raise loaders.DataFormatError(
            f"{d.test_path}: images of shape {list(test.images.shape[1:])} differ from the "
            f"training file's {list(main.images.shape[1:])}"
        )
    return main, test


def _split(config, data: loaders.ScanData, fractions, whole_test: bool) -> list[np.ndarray]:
    """The configured split of `data` (config.data.group_split, config.data.test_groups)."""
    d = config.data
    mode, held_out = d.group_split, [_group_id(data, g) for g in d.test_groups]
    if mode not in ("auto", "stratified", "whole"):
        raise ValueError(f"config.data.group_split must be auto|stratified|whole, got '{mode}'")
    if held_out and not whole_test:
        raise ValueError(
            "config.data.test_groups holds out sessions of the training file, but "
            "config.data.test_path already gives the test split; set one of them"
        )
    one_label = _groups_have_one_label(data.labels, data.groups)
    if mode == "stratified" or (mode == "auto" and one_label and not held_out):
        return split_by_group(data.labels, data.groups, fractions, d.split_seed)
    return split_whole_groups(data.labels, data.groups, fractions, d.split_seed, held_out=held_out)


def _group_id(data: loaders.ScanData, group) -> int:
    """A held-out group by id, or by session name for labelled folders."""
    if isinstance(group, str) and not group.lstrip("-").isdigit():
        if group not in data.group_names:
            raise ValueError(
                f"config.data.test_groups names session '{group}'; the sessions are "
                f"{list(data.group_names)}"
            )
        return data.group_names.index(group)
    return int(group)


def _groups_have_one_label(labels: np.ndarray, groups: np.ndarray) -> bool:
    _, inverse = np.unique(groups, return_inverse=True)
    first = np.full(inverse.max() + 1, -1)
    first[inverse] = labels
    return bool(np.all(first[inverse] == labels))


def split_summary(
    splits: dict[str, dict[str, np.ndarray]], class_names, group_names: Sequence[str] = ()
) -> dict:
    """Which groups (sessions, by name when the data names them) and how many images of each
    class every split holds."""
    name_of = (lambda g: group_names[g]) if group_names else int
    k = len(class_names)
    return {
        name: {
            "images": len(a["label"]),
            "class_counts": dict(
                zip(class_names, np.bincount(a["label"], minlength=k).tolist(), strict=True)
            ),
            "num_groups": len(np.unique(a["group"])),
            # Session ids (a few dozen) are worth listing; a synthetic set's one group per
            # image is not.
            "groups": [name_of(int(g)) for g in np.unique(a["group"])]
            if len(np.unique(a["group"])) <= 500
            else "(more than 500)",
        }
        for name, a in splits.items()
    }


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
    idx = _split(config, main, fractions, whole_test=test is None)
    num_classes = max(main.num_classes, test.num_classes if test is not None else 0)
    names = main.class_names if main.num_classes >= num_classes else test.class_names
    normalize = config.data.normalize
    if normalize not in ("per_line", "none"):
        raise ValueError(f"config.data.normalize must be per_line|none, got '{normalize}'")

    steps = levelling.check_steps(config.data.levelling)

    def arrays(data: loaders.ScanData, rows: np.ndarray) -> dict[str, np.ndarray]:
        images = levelling.level_in_chunks(data.images[rows], steps)
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
    group_names = main.group_names if test is None else ()
    for name, part in split_summary(out, names, group_names).items():
        logging.info(
            "%s split: %d images, %d groups, class counts %s",
            name,
            part["images"],
            part["num_groups"],
            part["class_counts"],
        )
    return Splits(
        arrays=out,
        class_names=names,
        class_weights=weights,
        train_counts=counts,
        group_names=group_names,
    )


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
        summary=split_summary(s.arrays, s.class_names, s.group_names),
    )
