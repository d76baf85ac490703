"""Miniature CIFAR-10 files for the ViT tests: the binary archive layout, image folders."""

import io
import tarfile

import numpy as np

from vit.input_pipeline import CLASS_NAMES

N_PER_BATCH = 20  # records per binary batch file: 100 train + 20 test images


def random_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 10  # every class present
    return images, labels


def binary_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The CIFAR-10 binary layout: label byte, then R, G, B planes (32x32 row-major)."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_binary_archive(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A miniature cifar-10-binary.tar.gz; returns what it holds."""
    parts = [random_split(N_PER_BATCH, seed) for seed in range(6)]
    with tarfile.open(path, "w:gz") as tar:
        for i, (x, y) in enumerate(parts[:5], start=1):
            add_bytes(tar, f"cifar-10-batches-bin/data_batch_{i}.bin", binary_records(x, y))
        add_bytes(tar, "cifar-10-batches-bin/test_batch.bin", binary_records(*parts[5]))
        add_bytes(tar, "cifar-10-batches-bin/batches.meta.txt", "\n".join(CLASS_NAMES).encode())
    train = tuple(np.concatenate(a) for a in zip(*parts[:5]))
    return {"train": train, "test": parts[5]}


def same_examples(got: tuple, want: tuple) -> None:
    """Equal as multisets of (image, label): TFDS stores examples in a hashed order."""
    key = lambda x, y: sorted(img.tobytes() + bytes([lab]) for img, lab in zip(x, y))
    assert len(got[0]) == len(want[0])
    assert key(*got) == key(*want)
