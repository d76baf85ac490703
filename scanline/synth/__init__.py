"""Physics-based synthetic STM images of H:Si(100)-(2x1) under four tip states.

    python -m scanline.synth --out data/scanline_train.npz --n 20000 --seed 0
    python -m scanline.synth --out data/scanline_test.npz --n 4000 --seed 1 --copies 1

The package, by concern: `parameters` (constants and the per-image parameters drawn once per
dataset), `surface` (surface, tip and the rendering of a chunk of images), `instrument`
(scanner, feedback and electronics artefacts), `dataset` (whole datasets, in parallel, and the
NPZ file), `__main__` (the command line).

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

from scanline.synth.dataset import chunk_slices, generate, render_dataset_chunk, write_npz
from scanline.synth.parameters import (
    CLASS_NAMES,
    DEFAULT_SHARES,
    SUBTYPE_CLASS,
    SUBTYPE_NAMES,
    VERSION,
    sample_parameters,
)
from scanline.synth.surface import render_chunk, select_images

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SHARES",
    "SUBTYPE_CLASS",
    "SUBTYPE_NAMES",
    "VERSION",
    "chunk_slices",
    "generate",
    "render_chunk",
    "render_dataset_chunk",
    "sample_parameters",
    "select_images",
    "write_npz",
]
