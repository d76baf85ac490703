"""Scans from a microscope, labelled by a CSV, as a `loaders.ScanData`: what an STM group has.

    config.data.path = a folder of scans;  config.data.labels_csv = labels.csv
    labels.csv:  file,label[,session]      (paths relative to the CSV; a header row)

Readers, by extension, through the field's own libraries (the ``[stm]`` extra):
- Nanonis ``.sxm`` (`nanonispy2`): the channel named ``config.data.channel`` (empty: "Z") in
  the direction ``config.data.direction`` ("forward" | "backward");
- Omicron MATRIX result files ``*.<channel>_mtrx`` (`access2thematrix`, which also reads the
  ``*_0001.mtrx`` parameter file beside them): the trace up the frame, forward or backward;
  the channel is in the file name (``.Z_mtrx``, ``.I_mtrx``; a folder is read for
  ``config.data.channel``, empty: Z);
- Gwyddion ``.gwy`` (`gwyfile`): the channel whose title contains ``config.data.channel``
  (e.g. "Z", "Topography"; empty: the first channel) and, when titles say so, the direction;
- images ``.png`` / ``.tif`` / ``.tiff``, 8 or 16 bit, grey (Pillow): heights in grey levels.

Orientation: rows are scan lines in the order the tip scanned them, because the sequential
and LRCN models read a scan line by line (and ``scanline.predict`` reports after how many
lines the tip state is known). Nanonis and MATRIX store lines in that order (an "up" scan
starts at the bottom of the frame); both readers keep it. Within a line, pixels run left to
right in space: a backward line, recorded right to left, is mirrored so both directions share
one x axis, as Gwyddion shows them. Gwyddion files and images hold what was exported: rows as
displayed, which for an "up" scan is the reverse of the scan order. Lines a scan never reached
(an aborted frame, stored as NaN) are dropped. A scan of another size than ``line_length`` x
``line_length`` is resampled (bilinear) to it; the model needs one shape.

Labels are class names (``config.data.class_names`` fixes their order; else sorted) or class
indices; sessions (any text) become the groups whole-session splits keep
together. A file that cannot be read is listed and skipped, never fatal for the others.
"""

import csv
import functools
import logging
import os

import numpy as np

from common.environment import require_extra
from scanline.loaders import DataFormatError, ScanData

SCAN_SUFFIXES = (".sxm", ".gwy", ".png", ".tif", ".tiff", "_mtrx")
DIRECTIONS = ("forward", "backward")


def is_scan_file(name: str, channel: str = "") -> bool:
    """Whether a folder's file is a scan to read: a known suffix, and for MATRIX, whose
    result files are one per channel, the configured channel's (empty: Z)."""
    lower = name.lower()
    if lower.endswith("_mtrx"):
        return lower.endswith(f".{(channel or 'z').lower()}_mtrx")
    return lower.endswith(SCAN_SUFFIXES)


def check_direction(direction: str) -> None:
    """A wrong config.data.direction is the user's one mistake for every file: callers that
    read many files check it once, before the loop that lists unreadable files and goes on."""
    if direction not in DIRECTIONS:
        raise ValueError(f"config.data.direction must be forward|backward, got '{direction}'")


def read_scan(path: str, *, channel: str = "", direction: str = "forward") -> np.ndarray:
    """One scan as float64 [lines, pixels] in the file's own height units (see the module
    docstring for the orientation)."""
    check_direction(direction)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".sxm":
        return _finite_lines(path, _read_sxm(path, channel or "Z", direction))
    if path.lower().endswith("_mtrx"):
        return _finite_lines(path, _read_matrix(path, direction))
    if suffix == ".gwy":
        return _finite_lines(path, _read_gwy(path, channel, direction))
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


def _read_sxm(path: str, channel: str, direction: str) -> np.ndarray:
    nanonispy2 = require_extra("nanonispy2", "stm", f"reading {path}")
    try:
        scan = _nanonis_scan_type(nanonispy2)(path)
    except Exception as e:  # the library raises what numpy/str parsing raise on a bad file
        raise DataFormatError(f"{path}: not a readable Nanonis scan ({type(e).__name__})") from e
    names = {name.lower(): name for name in scan.signals}
    if channel.lower() not in names:
        raise DataFormatError(
            f"{path}: no channel '{channel}'; it has {list(scan.signals)} "
            "(config.data.channel picks one)"
        )
    directions = scan.signals[names[channel.lower()]]
    if direction not in directions:
        raise DataFormatError(
            f"{path}: channel '{channel}' was saved {'/'.join(directions)} only "
            "(config.data.direction)"
        )
    lines = np.asarray(directions[direction], np.float64)
    return lines[:, ::-1] if direction == "backward" else lines


@functools.cache
def _nanonis_scan_type(nanonispy2):
    """nanonispy2's `Scan`, whose header parsing is used as is; its data loader assumes every
    channel was saved in both directions (it reshapes to [channels, 2, lines, pixels] and
    fails otherwise), so the frames are laid out by the header's own Direction column."""

    class Scan(nanonispy2.read.Scan):
        def _load_data(self):
            info = self.header["data_info"]
            pixels, lines = (int(v) for v in self.header["scan_pixels"])
            with open(self.fname, "rb") as f:
                raw = f.read()
            # The data follow the \x1a\x04 marker after the header's end tag; found, not
            # assumed to be a fixed number of bytes after the tag's line.
            start = raw.find(b"\x1a\x04", raw.find(b":SCANIT_END:")) + 2
            whole = (len(raw) - start) // np.dtype(self.data_format).itemsize
            values = np.frombuffer(raw, self.data_format, count=whole, offset=start)
            signals, at, frame = {}, 0, lines * pixels
            for name, saved in zip(info["Name"], info["Direction"]):
                signals[name] = {}
                for d in DIRECTIONS if saved == "both" else (saved,):
                    if at + frame > values.size:
                        raise ValueError("data shorter than the header says")
                    signals[name][d] = values[at : at + frame].reshape(lines, pixels)
                    at += frame
            return signals

    return Scan


def _read_matrix(path: str, direction: str) -> np.ndarray:
    a2m = require_extra("access2thematrix", "stm", f"reading {path}")
    mtrx = a2m.MtrxData()
    traces, message = mtrx.open(path)
    if not traces:
        raise DataFormatError(
            f"{path}: {message} (a MATRIX result file needs its *_0001.mtrx parameter file "
            "beside it)"
        )
    trace = f"{direction}/up"
    image, message = mtrx.select_image(trace)
    if not hasattr(image, "data") or trace not in traces.values():
        raise DataFormatError(f"{path}: no {trace} trace; it has {list(traces.values())}")
    # access2thematrix mirrors backward lines to run left to right already; up-traces keep
    # the scan order.
    return np.asarray(image.data, np.float64)


def _finite_lines(path: str, scan: np.ndarray) -> np.ndarray:
    """Drops lines holding NaN (a frame stopped before its end stores NaN for the rest)."""
    keep = np.isfinite(scan).all(axis=1)
    if keep.sum() < 2:
        raise DataFormatError(f"{path}: fewer than 2 complete scan lines")
    return scan if keep.all() else scan[keep]


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
    check_direction(direction)
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
