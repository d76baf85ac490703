"""Scans from a microscope: files written in the test (Gwyddion with gwyfile itself, Nanonis
and MATRIX by their published layouts, images with Pillow) and a CSV of labels and sessions.
Training on them and triage: test_microscope_recipe.py (the README's commands)."""

import csv

import numpy as np
import pytest
from PIL import Image

from scanline import instruments
from scanline.loaders import DataFormatError
from tests.scanline.stm_files import write_gwy as _write_gwy
from tests.scanline.stm_files import write_matrix, write_sxm

SIZE = 32

# A scan whose every value says where it is: line l, pixel p (left to right) -> l + p / 100 Å.
LINES, PIXELS = 6, 8
SCAN = (np.arange(LINES)[:, None] + np.arange(PIXELS)[None, :] / 100) * 1e-10


def test_gwyddion_channel_and_direction_keep_the_scan_lines_in_order(tmp_path):
    forward = np.arange(6 * 8, dtype=np.float64).reshape(6, 8) * 1e-10  # heights in metres
    _write_gwy(tmp_path / "a.gwy", forward, -forward)
    np.testing.assert_array_equal(
        instruments.read_scan(str(tmp_path / "a.gwy"), channel="Z"), forward
    )
    back = instruments.read_scan(str(tmp_path / "a.gwy"), channel="z", direction="backward")
    np.testing.assert_array_equal(back, -forward)  # row 0 is the first scan line
    with pytest.raises(DataFormatError, match=r"no channel titled like 'Height'; it has \["):
        instruments.read_scan(str(tmp_path / "a.gwy"), channel="Height")


def test_grey_images_of_8_and_16_bits_and_colour_refused(tmp_path):
    heights = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    Image.fromarray(heights).save(tmp_path / "h16.png")
    np.testing.assert_array_equal(instruments.read_scan(str(tmp_path / "h16.png")), heights)
    Image.fromarray((heights // 256).astype(np.uint8)).save(tmp_path / "h8.tif")
    assert instruments.read_scan(str(tmp_path / "h8.tif")).max() == heights.max() // 256
    Image.new("RGB", (4, 4)).save(tmp_path / "colour.png")
    with pytest.raises(DataFormatError, match="a colour image"):
        instruments.read_scan(str(tmp_path / "colour.png"))


def test_nanonis_sxm_lines_in_scan_order_and_backward_lines_mirrored(tmp_path):
    back_recorded = -SCAN[:, ::-1]  # the tip records a backward line right to left
    current = np.full((LINES, PIXELS), 1e-10)
    path = str(tmp_path / "scan001.sxm")
    write_sxm(path, SCAN, back_recorded, current=current)  # Current: forward only
    np.testing.assert_allclose(instruments.read_scan(path), SCAN, rtol=1e-6)  # "" = Z
    back = instruments.read_scan(path, channel="z", direction="backward")
    np.testing.assert_allclose(back, -SCAN, rtol=1e-6)  # x axis shared with forward
    np.testing.assert_allclose(instruments.read_scan(path, channel="Current"), current)
    with pytest.raises(DataFormatError, match=r"'Current' was saved forward only"):
        instruments.read_scan(path, channel="Current", direction="backward")
    with pytest.raises(DataFormatError, match=r"no channel 'Height'; it has \['Z', 'Current'\]"):
        instruments.read_scan(path, channel="Height")
    # A frame stopped after 4 lines: Nanonis stores NaN for the lines never scanned.
    stopped = SCAN.copy()
    stopped[4:] = np.nan
    write_sxm(path, stopped, back_recorded)
    np.testing.assert_allclose(instruments.read_scan(path), SCAN[:4], rtol=1e-6)
    (tmp_path / "bad.sxm").write_bytes(b":NANONIS_VERSION:\n2\n")
    with pytest.raises(DataFormatError, match="not a readable Nanonis scan"):
        instruments.read_scan(str(tmp_path / "bad.sxm"))


def test_omicron_matrix_trace_up_forward_and_backward(tmp_path):
    path = write_matrix(str(tmp_path), SCAN, -SCAN[:, ::-1])
    assert path.endswith("--1_1.Z_mtrx")
    np.testing.assert_allclose(instruments.read_scan(path), SCAN, rtol=0, atol=1e-15)
    back = instruments.read_scan(path, direction="backward")
    np.testing.assert_allclose(back, -SCAN, rtol=0, atol=1e-15)  # counts of 1e-13 m, exact
    assert instruments.is_scan_file(path) and not instruments.is_scan_file(path, channel="I")
    assert not instruments.is_scan_file(str(tmp_path / "default_0001.mtrx"))  # parameters
    for f in tmp_path.glob("*_0001.mtrx"):
        f.unlink()
    with pytest.raises(DataFormatError, match=r"needs its \*_0001\.mtrx parameter file"):
        instruments.read_scan(path)


def _folder(tmp_path, broken=True):
    """12 scans of 3 sessions, each session with every class; one file unreadable."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        label = ("good", "double", "blunt")[i % 3]
        session = f"day{i // 4 + 1}"
        scan = rng.normal(size=(SIZE + 8 * (i % 2), SIZE)) + (i % 3)
        if i % 2:
            _write_gwy(tmp_path / f"s{i}.gwy", scan, scan[:, ::-1])
            name = f"s{i}.gwy"
        else:
            Image.fromarray((scan * 1000 + 30000).astype(np.uint16)).save(tmp_path / f"s{i}.png")
            name = f"s{i}.png"
        rows.append({"file": name, "label": label, "session": session})
    if broken:
        (tmp_path / "broken.gwy").write_bytes(b"not a gwyddion file")
        rows.append({"file": "broken.gwy", "label": "good", "session": "day1"})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file", "label", "session"])
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


def test_a_labelled_folder_is_scan_data_with_sessions(tmp_path, caplog):
    folder = _folder(tmp_path)
    data = instruments.load_labelled_folder(
        str(folder), str(folder / "labels.csv"), line_length=SIZE, channel="Z"
    )
    assert data.images.shape == (12, SIZE, SIZE)  # 40-line scans resampled, broken one skipped
    assert data.class_names == ("blunt", "double", "good")
    assert data.labels.tolist()[:3] == [2, 1, 0]
    assert data.group_names == ("day1", "day2", "day3") and data.groups.tolist()[4] == 1
    assert any(
        "1 scans skipped: broken.gwy" in r.getMessage()
        and "not a readable Gwyddion" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(FileNotFoundError, match=r"labels_csv 'nope\.csv' does not exist"):
        instruments.load_labelled_folder(str(folder), "nope.csv")


def test_known_after_is_the_first_read_out_from_which_the_prediction_stays():
    from scanline.predict import known_after

    # 3 scans, read-outs after 16/32/48/64 lines, 2 classes.
    p = np.zeros((3, 4, 2))
    p[0, :, 1] = 1  # class 1 from the first read-out on
    p[1, :, 0], p[1, 2:, 0], p[1, 2:, 1] = 1, 0, 1  # changes to class 1 at 48 lines
    p[2, :, 0], p[2, 1, 0], p[2, 1, 1] = 1, 0, 1  # flips at 32, back from 48 on
    np.testing.assert_array_equal(known_after(p, np.array([16, 32, 48, 64])), [16, 48, 48])


def test_without_the_stm_extra_the_error_names_it(tmp_path, monkeypatch):
    import sys

    from common.environment import MissingExtraError

    _write_gwy(tmp_path / "a.gwy", np.zeros((4, 4)), np.zeros((4, 4)))
    monkeypatch.setitem(sys.modules, "gwyfile", None)  # not installed
    with pytest.raises(MissingExtraError, match=r"needs gwyfile: pip install -e '\.\[stm\]'"):
        instruments.read_scan(str(tmp_path / "a.gwy"))


def test_a_wrong_direction_is_one_error_not_every_file_skipped(tmp_path):
    folder = _folder(tmp_path, broken=False)
    with pytest.raises(ValueError, match=r"config\.data\.direction must be forward\|backward"):
        instruments.load_labelled_folder(
            str(folder), str(folder / "labels.csv"), line_length=SIZE, direction="backwards"
        )
