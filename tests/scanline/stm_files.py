"""Small valid instrument files for the tests, written by each format's published layout
(Gwyddion with gwyfile itself; Nanonis .sxm and Omicron MATRIX byte by byte, as their readers
parse them) with every scan line in the order the tip recorded it."""

import struct

import numpy as np


def write_gwy(path, forward, backward) -> None:
    """Gwyddion container: Z forward/backward (as displayed: left to right) and a current."""
    from gwyfile.objects import GwyContainer, GwyDataField

    container = GwyContainer()
    container["/0/data"] = GwyDataField(np.asarray(forward, np.float64))
    container["/0/data/title"] = "Z (Forward)"
    container["/1/data"] = GwyDataField(np.asarray(backward, np.float64))
    container["/1/data/title"] = "Z (Backward)"
    container["/2/data"] = GwyDataField(np.zeros_like(forward, np.float64))
    container["/2/data/title"] = "Current (Forward)"
    container.tofile(str(path))


def write_sxm(path, z_forward, z_backward_as_recorded, *, scan_dir="up", current=None) -> None:
    """Nanonis .sxm: a text header ending in :SCANIT_END:, the \\x1a\\x04 marker, then per
    channel its forward frame and (Direction "both") its backward frame, big-endian float32,
    lines in the order scanned, each line's pixels in the order recorded (a backward line
    right to left). `current`, when given, is a forward-only second channel."""
    lines, pixels = np.shape(z_forward)
    rows = "\t14\tZ\tm\tboth\t-1.000E-9\t0.000E+0\n"
    frames = [z_forward, z_backward_as_recorded]
    if current is not None:
        rows += "\t0\tCurrent\tA\tforward\t1.000E-9\t0.000E+0\n"
        frames.append(current)
    header = (
        ":NANONIS_VERSION:\n2\n:SCANIT_TYPE:\n              FLOAT            MSBFIRST\n"
        ":REC_DATE:\n07.12.2026\n:REC_TIME:\n10:00:00\n:REC_TEMP:\n      290.0000000000\n"
        ":ACQ_TIME:\n       25.6\n"
        f":SCAN_PIXELS:\n       {pixels}       {lines}\n"
        ":SCAN_FILE:\nC:\\data\\scan001.sxm\n"
        ":SCAN_TIME:\n             1.000E-1             1.000E-1\n"
        ":SCAN_RANGE:\n           1.000000E-8           1.000000E-8\n"
        ":SCAN_OFFSET:\n             0.000000E+0         0.000000E+0\n"
        ":SCAN_ANGLE:\n            0.000E+0\n"
        f":SCAN_DIR:\n{scan_dir}\n:BIAS:\n            1.000E+0\n"
        ":COMMENT:\ntest scan\n"
        ":DATA_INFO:\n\tChannel\tName\tUnit\tDirection\tCalibration\tOffset\n"
        f"{rows}\n:SCANIT_END:\n"
    )
    data = b"".join(np.asarray(f, ">f4").tobytes() for f in frames)
    with open(path, "wb") as f:
        f.write(header.encode() + b"\n\n\x1a\x04" + data)


def _utf16(text: str) -> bytes:
    return struct.pack("<L", len(text)) + text.encode("utf-16-le")


def _tagged(tag: str, body: bytes, stamped: bool = True) -> bytes:
    """A MATRIX tagged block: the 4-character tag (stored reversed), the body's length, an
    8-byte time stamp (all but a few tags), the body."""
    return (
        tag[::-1].encode() + struct.pack("<L", len(body)) + (b"\0" * 8 if stamped else b"") + body
    )


def _mtrx_value(value) -> bytes:
    if isinstance(value, bool):
        return b"LOOB" + struct.pack("<L", value)
    if isinstance(value, int):
        return b"GNOL" + struct.pack("<l", value)
    return b"BUOD" + struct.pack("<d", value)


def write_matrix(folder, z_forward, z_backward_as_recorded, *, factor=1e13) -> str:
    """Omicron MATRIX: a parameter file `<chain>_0001.mtrx` (scanner settings, the Z channel
    and its raw-to-metres transfer function, then the name of the result file it describes)
    and the result file `<chain>--1_1.Z_mtrx` whose data are int32 counts, line by line, each
    line's forward pixels then its backward pixels as recorded. Returns the result file."""
    lines, pixels = np.shape(z_forward)
    chain = "default_2026Dec07-100000_STM-STM_Spectroscopy"
    result = f"{chain}--1_1.Z_mtrx"
    scanner = {
        "X_Retrace": True,
        "Y_Retrace": False,
        "Points": pixels,
        "Lines": lines,
        "Width": 1e-8,
        "Height": 1e-8,
        "X_Offset": 0.0,
        "Y_Offset": 0.0,
        "Angle": 0.0,
    }
    props = b"".join(
        _utf16(k) + _utf16("") + b"\0" * 4 + _mtrx_value(v) for k, v in scanner.items()
    )
    eepa = b"\0" * 4 + struct.pack("<L", 1) + _utf16("XYScanner") + struct.pack("<L", 9) + props
    dict_ = (
        b"\0" * 8
        + struct.pack("<L", 0)  # no first table
        + struct.pack("<L", 1)
        + b"\0" * 4
        + struct.pack("<L", 7)  # channel key 7: Z in metres
        + b"\0" * 8
        + _utf16("Z")
        + _utf16("m")
        + struct.pack("<L", 1)
        + b"\x01" * 8
        + b"\0" * 4
        + struct.pack("<L", 7)
        + _utf16("Z")
    )
    xfer = (
        b"\0" * 4
        + struct.pack("<L", 7)
        + _utf16("TFF_Linear1D")
        + _utf16("m")
        + struct.pack("<L", 2)
        + _utf16("Offset")
        + _mtrx_value(0.0)
        + _utf16("Factor")
        + _mtrx_value(float(factor))
    )
    param = b"ONTMATRX0101" + b"".join(
        _tagged(tag, body, stamped)
        for tag, body, stamped in (
            ("EEPA", eepa, True),
            ("DICT", dict_, False),
            ("XFER", xfer, False),
            ("BREF", b"\0" * 4 + _utf16(result), True),
        )
    )
    counts = np.stack(
        [np.asarray(z_forward), np.asarray(z_backward_as_recorded)], axis=1
    )  # [lines, 2, pixels]
    counts = np.rint(counts * factor).astype("<i4").ravel()
    desc = b"\0" * 20 + struct.pack("<ii", 0, counts.size) + b"\0" * 4
    nested = _tagged("DESC", desc, False) + _tagged("DATA", counts.tobytes(), False)
    brick = struct.pack("<Q", 1_765_101_600) + b"\0" * 4 + nested
    header = b"BKLT"[::-1] + struct.pack("<L", len(brick) - 8)  # length excludes the stamp
    with open(f"{folder}/{chain}_0001.mtrx", "wb") as f:
        f.write(param)
    with open(f"{folder}/{result}", "wb") as f:
        f.write(b"ONTMATRX0101" + header + brick)
    return f"{folder}/{result}"
