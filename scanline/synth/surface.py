"""Rendering a chunk of images from their parameters, vectorised: the H:Si(100) lattice in
closed form (Fourier series of Gaussian atoms blurred by a Gaussian tip), defects, steps, and
the tip states that make the classes (sharp, anisotropic, blunt, double, changing, unstable);
the instrument's artefacts come last (`scanline.synth.instrument`)."""

from collections.abc import Sequence

import numpy as np

from scanline.synth.instrument import apply_instrument
from scanline.synth.parameters import _MAX_HARMONICS, A_S, ROW_PERIOD, STEP_HEIGHT


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

    return apply_instrument(p, g, z, rng)
