"""Scans from a microscope, labelled by a CSV, as a `loaders.ScanData`: what an STM group has.

    config.data.path = a folder of scans;  config.data.labels_csv = labels.csv
    labels.csv:  file,label[,session]      (paths relative to the CSV; a header row)

Readers, by extension, through the field's own libraries (the ``[stm]`` extra):
- Gwyddion ``.gwy`` (`gwyfile`): the channel whose title contains ``config.data.channel``
  (e.g. "Z", "Topography"; empty: the first channel) and, when titles say so, the scan
  direction (``config.data.direction``: "forward" | "backward");
- images ``.png`` / ``.tif`` / ``.tiff``, 8 or 16 bit, grey (Pillow): heights in grey levels.

Nanonis ``.sxm`` and Omicron MATRIX files are not read yet: the error says so.

Rows of the image are scan lines (row 0 first, as Gwyddion and image files store them). A scan
of another size than ``line_length`` x ``line_length`` is resampled (bilinear) to it; the model
needs one shape. Labels are class names (``config.data.class_names`` fixes their order; else
sorted) or class indices; sessions (any text) become the groups whole-session splits keep
together. A file that cannot be read is listed and skipped, never fatal for the others.
"""

import csv
import logging
import os

import numpy as np

from common.environment import require_extra
from scanline.loaders import DataFormatError, ScanData

SCAN_SUFFIXES = (".gwy", ".png", ".tif", ".tiff")
_NOT_YET = {".sxm": "Nanonis .sxm", ".mtrx": "Omicron MATRIX"}
# What a folder of scans may hold: readable files, and instrument files refused by name.
KNOWN_SUFFIXES = (*SCAN_SUFFIXES, *_NOT_YET)


def read_scan(path: str, *, channel: str = "", direction: str = "forward") -> np.ndarray:
    """One scan as float64 [lines, pixels] in the file's own height units."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _NOT_YET or path.endswith("_mtrx"):
        what = _NOT_YET.get(suffix, "Omicron MATRIX")
        raise DataFormatError(f"{path}: {what} files are not read yet; export them as .gwy")
    if suffix == ".gwy":
        return _read_gwy(path, channel, direction)
    if suffix in (".png", ".tif", ".tiff"):
        from PIL import Image

        with Image.open(path) as image:
            if image.mode not in ("L", "I;16", "I;16B", "I", "F"):
                raise DataFormatError(
                    f"{path}: a colour image ({image.mode}); scans must be grey heights (8 or 16 "
                    "bit), not colour-mapped renders"
                )
            return np.asarray(image, np.float64)
    raise DataFormatError(f"{path}: unknown scan format; readable: {', '.join(SCAN_SUFFIXES)}")


def _read_gwy(path: str, channel: str, direction: str) -> np.ndarray:
    gwyfile = require_extra("gwyfile", "stm", f"reading {path}")
    from gwyfile.util import get_datafields

    try:
        fields = get_datafields(gwyfile.load(path))
    except Exception as e:  # gwyfile asserts on a bad header
        raise DataFormatError(f"{path}: not a readable Gwyddion file ({type(e).__name__})") from e
    if not fields:
        raise DataFormatError(f"{path}: no data channel in this Gwyddion file")
    titles = list(fields)
    wanted = [t for t in titles if channel.lower() in t.lower()] if channel else titles
    directed = [t for t in wanted if direction.lower() in t.lower()]
    chosen = (directed or wanted)[:1]
    if not chosen:
        raise DataFormatError(
            f"{path}: no channel titled like '{channel}'; it has {titles} "
            "(config.data.channel picks one)"
        )
    return np.asarray(fields[chosen[0]].data, np.float64)


def resample(scan: np.ndarray, size: int) -> np.ndarray:
    """A scan at `size` x `size` pixels (bilinear), the one shape a model takes."""
    if scan.shape == (size, size):
        return scan
    from scipy import ndimage

    return ndimage.zoom(scan, (size / scan.shape[0], size / scan.shape[1]), order=1)


def load_labelled_folder(
    folder: str,
    labels_csv: str,
    *,
    line_length: int = 128,
    class_names: tuple[str, ...] | None = None,
    channel: str = "",
    direction: str = "forward",
) -> ScanData:
    """The scans a label file names (see the module docstring) as ScanData."""
    if not os.path.isfile(labels_csv):
        raise FileNotFoundError(
            f"config.data.labels_csv '{labels_csv}' does not exist; a folder of scans needs a "
            "CSV with columns file,label[,session]"
        )
    with open(labels_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DataFormatError(
            f"{labels_csv}: needs a header with columns file,label[,session]; found "
            f"{list(rows[0]) if rows else 'no rows'}"
        )
    names = tuple(class_names or sorted({r["label"] for r in rows}, key=_label_order))
    index = {name: k for k, name in enumerate(names)}
    sessions = sorted({r.get("session") or "" for r in rows})
    images, labels, groups, skipped = [], [], [], []
    for n, row in enumerate(rows):
        label = row["label"].strip()
        if label not in index and not (label.isdigit() and int(label) < len(names)):
            raise DataFormatError(
                f"{labels_csv} row {n + 2}: label '{label}' is not one of {names}"
            )
        path = os.path.join(os.path.dirname(os.path.abspath(labels_csv)), row["file"])
        if not os.path.isabs(row["file"]) and not os.path.exists(path):
            path = os.path.join(folder, row["file"])
        try:
            scan = read_scan(path, channel=channel, direction=direction)
        except (OSError, DataFormatError, ValueError) as e:
            skipped.append(f"{row['file']} ({e})")
            continue
        images.append(resample(scan, line_length))
        labels.append(index[label] if label in index else int(label))
        groups.append(sessions.index(row.get("session") or ""))
    if skipped:
        logging.warning("%d scans skipped: %s", len(skipped), "; ".join(skipped[:10]))
    if not images:
        raise DataFormatError(f"{labels_csv}: none of its {len(rows)} scans could be read")
    has_sessions = sessions != [""]
    return ScanData(
        images=np.stack(images).astype(np.float32),
        labels=np.asarray(labels, np.int32),
        groups=np.asarray(groups if has_sessions else np.arange(len(images)), np.int64),
        class_names=names,
        source=f"{folder} ({labels_csv})",
        group_names=tuple(sessions) if has_sessions else (),
    )


def _label_order(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
