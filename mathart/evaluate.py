"""Honest metrics for a trained mathart run (command line).

    python -m mathart.evaluate runs/mathart_tiny32_cpu [--split test] [--num 200]
        [--k 10] [--diversity-formulas 16 --diversity-seeds 4] [--steps 50] [--guidance 3]
        [--vgg-weights vgg16.h5] [--which best|latest|STEP] [--out FILE.json]

Every figure is computed here from samples generated now; nothing is copied or hard-coded. With
``--num N`` the first N examples of the split (for val and test, held-out formulas never seen in
training) are generated once each, in their ground-truth style, with the run's EMA params and
sampler. ``--split train`` measures the same on formulas the run trained on: the gap to ``test``
is what held-out formulas cost, the rest is image quality.

The scores and their definitions are `mathart.image_metrics`'s; generation is
`mathart.generate`'s. This file is only the command line: nothing imports it.
"""

import argparse
import json
import logging
import os
import sys
import time

import jax
import numpy as np

from common.checkpoint import load_run
from common.cli import add_run_arguments, handles_user_errors, run_arguments
from configs.mathart import get_config  # a command line may read the configs; libraries do not
from mathart import image_metrics, input_pipeline
from mathart.generate import captioned_pairs, generate_all, generator_from_config
from mathart.models import build_model, num_families_of
from mathart.task import tokenizer_from_meta


# ---- command line -------------------------------------------------------------------------------
def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m mathart.evaluate", description=__doc__.split("\n")[0]
    )
    add_run_arguments(p)
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
    p.add_argument(
        "--temperature", type=float, default=None, help="starting-noise scale (default: config)"
    )
    p.add_argument(
        "--mean-only",
        action="store_true",
        help="score the regression mean alone (runs trained with model.regression)",
    )
    p.add_argument("--batch", type=int, default=100, help="samples per generator call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vgg-weights", default=None, help="published VGG16 weights (.h5/.npz)")
    p.add_argument("--out", default=None, help="JSON path (default WORKDIR/eval_<split>.json)")
    args = p.parse_args(argv)
    args.workdir, args.which = run_arguments(p, args)
    return args


@handles_user_errors
def main(argv=None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run = load_run(args.workdir, which=args.which, defaults=get_config)
    config = run.config
    if args.mean_only and not config.model.regression:
        print(
            f"--mean-only: {args.workdir} was trained without a regression mean "
            "(config.model.regression is False); drop --mean-only",
            file=sys.stderr,
        )
        return 2
    # A regression_only run has no trained denoiser: its samples are the mean.
    mean_only = args.mean_only or config.model.regression_only
    tokenizer = tokenizer_from_meta(run.meta)
    split = input_pipeline.load_eval_split(config, args.split, tokenizer, num=args.num)
    model = build_model(config, num_families_of(config))
    steps = args.steps or config.sample.num_inference_steps
    sampler = args.sampler or config.sample.sampler
    guidance = config.sample.guidance_scale if args.guidance is None else args.guidance
    temperature = config.sample.temperature if args.temperature is None else args.temperature
    generate = generator_from_config(
        model,
        config,
        num_steps=steps,
        method=sampler,
        guidance_scale=guidance,
        temperature=temperature,
        mean_only=mean_only,
    )
    rng = jax.random.key(args.seed)
    t0 = time.time()
    generated = generate_all(generate, run.eval_params, split, args.batch, rng)
    gen_s = time.time() - t0
    candidates = image_metrics.retrieval_candidates(split, config.data.image_size, args.k)
    rows = image_metrics.score_rows(generated, candidates)
    result = {
        "workdir": os.path.abspath(args.workdir),
        "checkpoint_step": run.step,
        "split": args.split,
        "k": int(candidates.shape[1]),
        "candidates": "renders in the sample's style"
        if np.all(split.style_seeds >= 0)
        else "images",
        "sampler": "the regression mean alone"
        if mean_only
        else f"{sampler}, {steps} steps, guidance {guidance}"
        + ("" if temperature == 1.0 else f", temperature {temperature}"),
        "generation_seconds": gen_s,
        **image_metrics.score(generated, split.arrays["image"], candidates, rows),
    }
    if np.all(split.arrays["family"] >= 0):  # procedural data: which kinds are recognised
        from mathart.dataset.families import COMPLEXITY_NAMES, FAMILIES, FAMILY_COMPLEXITY

        family = split.arrays["family"]
        level = np.asarray(FAMILY_COMPLEXITY)[family]
        result["by_complexity"] = image_metrics.breakdown(rows, level, COMPLEXITY_NAMES)
        result["by_family"] = image_metrics.breakdown(rows, family, FAMILIES)
    m, n = min(args.diversity_formulas, len(split)), args.diversity_seeds
    if m >= 1 and n >= 2:
        sub = split.take(np.repeat(np.arange(m), n))
        samples = generate_all(
            generate, run.eval_params, sub, args.batch, jax.random.fold_in(rng, 10**6)
        )
        result.update(image_metrics.diversity(samples.reshape(m, n, *samples.shape[1:])))
    if args.vgg_weights:
        result.update(image_metrics.vgg_scores(args.vgg_weights, generated, split.arrays["image"]))
    name = f"eval_{args.split}{'_mean' if args.mean_only else ''}.json"
    out = args.out or os.path.join(args.workdir, name)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    grid_path = os.path.splitext(out)[0] + "_grid.png"
    from PIL import Image

    shown = min(32, len(split))
    grid = captioned_pairs(
        generated[:shown],
        split.arrays["image"][:shown],
        [str(f) for f in split.formulas[:shown]],
        scale=config.sample.grid_upscale,
    )
    Image.fromarray(grid).save(grid_path)
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
