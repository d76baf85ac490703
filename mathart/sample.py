"""Generate images for formulas from a trained mathart run (command line).

    python -m mathart.sample runs/mathart_tiny32_cpu \\
        --formula "r = sin(4*theta)" --n 8 --out grid.png [--style-seed 7 | --style none]
        [--steps 50] [--sampler ddim|ddpm] [--guidance 3.0] [--seed 0] [--which best|latest|STEP]

Loads the EMA params of the run's best checkpoint (`common.checkpoint.load_run`) and the
tokenizer saved with it. Each of the ``n`` samples gets its own noise; by default sample ``k``
is drawn in style ``k`` (``Style.from_seed(k)``), so the grid shows the formula in n styles;
``--style-seed S`` draws all n in one style (then only the noise differs) and ``--style none``
lets the model choose colours. The grid's first row is the reference render of the formula in
the same styles. An invalid formula prints the validator's message (position and reason) and
exits with status 2; nothing is loaded before the formula has been checked.

Generation is `mathart.generate`'s (the sampler the Task's sample-grid hook and
`mathart.evaluate` use); this file is only the command line: nothing imports it.
"""

import argparse
import sys

import jax
import numpy as np

from common.cli import add_run_arguments, handles_user_errors, run_arguments
from mathart import diffusion


# ---- command line -------------------------------------------------------------------------------
def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mathart.sample", description=__doc__.split("\n")[0])
    add_run_arguments(p)
    p.add_argument("--formula", required=True, help='e.g. "r = sin(4*theta)"')
    p.add_argument("--n", type=int, default=8, help="number of samples")
    p.add_argument("--out", default="samples.png", help="PNG file to write")
    p.add_argument("--style-seed", type=int, default=None, help="one style for all samples")
    p.add_argument("--style", choices=["seeds", "none"], default="seeds")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: config)")
    p.add_argument("--sampler", choices=diffusion.SAMPLERS, default=None)
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: config)")
    p.add_argument(
        "--temperature", type=float, default=None, help="starting-noise scale (default: config)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=None, help="PNG enlargement (default: config)")
    args = p.parse_args(argv)
    args.workdir, args.which = run_arguments(p, args)
    return args


@handles_user_errors
def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    from mathart.formula import FormulaError, parse

    try:
        formula = parse(args.formula)
    except FormulaError as e:
        print(f"invalid formula: {e}", file=sys.stderr)
        return 2
    if args.n < 1:
        print(f"--n must be >= 1, got {args.n}", file=sys.stderr)
        return 2

    from common.checkpoint import load_run
    from configs.mathart import get_config  # a command line may read the configs
    from mathart.generate import generator_from_config, tile, to_uint8, upscale
    from mathart.input_pipeline import style_features
    from mathart.models import build_model, num_families_of
    from mathart.render import Style, render
    from mathart.task import tokenizer_from_meta

    run = load_run(args.workdir, which=args.which, defaults=get_config)
    config = run.config
    tokenizer = tokenizer_from_meta(run.meta)
    model = build_model(config, num_families_of(config))
    generate = generator_from_config(
        model,
        config,
        num_steps=args.steps,
        method=args.sampler,
        guidance_scale=args.guidance,
        temperature=args.temperature,
    )
    if args.style == "none":
        seeds = np.full((args.n,), -1, np.int32)
    elif args.style_seed is not None:
        seeds = np.full((args.n,), args.style_seed, np.int32)
    else:
        seeds = np.arange(args.n, dtype=np.int32)
    max_len = config.model.max_formula_tokens
    tokens = np.stack([tokenizer.encode(formula.text, max_len)] * args.n)
    numbers = np.stack([tokenizer.numbers_of(formula.text, max_len)] * args.n)
    images = to_uint8(
        generate(run.eval_params, tokens, style_features(seeds), jax.random.key(args.seed), numbers)
    )
    rows = [images]
    if args.style != "none":
        size = config.data.image_size
        rows.insert(0, render([formula] * args.n, size, [Style.from_seed(int(k)) for k in seeds]))
    grid = tile(np.concatenate(rows), columns=args.n)
    grid = upscale(grid, args.scale or config.sample.grid_upscale)
    from PIL import Image

    Image.fromarray(grid).save(args.out)
    print(
        f"wrote {args.out}: {args.n} samples of '{formula.text}' from {args.workdir} "
        f"(step {run.step}, {'reference renders on top, ' if len(rows) > 1 else ''}"
        f"{args.steps or config.sample.num_inference_steps} "
        f"{args.sampler or config.sample.sampler} steps)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
