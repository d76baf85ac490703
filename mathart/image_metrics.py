"""How well generated images show their formulas: the scores of `mathart.evaluate` and of
the Task's sample-grid hook, defined once (library; nothing here loads a run).

Definitions
-----------
- **formula accuracy (top-1 of K)**: for each held-out formula i, the candidates are its
  ground-truth render and the renders of K-1 other held-out formulas *in the same style as i*
  (so colour cannot give the answer). The sample counts as correct when it is more similar to
  its own render than to each of the others. Similarity is SSIM (``top1_ssim``) or, palette-
  blind, 1 - `mathart.losses.math_loss` (edges + luminance level sets; ``top1_geometry``).
  Chance = 1/K (10 % for K = 10). Distractors are the next K-1 examples of a fixed random
  permutation. For data without known styles (JSONL) the candidates are the other examples'
  own images instead, and the output says so (``candidates: "images"``).
- **SSIM to ground truth**: mean SSIM (`mathart.losses.ssim`, 7-tap Gaussian window, σ 1.5)
  between each sample and its ground-truth render, on [0, 1] RGB.
- **colour harmony (0-10)**: 10 x R, R = the saturation-weighted mean resultant length of hue
  (`mathart.losses.harmony_concentration`): 10 = every coloured pixel has one hue, 0 = hues
  spread evenly round the colour circle. Reported for samples and, as the reference, for the
  ground truth of the same formulas; a higher number is "more concentrated", not "better art".
- **by complexity / by family** (procedural data only): top-1 of K (both similarities) and
  SSIM within each of the seed's complexity levels (simple / complex / artistic) and each
  formula family, with the number of formulas in each (small groups are noisy).
- **diversity across seeds**: for the first M formulas, n samples with different noise (same
  style) each; the mean pairwise 1 - SSIM among one formula's samples, next to the mean
  1 - SSIM between samples of different formulas (the scale of "very different").
- **feature-network scores** only with ``--vgg-weights`` (the published VGG16 weights supplied
  by the user; see `mathart.models.vgg16`): ``fd_vgg16`` = Fréchet distance between Gaussian
  fits of mean-pooled relu4_3 features of samples and ground truth (FID's formula on VGG16
  features: not comparable with Inception FID figures), and ``vgg16_distance`` = mean
  unit-normalised feature distance (`mathart.losses.vgg_perceptual_loss`; LPIPS-like but without
  LPIPS's learned weights). Without the file these are not reported.

The seed's figures (FID 12.3, "94.2 % mathematical accuracy", harmony 8.7/10) were never
produced by any code (they appear only in `docs/training_notes.md` of
GunaSripuram7/mathy-model-project, whose one commit holds no checkpoints, logs or evaluation
outputs); they are not targets here.
"""

import jax
import jax.numpy as jnp
import numpy as np

from common.data import fixed_size_chunks
from mathart import losses
from mathart.input_pipeline import Split
from mathart.models import vgg16
from mathart.render import Style, render


@jax.jit
def _ssim_pairs(a: jax.Array, b: jax.Array) -> jax.Array:
    return losses.ssim(a.astype(jnp.float32) / 255.0, b.astype(jnp.float32) / 255.0)


@jax.jit
def _geometry_pairs(a: jax.Array, b: jax.Array) -> jax.Array:
    to11 = lambda x: x.astype(jnp.float32) / 127.5 - 1.0
    return 1.0 - losses.math_loss(to11(a), to11(b))


def _pairwise(fn, a: np.ndarray, b: np.ndarray, chunk: int = 512) -> np.ndarray:
    """fn over rows of two equally long uint8 stacks, in fixed-size chunks (one compile)."""
    out = [np.asarray(fn(a[i], b[i]))[:real] for i, real in fixed_size_chunks(len(a), chunk)]
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def distractor_indices(n: int, k: int, seed: int = 0) -> np.ndarray:
    """[n, k-1] indices of other examples: the next k-1 of a fixed random cycle."""
    if n < k:
        raise ValueError(f"retrieval among K={k} needs at least {k} examples, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    steps = np.arange(1, k)
    return order[(position[:, None] + steps[None, :]) % n]


def retrieval_candidates(split: Split, image_size: int, k: int, seed: int = 0) -> np.ndarray:
    """uint8 [N, K, R, R, 3]: each example's ground truth (index 0) and K-1 distractors.

    With known styles, a distractor is another held-out formula rendered in *this* example's
    style (`mathart.render.render`, deterministic); otherwise another example's image.
    """
    n = len(split)
    k = min(k, n)
    others = distractor_indices(n, k, seed)
    truth = split.arrays["image"]
    if np.all(split.style_seeds >= 0):
        formulas = [str(split.formulas[j]) for row in others for j in row]
        styles = [
            Style.from_seed(int(split.style_seeds[i])) for i in range(n) for _ in range(k - 1)
        ]
        rendered = render(formulas, image_size, styles).reshape(n, k - 1, *truth.shape[1:])
    else:
        rendered = truth[others]
    return np.concatenate([truth[:, None], rendered], axis=1)


def score_rows(generated: np.ndarray, candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Per sample: does it beat every distractor by SSIM / by geometry, and its SSIM to truth."""
    n, k = candidates.shape[:2]
    flat_gen = np.repeat(generated, k, axis=0)
    flat_cand = candidates.reshape(n * k, *candidates.shape[2:])
    sim = _pairwise(_ssim_pairs, flat_gen, flat_cand).reshape(n, k)
    geo = _pairwise(_geometry_pairs, flat_gen, flat_cand).reshape(n, k)
    beats = lambda s: np.all(s[:, :1] > s[:, 1:], axis=1)
    return {"top1_ssim": beats(sim), "top1_geometry": beats(geo), "ssim": sim[:, 0]}


def score(
    generated: np.ndarray,
    truth: np.ndarray,
    candidates: np.ndarray,
    rows: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Formula accuracy, SSIM and colour harmony of uint8 samples (see module docstring);
    `rows`: `score_rows` of the same samples when the caller already has them."""
    n, k = candidates.shape[:2]
    rows = score_rows(generated, candidates) if rows is None else rows
    harmony = lambda x: 10.0 * np.asarray(losses.harmony_concentration(jnp.asarray(x) / 255.0))
    return {
        "top1_ssim": float(rows["top1_ssim"].mean()),
        "top1_geometry": float(rows["top1_geometry"].mean()),
        "chance": 1.0 / k,
        "ssim": float(rows["ssim"].mean()),
        "harmony": float(harmony(generated).mean()),
        "harmony_truth": float(harmony(truth).mean()),
        "num_formulas": float(n),
    }


def breakdown(rows: dict[str, np.ndarray], groups: np.ndarray, names) -> dict[str, dict]:
    """`score_rows` averaged within each group (e.g. family id -> name), largest group first."""
    out = {}
    ids, counts = np.unique(groups, return_counts=True)
    for g in ids[np.argsort(-counts, kind="stable")]:
        sel = groups == g
        out[names[int(g)]] = {"n": int(sel.sum())} | {
            key: round(float(v[sel].mean()), 4) for key, v in rows.items()
        }
    return out


def diversity(samples: np.ndarray) -> dict[str, float]:
    """samples uint8 [M, n, R, R, 3] (M formulas x n seeds) -> within/across 1 - SSIM."""
    m, n = samples.shape[:2]
    ii, jj = np.triu_indices(n, 1)
    within = 1.0 - _pairwise(
        _ssim_pairs,
        samples[:, ii].reshape(-1, *samples.shape[2:]),
        samples[:, jj].reshape(-1, *samples.shape[2:]),
    )
    across = 1.0 - _pairwise(_ssim_pairs, samples[:, 0], np.roll(samples[:, 0], 1, axis=0))
    return {
        "diversity_within_formula": float(within.mean()),
        "diversity_across_formulas": float(across.mean()) if m > 1 else float("nan"),
        "diversity_formulas": float(m),
        "diversity_seeds": float(n),
    }


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets [N, D] (FID's formula)."""
    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # scipy >= 1.18 dropped sqrtm's `disp` argument; the plain call works on every version.
    covmean = np.asarray(linalg.sqrtm(s1 @ s2)).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def vgg_scores(path: str, generated: np.ndarray, truth: np.ndarray, preprocessing: str = "auto"):
    params, pre = vgg16.load_vgg16_weights(path, preprocessing)
    net = vgg16.VGG16Features(preprocessing=pre)
    feats = jax.jit(lambda x: net.apply(params, x))
    to11 = lambda x: jnp.asarray(x, jnp.float32) / 127.5 - 1.0
    pooled, dist = [], []
    for start in range(0, len(generated), 64):
        g, t = generated[start : start + 64], truth[start : start + 64]
        pooled.append([np.asarray(feats(jnp.asarray(x) / 255.0)[-1].mean((1, 2))) for x in (g, t)])
        dist.append(np.asarray(losses.vgg_perceptual_loss(feats, to11(g), to11(t))))
    fg = np.concatenate([p[0] for p in pooled])
    ft = np.concatenate([p[1] for p in pooled])
    return {
        "fd_vgg16": frechet_distance(fg, ft),
        "vgg16_distance": float(np.concatenate(dist).mean()),
        "feature_network": f"VGG16 relu4_3 (mean-pooled), user weights {path}, {pre} input",
    }
