"""Physics-based synthetic STM images of H:Si(100)-(2x1) under four tip states.

    python -m scanline.synth --out data/scanline_train.npz --n 20000 --seed 0
    python -m scanline.synth --out data/scanline_test.npz --n 4000 --seed 1 --copies 1

Used as the default dataset of `scanline.task` (generated into a cache when no file is given)
and by the tests (tiny N). Textbook surface physics plus common STM tip and instrument effects:

* Surface: dimer rows along u with row period 2·a_s = 7.68 Å across them (v) and dimers every
  a_s = 3.84 Å along them; two H-terminated Si atoms per dimer at ±d/2 along v. Dangling bonds and
  dimer vacancies sit on lattice sites; adsorbate clusters anywhere; in 20 % of scans larger than
  15 nm a single-height step (1.36 Å) across which the rows turn by 90°.
* Tip (the class): Gaussian apex widths per class (atoms sharp, dimers broader, rows anisotropic),
  buckled or two-lobe apices for "asymmetries", and for class 3 blunt (paraboloid dilation + blur),
  double (ghost copy), mid-scan tip changes and unstable (telegraph streaks, spikes, repeated
  lines) tips.
* Instrument: thermal drift and piezo creep (they shear the lattice), plane tilt, scanner bow,
  feedback ringing, mechanical pickup, 1/f-like AR(1) and white noise, line offset and gain
  jitter, DAC quantisation, then a least-squares plane flatten.

Images are rendered directly at the output size. The lattice is evaluated analytically: a lattice
of Gaussian atoms blurred by a Gaussian tip is again a lattice of Gaussians, whose periodic
profile along u and v has a closed-form Fourier series, and because the scan coordinates are
(pixel x) + (line y) terms, each harmonic is a rank-2 outer product. Averaging each pixel over its
area (the real pipeline rendered 512 px and area-averaged to 128) is approximated by adding the
box filter's variance p²/12 to every Gaussian. This makes 20,000 images a matter of minutes.

Pixel period alone never gives the class away: scan sizes are log-uniform over class ranges that
overlap (atoms 3-10 nm, dimers/asymmetries 3-15, rows 4-30, defects 3-30), so at every scan size
at least two classes occur. `scan_size_nm`, `theta_deg` and `subtype` are saved for analysis
only; the loaders ignore them.

Output (NPZ): `images` float32 [N, S, S] heights in Å (plane-flattened, not z-scored: the input
pipeline z-scores every scan line), `labels` int32 [N], `groups` int32 [N] (source image id; with
``--copies C`` each source surface is imaged C times with different pans and noise),
`class_names`, `subtype`, `subtype_names`, `scan_size_nm`, `theta_deg`.
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

VERSION = 1  # bump when the images for a given seed change (invalidates cached datasets)
CLASS_NAMES = ("individual_atoms", "dimers_asymmetries", "rows", "defects_bad_tip")
DEFAULT_SHARES = (0.0879, 0.4394, 0.1691, 0.3038)  # implied by the original's class weights
SUBTYPE_NAMES = (
    "atoms",
    "dimers",
    "asym_buckled",
    "asym_two_lobe",
    "rows",
    "blunt",
    "double_tip",
    "tip_change",
    "unstable",
)
_SUBTYPE_CLASS = np.array([0, 1, 1, 1, 2, 3, 3, 3, 3])

A_S = 3.84  # Å, H:Si(100) surface lattice constant (5.431 Å / sqrt(2)); dimer period along u
ROW_PERIOD = 2 * A_S  # Å, dimer-row period across the rows (v)
STEP_HEIGHT = 1.36  # Å, single-height step a/4
CHUNK = 64  # images rendered per vectorised call; fixed so a seed always gives the same data
_MAX_HARMONICS = 24  # cap on Fourier terms of the periodic profiles

# Scan sizes (nm, log-uniform) per class: overlapping, so pixel period is only a weak cue.
_SCAN_RANGE_NM = {0: (3.0, 10.0), 1: (3.0, 15.0), 2: (4.0, 30.0), 3: (3.0, 30.0)}


# ----------------------------------------------------------------------------------------------
# Parameter sampling (host, once per dataset; every render below is a pure function of these)
# ----------------------------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, lo, hi, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def _good_tip(rng: np.random.Generator, kind: np.ndarray) -> dict[str, np.ndarray]:
    """Gaussian apex of a resolving tip; kind 0 atoms, 1 dimers, 2 rows (widths in Å)."""
    n = len(kind)
    iso_atoms = rng.uniform(0.3, 0.7, n)
    iso_dimers = rng.uniform(0.8, 1.3, n)
    rows_u, rows_v = rng.uniform(1.5, 2.5, n), rng.uniform(1.0, 1.8, n)
    sig_u = np.choose(kind, [iso_atoms, iso_dimers, rows_u])
    sig_v = np.choose(kind, [iso_atoms, iso_dimers, rows_v])
    return {
        "sig_u": sig_u,
        "sig_v": sig_v,
        "buckle": np.ones(n),  # weight of the "down" atom of each dimer (1 = symmetric)
        "zigzag": np.zeros(n, bool),  # buckling alternates along and across rows (c(4x2))
        "lobe_w": np.zeros(n),  # second apex lobe weight (asymmetric PSF); 0 = none
        "lobe_dx": np.zeros(n),
        "lobe_dy": np.zeros(n),
        "blunt_r": np.zeros(n),  # paraboloid apex radius (Å) for blunt tips; 0 = none
        "blunt_sigma": np.zeros(n),
    }


def _random_good_kind(rng: np.random.Generator, n: int) -> np.ndarray:
    """The resolving state under a class-3 artefact: atoms/dimers/rows in the data's ratio."""
    p = np.array(DEFAULT_SHARES[:3]) / sum(DEFAULT_SHARES[:3])
    return rng.choice(3, size=n, p=p)


def _sample_defects(
    rng: np.random.Generator, scan_a: np.ndarray, theta: np.ndarray, ox, oy, margin_a: np.ndarray
) -> dict[str, np.ndarray]:
    """Dangling bonds, dimer vacancies (on lattice sites) and clusters, flattened with counts.

    Positions are in the sample frame of copy 0 (Å); the field sampled is the scan enlarged by
    `margin_a` on every side so pans and ghost images still find defects at the edges.
    """
    n = len(scan_a)
    side = scan_a + 2 * margin_a
    area = side**2
    sites = 2 * area / (A_S * ROW_PERIOD)
    n_db = rng.poisson(rng.uniform(0.0, 0.01, n) * sites)
    n_vac = rng.poisson(rng.uniform(0.0, 0.01, n) * sites / 2)
    n_cl = np.minimum(rng.poisson(0.5 * (scan_a / 100.0) ** 2 * rng.uniform(0, 1, n)), 6)
    counts = n_db + n_vac + n_cl
    owner = np.repeat(np.arange(n), counts)
    # Kind per defect, in owner order: the source's DBs, then vacancies, then clusters.
    per_kind = np.stack([n_db, n_vac, n_cl], 1).ravel()
    kind = np.repeat(np.tile(np.array([0, 1, 2], np.int8), n), per_kind)
    m = len(owner)
    # Uniform over the enlarged field, then snap DBs / vacancies to atom / dimer sites.
    x = -margin_a[owner] + rng.uniform(0, 1, m) * side[owner]
    y = -margin_a[owner] + rng.uniform(0, 1, m) * side[owner]
    c, s = np.cos(theta[owner]), np.sin(theta[owner])
    su = (x - ox[owner]) * c + (y - oy[owner]) * s
    tv = -(x - ox[owner]) * s + (y - oy[owner]) * c
    su = np.where(kind < 2, np.round(su / A_S) * A_S, su)
    # Vacancies sit on the dimer centre; DBs on one of its two atoms (side set at render time).
    tv = np.where(kind < 2, np.round(tv / ROW_PERIOD) * ROW_PERIOD, tv)
    db_side = rng.choice([-0.5, 0.5], m)
    amp = np.select(
        [kind == 0, kind == 1],
        [rng.uniform(1.0, 1.5, m), -rng.uniform(0.3, 0.8, m)],
        rng.uniform(3.0, 20.0, m),
    )
    width = np.select(
        [kind == 0, kind == 1],
        [rng.uniform(3.0, 4.5, m), rng.uniform(2.0, 3.0, m)],
        rng.uniform(10.0, 30.0, m) / 2.355,  # clusters 1-3 nm FWHM
    )
    return {
        "counts": counts,
        "kind": kind,
        "su": su,
        "tv": tv,
        "db_side": db_side,
        "amp": amp,
        "width": width,
    }


def sample_parameters(
    n: int, seed: int, shares: Sequence[float] = DEFAULT_SHARES, copies: int = 1
) -> dict[str, np.ndarray]:
    """Draws every random choice that defines the dataset except per-pixel noise.

    Returns per-image arrays (source parameters repeated over copies) plus a flattened defect
    table keyed by source. Deterministic for (n, seed, shares, copies).
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if copies < 1:
        raise ValueError(f"--copies must be >= 1, got {copies}")
    shares = np.asarray(shares, float)
    if shares.ndim != 1 or len(shares) != 4 or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(
            f"class shares must be 4 non-negative numbers, got {shares.tolist()}; "
            f"the default is {list(DEFAULT_SHARES)}"
        )
    shares = shares / shares.sum()
    rng = np.random.default_rng([seed, 0x5CA1])
    n_src = -(-n // copies)

    # Exact class counts (largest remainder), shuffled: a fixed seed gives fixed shares.
    raw = shares * n_src
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: n_src - counts.sum()]] += 1
    label = rng.permutation(np.repeat(np.arange(4), counts))

    # Subtype within each class: dimers vs asymmetries 82 : 18 (the original 6-class shares,
    # 36.1 : 7.8 %); class 3 mixes blunt, double, tip-change (1,332 of its 5,754) and unstable.
    u = rng.uniform(0, 1, n_src)
    sub1 = np.where(u < 0.82, 1, np.where(u < 0.82 + 0.18 * 0.6, 2, 3))
    sub3 = 5 + np.searchsorted(np.cumsum([0.45, 0.20, 0.23, 0.12]), rng.uniform(0, 1, n_src))
    sub3 = np.minimum(sub3, 8)
    subtype = np.choose(label, [np.zeros(n_src, int), sub1, np.full(n_src, 4), sub3])

    lo = np.array([_SCAN_RANGE_NM[c][0] for c in range(4)])[label]
    hi = np.array([_SCAN_RANGE_NM[c][1] for c in range(4)])[label]
    scan_nm = _log_uniform(rng, lo, hi, n_src)
    scan_a = 10.0 * scan_nm

    # Row orientation: operators often align the scan with the rows (0° or 90°).
    mix = rng.uniform(0, 1, n_src)
    theta_deg = np.where(
        mix < 0.5,
        rng.uniform(0, 180, n_src),
        np.where(mix < 0.75, 0.0, 90.0) + rng.normal(0, 5, n_src),
    )
    theta = np.deg2rad(theta_deg)

    src = {
        "label": label,
        "subtype": subtype,
        "scan_nm": scan_nm,
        "theta": theta,
        "ox": rng.uniform(0, 100, n_src),  # lattice origin (Å): random registry
        "oy": rng.uniform(0, 100, n_src),
        "dimer_d": rng.uniform(2.2, 3.5, n_src),  # apparent atom separation in a dimer
        "sig_atom": rng.uniform(0.6, 0.9, n_src),
        "amp_atom": rng.uniform(0.5, 1.2, n_src),  # apparent atom height before tip blur
        "trough": rng.uniform(0.0, 0.15, n_src),  # extra inter-row trough (fraction of amp)
    }
    # Steps: 20 % of scans larger than 15 nm; rows rotate 90° on the other terrace.
    has_step = (scan_nm > 15) & (rng.uniform(0, 1, n_src) < 0.2)
    src.update(
        has_step=has_step,
        step_phi=rng.uniform(0, 2 * np.pi, n_src),  # normal direction of the step edge
        step_pos=rng.uniform(0.25, 0.75, n_src),  # where it crosses the scan (fraction)
        step_sign=rng.choice([-1.0, 1.0], n_src),
        step_seed=rng.integers(0, 2**31, n_src),  # roughness random walk
        step_rough=rng.uniform(1.0, 3.0, n_src),  # Å per 8 Å knot
        step_ox=rng.uniform(0, 100, n_src),
        step_oy=rng.uniform(0, 100, n_src),
    )

    # Tip state A (the whole scan, or the part before a tip change).
    kind_a = np.choose(
        np.minimum(subtype, 5),
        [
            np.zeros(n_src, int),
            np.ones(n_src, int),
            np.ones(n_src, int),
            np.ones(n_src, int),
            np.full(n_src, 2),
            _random_good_kind(rng, n_src),
        ],
    )
    tip_a = _good_tip(rng, kind_a)
    buck = subtype == 2
    tip_a["buckle"] = np.where(buck, rng.uniform(0.2, 0.7, n_src), 1.0)
    tip_a["zigzag"] = buck & (rng.uniform(0, 1, n_src) < 0.5)
    lobe = subtype == 3
    lobe_sig = rng.uniform(0.5, 1.0, n_src)
    tip_a["sig_u"] = np.where(lobe, lobe_sig, tip_a["sig_u"])
    tip_a["sig_v"] = np.where(lobe, lobe_sig, tip_a["sig_v"])
    lobe_r, lobe_phi = rng.uniform(0.5, 1.5, n_src), rng.uniform(0, 2 * np.pi, n_src)
    tip_a["lobe_w"] = np.where(lobe, rng.uniform(0.3, 0.5, n_src), 0.0)
    tip_a["lobe_dx"], tip_a["lobe_dy"] = lobe_r * np.cos(lobe_phi), lobe_r * np.sin(lobe_phi)
    blunt = subtype == 5
    tc = subtype == 7
    # A tip change may start from a blunt tip too (e.g. blurry -> rows recoveries).
    blunt_a = blunt | (tc & (rng.uniform(0, 1, n_src) < 0.2))
    tip_a["blunt_r"] = np.where(blunt_a, rng.uniform(10.0, 50.0, n_src), 0.0)
    tip_a["blunt_sigma"] = np.where(blunt_a, rng.uniform(2.0, 5.0, n_src), 0.0)

    # Double tip: ghost image z(r + Δ), by max (nearest apex carries the current) or blend.
    dbl = subtype == 6
    g_r, g_phi = rng.uniform(5.0, 30.0, n_src), rng.uniform(0, 2 * np.pi, n_src)
    src.update(
        ghost=dbl,
        ghost_max=rng.uniform(0, 1, n_src) < 0.5,
        ghost_dx=g_r * np.cos(g_phi),
        ghost_dy=g_r * np.sin(g_phi),
        ghost_delta=rng.uniform(0.0, 2.0, n_src),
        ghost_w=rng.uniform(0.2, 0.5, n_src),
    )

    # Tip change: state B from line k (mid-line at pixel i), a z step, a lateral jump, glitches.
    kind_b = (kind_a + rng.integers(1, 3, n_src)) % 3  # a different resolving state ...
    tip_b = _good_tip(rng, kind_b)
    blunt_b = (~blunt_a) & (rng.uniform(0, 1, n_src) < 0.35)  # ... or it goes blurry
    tip_b["blunt_r"] = np.where(blunt_b, rng.uniform(10.0, 50.0, n_src), 0.0)
    tip_b["blunt_sigma"] = np.where(blunt_b, rng.uniform(2.0, 5.0, n_src), 0.0)
    jump_r, jump_phi = rng.uniform(0, 5.0, n_src), rng.uniform(0, 2 * np.pi, n_src)
    src.update(
        tip_change=tc,
        tc_line=rng.uniform(8 / 128, 120 / 128, n_src),  # fraction of the scan height
        tc_pixel=rng.uniform(0, 1, n_src),
        tc_offset=rng.choice([-1.0, 1.0], n_src) * rng.uniform(0.3, 3.0, n_src),
        tc_dx=jump_r * np.cos(jump_phi),
        tc_dy=jump_r * np.sin(jump_phi),
        tc_glitches=rng.integers(0, 4, n_src),
        unstable=subtype == 8,
    )
    for k, v in tip_a.items():
        src["a_" + k] = v
    for k, v in tip_b.items():
        src["b_" + k] = v

    # Defects live on the source surface: every copy of a source sees the same ones.
    margin = np.full(n_src, 30.0) + (0.35 * scan_a if copies > 1 else 0.0)
    defects = _sample_defects(rng, scan_a, theta, src["ox"], src["oy"], margin)

    # Per image: copies of a source differ by pan (field of view) and by instrument state.
    source = np.repeat(np.arange(n_src), copies)[:n]
    img = {k: v[source] for k, v in src.items()}
    n_img = len(source)
    first = np.r_[True, source[1:] != source[:-1]]
    pan = np.where(first[:, None], 0.0, rng.uniform(-0.3, 0.3, (n_img, 2)) * scan_a[source, None])
    img.update(
        source=source,
        pan_x=pan[:, 0],
        pan_y=pan[:, 1],
        **_sample_instrument(rng, n_img),
    )
    img["defects"] = defects
    return img


def _sample_instrument(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Scanner and electronics state per image (typical STM ranges)."""
    return {
        "drift_x": rng.uniform(0.002, 0.03, n) * rng.choice([-1, 1], n),  # Å per line
        "drift_y": rng.uniform(0.002, 0.03, n) * rng.choice([-1, 1], n),
        "creep_x": rng.uniform(0.5, 5.0, n) * rng.choice([-1, 1], n),  # Å lateral, decays
        "creep_z": rng.uniform(0.5, 5.0, n) * rng.choice([-1, 1], n),  # Å height, decays
        "creep_tau": rng.uniform(5.0, 30.0, n),  # lines
        "tilt_x": rng.uniform(1.0, 5.0, n) * rng.choice([-1, 1], n),  # Å across the scan
        "tilt_y": rng.uniform(1.0, 5.0, n) * rng.choice([-1, 1], n),
        "bow": rng.uniform(0.1, 0.5, n) * rng.choice([-1, 1], n),  # Å, quadratic residue
        "ring_gain": rng.uniform(0.0, 0.3, n),  # feedback overshoot after edges along x
        "ring_period": rng.uniform(3.0, 10.0, n),  # px
        "ring_decay": rng.uniform(1.5, 5.0, n),  # px
        "pickup_amp": rng.uniform(0.01, 0.05, n),  # Å
        "pickup_period": rng.uniform(5.0, 40.0, n),  # px of scan time
        "ar_alpha": rng.uniform(0.6, 0.95, n),  # 1/f-like correlated noise along x
        "ar_sigma": rng.uniform(0.005, 0.05, n),  # Å, stationary std
        "white_sigma": rng.uniform(0.01, 0.05, n),  # Å
        "line_offset": rng.uniform(0.05, 0.3, n),  # Å, std of per-line offsets
        "line_gain": rng.uniform(0.0, 0.05, n),  # std of per-line gain around 1
        "quant": rng.uniform(0.002, 0.01, n),  # Å, DAC step
    }


# ----------------------------------------------------------------------------------------------
# Rendering (vectorised over a chunk of images)
# ----------------------------------------------------------------------------------------------
def select_images(params: dict, idx: np.ndarray) -> dict:
    """The per-image parameters of images `idx` (the defect table travels separately)."""
    return {k: v[idx] for k, v in params.items() if k != "defects"}


def _geometry(p: dict, size: int) -> dict[str, np.ndarray]:
    """Sample-frame position of every pixel: x = X_i + ΔX_j, y = Y_j (Å), per image."""
    b = len(p["scan_nm"])
    px = 10.0 * p["scan_nm"] / size  # Å per pixel
    idx = np.arange(size, dtype=np.float64)
    j = idx[None, :]
    decay = np.exp(-j / p["creep_tau"][:, None])
    x_i = (idx[None, :] + 0.5) * px[:, None] + p["pan_x"][:, None]  # [b, W]
    dx_j = j * p["drift_x"][:, None] + p["creep_x"][:, None] * decay  # [b, H]
    y_j = (idx[None, :] + 0.5) * px[:, None] + j * p["drift_y"][:, None] + p["pan_y"][:, None]
    return {"px": px, "x_i": x_i, "dx_j": dx_j, "y_j": y_j, "b": b, "size": size}


def _profile_coeffs(period: float, pos: np.ndarray, weight: np.ndarray, sigma: np.ndarray):
    """Fourier coefficients of sum_l w_l N(x - pos_l; sigma) repeated with `period`.

    pos, weight: [b, L]; sigma: [b]. Returns (c0 [b], a [b, K], s [b, K]) such that the profile
    is c0 + sum_k a_k cos(k φ) + s_k sin(k φ) with φ = 2π x / period.
    """
    # Harmonics up to where the sharpest profile of the batch has decayed below 1e-3.
    n_harm = int(np.clip(np.ceil(0.6 * period / sigma.min()) + 1, 2, _MAX_HARMONICS))
    k = np.arange(1, n_harm + 1)
    damp = np.exp(-2 * np.pi**2 * (sigma[:, None] * k[None, :] / period) ** 2)  # [b, K]
    ang = 2 * np.pi * k[None, None, :] * pos[:, :, None] / period  # [b, L, K]
    a = 2 / period * damp * np.einsum("bl,blk->bk", weight, np.cos(ang))
    s = 2 / period * damp * np.einsum("bl,blk->bk", weight, np.sin(ang))
    return weight.sum(1) / period, a, s


def _periodic_image(phase_x, phase_y, coeffs) -> np.ndarray:
    """Evaluates the profile at φ = phase_x[i] + phase_y[j] as two batched matmuls.

    cos k(φx+φy) and sin k(φx+φy) split into products of per-pixel and per-line factors, so
    the [b, H, W] image costs one [b, H, 2K] @ [b, 2K, W] product.
    """
    c0, a, s = coeffs
    k = np.arange(1, a.shape[1] + 1)
    cx, sx = (
        np.cos(k[None, :, None] * phase_x[:, None, :]),
        np.sin(k[None, :, None] * phase_x[:, None, :]),
    )
    cy, sy = (
        np.cos(k[None, None, :] * phase_y[:, :, None]),
        np.sin(k[None, None, :] * phase_y[:, :, None]),
    )
    left = np.concatenate([cy, sy], axis=2).astype(np.float32)  # [b, H, 2K]
    right = np.concatenate(
        [a[:, :, None] * cx + s[:, :, None] * sx, s[:, :, None] * cx - a[:, :, None] * sx], axis=1
    ).astype(np.float32)  # [b, 2K, W]
    return left @ right + c0.astype(np.float32)[:, None, None]


def _lattice(p: dict, g: dict, sig_u, sig_v, buckle, zigzag, shift_x, shift_y, rotate90=False):
    """Apparent height of the dimer lattice seen through a Gaussian apex (Å), [b, H, W].

    Atoms are Gaussians (height amp_atom, width sig_atom); tip (sig_u along the rows, sig_v
    across) and pixel area (p²/12) add in variance. Dimers on (m, n) with the "down" atom of
    buckled dimers weighted `buckle`; with `zigzag` the buckling alternates with m + n.
    Rendering z(r + shift) gives the image of a tip apex displaced by -shift.
    """
    theta = p["theta"] + (np.pi / 2 if rotate90 else 0.0)
    ox = (p["step_ox"] if rotate90 else p["ox"]) - shift_x
    oy = (p["step_oy"] if rotate90 else p["oy"]) - shift_y
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    # u = along the rows, v = across; both split into a per-pixel and a per-line term.
    u_i, v_i = g["x_i"] * c, -g["x_i"] * s
    u_j = (g["dx_j"] - ox[:, None]) * c + (g["y_j"] - oy[:, None]) * s
    v_j = -(g["dx_j"] - ox[:, None]) * s + (g["y_j"] - oy[:, None]) * c
    pix_var = g["px"] ** 2 / 12.0
    sig_s = np.sqrt(p["sig_atom"] ** 2 + sig_u**2 + pix_var)
    sig_t = np.sqrt(p["sig_atom"] ** 2 + sig_v**2 + pix_var)
    d = p["dimer_d"]
    b = g["b"]
    out = np.zeros((b, g["size"], g["size"]), np.float32)
    # Two sublattices along u (even/odd m, period 2a) times profiles across v (period 2P with
    # four atoms: even/odd row n, each side of the dimer) carry the zig-zag weights exactly.
    for pm in (0, 1):
        f = _periodic_image(
            2 * np.pi * u_i / (2 * A_S),
            2 * np.pi * u_j / (2 * A_S),
            _profile_coeffs(2 * A_S, np.full((b, 1), pm * A_S), np.ones((b, 1)), sig_s),
        )
        pos, wts = [], []
        for pn in (0, 1):
            up_first = np.where(zigzag, (pm + pn) % 2 == 0, True)
            for side in (-1, 1):
                pos.append(pn * ROW_PERIOD + side * d / 2)
                is_up = up_first if side == 1 else ~up_first
                wts.append(np.where(is_up, 1.0, buckle))
        gv = _periodic_image(
            2 * np.pi * v_i / (2 * ROW_PERIOD),
            2 * np.pi * v_j / (2 * ROW_PERIOD),
            _profile_coeffs(2 * ROW_PERIOD, np.stack(pos, 1), np.stack(wts, 1), sig_t),
        )
        out += f * gv
    norm = (p["amp_atom"] * 2 * np.pi * p["sig_atom"] ** 2).astype(np.float32)
    out *= norm[:, None, None]
    # A weak extra trough between rows, blurred like everything else.
    trough = _periodic_image(
        2 * np.pi * v_i / ROW_PERIOD,
        2 * np.pi * v_j / ROW_PERIOD,
        _profile_coeffs(ROW_PERIOD, np.zeros((b, 1)), np.ones((b, 1)), sig_t),
    )
    out += (p["trough"] * p["amp_atom"] * ROW_PERIOD / 2).astype(np.float32)[:, None, None] * (
        trough - 1 / ROW_PERIOD
    )
    return out


def _defects_image(p, g, dfx, src_idx, sig_tip, shift_x, shift_y) -> np.ndarray:
    """Separable Gaussian bumps (DBs, clusters) and pits (vacancies), [b, H, W] in Å."""
    b, size = g["b"], g["size"]
    starts = np.r_[0, np.cumsum(dfx["counts"])]
    counts = dfx["counts"][src_idx]
    dmax = int(counts.max()) if b else 0
    if dmax == 0:
        return np.zeros((b, size, size), np.float32)
    slot = np.arange(dmax)[None, :]
    valid = slot < counts[:, None]
    flat = np.where(valid, starts[src_idx][:, None] + slot, 0)
    kind, su, tv = dfx["kind"][flat], dfx["su"][flat], dfx["tv"][flat]
    tv = tv + np.where(kind == 0, dfx["db_side"][flat] * p["dimer_d"][:, None], 0.0)
    th = p["theta"][:, None]
    # Lattice frame -> sample frame (copy 0), then to this image's tip-shifted frame.
    x = (
        p["ox"][:, None]
        + su * np.cos(th)
        - tv * np.sin(th)
        - p["pan_x"][:, None]
        - shift_x[:, None]
    )
    y = (
        p["oy"][:, None]
        + su * np.sin(th)
        + tv * np.cos(th)
        - p["pan_y"][:, None]
        - shift_y[:, None]
    )
    px = g["px"][:, None]
    # Which line images the defect (drift), then where along that line (drift + creep).
    j = (y - 0.5 * px) / (px + p["drift_y"][:, None])
    jc = np.clip(j, 0, size - 1)
    dxj = jc * p["drift_x"][:, None] + p["creep_x"][:, None] * np.exp(-jc / p["creep_tau"][:, None])
    i = (x - dxj) / px - 0.5
    width = dfx["width"][flat]
    sig_eff = np.sqrt(width**2 + sig_tip[:, None] ** 2 + px**2 / 12.0)
    amp = np.where(valid, dfx["amp"][flat] * (width / sig_eff) ** 2, 0.0)
    sp = sig_eff / px  # px
    grid = np.arange(size, dtype=np.float32)
    i, j, sp = (a.astype(np.float32) for a in (i, j, sp))
    gx = np.exp(-0.5 * ((grid[None, None, :] - i[:, :, None]) / sp[:, :, None]) ** 2)
    gy = np.exp(-0.5 * ((grid[None, None, :] - j[:, :, None]) / sp[:, :, None]) ** 2)
    gy = (gy * amp[:, :, None]).astype(np.float32).transpose(0, 2, 1)
    return gy @ gx.astype(np.float32)


def _step_mask(p: dict, g: dict) -> np.ndarray:
    """Soft mask of the far terrace behind a rough single-height step edge, [b, H, W]."""
    b = g["b"]
    scan = 10.0 * p["scan_nm"]
    x = g["x_i"][:, None, :] + g["dx_j"][:, :, None]
    y = g["y_j"][:, :, None] + 0.0 * g["x_i"][:, None, :]
    cphi, sphi = np.cos(p["step_phi"])[:, None, None], np.sin(p["step_phi"])[:, None, None]
    cx = (p["step_pos"] * scan)[:, None, None]
    normal = (x - cx) * cphi + (y - cx) * sphi
    along = -(x - cx) * sphi + (y - cx) * cphi
    # Roughness: a random walk along the edge, 8 Å knots, 1-3 Å steps.
    knots = 48
    walk = np.stack(
        [
            np.cumsum(np.random.default_rng(int(s)).normal(0, 1, knots)) * r
            for s, r in zip(p["step_seed"], p["step_rough"])
        ]
    )
    pos = np.clip((along + knots * 4.0) / 8.0, 0, knots - 1.001)
    k0 = pos.astype(int)
    frac = pos - k0
    rough = np.take_along_axis(walk, k0.reshape(b, -1), 1).reshape(pos.shape) * (1 - frac)
    rough += np.take_along_axis(walk, (k0 + 1).reshape(b, -1), 1).reshape(pos.shape) * frac
    width = np.maximum(g["px"], 2.0)[:, None, None]
    return (1.0 / (1.0 + np.exp(-(normal - rough) / width))).astype(np.float32)


def _gauss_matrix(sigma_px: np.ndarray, size: int) -> np.ndarray:
    """Row-normalised Gaussian blur matrices [b, size, size] (edges renormalised, no wrap)."""
    grid = np.arange(size, dtype=np.float64)
    m = np.exp(-0.5 * ((grid[None, :, None] - grid[None, None, :]) / sigma_px[:, None, None]) ** 2)
    return (m / m.sum(2, keepdims=True)).astype(np.float32)


def _dilate_1d(z: np.ndarray, axis: int, coef: np.ndarray, reach: int) -> np.ndarray:
    """max over shifts s of z(x + s) - coef * s² along `axis` (grey-scale paraboloid dilation)."""
    pad = [(0, 0)] * z.ndim
    pad[axis] = (reach, reach)
    zp = np.pad(z, pad, mode="edge")
    n = z.shape[axis]
    out = z.copy()
    for s in range(-reach, reach + 1):
        if s == 0:
            continue
        sl = [slice(None)] * z.ndim
        sl[axis] = slice(reach + s, reach + s + n)
        np.maximum(out, zp[tuple(sl)] - coef * s * s, out=out)
    return out


def _blunt(z: np.ndarray, px: np.ndarray, radius: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """A blunt apex: dilation by the paraboloid ρ²/2R (separable in x, y), then a Gaussian blur."""
    coef = (px**2 / (2 * radius)).astype(np.float32)[:, None, None]
    zr = np.ptp(z.reshape(len(z), -1), axis=1)
    reach = int(np.clip(np.ceil(np.sqrt(zr / coef[:, 0, 0]).max()), 1, 32))
    z = _dilate_1d(_dilate_1d(z, 2, coef, reach), 1, coef, reach)
    m = _gauss_matrix(sigma / px, z.shape[-1])
    return m @ z @ m.transpose(0, 2, 1)


def _render_state(p: dict, dfx: dict, g: dict, tip: str, shift_x, shift_y) -> np.ndarray:
    """The scan through one tip state (prefix 'a_' or 'b_'): lattice, step, defects, apex."""

    def surface(sx, sy, sig_u, sig_v, sel=None):
        q = p if sel is None else select_images(p, sel)
        gg = (
            g
            if sel is None
            else {
                **{k: v[sel] for k, v in g.items() if k not in ("b", "size")},
                "b": len(sel),
                "size": g["size"],
            }
        )
        args = (q[tip + "buckle"], q[tip + "zigzag"])
        z = _lattice(q, gg, sig_u, sig_v, *args, sx, sy)
        steps = np.nonzero(q["has_step"])[0]
        if len(steps):
            qs = select_images(q, steps)
            gs = {
                **{k: v[steps] for k, v in gg.items() if k not in ("b", "size")},
                "b": len(steps),
                "size": g["size"],
            }
            far = _lattice(
                qs,
                gs,
                sig_u[steps],
                sig_v[steps],
                *(a[steps] for a in args),
                sx[steps],
                sy[steps],
                rotate90=True,
            )
            far += (qs["step_sign"] * STEP_HEIGHT).astype(np.float32)[:, None, None]
            m = _step_mask(qs, gs)
            z[steps] = z[steps] * (1 - m) + far * m
        src_idx = q["source"]
        z += _defects_image(q, gg, dfx, src_idx, 0.5 * (sig_u + sig_v), sx, sy)
        return z

    sig_u, sig_v = p[tip + "sig_u"], p[tip + "sig_v"]
    z = surface(shift_x, shift_y, sig_u, sig_v)
    # Asymmetric apex: a second lobe images the surface displaced by the lobe offset.
    lobe = np.nonzero(p[tip + "lobe_w"] > 0)[0]
    if len(lobe):
        w = p[tip + "lobe_w"][lobe].astype(np.float32)[:, None, None]
        z2 = surface(
            shift_x[lobe] + p[tip + "lobe_dx"][lobe],
            shift_y[lobe] + p[tip + "lobe_dy"][lobe],
            sig_u[lobe],
            sig_v[lobe],
            lobe,
        )
        z[lobe] = (1 - w) * z[lobe] + w * z2
    blunt = np.nonzero(p[tip + "blunt_r"] > 0)[0]
    if len(blunt):
        z[blunt] = _blunt(
            z[blunt], g["px"][blunt], p[tip + "blunt_r"][blunt], p[tip + "blunt_sigma"][blunt]
        )
    if tip == "a_":
        ghost = np.nonzero(p["ghost"])[0]
        if len(ghost):
            zg = surface(
                shift_x[ghost] + p["ghost_dx"][ghost],
                shift_y[ghost] + p["ghost_dy"][ghost],
                sig_u[ghost],
                sig_v[ghost],
                ghost,
            )
            zg -= p["ghost_delta"][ghost].astype(np.float32)[:, None, None]
            w = p["ghost_w"][ghost].astype(np.float32)[:, None, None]
            z[ghost] = np.where(
                p["ghost_max"][ghost][:, None, None],
                np.maximum(z[ghost], zg),
                (1 - w) * z[ghost] + w * zg,
            )
    return z


def _telegraph(rng, shape, dwell_px: np.ndarray) -> np.ndarray:
    """Two-level switching along the last axis with geometric dwell times (mean dwell_px)."""
    flips = rng.uniform(0, 1, shape) < (1.0 / dwell_px)[:, None, None]
    start = rng.integers(0, 2, shape[:-1])[..., None]
    return ((np.cumsum(flips, axis=-1) + start) % 2).astype(np.float32) - 0.5


def render_chunk(p: dict, defects: dict, size: int, noise_seed: Sequence[int]) -> np.ndarray:
    """Renders the images described by the parameter slice `p` -> float32 [b, size, size] (Å)."""
    rng = np.random.default_rng(list(noise_seed))
    b = len(p["scan_nm"])
    g = _geometry(p, size)
    zero = np.zeros(b)
    z = _render_state(p, defects, g, "a_", zero, zero)

    # Tip change at line k, pixel i: state B (laterally jumped) plus a height step from there on.
    tc = np.nonzero(p["tip_change"])[0]
    if len(tc):
        q = select_images(p, tc)
        gq = {
            **{k: v[tc] for k, v in g.items() if k not in ("b", "size")},
            "b": len(tc),
            "size": size,
        }
        zb = _render_state(q, defects, gq, "b_", q["tc_dx"], q["tc_dy"])
        zb += q["tc_offset"].astype(np.float32)[:, None, None]
        k = np.floor(q["tc_line"] * size).astype(int)
        i = np.floor(q["tc_pixel"] * size).astype(int)
        lin = np.arange(size)[None, :, None] * size + np.arange(size)[None, None, :]
        after = lin >= (k * size + i)[:, None, None]
        za = z[tc]
        zn = np.where(after, zb, za)
        # Glitch lines right after the change: spikes or content jumped sideways.
        for gi in range(3):
            row = np.minimum(k + 1 + gi, size - 1)
            active = gi < q["tc_glitches"]
            kind = rng.uniform(0, 1, len(tc)) < 0.5
            shifted = np.stack(
                [np.roll(zn[n, row[n]], rng.integers(-8, 9)) for n in range(len(tc))]
            )
            spikes = zn[np.arange(len(tc)), row] + (rng.uniform(0, 1, (len(tc), size)) < 0.1) * (
                rng.normal(0, 2.0, (len(tc), size))
            )
            new = np.where(kind[:, None], shifted, spikes)
            zn[np.arange(len(tc)), row] = np.where(
                active[:, None], new, zn[np.arange(len(tc)), row]
            )
        z[tc] = zn

    # Unstable tip: telegraph streak bursts, spike lines, repeated lines.
    un = np.nonzero(p["unstable"])[0]
    if len(un):
        nu = len(un)
        lines = np.arange(size)[None, :]
        burst = np.zeros((nu, size), bool)
        for _ in range(4):
            on = rng.uniform(0, 1, nu) < 0.6
            start = rng.integers(0, size, nu)[:, None]
            length = rng.integers(2, 31, nu)[:, None]
            burst |= on[:, None] & (lines >= start) & (lines < start + length)
        burst[np.arange(nu), rng.integers(0, size, nu)] = True  # at least one streaky line
        tel = _telegraph(rng, (nu, size, size), rng.uniform(2.0, 30.0, nu))
        amp = rng.uniform(0.1, 1.0, nu).astype(np.float32)
        z[un] += tel * burst[:, :, None] * amp[:, None, None]
        spike_line = rng.uniform(0, 1, (nu, size)) < rng.uniform(0.05, 0.2, nu)[:, None]
        spike_px = rng.uniform(0, 1, (nu, size, size)) < 0.02
        z[un] += (spike_line[:, :, None] & spike_px) * rng.normal(0, 1.5, (nu, size, size)).astype(
            np.float32
        )
        for _ in range(3):
            n_idx = np.nonzero(rng.uniform(0, 1, nu) < 0.4)[0]
            rows = rng.integers(1, size, len(n_idx))
            z[un[n_idx], rows] = z[un[n_idx], rows - 1]

    return _instrument(p, g, z, rng)


def _instrument(p: dict, g: dict, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def chunk_slices(n: int) -> list[np.ndarray]:
    """Image indices of each rendering chunk of an n-image dataset, in order."""
    return [np.arange(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]


def render_dataset_chunk(
    params: dict, defects: dict, size: int, seed: int, chunk_index: int, noise_stream: int = 0
) -> np.ndarray:
    """Renders chunk `chunk_index` of a dataset with its own noise, as `generate` does.

    Changing a parameter that draws no random numbers (e.g. switching a double tip's ghost off)
    and rendering again gives the same image with identical noise: a counterfactual twin
    (`scanline.twins`). `noise_stream` > 0 draws other noise for the same images.
    """
    stream = (seed, 0xC0DE, chunk_index) + ((noise_stream,) if noise_stream else ())
    return render_chunk(params, defects, size, stream)


def _render_job(args):
    return render_dataset_chunk(*args)


def generate(
    n: int,
    seed: int,
    *,
    shares: Sequence[float] = DEFAULT_SHARES,
    copies: int = 1,
    size: int = 128,
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Generates `n` images; identical output for the same arguments whatever `workers` is."""
    if size < 16:
        raise ValueError(f"--size must be >= 16 pixels, got {size}")
    p = sample_parameters(n, seed, shares, copies)
    defects = p.pop("defects")
    jobs = [
        (select_images(p, idx), defects, size, seed, c) for c, idx in enumerate(chunk_slices(n))
    ]
    if workers > 1 and len(jobs) > 1:
        # "spawn": forking a process that has JAX threads running can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_render_job, jobs, chunksize=4))
    else:
        parts = [_render_job(j) for j in jobs]
    return {
        "images": np.concatenate(parts),
        "labels": _SUBTYPE_CLASS[p["subtype"]].astype(np.int32),
        "groups": p["source"].astype(np.int32),
        "class_names": np.array(CLASS_NAMES),
        "subtype": p["subtype"].astype(np.int8),
        "subtype_names": np.array(SUBTYPE_NAMES),
        "scan_size_nm": p["scan_nm"].astype(np.float32),
        "theta_deg": np.rad2deg(p["theta"]).astype(np.float32),
    }


def write_npz(path: str, data: dict[str, np.ndarray]) -> None:
    """Writes atomically (temp file + rename) so a crash never leaves a truncated cache file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **data)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scanline.synth", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="pixels per line and lines per image")
    parser.add_argument("--copies", type=int, default=1, help="images per source surface (groups)")
    parser.add_argument(
        "--shares", type=float, nargs=4, default=list(DEFAULT_SHARES), help="class shares"
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if not args.out.endswith(".npz"):
        parser.error(f"--out must end in .npz, got '{args.out}'")
    t0 = time.perf_counter()
    data = generate(
        args.n,
        args.seed,
        shares=args.shares,
        copies=args.copies,
        size=args.size,
        workers=args.workers,
    )
    write_npz(args.out, data)
    counts = np.bincount(data["labels"], minlength=4)
    print(
        f"wrote {args.out}: {args.n} images {args.size}x{args.size}, class counts "
        f"{counts.tolist()}, {len(np.unique(data['groups']))} sources, "
        f"{time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
