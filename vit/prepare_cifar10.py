"""Prepare CIFAR-10 for training from a local copy, with no network and no TensorFlow.

    python -m vit.prepare_cifar10 --source cifar-10-binary.tar.gz --data_dir /data/cifar
    python -m vit.prepare_cifar10 --source cifar10_jpeg.tar.gz --data_dir /tmp/cifar10
    python -m vit.prepare_cifar10 --source path/to/images/ --data_dir DIR [--limit 100]
    python -m vit.prepare_cifar10 --source ... --data_dir DIR --format tfds   # needs TensorFlow

Then train with ``python -m vit.main --config.data_dir=DIR``.

Formats (``--format``):
- ``arrays`` (default): ``DIR/cifar10_arrays/`` with ``{train,test}_{images,labels}.npy`` and a
  ``dataset_info.json``; numpy alone reads it (`vit.input_pipeline.read_arrays`), so it works
  on a bare JAX GPU image. Written to a temporary folder and renamed into place, so an
  interrupted run never leaves something that looks prepared.
- ``tfds``: a TFDS ``cifar10`` data_dir written by TFDS's own `Cifar10` builder (same features,
  version, split names and label names as a TFDS download; only where the examples come from
  is replaced), which ``tfds.load("cifar10", data_dir=DIR)`` reads. TFDS encodes images with
  TensorFlow, so this format needs the ``[tf]`` extra.

Accepted sources:
- The BINARY distribution ``cifar-10-binary.tar.gz`` (the archive TFDS itself downloads), or its
  extracted ``cifar-10-batches-bin/`` folder: ``data_batch_{1..5}.bin`` and ``test_batch.bin``,
  records of 1 label byte + 3,072 pixel bytes (R, G, B planes of 32x32, row-major).
- Image folders, as a directory or a .tar/.tar.gz/.tgz of one: ``train/<class>/*.png|jpg`` and
  ``test/<class>/*.png|jpg`` (any leading folders are fine), 32x32 RGB, class folder names the
  CIFAR-10 names (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

Not accepted: ``cifar-10-python.tar.gz``. Its batches are Python pickles, and unpickling a file
can run arbitrary code, so this project never unpickles user files; use the binary archive from
the same page (https://www.cs.toronto.edu/~kriz/cifar.html) instead.

`--limit N` keeps the first N images per class and split (quick checks and tests).
"""

import argparse
import io
import os
import sys
import tarfile
from collections.abc import Callable, Iterator

import numpy as np

from vit.input_pipeline import CLASS_NAMES, IMAGE_SHAPE, SPLITS, write_arrays

_RECORD_BYTES = 1 + 32 * 32 * 3
_BIN_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_BIN_TEST = ("test_batch.bin",)
_PICKLE_BATCHES = ("data_batch_1", "test_batch", "batches.meta")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")

Split = tuple[np.ndarray, np.ndarray]  # images uint8 [N, 32, 32, 3], labels int64 [N]


class SourceError(ValueError):
    """The --source cannot be used; the message says why and what to pass instead."""


def _pickle_refusal(path: str) -> SourceError:
    return SourceError(
        f"{path} is the Python-pickle CIFAR-10 distribution (cifar-10-batches-py). This project "
        "never unpickles user files (unpickling can execute arbitrary code). Download the binary "
        "version of the same data, cifar-10-binary.tar.gz, from "
        "https://www.cs.toronto.edu/~kriz/cifar.html (it is also what TFDS reads) and pass that, "
        "or a folder of train|test/<class>/*.png images."
    )


# ---- reading sources -----------------------------------------------------------------------
def decode_binary_batch(data: bytes, name: str) -> Split:
    """One CIFAR-10 binary batch file -> (images [N, 32, 32, 3] uint8, labels [N] int64)."""
    if len(data) % _RECORD_BYTES:
        raise SourceError(
            f"{name}: {len(data)} bytes is not a whole number of {_RECORD_BYTES}-byte CIFAR-10 "
            "records (1 label byte + 3,072 pixel bytes); the file is truncated or not CIFAR-10"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, _RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise SourceError(
            f"{name}: label byte {labels.max()} is out of range 0..9; is this CIFAR-100 "
            "(cifar-100-binary has two label bytes)?"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW planes -> HWC
    return np.ascontiguousarray(images), labels


def _check_meta(text: str, name: str) -> None:
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if names and names != CLASS_NAMES:
        raise SourceError(f"{name} lists classes {names}; CIFAR-10 expects {CLASS_NAMES}")


def _read_binary_files(files: dict[str, bytes], origin: str) -> dict[str, Split]:
    """`files`: base name -> bytes for the .bin batches (and optionally batches.meta.txt)."""
    missing = [f for f in (*_BIN_TRAIN, *_BIN_TEST) if f not in files]
    if missing:
        raise SourceError(f"{origin}: binary CIFAR-10 batches missing: {', '.join(missing)}")
    if "batches.meta.txt" in files:
        _check_meta(files["batches.meta.txt"].decode("utf-8", "replace"), "batches.meta.txt")
    out = {}
    for split, names in (("train", _BIN_TRAIN), ("test", _BIN_TEST)):
        parts = [decode_binary_batch(files[n], n) for n in names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out


def _decode_image(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise SourceError(f"{name}: cannot decode image ({e})") from e
    if arr.shape != IMAGE_SHAPE:
        raise SourceError(
            f"{name}: image is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 images are 32x32; "
            "resize your images to 32x32 first"
        )
    return arr


def _image_entry(path: str) -> tuple[str, int, str] | None:
    """'.../train/cat/0001.png' -> ("train", 3, path); None for anything else."""
    parts = path.replace("\\", "/").split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
        return None
    split, cls = parts[-3].lower(), parts[-2].lower()
    if split not in SPLITS or parts[-1].startswith("."):
        return None
    if cls not in CLASS_NAMES:
        raise SourceError(
            f"{path}: class folder '{parts[-2]}' is not a CIFAR-10 class; expected one of "
            f"{', '.join(CLASS_NAMES)}"
        )
    return split, CLASS_NAMES.index(cls), path


def _assemble_images(
    entries: list[tuple[str, int, str]],
    read: Callable[[str], bytes],
    origin: str,
    limit: int | None,
) -> dict[str, Split]:
    """Sorted (split, class, name) order, at most `limit` per class and split."""
    out = {}
    for split in SPLITS:
        images, labels = [], []
        for label in range(len(CLASS_NAMES)):
            paths = sorted(p for s, c, p in entries if s == split and c == label)
            for p in paths[:limit]:
                images.append(_decode_image(read(p), p))
                labels.append(label)
        if not images:
            raise SourceError(
                f"{origin}: no {split}/<class>/*.png|jpg images found; expected folders "
                f"{split}/airplane/, {split}/automobile/, ..."
            )
        out[split] = (np.stack(images), np.asarray(labels, np.int64))
    return out


def _limit_binary(data: dict[str, Split], limit: int | None) -> dict[str, Split]:
    if limit is None:
        return data
    out = {}
    for split, (x, y) in data.items():
        keep = np.concatenate([np.flatnonzero(y == c)[:limit] for c in range(len(CLASS_NAMES))])
        keep.sort()
        out[split] = (x[keep], y[keep])
    return out


def _from_tar(path: str, limit: int | None) -> dict[str, Split]:
    with tarfile.open(path, "r:*") as tar:
        # One sequential pass (seeking backwards in a .gz is quadratic); keep what we need.
        binaries: dict[str, bytes] = {}
        images: dict[str, bytes] = {}
        entries = []
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            if base in _PICKLE_BATCHES:  # extension-less batch files: the pickle format
                raise _pickle_refusal(path)
            if base in (*_BIN_TRAIN, *_BIN_TEST, "batches.meta.txt"):
                binaries[base] = tar.extractfile(member).read()
                continue
            entry = _image_entry(member.name)
            if entry is not None:
                entries.append(entry)
                images[member.name] = tar.extractfile(member).read()
    if binaries:
        return _limit_binary(_read_binary_files(binaries, path), limit)
    if entries:
        return _assemble_images(entries, images.__getitem__, path, limit)
    raise SourceError(
        f"{path} holds neither CIFAR-10 binary batches (cifar-10-batches-bin/*.bin) nor "
        "train|test/<class>/ image folders"
    )


def _from_dir(path: str, limit: int | None) -> dict[str, Split]:
    binaries, entries = {}, []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            if f in _PICKLE_BATCHES:  # extension-less batch files: the pickle format
                raise _pickle_refusal(path)
            if f in (*_BIN_TRAIN, *_BIN_TEST, "batches.meta.txt"):
                with open(full, "rb") as fh:
                    binaries[f] = fh.read()
                continue
            entry = _image_entry(os.path.relpath(full, path))
            if entry is not None:
                entries.append((entry[0], entry[1], full))
    if binaries:
        return _limit_binary(_read_binary_files(binaries, path), limit)
    if entries:

        def read(p):
            with open(p, "rb") as fh:
                return fh.read()

        return _assemble_images(entries, read, path, limit)
    raise SourceError(
        f"{path} holds neither CIFAR-10 binary batches (*.bin) nor train|test/<class>/ images"
    )


def read_source(path: str, limit: int | None = None) -> dict[str, Split]:
    """Reads any accepted source into {"train": (images, labels), "test": (images, labels)}."""
    if not os.path.exists(path):
        raise SourceError(f"--source {path} does not exist")
    if "cifar-10-python" in os.path.basename(path):
        raise _pickle_refusal(path)
    if os.path.isdir(path):
        return _from_dir(path, limit)
    if path.lower().endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(path):
        return _from_tar(path, limit)
    raise SourceError(
        f"--source {path} is neither a folder nor a tar archive; pass cifar-10-binary.tar.gz or "
        "a folder (or .tar.gz) of train|test/<class>/*.png images"
    )


# ---- writing the TFDS data_dir ---------------------------------------------------------------
def write_tfds(data: dict[str, Split], data_dir: str, *, file_format: str = "tfrecord") -> str:
    """Writes `data` as TFDS's `cifar10` into `data_dir` in TFDS's `file_format` ("tfrecord",
    which tfds.load reads, or "array_record", which tfds.data_source reads without
    TensorFlow); returns the dataset's version folder."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise SourceError(
            "--format tfds needs TensorFlow (TFDS encodes images with it) and it is not "
            "installed; install it with pip install -e '.[tf]', or use the default "
            "--format arrays, which vit.main reads without TensorFlow"
        )
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification.cifar import Cifar10

    class OfflineCifar10(Cifar10, skip_registration=True):
        """TFDS's own CIFAR-10 builder, fed from memory instead of the download."""

        name = "cifar10"  # same on-disk name/version as the registered builder
        # Builders outside the tfds package resolve their source path through
        # `importlib_resources`, which tfds needs only for download checksums; we download
        # nothing, so skip it (a class attribute overrides tfds' classproperty).
        code_path = None

        def _split_generators(self, dl_manager):
            del dl_manager
            self.info.features["label"].names = list(CLASS_NAMES)
            return {split: self._examples(split) for split in SPLITS}

        def _examples(self, split):
            images, labels = data[split]
            for i in range(len(labels)):
                # Same ids and keys as TFDS's generator ("train_00042").
                yield i, {"id": f"{split}_{i:05d}", "image": images[i], "label": int(labels[i])}

    builder = OfflineCifar10(data_dir=os.path.abspath(data_dir), file_format=file_format)
    if builder.is_prepared():
        raise FileExistsError(
            f"{builder.data_dir} already holds a prepared cifar10; delete it or choose another "
            "--data_dir"
        )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    return builder.data_dir


def _iter_counts(data: dict[str, Split]) -> Iterator[str]:
    for split, (_, y) in data.items():
        counts = np.bincount(y, minlength=len(CLASS_NAMES))
        yield f"{split}: {len(y)} images, per class {counts.tolist()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Prepare CIFAR-10 offline from a local copy (no network, no TensorFlow).",
        epilog="Then: python -m vit.main --config=configs/vit.py --config.data_dir=DATA_DIR",
    )
    ap.add_argument("--source", required=True, help="cifar-10-binary.tar.gz, or image folders")
    ap.add_argument("--data_dir", required=True, help="data_dir to create (or add to)")
    ap.add_argument(
        "--format",
        default="arrays",
        choices=("arrays", "tfds"),
        help="arrays: .npy files numpy reads (default); tfds: a TFDS data_dir (needs TensorFlow)",
    )
    ap.add_argument("--limit", type=int, default=None, help="first N images per class and split")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit <= 0:
        ap.error(f"--limit must be positive, got {args.limit}")
    try:
        data = read_source(args.source, args.limit)
        for line in _iter_counts(data):
            print(line)
        if args.format == "tfds":
            where = write_tfds(data, args.data_dir)
        else:
            where = write_arrays(data, args.data_dir, source=os.path.abspath(args.source))
    except (SourceError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {where}; train with --config.data_dir={os.path.abspath(args.data_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
