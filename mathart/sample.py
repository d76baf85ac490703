"""Generate images for formulas from a trained mathart run (library + command line).

    python -m mathart.sample --workdir runs/mathart_tiny32_cpu \\
        --formula "r = sin(4*theta)" --n 8 --out grid.png [--style-seed 7 | --style none]
        [--steps 50] [--sampler ddim|ddpm] [--guidance 3.0] [--seed 0] [--which best|latest]

Loads the EMA params of the run's best checkpoint (`common.checkpoint.load_run`) and the
tokenizer saved with it. Each of the ``n`` samples gets its own noise; by default sample ``k``
is drawn in style ``k`` (``Style.from_seed(k)``), so the grid shows the formula in n styles;
``--style-seed S`` draws all n in one style (then only the noise differs) and ``--style none``
lets the model choose colours. The grid's first row is the reference render of the formula in
the same styles. An invalid formula prints the validator's message (position and reason) and
exits with status 2; nothing is loaded before the formula has been checked.

`build_generator` is the jitted sampler the Task's sample-grid hook and `mathart.evaluate`
share.
"""

import argparse
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mathart import diffusion
from mathart.models import MathArtDenoiser, concat_conditions

Generator = Callable[[object, jax.Array, jax.Array, jax.Array], jax.Array]


def build_generator(
    model: MathArtDenoiser,
    schedule: diffusion.Schedule,
    *,
    image_size: int,
    num_steps: int,
    method: str = "ddim",
    eta: float = 0.0,
    prediction: str = "v",
    clip_x0: bool = True,
    guidance_scale: float = 1.0,
) -> Generator:
    """Returns jitted ``generate(params, tokens [B,L] int32, style [B,S] f32, rng)`` ->
    float32 [B, R, R, 3] in [-1, 1].

    Classifier-free guidance runs the conditional and the null-formula condition (same style) as
    one batch of 2B per step; ``guidance_scale == 1`` skips the null half. A self-conditioned
    model gets the previous step's guided x0 estimate in both halves.
    """
    T = schedule.num_timesteps

    @jax.jit
    def generate(params, tokens, style, rng):
        variables = {"params": params}
        mask = tokens != 0
        cond, uncond = model.apply(
            variables, tokens, mask, style, method=MathArtDenoiser.conditions
        )
        guided = guidance_scale != 1.0
        both = concat_conditions(cond, uncond) if guided else cond

        def denoise(x, t, x0_prev=None):
            t_frac = (t.astype(jnp.float32) + 1.0) / T
            if not guided:
                return model.apply(
                    variables, x, t_frac, cond, x0_prev, method=MathArtDenoiser.denoise
                )
            twice = lambda a: None if a is None else jnp.concatenate([a, a])
            out = model.apply(
                variables,
                twice(x),
                twice(t_frac),
                both,
                twice(x0_prev),
                method=MathArtDenoiser.denoise,
            )
            c, u = jnp.split(out, 2)
            return diffusion.guided(c, u, guidance_scale)

        k_init, k_steps = jax.random.split(rng)
        x_init = jax.random.normal(k_init, (tokens.shape[0], image_size, image_size, 3))
        return diffusion.sample(
            denoise,
            schedule,
            x_init,
            k_steps,
            num_steps=num_steps,
            method=method,
            eta=eta,
            prediction=prediction,
            clip_x0=clip_x0,
            self_condition=model.self_condition,
        )

    return generate


def to_uint8(images: jax.Array | np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 [0, 255]."""
    x = np.asarray(images, np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def tile(images: np.ndarray, columns: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """uint8 [N, H, W, 3] -> one uint8 image, ``columns`` wide, ``pad`` pixels between."""
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), fill, np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement so 32-pixel samples are visible in TensorBoard."""
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def pair_grid(generated: np.ndarray, truth: np.ndarray, pairs_per_row: int = 4) -> np.ndarray:
    """Each generated image beside its ground-truth render: [gen | truth] pairs, tiled."""
    pairs = np.concatenate([generated, truth], axis=2)  # [N, H, 2W, 3]
    return tile(pairs, pairs_per_row, pad=3)


# ---- command line -------------------------------------------------------------------------------
def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mathart.sample", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a mathart run directory")
    p.add_argument("--formula", required=True, help='e.g. "r = sin(4*theta)"')
    p.add_argument("--n", type=int, default=8, help="number of samples")
    p.add_argument("--out", default="samples.png", help="PNG file to write")
    p.add_argument("--style-seed", type=int, default=None, help="one style for all samples")
    p.add_argument("--style", choices=["seeds", "none"], default="seeds")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: config)")
    p.add_argument("--sampler", choices=diffusion.SAMPLERS, default=None)
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--which", choices=["best", "latest"], default="best")
    p.add_argument("--scale", type=int, default=None, help="PNG enlargement (default: config)")
    return p.parse_args(argv)


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
    from configs.mathart import get_config
    from mathart import task as task_lib
    from mathart.input_pipeline import style_features
    from mathart.render import Style, render

    run = load_run(args.workdir, which=args.which, defaults=get_config)
    config = run.config
    tokenizer = task_lib.tokenizer_from_meta(run.meta)
    model = task_lib.build_model(config, task_lib.num_families_of(config))
    schedule = diffusion.cosine_schedule(config.diffusion.timesteps)
    s = config.sample
    generate = build_generator(
        model,
        schedule,
        image_size=config.data.image_size,
        num_steps=args.steps or s.num_inference_steps,
        method=args.sampler or s.sampler,
        eta=s.eta,
        prediction=config.diffusion.prediction,
        clip_x0=s.clip_x0,
        guidance_scale=s.guidance_scale if args.guidance is None else args.guidance,
    )
    if args.style == "none":
        seeds = np.full((args.n,), -1, np.int32)
    elif args.style_seed is not None:
        seeds = np.full((args.n,), args.style_seed, np.int32)
    else:
        seeds = np.arange(args.n, dtype=np.int32)
    tokens = np.stack([tokenizer.encode(formula.text, config.model.max_formula_tokens)] * args.n)
    images = to_uint8(
        generate(run.eval_params, tokens, style_features(seeds), jax.random.key(args.seed))
    )
    rows = [images]
    if args.style != "none":
        size = config.data.image_size
        rows.insert(0, render([formula] * args.n, size, [Style.from_seed(int(k)) for k in seeds]))
    grid = tile(np.concatenate(rows), columns=args.n)
    grid = upscale(grid, args.scale or s.grid_upscale)
    from PIL import Image

    Image.fromarray(grid).save(args.out)
    print(
        f"wrote {args.out}: {args.n} samples of '{formula.text}' from {args.workdir} "
        f"(step {run.step}, {'reference renders on top, ' if len(rows) > 1 else ''}"
        f"{args.steps or s.num_inference_steps} {args.sampler or s.sampler} steps)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
