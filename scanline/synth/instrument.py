"""What the microscope adds to a rendered surface: drift and creep, tilt and bow, feedback
ringing, pickup, 1/f-like and white noise, line offsets and gain jitter, DAC quantisation, then
the least-squares plane flatten every STM program applies."""

import numpy as np


def apply_instrument(p: dict, g: dict, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scanner, feedback and electronics artefacts, quantisation, then a plane flatten."""
    b, size = g["b"], g["size"]
    f32 = lambda a: np.asarray(a, np.float32)
    # Rare spikes and a repeated line can happen with any tip: not a class-3 giveaway.
    spikes = rng.poisson(0.3, b)
    for n in np.nonzero(spikes)[0]:
        z[n, rng.integers(0, size, spikes[n]), rng.integers(0, size, spikes[n])] += rng.uniform(
            0.3, 2.0, spikes[n]
        ) * rng.choice([-1, 1], spikes[n])
    rep = np.nonzero(rng.uniform(0, 1, b) < 0.03)[0]
    if len(rep):
        rows = rng.integers(1, size, len(rep))
        z[rep, rows] = z[rep, rows - 1]

    # Feedback ringing: a damped oscillation excited by steep slopes along the fast axis.
    grad = np.diff(z, axis=2, prepend=z[:, :, :1])
    taps = np.arange(1, 17)
    kern = np.exp(-taps[None, :] / p["ring_decay"][:, None]) * np.sin(
        2 * np.pi * taps[None, :] / p["ring_period"][:, None]
    )
    kern *= p["ring_gain"][:, None]
    ring = np.zeros_like(z)
    for t in range(len(taps)):
        ring[:, :, t + 1 :] += f32(kern[:, t])[:, None, None] * grad[:, :, : size - t - 1]
    z = z + ring

    lin = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    j = np.arange(size, dtype=np.float32)
    z += f32(p["tilt_x"])[:, None, None] * lin[None, None, :]
    z += f32(p["tilt_y"])[:, None, None] * lin[None, :, None]
    z += f32(p["bow"])[:, None, None] * (4 * lin[None, None, :] ** 2 + 4 * lin[None, :, None] ** 2)
    z += f32(p["creep_z"])[:, None, None] * np.exp(
        -j[None, :, None] / f32(p["creep_tau"])[:, None, None]
    )
    # Pickup: a sinusoid in scan time (trace + retrace per line), so its phase walks per line.
    t = (j[:, None] * 2 * size + j[None, :])[None]
    z += f32(p["pickup_amp"])[:, None, None] * np.sin(
        2 * np.pi * t / f32(p["pickup_period"])[:, None, None]
        + f32(rng.uniform(0, 6.3, b))[:, None, None]
    )
    # AR(1) noise along x (1/f-like), stationary std ar_sigma.
    alpha = f32(p["ar_alpha"])[:, None]
    innov = rng.normal(0, 1, (b, size, size)).astype(np.float32)
    innov *= (f32(p["ar_sigma"]) * np.sqrt(1 - f32(p["ar_alpha"]) ** 2))[:, None, None]
    ar = np.empty_like(innov)
    ar[:, :, 0] = innov[:, :, 0] / np.sqrt(1 - alpha**2)
    for i in range(1, size):
        ar[:, :, i] = alpha * ar[:, :, i - 1] + innov[:, :, i]
    z += ar
    z += rng.normal(0, 1, (b, size, size)).astype(np.float32) * f32(p["white_sigma"])[:, None, None]
    # Per-line gain and offset jitter (the feedback's slow wander between lines).
    gain = 1 + rng.normal(0, 1, (b, size)) * p["line_gain"][:, None]
    offset = rng.normal(0, 1, (b, size)) * p["line_offset"][:, None]
    z = z * f32(gain)[:, :, None] + f32(offset)[:, :, None]
    q = f32(p["quant"])[:, None, None]
    z = np.round(z / q) * q
    # Flatten: subtract the least-squares plane, as the original pipeline's flatten did. The
    # centred coordinates are orthogonal, so the fit is three projections.
    mean = z.mean(axis=(1, 2), keepdims=True)
    sx = (z * lin[None, None, :]).sum(axis=(1, 2), keepdims=True) / (size * (lin**2).sum())
    sy = (z * lin[None, :, None]).sum(axis=(1, 2), keepdims=True) / (size * (lin**2).sum())
    z = z - mean - sx * lin[None, None, :] - sy * lin[None, :, None]
    return z.astype(np.float32)
