"""Pieces of analytic FLOP counts that every family's count needs, defined once.

Each family counts its model's forward FLOPs for MFU (`Task.flops_per_example`, reported by
`common.bench`) and checks the count against XLA's in its tests; XLA counts a convolution's
multiplies only where the kernel overlaps the input, so the counts here do the same.
"""

import numpy as np


def same_conv_outputs(n: int, stride: int = 1) -> int:
    """Output length of a SAME-padded convolution over an n-long input."""
    return -(-n // stride)


def same_conv_taps(n: int, k: int, stride: int = 1) -> int:
    """Kernel taps that land inside an n-long input, summed over the output positions of a
    SAME-padded convolution (taps on padding multiply zeros; at the 4x4 level of a U-Net they
    are a third of a 3x3 conv's taps). Square maps: ``same_conv_taps(n, k) ** 2`` per channel
    pair."""
    out = same_conv_outputs(n, stride)
    before = max((out - 1) * stride + k - n, 0) // 2
    starts = np.arange(out) * stride - before
    return int(np.clip(np.minimum(starts + k, n) - np.maximum(starts, 0), 0, None).sum())
