"""Schedule and sampler maths of `mathart.diffusion`: exact identities, not tolerances of a
trained model."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathart import diffusion

T = 200


@pytest.fixture(scope="module")
def schedule():
    return diffusion.cosine_schedule(T)


def test_cosine_schedule_matches_the_closed_form(schedule):
    abar = np.asarray(schedule.alphas_cumprod, np.float64)
    assert abar.shape == (T,)
    assert np.all(np.diff(abar) < 0), "ᾱ must fall monotonically"
    # Away from the β clip, ᾱ_t = f((t+1)/T) / f(0) exactly (Nichol & Dhariwal eq. 17).
    s = 0.008
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    t = np.arange(T - 5)
    np.testing.assert_allclose(abar[t], f((t + 1) / T) / f(0), rtol=2e-5)
    assert 0.999 < abar[0] < 1.0 and abar[-1] < 1e-4


def test_v_and_eps_parameterisations_invert(schedule):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.uniform(k1, (4, 8, 8, 3), minval=-1, maxval=1)
    eps = jax.random.normal(k2, x0.shape)
    t = jax.random.randint(k3, (4,), 0, T)
    x_t = diffusion.q_sample(schedule, x0, t, eps)
    for prediction in diffusion.PREDICTIONS:
        target = diffusion.training_target(schedule, x0, eps, t, prediction)
        x0_hat, eps_hat = diffusion.predict_x0_eps(schedule, x_t, t, target, prediction)
        np.testing.assert_allclose(x0_hat, x0, atol=2e-4 if prediction == "v" else 5e-2)
        np.testing.assert_allclose(eps_hat, eps, atol=2e-4)


@pytest.mark.parametrize(
    "weighting,prediction", [("min_snr", "v"), ("min_snr", "eps"), ("x0", "v"), ("none", "v")]
)
def test_loss_step_weights_give_the_stated_weight_of_the_x0_error(schedule, weighting, prediction):
    """m_t |out - target|² = c · λ(SNR_t) · |x0_hat - x0|², one c for every step."""
    gamma = 5.0
    w = diffusion.loss_step_weights(schedule, weighting, prediction, gamma)
    w = np.asarray(w, np.float64)
    assert w.shape == (T,) and abs(w.mean() - 1.0) < 1e-5
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    t = jnp.arange(5, T - 5, 10)  # away from both ends, where float32 inversion loses digits
    x0 = jax.random.uniform(k1, (t.shape[0], 4, 4, 3), minval=-1, maxval=1)
    eps = jax.random.normal(k2, x0.shape)
    x_t = diffusion.q_sample(schedule, x0, t, eps)
    target = diffusion.training_target(schedule, x0, eps, t, prediction)
    out = target + 0.1 * jax.random.normal(k3, x0.shape)  # a wrong prediction
    x0_hat, _ = diffusion.predict_x0_eps(schedule, x_t, t, out, prediction)
    loss = w[t] * np.mean(np.square(np.asarray(out - target, np.float64)), axis=(1, 2, 3))
    x0_err = np.mean(np.square(np.asarray(x0_hat - x0, np.float64)), axis=(1, 2, 3))
    abar = np.asarray(schedule.alphas_cumprod, np.float64)[t]
    snr = abar / (1 - abar)
    x0_weight = {"min_snr": np.minimum(snr, gamma), "x0": 1.0, "none": snr + 1}[weighting]
    ratio = loss / (x0_weight * x0_err)
    np.testing.assert_allclose(ratio, ratio[0], rtol=2e-3)


def test_loss_step_weights_refuse_what_they_cannot_mean(schedule):
    for args, words in [
        (("x0", "eps"), "needs v-prediction"),
        (("min_snr", "v", 0.0), "gamma > 0"),
        (("snr", "v"), "none, min_snr, x0"),
    ]:
        with pytest.raises(ValueError, match=words):
            diffusion.loss_step_weights(schedule, *args)


@pytest.mark.parametrize(
    "method,eta,prediction,num_steps",
    [
        ("ddim", 0.0, "v", 1),
        ("ddim", 0.0, "v", 50),
        ("ddim", 0.0, "eps", 7),
        ("ddim", 1.0, "v", 7),
        ("ddpm", 0.0, "v", T),
        ("ddpm", 0.0, "eps", 13),
    ],
)
def test_sampler_recovers_a_point_mass_in_any_number_of_steps(
    schedule, prediction, num_steps, method, eta
):
    """A model that outputs the exact v/eps for a known x0 must land on x0, whatever the step
    count: every re-spaced update keeps x_t = alpha x0 + sigma eps_hat with the same x0. The
    small reference model's sampler (single-step α_t/β_t with strided t) fails this."""
    x0 = jax.random.uniform(jax.random.key(1), (2, 4, 4, 3), minval=-0.9, maxval=0.9)

    def oracle(x_t, t):
        alpha, sigma = diffusion.alpha_sigma(schedule, t)
        a, s = alpha[:, None, None, None], sigma[:, None, None, None]
        eps = (x_t - a * x0) / s
        return eps if prediction == "eps" else a * eps - s * x0

    x_init = jax.random.normal(jax.random.key(2), x0.shape)
    out = diffusion.sample(
        oracle,
        schedule,
        x_init,
        jax.random.key(3),
        num_steps=num_steps,
        method=method,
        eta=eta,
        prediction=prediction,
        clip_x0=False,
    )
    np.testing.assert_allclose(out, x0, atol=2e-3)


def test_ddim_with_eta_one_is_the_ancestral_ddpm_step(schedule):
    """Song et al.: DDIM's η = 1 variance equals the DDPM posterior variance, and the means
    agree, for any pair (ᾱ_t, ᾱ_prev) of the re-spaced chain."""
    steps = diffusion.respaced_timesteps(T, 13)
    abar = np.asarray(schedule.alphas_cumprod)
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    x_t = jax.random.normal(k1, (3, 5))
    x0_hat = jax.random.uniform(k2, (3, 5), minval=-1, maxval=1)
    noise = jax.random.normal(k3, (3, 5))
    for t, t_prev in itertools.pairwise(steps):
        a_t, a_prev = jnp.float32(abar[t]), jnp.float32(abar[t_prev])
        eps_hat = (x_t - jnp.sqrt(a_t) * x0_hat) / jnp.sqrt(1 - a_t)
        ddim = diffusion.ddim_update(x_t, x0_hat, eps_hat, a_t, a_prev, 1.0, noise)
        ddpm = diffusion.ddpm_update(x_t, x0_hat, a_t, a_prev, noise)
        np.testing.assert_allclose(ddim, ddpm, atol=1e-5)


def test_respaced_timesteps():
    steps = diffusion.respaced_timesteps(200, 50)
    assert steps[0] == 199 and steps[-1] == 0 and len(np.unique(steps)) == 50
    assert np.all(np.diff(steps) < 0)
    np.testing.assert_array_equal(diffusion.respaced_timesteps(10, 10), np.arange(9, -1, -1))
    with pytest.raises(ValueError, match="sampling steps"):
        diffusion.respaced_timesteps(200, 201)


@pytest.mark.parametrize("num_steps", [1, 4, 50])
def test_respaced_ddim_equals_the_closed_form_for_gaussian_data(schedule, num_steps):
    """Data x0 ~ N(0, v I) has the exact denoiser E[x0 | x_t] = a v x_t / (a² v + s²), so each
    deterministic DDIM step is linear: x_prev = (a' a v + s' s) / (a² v + s²) x_t with
    (a, s), (a', s') taken at the *selected* steps. The sampler must reproduce the product of
    these factors; a sampler that mixes single-step α_t into strided steps does not."""
    var = 0.3
    abar = np.asarray(schedule.alphas_cumprod, np.float64)

    def optimal_v(x_t, t):  # v = (a x_t - x0) / s; v keeps x0_hat exact even at ᾱ ≈ 0
        a_t, s_t = diffusion.alpha_sigma(schedule, t)
        x0 = (a_t * var / (a_t**2 * var + s_t**2))[:, None] * x_t
        return (a_t[:, None] * x_t - x0) / s_t[:, None]

    x_init = jax.random.normal(jax.random.key(6), (3, 5))
    out = diffusion.sample(
        optimal_v,
        schedule,
        x_init,
        jax.random.key(7),
        num_steps=num_steps,
        prediction="v",
        clip_x0=False,
    )
    steps = diffusion.respaced_timesteps(T, num_steps)
    factor = 1.0
    for i, t in enumerate(steps):
        a, s = np.sqrt(abar[t]), np.sqrt(1 - abar[t])
        ab_prev = abar[steps[i + 1]] if i + 1 < len(steps) else 1.0
        a_p, s_p = np.sqrt(ab_prev), np.sqrt(1 - ab_prev)
        factor *= (a_p * a * var + s_p * s) / (a * a * var + s * s)
    np.testing.assert_allclose(out, factor * np.asarray(x_init), rtol=1e-4, atol=1e-6)
    # The strided single-step rule gives a visibly different map (the bug we do not copy).
    wrong = 1.0
    for t in steps:
        a, s = np.sqrt(abar[t]), np.sqrt(1 - abar[t])
        alpha_single = abar[t] / abar[t - 1] if t > 0 else abar[0]
        eps_coef = s / (a * a * var + s * s)  # eps_hat = eps_coef * x_t
        wrong *= (1 - (1 - alpha_single) / s * eps_coef) / np.sqrt(alpha_single)
    if num_steps < T // 2:
        assert abs(wrong - factor) > 0.05 * abs(factor)


def test_guidance_is_affine():
    c, u = jnp.array([1.0, 2.0]), jnp.array([0.5, 0.0])
    np.testing.assert_allclose(diffusion.guided(c, u, 1.0), c)
    np.testing.assert_allclose(diffusion.guided(c, u, 0.0), u)
    np.testing.assert_allclose(diffusion.guided(c, u, 3.0), u + 3 * (c - u))


def test_task_weights_only_the_denoising_term_by_step():
    """The task's loss with a step weighting differs from the plain one by exactly
    w_mse (m_t - 1) |out - target|² per row; every other term is untouched."""
    from configs.mathart import get_config
    from mathart.task import MathArtTask

    losses = {}
    for weighting in ("none", "min_snr"):
        config = get_config("smoke")
        config.loss.step_weighting = weighting
        task = MathArtTask(config)
        batch = task.synthetic_batch(4, np.random.default_rng(0))
        params = task.init_variables(jax.random.key(0), batch)["params"]
        t = jnp.array([0, 5, 10, 19])
        noise = jax.random.normal(jax.random.key(1), batch["image"].shape)
        none = jnp.zeros((4,), bool)
        losses[weighting] = task._terms(params, {}, batch, t, noise, none, none)
    plain, weighted = losses["none"], losses["min_snr"]
    np.testing.assert_array_equal(weighted["mse"], plain["mse"])
    m_t = diffusion.loss_step_weights(task.schedule, "min_snr", "v", config.loss.min_snr_gamma)[t]
    expected = plain["loss"] + config.loss.mse_weight * (m_t - 1.0) * plain["mse"]
    np.testing.assert_allclose(weighted["loss"], expected, rtol=1e-5)
    assert not np.allclose(weighted["loss"], plain["loss"])


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_self_conditioned_sampler_feeds_back_the_previous_clipped_x0(schedule, method):
    """With self_condition the network gets, at every step, the x0 estimate of the step before
    (clipped to [-1, 1]; zeros at the first): the scan must equal this written-out loop, and
    differ from a sampler that always passes zeros."""
    steps = diffusion.respaced_timesteps(T, 6)
    abar = np.append(np.asarray(schedule.alphas_cumprod)[steps], 1.0)

    def toy(x_t, t, x0_prev):  # a v-model whose output depends on the estimate it is given
        return 0.4 * x_t + 0.8 * x0_prev + 0.01 * t[:, None].astype(jnp.float32)

    x_init = jax.random.normal(jax.random.key(8), (3, 5))
    rng = jax.random.key(9)
    got = diffusion.sample(
        toy, schedule, x_init, rng, num_steps=6, method=method, clip_x0=False, self_condition=True
    )
    x, prev = x_init, jnp.zeros_like(x_init)
    for i, t in enumerate(steps):
        t_b = jnp.full((3,), t, jnp.int32)
        x0_hat, eps_hat = diffusion.predict_x0_eps(schedule, x, t_b, toy(x, t_b, prev), "v")
        noise = jax.random.normal(jax.random.fold_in(rng, i), x.shape)
        a_t, a_prev = jnp.float32(abar[i]), jnp.float32(abar[i + 1])
        if method == "ddim":
            x = diffusion.ddim_update(x, x0_hat, eps_hat, a_t, a_prev, 0.0, noise)
        else:
            x = diffusion.ddpm_update(x, x0_hat, a_t, a_prev, noise)
        prev = jnp.clip(x0_hat, -1.0, 1.0)
    np.testing.assert_allclose(got, x, rtol=1e-5, atol=1e-5)
    always_zero = diffusion.sample(
        lambda x_t, t: toy(x_t, t, jnp.zeros_like(x_t)),
        schedule,
        x_init,
        rng,
        num_steps=6,
        method=method,
        clip_x0=False,
    )
    assert np.abs(np.asarray(got) - np.asarray(always_zero)).max() > 1e-2


def test_a_residual_chain_clips_the_image_not_the_residual(schedule):
    """With ``x0_offset`` (the regression mean) the chain samples a residual r and the image is
    offset + r: clipping keeps offset + r in [-1, 1], so a residual beyond [-1, 1] that the
    image allows survives (here r = 1.5 on an offset of -0.8), and one the image does not allow
    is cut at the image's edge (r = 1.5 on +0.2 lands on 0.8)."""
    offset = jnp.array([[-0.8, 0.2, 0.0]])
    target = jnp.array([[1.5, 1.5, -0.5]])  # the residual an oracle v-model points at

    def oracle(x_t, t):
        alpha, sigma = diffusion.alpha_sigma(schedule, t)
        a, s = alpha[:, None], sigma[:, None]
        return a * (x_t - a * target) / s - s * target

    x_init = jax.random.normal(jax.random.key(4), target.shape)
    got = diffusion.sample(
        oracle, schedule, x_init, jax.random.key(5), num_steps=20, x0_offset=offset
    )
    np.testing.assert_allclose(got, [[1.5, 0.8, -0.5]], atol=2e-3)
    plain = diffusion.sample(oracle, schedule, x_init, jax.random.key(5), num_steps=20)
    np.testing.assert_allclose(plain, [[1.0, 1.0, -0.5]], atol=2e-3)
