"""Gaussian diffusion maths: the cosine noise schedule, training targets and the samplers.

Used by `mathart.task` (training targets, the sample-grid hook), `mathart.sample` and
`mathart.evaluate`. Everything here is a pure function of arrays; the network is passed in as
``denoise_fn(x_t, t) -> model output``.

Conventions (Ho et al. 2020; Nichol & Dhariwal 2021; Salimans & Ho 2022):

- Discrete steps ``t = 0 .. T-1``; ``alphas_cumprod[t]`` (ᾱ_t) falls from ≈1 (t = 0, almost
  clean) to ≈0 (t = T-1, almost pure noise). ``alpha_t = sqrt(ᾱ_t)``, ``sigma_t = sqrt(1-ᾱ_t)``.
- Forward process (variance preserving): ``x_t = alpha_t * x0 + sigma_t * eps``.
- The network predicts either ``eps`` or the velocity ``v = alpha_t * eps - sigma_t * x0``;
  both give ``x0 = alpha_t * x_t - sigma_t * v`` and ``eps = sigma_t * x_t + alpha_t * v``.
- Samplers walk a *re-spaced* subsequence ``tau_S > ... > tau_1`` of the training steps and
  always use ᾱ at the selected steps (ᾱ_{tau_i} -> ᾱ_{tau_{i-1}}), with ᾱ = 1 after the last
  step. Using single-step α_t/β_t while skipping steps (the bug in the small reference model's
  sampler, jasher4994/Diffusion ``conditional_diffusion/conditional_diffusion_model/sampler.py``,
  June 2025) gives a wrong update; ``tests/mathart/test_diffusion.py`` checks that the
  re-spaced update is exact.
"""

from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

PREDICTIONS = ("v", "eps")
SAMPLERS = ("ddim", "ddpm")
STEP_WEIGHTINGS = ("none", "min_snr", "x0")


def require_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """The one "unknown X; choose one of" error of this module (and of the task's config)."""
    if value not in choices:
        raise ValueError(f"unknown {what} '{value}'; choose one of: {', '.join(choices)}")


# (x_t [B,...], t [B] int32) -> out; with self-conditioning (x_t, t, x0_prev [B,...]) -> out.
DenoiseFn = Callable[..., jax.Array]


@flax.struct.dataclass
class Schedule:
    """ᾱ_t for t = 0 .. T-1 (float32); the only state the maths below needs."""

    alphas_cumprod: jax.Array  # [T]

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def cosine_schedule(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal (2021) cosine schedule: ᾱ(u) = f(u)/f(0), f(u) = cos²((u+s)/(1+s)·π/2).

    Step t covers u in [t/T, (t+1)/T]; β_t = 1 - ᾱ((t+1)/T)/ᾱ(t/T) is clipped at ``max_beta``
    (their choice, to avoid the singularity at u = 1) and ᾱ_t = prod_{i<=t} (1 - β_i).
    Computed in float64 on the host, stored as float32.
    """
    if num_timesteps < 2:
        raise ValueError(f"diffusion.timesteps must be >= 2, got {num_timesteps}")
    u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    f = np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    return Schedule(alphas_cumprod=jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def _bcast(values: jax.Array, like: jax.Array) -> jax.Array:
    """[B] -> [B, 1, 1, ...] matching ``like``'s rank."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def alpha_sigma(schedule: Schedule, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) = (sqrt(ᾱ_t), sqrt(1 - ᾱ_t)) for integer steps ``t`` [B]."""
    abar = schedule.alphas_cumprod[t]
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """x_t = alpha_t x0 + sigma_t eps (the forward process at step t)."""
    alpha, sigma = alpha_sigma(schedule, t)
    return _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * noise


def training_target(
    schedule: Schedule, x0: jax.Array, noise: jax.Array, t: jax.Array, prediction: str
) -> jax.Array:
    """What the network is trained to output: ``v`` or ``eps``."""
    require_choice(prediction, PREDICTIONS, "prediction")
    if prediction == "eps":
        return noise
    alpha, sigma = alpha_sigma(schedule, t)
    return _bcast(alpha, x0) * noise - _bcast(sigma, x0) * x0


def _x0_eps_from_output(
    x_t: jax.Array, out: jax.Array, alpha: jax.Array, sigma: jax.Array, prediction: str
) -> tuple[jax.Array, jax.Array]:
    require_choice(prediction, PREDICTIONS, "prediction")
    alpha, sigma = _bcast(alpha, x_t), _bcast(sigma, x_t)
    if prediction == "v":
        return alpha * x_t - sigma * out, sigma * x_t + alpha * out
    return (x_t - sigma * out) / alpha, out


def predict_x0_eps(
    schedule: Schedule, x_t: jax.Array, t: jax.Array, out: jax.Array, prediction: str
) -> tuple[jax.Array, jax.Array]:
    """(x0_hat, eps_hat) implied by the network output at step t."""
    alpha, sigma = alpha_sigma(schedule, t)
    return _x0_eps_from_output(x_t, out, alpha, sigma, prediction)


def loss_step_weights(
    schedule: Schedule, weighting: str, prediction: str, gamma: float = 5.0
) -> jax.Array:
    """Per-step weights m_t [T] of the denoising loss, mean 1 over the T steps.

    In x0 terms (error |x0_hat - x0|²) the plain v loss weights step t by SNR_t + 1 and the
    plain eps loss by SNR_t (SNR_t = ᾱ_t / (1 - ᾱ_t)), so the almost-clean steps dominate.
    ``weighting`` picks another weight λ(SNR) of the x0 error and m_t converts it to the loss
    actually computed (m_t = λ / (SNR + 1) for v, λ / SNR for eps):

    - ``"none"``: the plain loss, m_t = 1.
    - ``"min_snr"``: λ = min(SNR, γ) (Min-SNR-γ, Hang et al. 2023; they use γ = 5): the
      clean end is capped, the noisiest steps fade out.
    - ``"x0"``: λ = 1, every step's x0 error counts the same: the noisy steps, where the
      layout of the picture is decided, get more of the gradient than in the plain loss.
      v only (for eps it would weight the last step by 1 / SNR ≈ 10⁷).

    m_t is divided by its mean (t is drawn uniformly), so the term keeps its configured share
    beside the loss's other terms.
    """
    require_choice(prediction, PREDICTIONS, "prediction")
    require_choice(weighting, STEP_WEIGHTINGS, "loss step weighting")
    abar = np.asarray(schedule.alphas_cumprod, np.float64)
    if weighting == "none":
        return jnp.ones(abar.shape, jnp.float32)
    if weighting == "x0" and prediction != "v":
        raise ValueError("the 'x0' loss step weighting needs v-prediction (diffusion.prediction)")
    if weighting == "min_snr" and not gamma > 0:
        raise ValueError(f"Min-SNR needs gamma > 0 (loss.min_snr_gamma), got {gamma}")
    snr = abar / (1.0 - abar)
    x0_weight = np.minimum(snr, gamma) if weighting == "min_snr" else np.ones_like(snr)
    w = x0_weight / (snr + 1.0 if prediction == "v" else snr)
    return jnp.asarray(w / w.mean(), jnp.float32)


def respaced_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
    """``num_steps`` training steps, evenly spaced, descending from T-1 to 0 (int32)."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(
            f"sampling steps must be in [1, {num_timesteps}] (the training timesteps), "
            f"got {num_steps}"
        )
    if num_steps == 1:
        return np.array([num_timesteps - 1], np.int32)
    steps = np.round(np.linspace(num_timesteps - 1, 0, num_steps)).astype(np.int32)
    if len(np.unique(steps)) != num_steps:  # cannot happen for num_steps <= T; guard anyway
        raise AssertionError(f"re-spacing produced duplicate steps: {steps}")
    return steps


def ddim_update(
    x_t: jax.Array,
    x0_hat: jax.Array,
    eps_hat: jax.Array,
    abar_t: jax.Array,
    abar_prev: jax.Array,
    eta: float,
    noise: jax.Array,
) -> jax.Array:
    """One DDIM step (Song et al. 2021, eq. 12) from ᾱ_t to ᾱ_prev (scalars or [B]).

    x_prev = sqrt(ᾱ_prev) x0 + sqrt(1 - ᾱ_prev - s²) eps + s z, with
    s = eta * sqrt((1-ᾱ_prev)/(1-ᾱ_t)) * sqrt(1 - ᾱ_t/ᾱ_prev). eta = 0 is deterministic DDIM;
    eta = 1 is the ancestral DDPM step for the re-spaced chain.
    """
    del x_t
    abar_t, abar_prev = _bcast(abar_t, x0_hat), _bcast(abar_prev, x0_hat)
    s = eta * jnp.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    direction = jnp.sqrt(jnp.maximum(1 - abar_prev - s**2, 0.0))
    return jnp.sqrt(abar_prev) * x0_hat + direction * eps_hat + s * noise


def ddpm_update(
    x_t: jax.Array, x0_hat: jax.Array, abar_t: jax.Array, abar_prev: jax.Array, noise: jax.Array
) -> jax.Array:
    """One ancestral step: a sample of the posterior q(x_prev | x_t, x0 = x0_hat).

    With β' = 1 - ᾱ_t/ᾱ_prev (the re-spaced chain's β): mean =
    sqrt(ᾱ_prev) β'/(1-ᾱ_t) x0 + sqrt(1-β') (1-ᾱ_prev)/(1-ᾱ_t) x_t and variance
    β' (1-ᾱ_prev)/(1-ᾱ_t) (Ho et al. 2020, eq. 6-7).
    """
    abar_t, abar_prev = _bcast(abar_t, x_t), _bcast(abar_prev, x_t)
    beta = 1 - abar_t / abar_prev
    mean = (
        jnp.sqrt(abar_prev) * beta / (1 - abar_t) * x0_hat
        + jnp.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar_t) * x_t
    )
    var = beta * (1 - abar_prev) / (1 - abar_t)
    return mean + jnp.sqrt(var) * noise


def guided(cond_out: jax.Array, uncond_out: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale (cond - uncond).

    scale = 1 is the plain conditional model; scale = 0 the unconditional one.
    """
    return uncond_out + scale * (cond_out - uncond_out)


def sample(
    denoise_fn: DenoiseFn,
    schedule: Schedule,
    x_init: jax.Array,
    rng: jax.Array,
    *,
    num_steps: int,
    method: str = "ddim",
    eta: float = 0.0,
    prediction: str = "v",
    clip_x0: bool = True,
    self_condition: bool = False,
    x0_offset: jax.Array | None = None,
) -> jax.Array:
    """Runs a sampler from ``x_init`` (pure noise at t = T-1) to x0; returns float32 x0.

    ``method="ddim"`` (with ``eta``) or ``"ddpm"`` (ancestral posterior sampling), both over the
    re-spaced steps ``respaced_timesteps(T, num_steps)``; ``num_steps = T`` is the full chain.
    ``clip_x0`` clamps x0_hat to the data range [-1, 1] and recomputes eps_hat from it, so the
    update stays consistent. With ``self_condition`` the network is called as
    ``denoise_fn(x_t, t, x0_prev)`` with the previous step's x0_hat clipped to [-1, 1] (zeros at
    the first step; Chen et al. 2023). ``x0_offset`` (the regression mean of
    `mathart.models.MathArtDenoiser`): the chain samples a residual, and the image is
    ``x0_offset + x0``; ``clip_x0`` then keeps that image, not the residual, in [-1, 1].
    One `lax.scan` over steps: traced once, any step count.
    """
    require_choice(method, SAMPLERS, "sampler")
    steps = respaced_timesteps(schedule.num_timesteps, num_steps)
    abar = np.asarray(schedule.alphas_cumprod, np.float64)
    abar_t = jnp.asarray(abar[steps], jnp.float32)
    abar_prev = jnp.asarray(np.append(abar[steps[1:]], 1.0), jnp.float32)
    batch = x_init.shape[0]
    lo, hi = (-1.0, 1.0) if x0_offset is None else (-1.0 - x0_offset, 1.0 - x0_offset)

    def body(carry, inputs):
        x, x0_prev = carry
        t, a_t, a_prev, index = inputs
        t_batch = jnp.full((batch,), t, jnp.int32)
        out = denoise_fn(x, t_batch, x0_prev) if self_condition else denoise_fn(x, t_batch)
        out = out.astype(jnp.float32)
        alpha, sigma = jnp.sqrt(a_t), jnp.sqrt(1 - a_t)
        x0_hat, eps_hat = _x0_eps_from_output(x, out, alpha, sigma, prediction)
        if clip_x0:
            x0_hat = jnp.clip(x0_hat, lo, hi)
            eps_hat = (x - alpha * x0_hat) / sigma
        noise = jax.random.normal(jax.random.fold_in(rng, index), x.shape, jnp.float32)
        if method == "ddim":
            x = ddim_update(x, x0_hat, eps_hat, a_t, a_prev, eta, noise)
        else:
            x = ddpm_update(x, x0_hat, a_t, a_prev, noise)
        # Clipped as in training (`MathArtTask._self_condition_input`), whatever clip_x0 says.
        return (x, jnp.clip(x0_hat, -1.0, 1.0)), None

    inputs = (jnp.asarray(steps), abar_t, abar_prev, jnp.arange(len(steps)))
    x_init = x_init.astype(jnp.float32)
    (x, _), _ = jax.lax.scan(body, (x_init, jnp.zeros_like(x_init)), inputs)
    return x
