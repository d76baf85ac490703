"""Honest metrics for a trained mathart run (library + command line).

    python -m mathart.evaluate --workdir runs/mathart_tiny32_cpu [--split test] [--num 200]
        [--k 10] [--diversity-formulas 16 --diversity-seeds 4] [--steps 50] [--guidance 3]
        [--vgg-weights vgg16.h5] [--which best] [--out FILE.json]

Every figure is computed here from samples generated now; nothing is copied or hard-coded. With
``--num N`` the first N examples of the split (for val and test, held-out formulas never seen in
training) are generated once each, in their ground-truth style, with the run's EMA params and
sampler. ``--split train`` measures the same on formulas the run trained on: the gap to ``test``
is what held-out formulas cost, the rest is image quality.

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

import argparse
import json
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from common.data import fixed_size_chunks
from mathart import losses
from mathart.input_pipeline import Split


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
        from mathart.render import Style, render

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
    from mathart.models import vgg16

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


# ---- command line -------------------------------------------------------------------------------
def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m mathart.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--workdir", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--num", type=int, default=200, help="formulas to generate (the first N of the split)"
    )
    p.add_argument("--k", type=int, default=10, help="candidates per retrieval (chance 1/K)")
    p.add_argument("--diversity-formulas", type=int, default=16)
    p.add_argument("--diversity-seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--sampler", default=None, choices=["ddim", "ddpm"])
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--batch", type=int, default=100, help="samples per generator call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", default="best", choices=["best", "latest"])
    p.add_argument("--vgg-weights", default=None, help="published VGG16 weights (.h5/.npz)")
    p.add_argument("--out", default=None, help="JSON path (default WORKDIR/eval_<split>.json)")
    return p.parse_args(argv)


def _generate_all(generate, params, split: Split, batch: int, rng) -> np.ndarray:
    from mathart.sample import to_uint8

    out = []
    for i, (idx, real) in enumerate(fixed_size_chunks(len(split), batch)):
        images = generate(
            params,
            split.arrays["tokens"][idx],
            split.arrays["style"][idx],
            jax.random.fold_in(rng, i),
        )
        out.append(to_uint8(images)[:real])
    return np.concatenate(out)


def main(argv=None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    from common.checkpoint import load_run
    from configs.mathart import get_config
    from mathart import diffusion, input_pipeline
    from mathart import task as task_lib
    from mathart.sample import build_generator, pair_grid, upscale

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run = load_run(args.workdir, which=args.which, defaults=get_config)
    config = run.config
    tokenizer = task_lib.tokenizer_from_meta(run.meta)
    split = input_pipeline.load_eval_split(config, args.split, tokenizer, num=args.num)
    s = config.sample
    model = task_lib.build_model(config, task_lib.num_families_of(config))
    steps = args.steps or s.num_inference_steps
    sampler = args.sampler or s.sampler
    guidance = s.guidance_scale if args.guidance is None else args.guidance
    generate = build_generator(
        model,
        diffusion.cosine_schedule(config.diffusion.timesteps),
        image_size=config.data.image_size,
        num_steps=steps,
        method=sampler,
        eta=s.eta,
        prediction=config.diffusion.prediction,
        clip_x0=s.clip_x0,
        guidance_scale=guidance,
    )
    rng = jax.random.key(args.seed)
    t0 = time.time()
    generated = _generate_all(generate, run.eval_params, split, args.batch, rng)
    gen_s = time.time() - t0
    candidates = retrieval_candidates(split, config.data.image_size, args.k)
    rows = score_rows(generated, candidates)
    result = {
        "workdir": os.path.abspath(args.workdir),
        "checkpoint_step": run.step,
        "split": args.split,
        "k": int(candidates.shape[1]),
        "candidates": "renders in the sample's style"
        if np.all(split.style_seeds >= 0)
        else "images",
        "sampler": f"{sampler}, {steps} steps, guidance {guidance}",
        "generation_seconds": gen_s,
        **score(generated, split.arrays["image"], candidates, rows),
    }
    if np.all(split.arrays["family"] >= 0):  # procedural data: which kinds are recognised
        from mathart.dataset.families import COMPLEXITY_NAMES, FAMILIES, FAMILY_COMPLEXITY

        family = split.arrays["family"]
        level = np.asarray(FAMILY_COMPLEXITY)[family]
        result["by_complexity"] = breakdown(rows, level, COMPLEXITY_NAMES)
        result["by_family"] = breakdown(rows, family, FAMILIES)
    m, n = min(args.diversity_formulas, len(split)), args.diversity_seeds
    if m >= 1 and n >= 2:
        sub = split.take(np.repeat(np.arange(m), n))
        samples = _generate_all(
            generate, run.eval_params, sub, args.batch, jax.random.fold_in(rng, 10**6)
        )
        result.update(diversity(samples.reshape(m, n, *samples.shape[1:])))
    if args.vgg_weights:
        result.update(vgg_scores(args.vgg_weights, generated, split.arrays["image"]))
    out = args.out or os.path.join(args.workdir, f"eval_{args.split}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    grid_path = os.path.splitext(out)[0] + "_grid.png"
    from PIL import Image

    shown = min(32, len(split))
    grid = pair_grid(generated[:shown], split.arrays["image"][:shown])
    Image.fromarray(upscale(grid, s.grid_upscale)).save(grid_path)
    for key, value in result.items():
        if key == "by_family":
            continue  # in the JSON file; too long for the terminal
        if isinstance(value, dict):
            for group, stats in value.items():
                print(f"{key + ' ' + group:28s} {stats}")
        else:
            print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    print(f"wrote {out} and {grid_path} ([generated | ground truth] pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
