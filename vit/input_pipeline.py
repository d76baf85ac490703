"""CIFAR-10 for the ViT family: loaded once into memory, served by the shared array sources.

Called by `vit.task.VitTask.datasets`. The whole dataset (50,000 + 10,000 images of 32x32x3
uint8, ~180 MB) is read once into numpy arrays; `common.data.ArraySource` then serves
resumable, per-process training batches and `ArrayEvalSource` padded + masked eval batches.
Images stay uint8 until they are on the device: augmentation and normalisation happen inside
the jitted step (`vit.augment`), so the host does nothing per step but slice arrays.

Where the images come from, first found wins (`config.data_dir`, else TFDS's default
`$TFDS_DATA_DIR` or ~/tensorflow_datasets):
1. ``DATA_DIR/cifar10_arrays/``: what ``python -m vit.prepare_cifar10`` writes, plain ``.npy``
   arrays read with numpy alone (no TensorFlow, no TFDS; under a second for all 60,000).
2. A TFDS-prepared ``cifar10`` in DATA_DIR. In ``array_record`` format it is read through
   ``tfds.data_source`` without TensorFlow; in TFDS's default TFRecord format only TensorFlow
   reads it (the ``[tf]`` extra).
3. A TFDS download (needs network and TensorFlow), when ``config.download`` allows it.
Anything else fails in one message naming these routes.

Splits (`config.val_split`):
- "holdout" (default): train on the first 45,000 training images, validate every epoch on the
  last `config.val_examples` (5,000); the test set is evaluated once, at the end, with the best
  checkpoint (`config.final_eval_splits = ("test",)`).
- "test": the seed's behaviour: train on all 50,000 and validate on the test set ("val" is then
  the test set, so `final/test/*` is no longer an unbiased estimate).

TFDS split metadata may be empty (e.g. under `tfds.testing.mock_data`), so sizes always come
from the loaded arrays, never from `info.splits`.
"""

import importlib.util
import json
import logging
import os
import socket

import ml_collections
import numpy as np

from common.data import ArrayEvalSource, ArraySource
from common.task import Datasets

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)  # CIFAR-10 label order (batches.meta.txt)
IMAGE_SHAPE = (32, 32, 3)
SPLITS = ("train", "test")
ARRAYS_DIR = "cifar10_arrays"  # under a data_dir: {split}_images.npy, {split}_labels.npy
ARRAYS_INFO = "dataset_info.json"
_DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)  # where TFDS fetches cifar-10-binary.tar.gz
_READ_CHUNK = 10_000  # examples per read while loading a TFDS split into memory

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images [N,32,32,3] uint8, labels)


class DatasetUnavailableError(RuntimeError):
    """CIFAR-10 cannot be read from data_dir nor downloaded; the message says what to do."""


def default_data_dir() -> str:
    """TFDS's own default, so a TFDS user's existing data_dir is found without a flag."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _missing_message(data_dir: str | None, reason: str) -> str:
    where = data_dir or f"the default data_dir ({default_data_dir()})"
    if data_dir and not os.path.exists(os.path.expanduser(data_dir)):
        where = f"config.data_dir={data_dir} (that folder does not exist)"
    # Prepared into the default folder, the same command then works unchanged (make train).
    target = data_dir or default_data_dir()
    then = f"train with --config.data_dir={target}" if data_dir else "rerun the same command"
    return (
        f"CIFAR-10 is not prepared in {where} and cannot be downloaded ({reason}). Two ways to "
        "get it:\n"
        "  1. offline, from a local copy (cifar-10-binary.tar.gz, or a folder/.tar.gz of "
        "train|test/<class>/*.png|jpg), no TensorFlow needed:\n"
        f"       python -m vit.prepare_cifar10 --source PATH --data_dir {target}\n"
        "  2. with network access and TensorFlow (pip install -e '.[tf]'): run once with "
        f"--config.data_dir={target} (TFDS downloads ~160 MB and prepares it), or copy a "
        "prepared data_dir from a machine that has network.\n"
        f"Then {then}."
    )


def _network_reachable(timeout_s: float = 5.0) -> bool:
    """Cheap probe so an offline machine fails in seconds, not after download retries."""
    try:
        with socket.create_connection(_DOWNLOAD_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---- the three readers -----------------------------------------------------------------------
def write_arrays(data: Arrays, data_dir: str, *, source: str = "") -> str:
    """Writes `data` as DATA_DIR/cifar10_arrays/ (atomically: a temp folder renamed into place,
    so an interrupted write never looks prepared); refuses to replace an existing one."""
    final = os.path.join(os.path.abspath(data_dir), ARRAYS_DIR)
    if os.path.exists(final):
        raise FileExistsError(
            f"{final} already holds a prepared CIFAR-10; delete it or choose another --data_dir"
        )
    tmp = f"{final}.partial-{os.getpid()}"
    os.makedirs(tmp)
    for split, (images, labels) in data.items():
        np.save(os.path.join(tmp, f"{split}_images.npy"), np.asarray(images, np.uint8))
        np.save(os.path.join(tmp, f"{split}_labels.npy"), np.asarray(labels, np.int32))
    info = {
        "name": "cifar10",
        "classes": list(CLASS_NAMES),
        "splits": {split: len(labels) for split, (_, labels) in data.items()},
        "source": source,
    }
    with open(os.path.join(tmp, ARRAYS_INFO), "w") as f:
        json.dump(info, f, indent=2)
    os.rename(tmp, final)
    return final


def read_arrays(folder: str) -> Arrays:
    """Reads what `write_arrays` wrote; numpy only, never unpickling (allow_pickle=False)."""
    try:
        with open(os.path.join(folder, ARRAYS_INFO)) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        info = {"error": f"{type(e).__name__}: {e}"}
    if not isinstance(info, dict) or not isinstance(info.get("splits"), dict):
        raise DatasetUnavailableError(
            f"{folder}/{ARRAYS_INFO} is unreadable or not what vit.prepare_cifar10 writes "
            f"({info.get('error', 'no splits') if isinstance(info, dict) else info!r}); "
            "rebuild the folder with python -m vit.prepare_cifar10"
        )
    if tuple(info.get("classes", ())) != CLASS_NAMES:
        raise DatasetUnavailableError(
            f"{folder} lists classes {info.get('classes')}, not CIFAR-10's; rebuild it with "
            "python -m vit.prepare_cifar10"
        )
    out = {}
    for split in SPLITS:
        try:
            images = np.load(os.path.join(folder, f"{split}_images.npy"), allow_pickle=False)
            labels = np.load(os.path.join(folder, f"{split}_labels.npy"), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetUnavailableError(
                f"{folder}: cannot read the {split} arrays ({e}); rebuild it with "
                "python -m vit.prepare_cifar10"
            ) from e
        if len(labels) != info["splits"].get(split) or len(images) != len(labels):
            raise DatasetUnavailableError(
                f"{folder}: {split} holds {len(images)} images and {len(labels)} labels, its "
                f"dataset_info.json says {info['splits'].get(split)}; the folder is damaged, "
                "rebuild it with python -m vit.prepare_cifar10"
            )
        out[split] = (images, labels)
    return out


def _read_data_source(data_dir: str | None) -> Arrays:
    """TFDS array_record through `tfds.data_source`: random access, no TensorFlow."""
    import tensorflow_datasets as tfds

    source = tfds.data_source("cifar10", data_dir=data_dir)
    out = {}
    for split in SPLITS:
        records = source[split]
        images, labels = [], []
        for start in range(0, len(records), _READ_CHUNK):
            chunk = records.__getitems__(range(start, min(start + _READ_CHUNK, len(records))))
            images += [r["image"] for r in chunk]
            labels += [r["label"] for r in chunk]
        out[split] = (
            np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8),
            np.asarray(labels, np.int32),
        )
    return out


def _read_tfrecord(data_dir: str | None) -> Arrays:
    """TFDS's default TFRecord format: only tf.data reads it."""
    import tensorflow_datasets as tfds

    from common.parallel import hide_gpus_from_tensorflow

    hide_gpus_from_tensorflow()
    splits = tfds.load(
        "cifar10",
        data_dir=data_dir,
        split=list(SPLITS),
        as_supervised=True,  # (image, label): skips decoding the string ids
        # Chunks, not batch_size=-1: that needs split sizes, which mock_data leaves empty.
        batch_size=_READ_CHUNK,
        shuffle_files=False,
        download=False,
    )
    out = {}
    for name, split in zip(SPLITS, splits):
        chunks = list(tfds.as_numpy(split))
        out[name] = (
            np.concatenate([c[0] for c in chunks])
            if chunks
            else np.zeros((0, *IMAGE_SHAPE), np.uint8),
            np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0,), np.int32),
        )
    return out


def _read_tfds(data_dir: str | None) -> Arrays | None:
    """A TFDS-prepared cifar10 in data_dir, in whichever format it was written; None if none."""
    if not _installed("tensorflow_datasets"):
        return None
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=data_dir)
    if not builder.is_prepared():
        return None
    if "array_record" in str(builder.info.file_format).lower():
        return _read_data_source(data_dir)
    if not _installed("tensorflow"):
        raise DatasetUnavailableError(
            f"CIFAR-10 in {builder.data_dir} is in TFDS's TFRecord format, which only "
            "TensorFlow reads, and TensorFlow is not installed. Install it "
            "(pip install -e '.[tf]'), or prepare a copy that needs no TensorFlow: "
            "python -m vit.prepare_cifar10 --source cifar-10-binary.tar.gz --data_dir DIR"
        )
    return _read_tfrecord(data_dir)


def _download(data_dir: str | None) -> Arrays:
    if not _installed("tensorflow") or not _installed("tensorflow_datasets"):
        raise DatasetUnavailableError(
            _missing_message(
                data_dir,
                "TFDS downloads need TensorFlow and tensorflow-datasets: pip install -e '.[tf]'",
            )
        )
    if not _network_reachable():
        raise DatasetUnavailableError(
            _missing_message(data_dir, f"no connection to {_DOWNLOAD_HOST[0]}")
        )
    import tensorflow_datasets as tfds

    logging.info("CIFAR-10 not found in %s; downloading with TFDS", data_dir or "default")
    try:
        tfds.builder("cifar10", data_dir=data_dir).download_and_prepare()
        return _read_tfrecord(data_dir)
    except Exception as e:  # TFDS raises assorted types for network and preparation failures
        raise DatasetUnavailableError(
            _missing_message(data_dir, f"download failed: {type(e).__name__}: {e}")
        ) from e


def load_cifar10(data_dir: str | None, *, download: bool = True) -> Arrays:
    """Returns {"train": (images, labels), "test": (images, labels)}, images uint8 [N, 32, 32, 3],
    labels int32 [N], in the stored order.

    Tries the readers in the order the module docstring gives; only if none finds a prepared
    dataset and `download` is set does it probe the network and let TFDS download.
    Raises `DatasetUnavailableError` naming every route otherwise.
    """
    folder = os.path.join(data_dir or default_data_dir(), ARRAYS_DIR)
    if os.path.isfile(os.path.join(folder, ARRAYS_INFO)):
        loaded = read_arrays(folder)
        logging.info("CIFAR-10 from %s", folder)
    else:
        loaded = _read_tfds(data_dir)
        if loaded is None:
            if not download:
                raise DatasetUnavailableError(_missing_message(data_dir, "config.download=False"))
            loaded = _download(data_dir)

    out = {}
    for name in SPLITS:
        images = np.asarray(loaded[name][0], np.uint8)
        labels = np.asarray(loaded[name][1], np.int32)
        if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(
                f"cifar10/{name} in {data_dir} has images of shape {images.shape[1:]}, expected "
                f"{IMAGE_SHAPE}; rebuild the data_dir with python -m vit.prepare_cifar10"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
            raise ValueError(
                f"cifar10/{name} labels span [{labels.min()}, {labels.max()}], expected 0..9"
            )
        out[name] = (images, labels)
    return out


def split_arrays(
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    val_split: str,
    val_examples: int,
    limit_examples: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Applies the validation policy; returns {"train", "val", "test"} -> {"image", "label"}.

    `limit_examples` (quick runs) keeps only the first N images of each TFDS split before the
    hold-out is carved off the end of the training images.
    """
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    if limit_examples is not None:
        train_x, train_y = train_x[:limit_examples], train_y[:limit_examples]
        test_x, test_y = test_x[:limit_examples], test_y[:limit_examples]
    test = {"image": test_x, "label": test_y}
    if val_split == "test":
        return {"train": {"image": train_x, "label": train_y}, "val": test, "test": test}
    if val_split != "holdout":
        raise ValueError(f"unknown val_split '{val_split}'; choose 'holdout' or 'test'")
    n = len(train_x)
    if not 0 < val_examples < n:
        raise ValueError(
            f"val_examples={val_examples} must be between 1 and the {n - 1} training images "
            f"minus one (the training set has {n}); lower config.val_examples or use "
            "--config.val_split=test"
        )
    cut = n - val_examples
    return {
        "train": {"image": train_x[:cut], "label": train_y[:cut]},
        "val": {"image": train_x[cut:], "label": train_y[cut:]},
        "test": test,
    }


def build_datasets(config: ml_collections.ConfigDict) -> Datasets:
    """The task's `Datasets`: train source, "val" (periodic) and "test" (final) eval sources."""
    data = load_cifar10(config.data_dir, download=bool(config.download))
    arrays = split_arrays(
        data,
        val_split=config.val_split,
        val_examples=int(config.val_examples),
        limit_examples=config.limit_examples,
    )
    logging.info(
        "CIFAR-10: %d train, %d val (%s), %d test images",
        len(arrays["train"]["label"]),
        len(arrays["val"]["label"]),
        config.val_split,
        len(arrays["test"]["label"]),
    )
    return Datasets(
        train=ArraySource(arrays["train"], seed=int(config.seed)),
        eval={"val": ArrayEvalSource(arrays["val"]), "test": ArrayEvalSource(arrays["test"])},
        periodic_eval_splits=("val",),
    )
