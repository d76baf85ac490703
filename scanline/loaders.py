"""Readers for the scan-line data formats users have: NPZ and MATLAB v7.3 (HDF5).

Used by `scanline.input_pipeline.load_dataset` (and so by `scanline.task`). Both return a
`ScanData`; shapes and keys are checked up front so a wrong file fails with a message naming
the key, the shape found and the shape expected.

NPZ (what `scanline.synth` writes, and the Kronberger conversion's layout):
    images  float [N, lines, line_length]   one image per row; lines along axis 1
    labels  int   [N]                       class index per image (0..K-1)
    groups  int   [N]        optional       source-image id (augmented copies share one)
    class_names str [K]      optional
Read with ``np.load(allow_pickle=False)``: object arrays (pickles) are refused.

MATLAB v7.3 / HDF5 (the original ``LineDataNewNew128.mat``):
    x_raw   [line_length, N*lines]   every column one scan line, `lines` columns per image
    y       [K, N*lines]             one-hot class per line
Shapes are in MATLAB's orientation. A file written by MATLAB stores the transpose on disk
(HDF5 is row-major), which is recognised by its MATLAB header; a plain HDF5 file may hold either
orientation as long as only one of them fits.
"""

import os
from dataclasses import dataclass

import numpy as np


class DataFormatError(ValueError):
    """A data file is missing a key or has a wrong shape/dtype; the message says how to fix it."""


@dataclass
class ScanData:
    """A loaded dataset: images [N, lines, line_length] float32, labels [N] int32, groups [N]."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]
    source: str = ""
    group_names: tuple[str, ...] = ()  # names of group ids 0.. (labelled folders, NPZ sessions)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _class_names(names, num_classes: int, where: str) -> tuple[str, ...]:
    if names is None or len(names) == 0:
        return tuple(f"class_{k}" for k in range(num_classes))
    names = tuple(str(n) for n in names)
    if len(names) < num_classes:
        raise DataFormatError(
            f"{where}: {len(names)} class names {list(names)} for labels 0..{num_classes - 1}; "
            f"give at least {num_classes} names (config.data.class_names or the file's "
            "'class_names')"
        )
    return names


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise DataFormatError(
                f"{where}: 'labels' must hold integer class indices, found dtype {labels.dtype}"
            )
    if labels.size and labels.min() < 0:
        raise DataFormatError(
            f"{where}: 'labels' must be >= 0, found {int(labels.min())}; classes are 0..K-1"
        )
    return labels.astype(np.int32)


def _check_values(images: np.ndarray, labels: np.ndarray, named: bool, where: str) -> None:
    """NaN/inf pixels and label numbers that leave most classes empty are refused by name:
    the first would surface as a non-finite loss steps later, the second as thousands of
    phantom classes."""
    bad_images, bad_values = [], 0
    flat = images.reshape(len(images), -1)
    for start in range(0, len(flat), 1024):  # chunks: a 60,000-scan file is 4 GB of floats
        bad = ~np.isfinite(flat[start : start + 1024])
        if bad.any():
            bad_values += int(bad.sum())
            bad_images.extend((start + np.nonzero(bad.any(1))[0]).tolist())
    if bad_values:
        raise DataFormatError(
            f"{where}: {bad_values} pixel values are NaN or infinite, in {len(bad_images)} "
            f"images (first: image {bad_images[0]}); fix or drop those images"
        )
    if labels.size and not named:
        k, present = int(labels.max()) + 1, len(np.unique(labels))
        if present < k / 2:
            raise DataFormatError(
                f"{where}: labels run to {k - 1} but only {present} of those {k} classes occur; "
                "number the classes 0..K-1, or name all K (config.data.class_names)"
            )


def load_npz(
    path: str, *, line_length: int = 128, class_names: tuple[str, ...] | None = None
) -> ScanData:
    """Reads an NPZ file with `images`, `labels` and optional `groups` / `class_names` /
    `group_names` (the names of group ids 0.., e.g. sessions, which config.data.test_groups
    may name)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file '{path}' does not exist (config.data.path)")
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:  # pickled object arrays are refused, never loaded
        raise DataFormatError(f"{path}: cannot read without unpickling ({e})") from e
    with npz:
        keys = set(npz.files)
        for key in ("images", "labels"):
            if key not in keys:
                raise DataFormatError(
                    f"{path}: missing key '{key}'; found keys {sorted(keys)}. Expected 'images' "
                    f"float [N, lines, {line_length}] and 'labels' int [N]"
                )
        try:
            images, labels = npz["images"], npz["labels"]
            groups = npz["groups"] if "groups" in keys else None
            names = npz["class_names"] if "class_names" in keys else None
            group_names = tuple(str(g) for g in npz["group_names"]) if "group_names" in keys else ()
        except ValueError as e:
            raise DataFormatError(f"{path}: an array needs unpickling, refused ({e})") from e
    if images.ndim != 3 or images.shape[2] != line_length:
        raise DataFormatError(
            f"{path}: 'images' has shape {list(images.shape)}, expected [N, lines, {line_length}] "
            f"(line_length={line_length}, config.data.line_length)"
        )
    if images.dtype.kind not in "fiu":
        raise DataFormatError(f"{path}: 'images' must be numeric, found dtype {images.dtype}")
    n = images.shape[0]
    if labels.shape != (n,):
        raise DataFormatError(
            f"{path}: 'labels' has shape {list(labels.shape)}, expected [{n}] (one per image)"
        )
    labels = _check_labels(labels, path)
    if groups is None:
        groups = np.arange(n)
    elif groups.shape != (n,):
        raise DataFormatError(
            f"{path}: 'groups' has shape {list(groups.shape)}, expected [{n}] (one per image)"
        )
    elif groups.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: 'groups' must be integer ids, found dtype {groups.dtype}")
    if group_names and (groups.min() < 0 or groups.max() >= len(group_names)):
        raise DataFormatError(
            f"{path}: 'groups' ids run {groups.min()}..{groups.max()} but 'group_names' names "
            f"{len(group_names)} groups (ids 0..{len(group_names) - 1})"
        )
    k = int(labels.max()) + 1 if n else 0
    names_in = class_names if class_names else names
    _check_values(images, labels, names_in is not None and len(names_in) > 0, path)
    return ScanData(
        images=images.astype(np.float32, copy=False),
        labels=labels,
        groups=groups.astype(np.int64),
        class_names=_class_names(names_in, k, path),
        source=path,
        group_names=group_names,
    )


def _is_matlab_file(path: str) -> bool:
    """MATLAB v7.3 files are HDF5 with a 512-byte user block starting 'MATLAB 7.3 MAT-file'."""
    with open(path, "rb") as f:
        return f.read(19) == b"MATLAB 7.3 MAT-file"


def _orient(shape_on_disk, matlab: bool, first: int | None, cols_multiple: int, key: str, path):
    """Returns True if the on-disk array must be transposed to MATLAB's [rows, columns] view."""
    r, c = shape_on_disk if not matlab else shape_on_disk[::-1]
    fits_as_is = (first is None or r == first) and c % cols_multiple == 0
    fits_transposed = (first is None or c == first) and r % cols_multiple == 0
    if fits_as_is:
        return matlab
    if fits_transposed:
        return not matlab
    exp_first = "K" if first is None else str(first)
    raise DataFormatError(
        f"{path}: '{key}' has shape {list(shape_on_disk)} on disk "
        f"({'MATLAB' if matlab else 'plain HDF5'} file), expected [{exp_first}, N*{cols_multiple}] "
        f"in MATLAB orientation: one column per scan line, {cols_multiple} lines per image "
        "(config.data.line_length / config.data.lines_per_image)"
    )


def load_mat(
    path: str,
    *,
    line_length: int = 128,
    lines_per_image: int | None = None,
    class_names: tuple[str, ...] | None = None,
    line_label_rule: str = "error",
) -> ScanData:
    """Reads MATLAB v7.3 (HDF5) `x_raw` lines-as-columns and one-hot per-line `y`.

    `line_label_rule`: what to do when the lines of one image carry different labels (per-line
    labels around a tip change): "error", "first" (label of the image's first line, as the
    original converter did after checking) or "majority".
    """
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file '{path}' does not exist (config.data.path)")
    if line_label_rule not in ("error", "first", "majority"):
        raise ValueError(
            f"config.data.line_label_rule must be error|first|majority, got '{line_label_rule}'"
        )
    lines = lines_per_image or line_length
    matlab = _is_matlab_file(path)
    with h5py.File(path, "r") as f:
        for key in ("x_raw", "y"):
            if key not in f:
                raise DataFormatError(
                    f"{path}: missing key '{key}'; found keys {sorted(f.keys())}. Expected "
                    f"'x_raw' [{line_length}, N*{lines}] (lines as columns) and 'y' one-hot "
                    f"[K, N*{lines}]"
                )
        x_ds, y_ds = f["x_raw"], f["y"]
        if x_ds.ndim != 2 or y_ds.ndim != 2:
            raise DataFormatError(
                f"{path}: 'x_raw' and 'y' must be 2-D, found shapes {list(x_ds.shape)} and "
                f"{list(y_ds.shape)}"
            )
        x = np.asarray(x_ds, np.float32)
        y = np.asarray(y_ds)
    if _orient(x.shape, matlab, line_length, lines, "x_raw", path):
        x = x.T
    n_lines = x.shape[1]
    # y: [K, n_lines] in MATLAB's view; K is whatever the file has, so orient it by line count.
    if matlab:
        y = y.T
    if y.shape[1] != n_lines:
        if y.shape[0] != n_lines:
            raise DataFormatError(
                f"{path}: 'y' has shape {list(y.shape)}, expected [K, {n_lines}] (one-hot class "
                f"per scan line, matching x_raw's {n_lines} lines)"
            )
        y = y.T
    if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(0) == 1):
        bad = int(np.nonzero(y.sum(0) != 1)[0][0]) if np.any(y.sum(0) != 1) else -1
        raise DataFormatError(
            f"{path}: 'y' must be one-hot per line (one 1 per column); line {bad} is not"
        )
    line_labels = y.argmax(0).reshape(-1, lines)  # [N, lines]
    images = x.T.reshape(-1, lines, line_length)  # [N, lines, line_length]
    first = line_labels[:, 0]
    mixed = np.nonzero(np.any(line_labels != first[:, None], axis=1))[0]
    if len(mixed) and line_label_rule == "error":
        raise DataFormatError(
            f"{path}: the lines of {len(mixed)} images carry different labels (first: image "
            f"{int(mixed[0])}, labels {sorted(set(line_labels[mixed[0]].tolist()))}); set "
            "config.data.line_label_rule=first or majority to take one label per image"
        )
    if line_label_rule == "majority":
        k = y.shape[0]
        labels = np.stack([np.bincount(r, minlength=k) for r in line_labels]).argmax(1)
    else:
        labels = first
    _check_values(images, labels, True, path)  # MATLAB: one-hot columns, so y's rows name K
    return ScanData(
        images=images,
        labels=labels.astype(np.int32),
        groups=np.arange(len(images), dtype=np.int64),
        class_names=_class_names(class_names, y.shape[0], path),
        source=path,
    )


def load_file(
    path: str,
    *,
    fmt: str = "auto",
    line_length: int = 128,
    lines_per_image: int | None = None,
    class_names: tuple[str, ...] | None = None,
    line_label_rule: str = "error",
    labels_csv: str = "",
    channel: str = "",
    direction: str = "forward",
) -> ScanData:
    """Dispatches on `fmt` ("auto": a folder is scans named by `labels_csv`
    (`scanline.instruments`); else by extension, .npz or .mat/.h5/.hdf5)."""
    if fmt == "auto" and os.path.isdir(path):
        from scanline import instruments

        data = instruments.load_labelled_folder(
            path,
            labels_csv or os.path.join(path, "labels.csv"),
            line_length=line_length,
            class_names=class_names,
            channel=channel,
            direction=direction,
        )
        _check_values(data.images, data.labels, True, data.source)
        return data
    if fmt == "auto":
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npz":
            fmt = "npz"
        elif ext in (".mat", ".h5", ".hdf5"):
            fmt = "mat"
        else:
            raise DataFormatError(
                f"cannot tell the format of '{path}' from its extension; use .npz, .mat, .h5 or "
                "set config.data.format=npz|mat"
            )
    if fmt == "npz":
        return load_npz(path, line_length=line_length, class_names=class_names)
    if fmt == "mat":
        return load_mat(
            path,
            line_length=line_length,
            lines_per_image=lines_per_image,
            class_names=class_names,
            line_label_rule=line_label_rule,
        )
    raise DataFormatError(f"config.data.format must be auto|npz|mat, got '{fmt}'")
