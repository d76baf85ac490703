"""Perceptual hashing for de-duplication of rendered images.

The hash is the classic DCT pHash (64 bits: signs of the 8x8 lowest-frequency DCT
coefficients of a 32x32 grey image, relative to their median), computed on the *ink map*
``max_c |image - background|`` so that two renders of the same shape in different palettes hash
alike. `Deduplicator` keeps an image unless an earlier one is within ``max_distance`` bits.
Used by `mathart.dataset.build`.
"""

import numpy as np
import scipy.fft
from PIL import Image


def ink(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` in [0, 1]: how far each pixel is from the background colour."""
    diff = np.abs(image.astype(np.float32) - np.asarray(background, np.float32)[None, None] * 255)
    return diff.max(axis=-1) / 255.0


def phash(grey: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of a 2-D array (any size; resized to 32x32)."""
    if grey.shape != (32, 32):
        if grey.shape[0] % 32 == 0 and grey.shape[1] % 32 == 0:
            k0, k1 = grey.shape[0] // 32, grey.shape[1] // 32
            grey = grey.reshape(32, k0, 32, k1).mean(axis=(1, 3))
        else:
            grey = np.asarray(
                Image.fromarray(grey.astype(np.float32), mode="F").resize((32, 32), Image.BOX)
            )
    coeffs = scipy.fft.dctn(grey.astype(np.float64), norm="ortho")[:8, :8].ravel()
    # Symmetric shapes have many coefficients exactly at the median (zero); a margin keeps
    # their bits from flipping on invisible changes.
    margin = 1e-3 * np.abs(coeffs).max()
    bits = coeffs > np.median(coeffs) + margin
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def hamming(a: np.ndarray, b: np.uint64) -> np.ndarray:
    """Bit distances between the hashes in `a` (uint64 array) and the hash `b`."""
    return np.bitwise_count(np.bitwise_xor(a, np.uint64(b)))


class Deduplicator:
    """Keeps the first image of each near-duplicate group (by pHash distance)."""

    def __init__(self, max_distance: int = 0):
        self.max_distance = max_distance
        self._hashes = np.zeros((1024,), np.uint64)  # grown by doubling
        self.count = 0
        self.checked = 0
        self.removed = 0

    @property
    def hashes(self) -> np.ndarray:
        return self._hashes[: self.count]

    def add(self, h: np.uint64) -> bool:
        """True (and remembers `h`) if no kept hash is within `max_distance` bits."""
        self.checked += 1
        if self.count and hamming(self.hashes, h).min() <= self.max_distance:
            self.removed += 1
            return False
        if self.count == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[self.count] = h
        self.count += 1
        return True
