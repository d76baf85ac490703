"""Offline CIFAR-10 preparation: a generated binary archive and image folders become a data_dir
that `load_cifar10` reads back exactly, in the numpy format (no TensorFlow) and as TFDS writes
it (TFRecord through tfds.load, array_record through tfds.data_source); pickles are refused."""

import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from tests.vit.cifar_files import add_bytes, random_split, same_examples
from vit import input_pipeline, prepare_cifar10
from vit.input_pipeline import CLASS_NAMES


def test_binary_archive_round_trips_through_the_arrays_format(binary_data_dir, tmp_path):
    data_dir, expected = binary_data_dir
    loaded = input_pipeline.load_cifar10(str(data_dir), download=False)
    for split in ("train", "test"):
        same_examples(loaded[split], expected[split])
    folder = data_dir / input_pipeline.ARRAYS_DIR
    assert sorted(os.listdir(folder)) == [
        "dataset_info.json",
        "test_images.npy",
        "test_labels.npy",
        "train_images.npy",
        "train_labels.npy",
    ]
    # Preparing the same data_dir again is refused instead of silently mixing datasets.
    with pytest.raises(FileExistsError, match="already holds"):
        input_pipeline.write_arrays(expected, str(data_dir))

    # A damaged copy (labels cut short) is named, not trained on.
    damaged = tmp_path / "damaged"
    input_pipeline.write_arrays(expected, str(damaged))
    labels = damaged / input_pipeline.ARRAYS_DIR / "test_labels.npy"
    np.save(labels, np.load(labels)[:-1])
    with pytest.raises(input_pipeline.DatasetUnavailableError, match="damaged"):
        input_pipeline.load_cifar10(str(damaged), download=False)
    (damaged / input_pipeline.ARRAYS_DIR / "dataset_info.json").write_text("{not json")
    with pytest.raises(input_pipeline.DatasetUnavailableError, match="unreadable"):
        input_pipeline.load_cifar10(str(damaged), download=False)


@pytest.mark.parametrize("file_format", ["tfrecord", "array_record"])
def test_tfds_prepared_data_dirs_are_read_in_either_format(tmp_path, file_format):
    pytest.importorskip("tensorflow", reason="TFDS writes images with TensorFlow ([tf] extra)")
    data = {"train": random_split(30, 3), "test": random_split(10, 4)}
    where = prepare_cifar10.write_tfds(data, str(tmp_path), file_format=file_format)
    assert os.path.isfile(os.path.join(where, "dataset_info.json"))
    assert any(file_format in f for f in os.listdir(where))
    loaded = input_pipeline.load_cifar10(str(tmp_path), download=False)
    for split in data:
        same_examples(loaded[split], data[split])
    with pytest.raises(FileExistsError, match="already holds"):
        prepare_cifar10.write_tfds(data, str(tmp_path), file_format=file_format)


def write_image_folders(root, split_data: dict, fmt: str = "png") -> None:
    for split, (images, labels) in split_data.items():
        for i, (img, lab) in enumerate(zip(images, labels)):
            folder = root / split / CLASS_NAMES[lab]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:04d}.{fmt}")


def test_image_folder_and_its_tarball_with_limit(tmp_path):
    data = {"train": random_split(40, 10), "test": random_split(20, 11)}
    write_image_folders(tmp_path / "export" / "cifar10", data)
    (tmp_path / "export" / "cifar10" / "README.txt").write_text("ignored")

    prepare_cifar10.main(
        ["--source", str(tmp_path / "export"), "--data_dir", str(tmp_path / "from_dir")]
    )
    loaded = input_pipeline.load_cifar10(str(tmp_path / "from_dir"), download=False)
    for split in data:
        same_examples(loaded[split], data[split])

    tarball = tmp_path / "images.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "export", arcname="export")
    limited = prepare_cifar10.read_source(str(tarball), limit=2)
    for split, (x, y) in limited.items():
        assert np.bincount(y, minlength=10).tolist() == [2] * 10
        # --limit keeps the first files by name: 0000.png, 0010.png, ... for class 0.
        want_x, want_y = data[split]
        first = [np.flatnonzero(want_y == c)[:2] for c in range(10)]
        np.testing.assert_array_equal(x, want_x[np.concatenate(first)])


def test_pickle_archive_is_refused(tmp_path, capsys):
    by_name = tmp_path / "cifar-10-python.tar.gz"
    by_name.write_bytes(b"never opened")
    with pytest.raises(prepare_cifar10.SourceError, match="never unpickles"):
        prepare_cifar10.read_source(str(by_name))

    renamed = tmp_path / "my_cifar.tar.gz"
    with tarfile.open(renamed, "w:gz") as tar:  # the pickle layout, whatever its name
        add_bytes(tar, "cifar-10-batches-py/data_batch_1", b"\x80\x04not read")
    rc = prepare_cifar10.main(["--source", str(renamed), "--data_dir", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cifar-10-binary.tar.gz" in err and "never unpickles" in err
    assert not (tmp_path / "out").exists()


def test_bad_sources_have_clear_errors(tmp_path):
    with pytest.raises(prepare_cifar10.SourceError, match="does not exist"):
        prepare_cifar10.read_source(str(tmp_path / "missing.tar.gz"))
    (tmp_path / "big" / "train" / "cat").mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "big" / "train" / "cat" / "a.png")
    with pytest.raises(prepare_cifar10.SourceError, match="resize"):
        prepare_cifar10.read_source(str(tmp_path / "big"))
    (tmp_path / "odd" / "train" / "kitten").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "odd" / "train" / "kitten" / "a.png")
    with pytest.raises(prepare_cifar10.SourceError, match="not a CIFAR-10 class"):
        prepare_cifar10.read_source(str(tmp_path / "odd"))
    with pytest.raises(prepare_cifar10.SourceError, match="not a whole number"):
        prepare_cifar10.decode_binary_batch(b"\x00" * 3000, "data_batch_1.bin")


def test_missing_dataset_fails_fast_naming_both_routes(tmp_path):
    with pytest.raises(input_pipeline.DatasetUnavailableError) as e:
        input_pipeline.load_cifar10(str(tmp_path / "empty"), download=False)
    message = str(e.value)
    assert "python -m vit.prepare_cifar10" in message and "network" in message


@pytest.mark.realdata
def test_shared_jpeg_copy_prepares_real_cifar10(shared_dir, tmp_path):
    source = shared_dir / "data" / "cifar10_jpeg.tar.gz"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    data = prepare_cifar10.read_source(str(source), limit=3)
    for split, (x, y) in data.items():
        assert x.shape == (30, 32, 32, 3) and np.bincount(y).tolist() == [3] * 10, split
        # Natural images, not noise: neighbouring pixels are strongly correlated.
        f = x.astype(np.float64)
        corr = np.corrcoef(f[:, :, :-1].ravel(), f[:, :, 1:].ravel())[0, 1]
        assert corr > 0.8, corr
    rc = prepare_cifar10.main(
        ["--source", str(source), "--data_dir", str(tmp_path), "--limit", "3"]
    )
    assert rc == 0
    loaded = input_pipeline.load_cifar10(str(tmp_path), download=False)
    same_examples(loaded["test"], data["test"])


def test_a_data_dir_that_does_not_exist_is_said_to_be_missing(tmp_path):
    from vit import input_pipeline

    missing = str(tmp_path / "cifar")
    with pytest.raises(input_pipeline.DatasetUnavailableError) as e:
        input_pipeline.load_cifar10(missing, download=False)
    assert f"config.data_dir={missing} (that folder does not exist)" in str(e.value)
    assert f"python -m vit.prepare_cifar10 --source PATH --data_dir {missing}" in str(e.value)
