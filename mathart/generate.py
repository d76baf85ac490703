"""Sampling images from formulas with a trained denoiser, and laying samples out as grids
(library): the Task's sample-grid hook, `mathart.sample` and `mathart.evaluate` all generate
through `build_generator`.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common.data import fixed_size_chunks
from mathart import diffusion
from mathart.input_pipeline import Split
from mathart.models import MathArtDenoiser, concat_conditions

Generator = Callable[..., jax.Array]  # (params, tokens, style, rng, numbers=None) -> images


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
    temperature: float = 1.0,
    mean_only: bool = False,
) -> Generator:
    """Returns jitted ``generate(params, tokens [B,L] int32, style [B,S] f32, rng, numbers
    [B,L] f32 | None)`` -> float32 [B, R, R, 3] in [-1, 1] (``numbers``: the tokens' number
    values, `Tokenizer.numbers_batch`, needed by a model with ``number_features``).

    Classifier-free guidance runs the conditional and the null-formula condition (same style) as
    one batch of 2B per step; ``guidance_scale == 1`` skips the null half. A self-conditioned
    model gets the previous step's guided x0 estimate in both halves. A model with a regression
    mean (``model.regression``) draws the mean once, from the formula and style, gives it to
    the denoiser in both halves, samples the residual, and returns mean + residual;
    ``mean_only`` returns the mean alone (what the regression network draws, no sampling).
    ``temperature`` scales the starting noise x_T (reduced-temperature sampling, Kingma &
    Dhariwal 2018, "Glow", §5): below 1 trades diversity for fidelity; with DDIM at eta 0 the
    whole chain is then a deterministic function of that smaller noise, and at 0 the sample is
    the formula's one most likely-looking image under the model.
    """
    if temperature < 0:
        raise ValueError(f"sampling temperature must be >= 0, got {temperature}")
    if mean_only and not model.regression:
        raise ValueError("mean_only needs a model with a regression mean (config.model.regression)")
    T = schedule.num_timesteps

    @jax.jit
    def generate(params, tokens, style, rng, numbers=None):
        variables = {"params": params}
        mask = tokens != 0
        cond, uncond = model.apply(
            variables, tokens, mask, style, numbers, method=MathArtDenoiser.conditions
        )
        shape = (tokens.shape[0], image_size, image_size, 3)
        mean = None
        if model.regression:
            mean = model.apply(variables, cond, shape, method=MathArtDenoiser.regression_mean)
            if mean_only:
                return jnp.clip(mean, -1.0, 1.0)
        guided = guidance_scale != 1.0
        both = concat_conditions(cond, uncond) if guided else cond

        def denoise(x, t, x0_prev=mean):
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
        x_init = temperature * jax.random.normal(k_init, shape)
        x0 = diffusion.sample(
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
            x0_offset=mean,
        )
        return x0 if mean is None else jnp.clip(mean + x0, -1.0, 1.0)

    return generate


def generator_from_config(
    model: MathArtDenoiser,
    config,
    *,
    num_steps: int | None = None,
    method: str | None = None,
    guidance_scale: float | None = None,
    temperature: float | None = None,
    mean_only: bool = False,
    schedule: diffusion.Schedule | None = None,
) -> Generator:
    """`build_generator` as a run's ``config.sample`` describes it; the arguments given (a
    tool's flags) override their config value. A ``model.regression_only`` run has no trained
    denoiser: its generator is the regression mean. ``schedule``: the run's noise schedule
    when the caller holds it (built here otherwise, which must not happen inside a trace)."""
    s = config.sample
    return build_generator(
        model,
        schedule or diffusion.cosine_schedule(config.diffusion.timesteps),
        image_size=config.data.image_size,
        num_steps=num_steps or s.num_inference_steps,
        method=method or s.sampler,
        eta=s.eta,
        prediction=config.diffusion.prediction,
        clip_x0=s.clip_x0,
        guidance_scale=s.guidance_scale if guidance_scale is None else guidance_scale,
        temperature=s.temperature if temperature is None else temperature,
        mean_only=mean_only or config.model.regression_only,
    )


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


def generate_all(generate: Generator, params, split: Split, batch: int, rng) -> np.ndarray:
    """uint8 samples of every example of `split` (its tokens and styles), `batch` per call
    (fixed-size chunks: one compile), chunk i drawn with fold_in(rng, i)."""
    out = []
    for i, (idx, real) in enumerate(fixed_size_chunks(len(split), batch)):
        images = generate(
            params,
            split.arrays["tokens"][idx],
            split.arrays["style"][idx],
            jax.random.fold_in(rng, i),
            split.arrays["numbers"][idx],
        )
        out.append(to_uint8(images)[:real])
    return np.concatenate(out)


CAPTION_PX = 14  # one line of PIL's default font, below each pair


def captioned_pairs(
    generated: np.ndarray,
    truth: np.ndarray,
    captions: Sequence[str],
    *,
    pairs_per_row: int = 4,
    scale: int = 1,
) -> np.ndarray:
    """Sample grids a person can read: each [generated | ground truth] pair enlarged `scale`x,
    its caption (the formula) below it, and a header saying which side is which."""
    from PIL import Image, ImageDraw, ImageFont

    pairs = np.stack([upscale(p, scale) for p in np.concatenate([generated, truth], axis=2)])
    n, h, w, _ = pairs.shape
    pad, rows = 3, -(-n // pairs_per_row)
    header = CAPTION_PX + pad
    cell_h = h + CAPTION_PX + pad
    canvas = Image.new(
        "RGB", (pairs_per_row * (w + pad) + pad, header + rows * cell_h + pad), "white"
    )
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((pad, pad), "each pair: generated | ground truth", fill="black", font=font)
    max_chars = max(4, w // 6)
    for i, (pair, caption) in enumerate(zip(pairs, captions)):
        r, c = divmod(i, pairs_per_row)
        x, y = pad + c * (w + pad), header + r * cell_h
        canvas.paste(Image.fromarray(pair), (x, y))
        text = caption if len(caption) <= max_chars else caption[: max_chars - 1] + "…"
        draw.text((x, y + h + 1), text, fill="black", font=font)
    return np.asarray(canvas)
