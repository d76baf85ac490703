"""Perceptual de-duplication of rendered images: a pHash to find candidates, a thumbnail to
confirm them.

Both work on the *ink map* ``max_c |image - background|``, so two renders of one shape in
different palettes look alike.

- `phash`: the classic 64-bit DCT hash (signs of the 8x8 lowest-frequency DCT coefficients
  of a 32x32 grey image relative to their median). Cheap to compare, but on its own too
  coarse for centred, symmetric line drawings: their odd-frequency coefficients vanish, so a
  small diamond and a large star can share a hash.
- `thumbnail`: the 16x16 ink map. Two images are duplicates when their hashes are within
  ``max_distance`` bits **and** their thumbnails differ by less than ``max_difference`` in
  relative L1 (``sum|a - b| / mean(sum a, sum b)``).

`Deduplicator` keeps the first image of each duplicate group. Used by `mathart.dataset.build`.
"""

import numpy as np
import scipy.fft
from PIL import Image


def ink(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` in [0, 1]: how far each pixel is from the background colour."""
    diff = np.abs(image.astype(np.float32) - np.asarray(background, np.float32)[None, None] * 255)
    return diff.max(axis=-1) / 255.0


def _resize(grey: np.ndarray, side: int) -> np.ndarray:
    h, w = grey.shape
    if h % side == 0 and w % side == 0:  # exact box filter
        return grey.reshape(side, h // side, side, w // side).mean(axis=(1, 3))
    img = Image.fromarray(grey.astype(np.float32), mode="F")
    return np.asarray(img.resize((side, side), Image.BOX), np.float32)


def phash(grey: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of a 2-D array (any size; resized to 32x32)."""
    coeffs = scipy.fft.dctn(_resize(grey, 32).astype(np.float64), norm="ortho")[:8, :8].ravel()
    # Symmetric shapes have many coefficients exactly at the median (zero); a margin keeps
    # their bits from flipping on invisible changes.
    margin = 1e-3 * np.abs(coeffs).max()
    bits = coeffs > np.median(coeffs) + margin
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def thumbnail(grey: np.ndarray) -> np.ndarray:
    """``float32 [256]``: the 16x16 box-filtered ink map, flattened."""
    return _resize(grey, 16).astype(np.float32).ravel()


def hamming(a: np.ndarray, b: np.uint64) -> np.ndarray:
    """Bit distances between the hashes in `a` (uint64 array) and the hash `b`."""
    return np.bitwise_count(np.bitwise_xor(a, np.uint64(b)))


class Deduplicator:
    """Keeps an image unless an earlier kept one is a near duplicate (see the module doc)."""

    def __init__(self, max_distance: int = 0, max_difference: float = 0.15):
        self.max_distance = max_distance
        self.max_difference = max_difference
        self._hashes = np.zeros((1024,), np.uint64)  # grown by doubling
        self._thumbs = np.zeros((1024, 256), np.float32)
        self.count = 0
        self.checked = 0
        self.removed = 0

    @property
    def hashes(self) -> np.ndarray:
        return self._hashes[: self.count]

    def is_duplicate(self, h: np.uint64, thumb: np.ndarray) -> bool:
        if not self.count:
            return False
        (candidates,) = np.nonzero(hamming(self.hashes, h) <= self.max_distance)
        if not len(candidates):
            return False
        others = self._thumbs[candidates]
        diff = np.abs(others - thumb).sum(axis=1)
        scale = np.maximum(0.5 * (others.sum(axis=1) + thumb.sum()), 1e-6)
        return bool((diff / scale < self.max_difference).any())

    def add(self, grey: np.ndarray) -> bool:
        """True (and remembers the image) unless it duplicates an earlier kept one.

        grey: the ink map ``[H, W]`` (see `ink`).
        """
        self.checked += 1
        h, thumb = phash(grey), thumbnail(grey)
        if self.is_duplicate(h, thumb):
            self.removed += 1
            return False
        self.remember(h, thumb)
        return True

    def remember(self, h: np.uint64, thumb: np.ndarray) -> None:
        """Adds a kept image's hash and thumbnail."""
        if self.count == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
            self._thumbs = np.concatenate([self._thumbs, np.zeros_like(self._thumbs)])
        self._hashes[self.count] = h
        self._thumbs[self.count] = thumb
        self.count += 1
