"""What a synthetic dataset is made of, drawn once per dataset on the host: the class and
subtype shares, lattice constants and scan ranges, and every image's surface, tip and
instrument parameters (`sample_parameters`). Every render is a pure function of these."""

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
SUBTYPE_CLASS = np.array([0, 1, 1, 1, 2, 3, 3, 3, 3])

A_S = 3.84  # Å, H:Si(100) surface lattice constant (5.431 Å / sqrt(2)); dimer period along u
ROW_PERIOD = 2 * A_S  # Å, dimer-row period across the rows (v)
STEP_HEIGHT = 1.36  # Å, single-height step a/4
CHUNK = 64  # images rendered per vectorised call; fixed so a seed always gives the same data
_MAX_HARMONICS = 24  # cap on Fourier terms of the periodic profiles

# Scan sizes (nm, log-uniform) per class: overlapping, so pixel period is only a weak cue.
_SCAN_RANGE_NM = {0: (3.0, 10.0), 1: (3.0, 15.0), 2: (4.0, 30.0), 3: (3.0, 30.0)}


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
