"""NPZ and MATLAB v7.3 / HDF5 loaders on small generated files, including bad files."""

import h5py
import numpy as np
import pytest

from scanline import loaders


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_npz_roundtrip(tmp_path, tiny_synth):
    path = _write_npz(tmp_path / "ok.npz", **tiny_synth)
    data = loaders.load_npz(path, line_length=32)
    np.testing.assert_array_equal(data.images, tiny_synth["images"])
    np.testing.assert_array_equal(data.labels, tiny_synth["labels"])
    np.testing.assert_array_equal(data.groups, tiny_synth["groups"])
    assert data.class_names == tuple(tiny_synth["class_names"])


def test_npz_without_groups_gets_one_group_per_image(tmp_path):
    images = np.zeros((5, 8, 16), np.float64)
    path = _write_npz(tmp_path / "g.npz", images=images, labels=np.array([0, 1, 2, 1, 0]))
    data = loaders.load_npz(path, line_length=16)
    assert data.images.dtype == np.float32
    np.testing.assert_array_equal(data.groups, np.arange(5))
    assert data.class_names == ("class_0", "class_1", "class_2")  # K from the labels


def test_npz_wrong_shape_names_key_and_shapes(tmp_path):
    path = _write_npz(tmp_path / "bad.npz", images=np.zeros((4, 128, 64)), labels=np.zeros(4, int))
    with pytest.raises(
        loaders.DataFormatError,
        match=r"'images' has shape \[4, 128, 64\], "
        r"expected \[N, lines, 128\]",
    ):
        loaders.load_npz(path)
    path = _write_npz(tmp_path / "bad2.npz", images=np.zeros((4, 8, 128)), labels=np.zeros(3, int))
    with pytest.raises(loaders.DataFormatError, match=r"'labels' has shape \[3\], expected \[4\]"):
        loaders.load_npz(path)


def test_npz_missing_key(tmp_path):
    path = _write_npz(tmp_path / "nolabels.npz", images=np.zeros((2, 8, 128)))
    with pytest.raises(loaders.DataFormatError, match=r"missing key 'labels'.*found keys"):
        loaders.load_npz(path)


def test_npz_pickled_arrays_are_refused(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[:] = [np.zeros(3), np.zeros(4)]
    path = _write_npz(tmp_path / "pickled.npz", images=obj, labels=np.zeros(2, int))
    with pytest.raises(loaders.DataFormatError, match="unpickl"):
        loaders.load_npz(path)


def _one_hot_lines(labels, lines, k):
    per_line = np.repeat(labels, lines)
    return np.eye(k, dtype=np.float64)[per_line].T  # [K, N*lines]


def _write_matlab_v73(path, x_matlab, y_matlab):
    """A file laid out like MATLAB's -v7.3 save: HDF5 with a 512-byte header user block and the
    arrays stored transposed (MATLAB is column-major)."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f["x_raw"] = x_matlab.T
        f["y"] = y_matlab.T
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


def test_mat_v73_and_plain_hdf5_agree(tmp_path):
    rng = np.random.default_rng(0)
    n, lines, length = 3, 6, 16
    images = rng.normal(size=(n, lines, length)).astype(np.float32)
    labels = np.array([2, 0, 1])
    x = images.reshape(n * lines, length).T  # MATLAB view [line_length, N*lines]
    y = _one_hot_lines(labels, lines, 3)
    _write_matlab_v73(tmp_path / "a.mat", x, y)
    with h5py.File(tmp_path / "b.h5", "w") as f:  # plain HDF5 in the documented orientation
        f["x_raw"], f["y"] = x, y
    for name in ("a.mat", "b.h5"):
        data = loaders.load_file(str(tmp_path / name), line_length=length, lines_per_image=lines)
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels)
        assert data.num_classes == 3


def test_mat_errors(tmp_path):
    n, lines, length = 2, 4, 16
    x = np.zeros((length, n * lines))
    y = _one_hot_lines(np.array([0, 1]), lines, 2)
    with h5py.File(tmp_path / "missing.h5", "w") as f:
        f["x_raw"] = x
    with pytest.raises(loaders.DataFormatError, match="missing key 'y'"):
        loaders.load_mat(str(tmp_path / "missing.h5"), line_length=length, lines_per_image=lines)
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f["x_raw"], f["y"] = np.zeros((20, 7)), y
    with pytest.raises(
        loaders.DataFormatError,
        match=r"'x_raw' has shape \[20, 7\].*expected "
        r"\[16, N\*4\]",
    ):
        loaders.load_mat(str(tmp_path / "shape.h5"), line_length=length, lines_per_image=lines)
    mixed = y.copy()
    mixed[:, 1] = [0, 1]  # one line of image 0 labelled class 1
    with h5py.File(tmp_path / "mixed.h5", "w") as f:
        f["x_raw"], f["y"] = x, mixed
    with pytest.raises(loaders.DataFormatError, match="different labels"):
        loaders.load_mat(str(tmp_path / "mixed.h5"), line_length=length, lines_per_image=lines)
    data = loaders.load_mat(
        str(tmp_path / "mixed.h5"),
        line_length=length,
        lines_per_image=lines,
        line_label_rule="majority",
    )
    np.testing.assert_array_equal(data.labels, [0, 1])


def test_unknown_extension(tmp_path):
    with pytest.raises(loaders.DataFormatError, match="extension"):
        loaders.load_file(str(tmp_path / "x.csv"))


def test_nan_pixels_and_phantom_classes_are_refused_by_name(tmp_path):
    images = np.zeros((6, 8, 16), np.float32)
    images[4, 2, 3] = np.nan
    images[5, 0, :2] = np.inf
    np.savez(tmp_path / "nan.npz", images=images, labels=np.array([0, 1, 2, 3, 0, 1]))
    with pytest.raises(loaders.DataFormatError, match=r"3 pixel values are NaN or infinite, in 2 "):
        loaders.load_npz(str(tmp_path / "nan.npz"), line_length=16)
    images = np.zeros((6, 8, 16), np.float32)
    np.savez(tmp_path / "ids.npz", images=images, labels=np.array([0, 1, 2, 3, 0, 255]))
    with pytest.raises(loaders.DataFormatError, match=r"labels run to 255 but only 5 of those 256"):
        loaders.load_npz(str(tmp_path / "ids.npz"), line_length=16)
    # Named classes make a sparse numbering deliberate: 256 names, 5 used, accepted.
    names = tuple(f"c{k}" for k in range(256))
    assert loaders.load_npz(str(tmp_path / "ids.npz"), line_length=16, class_names=names)
