"""Synthetic stand-ins for a group's own labelled scans: a few thousand images in sessions.

A group that trains on its own microscope has a few thousand labelled scans from a few dozen
sessions (days, tips, samples), sessions of very different sizes, each mixing the tip states
in its own proportions, all taken on an instrument that is not the generator's. This writes
such a set from the physics generator so that "does pretraining on the generator help on a
small real set, scored on sessions never trained on?" can be measured without real data:

- session sizes log-uniform over a 1:20 range, scaled to `n` images in all;
- each session's class mix drawn from a Dirichlet around the default shares (concentration
  `mix_concentration`: lower is more uneven), so a session can lack a class;
- each session's instrument shifted away from the generator's ranges: noise, line offsets,
  pickup, drift, tilt and feedback ringing multiplied by factors drawn per session from
  `SHIFT` (the same factor for every scan of a session, as one day on one instrument).

Output: `dataset.generate`'s arrays with ``groups`` = session id and ``group_names`` (the
sessions' names, which ``config.data.test_groups`` can name), plus ``session_shift`` [S, k]
(the factors, keys in ``shift_keys``).

    python -m scanline.synth --out small_real.npz --n 3000 --sessions 24 --seed 7
"""

from collections.abc import Sequence

import numpy as np

from scanline.synth.dataset import generate
from scanline.synth.parameters import DEFAULT_SHARES

# Factor ranges per instrument parameter (`parameters._sample_instrument`): a noisier,
# driftier microscope than the generator's, by a different amount every session.
SHIFT = {
    "white_sigma": (1.5, 4.0),
    "ar_sigma": (1.5, 4.0),
    "line_offset": (1.0, 3.0),
    "pickup_amp": (1.0, 4.0),
    "drift_x": (1.0, 3.0),
    "drift_y": (1.0, 3.0),
    "tilt_x": (1.0, 3.0),
    "tilt_y": (1.0, 3.0),
    "ring_gain": (1.0, 2.0),
}


def session_sizes(n: int, sessions: int, rng: np.random.Generator) -> np.ndarray:
    """`sessions` sizes summing to `n`, log-uniform over a 1:20 range, each at least 2."""
    if sessions < 2 or n < 2 * sessions:
        raise ValueError(f"--sessions needs 2..n/2 sessions, got {sessions} for n={n}")
    weights = np.exp(rng.uniform(0.0, np.log(20.0), sessions))
    raw = 2 + weights / weights.sum() * (n - 2 * sessions)
    sizes = np.floor(raw).astype(int)
    sizes[np.argsort(sizes - raw)[: n - sizes.sum()]] += 1  # largest remainders
    return sizes


def generate_sessions(
    n: int,
    sessions: int,
    seed: int,
    *,
    size: int = 128,
    shares: Sequence[float] = DEFAULT_SHARES,
    mix_concentration: float = 8.0,
    shift: dict[str, tuple[float, float]] | None = None,
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """`n` images in `sessions` sessions (see the module docstring); deterministic in `seed`."""
    shift = SHIFT if shift is None else shift
    rng = np.random.default_rng([seed, 0x5E55])
    sizes = session_sizes(n, sessions, rng)
    base = np.asarray(shares, float) / np.sum(shares)
    keys = sorted(shift)
    factors = np.array([[rng.uniform(*shift[k]) for k in keys] for _ in range(sessions)])
    parts = []
    for s in range(sessions):
        mix = rng.dirichlet(mix_concentration * base)
        part = generate(
            int(sizes[s]),
            seed=int(rng.integers(2**31)),
            shares=mix,
            size=size,
            workers=workers,
            instrument_scale=dict(zip(keys, factors[s])),
        )
        part["groups"] = np.full(len(part["labels"]), s, np.int32)
        parts.append(part)
    names = ("class_names", "subtype_names")
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k not in names}
    out.update(
        class_names=parts[0]["class_names"],
        subtype_names=parts[0]["subtype_names"],
        group_names=np.array([f"session_{s:02d}" for s in range(sessions)]),
        session_shift=factors.astype(np.float32),
        shift_keys=np.array(keys),
    )
    return out
