"""CIFAR-10 for the ViT family: loaded once into memory, served by the shared array sources.

Called by `vit.task.VitTask.datasets`. `tfds.load("cifar10", data_dir=config.data_dir)` reads
the whole dataset once (50,000 + 10,000 images of 32x32x3 uint8, ~180 MB) into numpy arrays;
`common.data.ArraySource` then serves resumable, per-process training batches and
`ArrayEvalSource` padded + masked eval batches. Images stay uint8 until they are on the device:
augmentation and normalisation happen inside the jitted step (`vit.augment`), so the host does
nothing per step but slice arrays.

Splits (`config.val_split`):
- "holdout" (default): train on the first 45,000 training images, validate every epoch on the
  last `config.val_examples` (5,000); the test set is evaluated once, at the end, with the best
  checkpoint (`config.final_eval_splits = ("test",)`).
- "test": the seed's behaviour: train on all 50,000 and validate on the test set ("val" is then
  the test set, so `final/test/*` is no longer an unbiased estimate).

Offline use: build the TFDS data_dir with `python -m vit.prepare_cifar10` (see its docstring).
Under `tfds.testing.mock_data` split metadata may be empty (jax_pitfalls §10), so sizes always
come from the loaded arrays, never from `info.splits`.
"""

import logging
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
_DOWNLOAD_HOST = ("www.cs.toronto.edu", 443)  # where TFDS fetches cifar-10-binary.tar.gz
_READ_CHUNK = 10_000  # examples per tf.data batch while reading a split into memory


class DatasetUnavailableError(RuntimeError):
    """CIFAR-10 is neither prepared in data_dir nor downloadable; the message says what to do."""


def _missing_message(data_dir: str | None, reason: str) -> str:
    where = data_dir or "the default TFDS data_dir (~/tensorflow_datasets)"
    target = data_dir or "DIR"
    return (
        f"CIFAR-10 is not prepared in {where} and cannot be downloaded ({reason}). Two ways to "
        "get it:\n"
        "  1. offline, from a local copy (cifar-10-binary.tar.gz, or a folder/.tar.gz of "
        "train|test/<class>/*.png|jpg):\n"
        f"       python -m vit.prepare_cifar10 --source PATH --data_dir {target}\n"
        "  2. with network access: run once with "
        f"--config.data_dir={target} (TFDS downloads ~160 MB and prepares it), or copy a "
        "prepared data_dir from a machine that has network.\n"
        f"Then train with --config.data_dir={target}."
    )


def _network_reachable(timeout_s: float = 5.0) -> bool:
    """Cheap probe so an offline machine fails in seconds, not after download retries."""
    try:
        with socket.create_connection(_DOWNLOAD_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False


def load_cifar10(
    data_dir: str | None, *, download: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns {"train": (images, labels), "test": (images, labels)}, images uint8 [N, 32, 32, 3],
    labels int32 [N], in TFDS's stored order.

    Reads a prepared dataset first (never touching the network); only if that fails and
    `download` is set does it probe the network and let TFDS download and prepare it.
    Raises `DatasetUnavailableError` naming both routes (prepare tool, download) otherwise.
    """
    import tensorflow_datasets as tfds

    def read():
        splits = tfds.load(
            "cifar10",
            data_dir=data_dir,
            split=["train", "test"],
            as_supervised=True,  # (image, label): skips decoding the string ids
            # Chunks, not batch_size=-1: that needs split sizes, which mock_data leaves empty.
            batch_size=_READ_CHUNK,
            shuffle_files=False,
            download=False,
        )
        out = []
        for split in splits:
            chunks = list(tfds.as_numpy(split))
            out.append(
                {
                    "image": np.concatenate([c[0] for c in chunks])
                    if chunks
                    else np.zeros((0, *IMAGE_SHAPE), np.uint8),
                    "label": np.concatenate([c[1] for c in chunks])
                    if chunks
                    else np.zeros((0,), np.int32),
                }
            )
        return out

    try:
        loaded = read()
    except Exception as first_error:  # TFDS raises assorted types for "not prepared"
        if not download:
            raise DatasetUnavailableError(
                _missing_message(data_dir, f"config.download=False; TFDS said: {first_error}")
            ) from first_error
        if not _network_reachable():
            raise DatasetUnavailableError(
                _missing_message(data_dir, f"no connection to {_DOWNLOAD_HOST[0]}")
            ) from first_error
        logging.info("CIFAR-10 not found in %s; downloading with TFDS", data_dir or "default")
        try:
            tfds.builder("cifar10", data_dir=data_dir).download_and_prepare()
            loaded = read()
        except Exception as e:
            raise DatasetUnavailableError(
                _missing_message(data_dir, f"download failed: {type(e).__name__}: {e}")
            ) from e

    out = {}
    for name, split in zip(("train", "test"), loaded):
        images = np.asarray(split["image"], np.uint8)
        labels = np.asarray(split["label"], np.int32)
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


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
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
