"""The formula encoder + conditional U-Net: shapes, dtype policy, padding mask, token-level
cross-attention, the null (CFG) condition, remat equivalence and error messages."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathart.models import MathArtDenoiser, group_count
from mathart.models.unet import depth_to_space, space_to_depth

L = 8
SIZE = 16


def _model(**overrides) -> MathArtDenoiser:
    kwargs = dict(
        vocab_size=50,
        max_formula_tokens=L,
        encoder_width=32,
        encoder_layers=2,
        encoder_heads=4,
        encoder_mlp_dim=64,
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        time_embed_dim=32,
        cross_attention_scales=(1, 2),
        self_attention_scales=(2,),
        num_attention_heads=4,
        num_families=3,
    )
    kwargs.update(overrides)
    return MathArtDenoiser(**kwargs)


# One U-Net level and one encoder layer, for tests about one mechanism (remat, the
# self-conditioning input, the full-resolution head) rather than the U-Net's shape: every
# program a test compiles is about half the two-level model's, and on CPU compiling is most
# of these tests' time.
ONE_LEVEL = dict(
    channel_mult=(1,), cross_attention_scales=(1,), self_attention_scales=(1,), encoder_layers=1
)


def _inputs():
    x = jax.random.normal(jax.random.key(0), (2, SIZE, SIZE, 3))
    t = jnp.array([0.3, 0.9])
    tokens = jnp.array([[5, 6, 7, 8, 0, 0, 0, 0], [9, 10, 11, 12, 13, 14, 0, 0]], jnp.int32)
    mask = tokens > 0
    style = jax.random.uniform(jax.random.key(1), (2, 32))
    return x, t, tokens, mask, style


@functools.partial(jax.jit, static_argnames=("seed", "scale"))
def _perturb(variables, seed=1, scale=0.05):
    """Zero-initialised output layers make a fresh U-Net output exactly 0; shake all params so
    the tests can see how the output depends on its inputs. (Jitted: eagerly, each leaf shape
    would be compiled on its own.)"""
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [leaf + scale * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, noisy)


@pytest.fixture(scope="module")
def model_and_vars():
    """Without the style token, so "one formula token" below really means one key."""
    model = _model(style_dim=0)
    x, t, tokens, mask, _ = _inputs()
    variables = model.init(jax.random.key(0), x, t, tokens, mask)
    apply = jax.jit(lambda v, x, t, tok, m, d: model.apply(v, x, t, tok, m, None, d))
    return model, _perturb(variables), apply


def test_shapes_dtypes_and_fresh_output_is_zero():
    model = _model()
    x, t, tokens, mask, style = _inputs()
    variables = model.init(jax.random.key(0), x, t, tokens, mask, style)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    out, logits = model.apply(variables, x, t, tokens, mask, style)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # zero-init output conv: starts at v = 0


def test_padding_tokens_are_invisible(model_and_vars):
    _, variables, apply = model_and_vars
    x, t, tokens, mask, _ = _inputs()
    no_drop = jnp.array([False, False])
    out_a, log_a = apply(variables, x, t, tokens, mask, no_drop)
    junk = jnp.where(mask, tokens, 42)  # change only padded positions
    out_b, log_b = apply(variables, x, t, junk, mask, no_drop)
    np.testing.assert_allclose(out_a, out_b, atol=1e-5)
    np.testing.assert_allclose(log_a, log_b, atol=1e-5)


def test_output_depends_on_each_real_token_and_its_position(model_and_vars):
    _, variables, apply = model_and_vars
    x, t, tokens, mask, _ = _inputs()
    no_drop = jnp.array([False, False])
    base, _ = apply(variables, x, t, tokens, mask, no_drop)
    changed, _ = apply(variables, x, t, tokens.at[0, 2].set(20), mask, no_drop)
    assert float(jnp.abs(changed[0] - base[0]).max()) > 1e-4
    np.testing.assert_allclose(changed[1], base[1], atol=1e-5)  # rows are independent
    swapped = tokens.at[0, 1].set(7).at[0, 2].set(6)  # same multiset, other order
    out_swapped, _ = apply(variables, x, t, swapped, mask, no_drop)
    assert float(jnp.abs(out_swapped[0] - base[0]).max()) > 1e-4


def _cross_attention_output(model, variables, tokens, mask):
    """The first cross-attention's output [B, pixels, C], captured from a real forward pass."""
    x, t, _, _, _ = _inputs()
    _, state = model.apply(
        variables,
        x,
        t,
        tokens,
        mask,
        mutable=["intermediates"],
        capture_intermediates=lambda mdl, _: mdl.name == "cross_attn",
    )
    return state["intermediates"]["unet"]["down0_attn0"]["cross_attn"]["__call__"][0]


def test_cross_attention_is_token_level(model_and_vars):
    """Softmax over a single key is 1, so single-token "cross-attention" (the small reference
    model's) adds the same vector at every pixel. With several formula tokens each pixel must
    mix them differently: the attention output varies across pixels."""
    model, variables, _ = model_and_vars
    _, _, tokens, mask, _ = _inputs()
    many = _cross_attention_output(model, variables, tokens, mask)
    one_mask = jnp.arange(L)[None, :] < 1
    one = _cross_attention_output(model, variables, tokens, jnp.broadcast_to(one_mask, mask.shape))
    spread_many = float(jnp.std(many, axis=1).max())
    spread_one = float(jnp.std(one, axis=1).max())
    assert spread_one < 1e-5, "one key: the output must be the same at every pixel"
    assert spread_many > 1e-3, "several keys: pixels must attend differently"


def test_null_condition_ignores_the_formula(model_and_vars):
    _, variables, apply = model_and_vars
    x, t, tokens, mask, _ = _inputs()
    drop = jnp.array([True, True])
    out_a, _ = apply(variables, x, t, tokens, mask, drop)
    out_b, _ = apply(variables, x, t, tokens[::-1], mask[::-1], drop)
    np.testing.assert_allclose(out_a, out_b, atol=1e-5)
    cond, _ = apply(variables, x, t, tokens, mask, jnp.array([False, False]))
    assert float(jnp.abs(cond - out_a).max()) > 1e-4


def test_remat_and_bfloat16_keep_the_function():
    x, t, tokens, mask, style = _inputs()
    plain = _model(**ONE_LEVEL)
    variables = _perturb(plain.init(jax.random.key(0), x, t, tokens, mask, style))

    def loss(model, v):
        out, _ = model.apply(v, x, t, tokens, mask, style)
        return jnp.mean(out**2)

    g_plain = jax.jit(jax.grad(lambda v: loss(plain, v)))(variables)
    g_remat = jax.jit(jax.grad(lambda v: loss(_model(remat=True, **ONE_LEVEL), v)))(variables)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4), g_plain, g_remat
    )
    out32, _ = plain.apply(variables, x, t, tokens, mask, style)
    other_style, _ = plain.apply(variables, x, t, tokens, mask, style[::-1])
    assert float(jnp.abs(other_style - out32).max()) > 1e-4, "the style must reach the U-Net"
    bf16 = _model(dtype=jnp.bfloat16, **ONE_LEVEL)
    out16, _ = jax.jit(lambda v: bf16.apply(v, x, t, tokens, mask, style))(variables)
    assert out16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert rel < 0.1


def test_patchify_round_trip_and_group_count():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x, 4), 4), x)
    assert space_to_depth(x, 4).shape == (2, 2, 2, 48)
    assert group_count(320) == 32 and group_count(96) == 32 and group_count(48) == 24
    assert group_count(16) == 16 and group_count(7) == 7


def test_bad_attention_scale_is_a_clear_error():
    x, t, tokens, mask, style = _inputs()
    with pytest.raises(ValueError, match=r"cross_attention_scales has \[8\].*scales are \[1, 2\]"):
        _model(cross_attention_scales=(8,)).init(jax.random.key(0), x, t, tokens, mask, style)
    with pytest.raises(ValueError, match="max_len"):
        _model(max_formula_tokens=4).init(jax.random.key(0), x, t, tokens, mask, style)


def test_self_conditioning_input_changes_the_output_and_none_means_zeros():
    """A self-conditioned U-Net sees the x0 estimate (its stem takes 6 channels); no estimate
    is the same as an all-zero one (the sampler's first step); a model built without it
    refuses one."""
    model = _model(self_condition=True, **ONE_LEVEL)
    x, t, tokens, mask, style = _inputs()
    variables = _perturb(model.init(jax.random.key(0), x, t, tokens, mask, style))
    assert variables["params"]["unet"]["conv_in"]["kernel"].shape[2] == 6
    estimate = jax.random.uniform(jax.random.key(5), x.shape, minval=-1, maxval=1)
    without, _ = model.apply(variables, x, t, tokens, mask, style)
    zeros, _ = model.apply(variables, x, t, tokens, mask, style, None, jnp.zeros_like(x))
    with_estimate, _ = model.apply(variables, x, t, tokens, mask, style, None, estimate)
    np.testing.assert_array_equal(without, zeros)
    assert np.abs(with_estimate - without).max() > 1e-3
    plain = _model(**ONE_LEVEL)
    plain_vars = plain.init(jax.random.key(0), x, t, tokens, mask, style)
    with pytest.raises(ValueError, match="without self_condition"):
        plain.apply(plain_vars, x, t, tokens, mask, style, None, estimate)


def test_full_resolution_refinement_sees_the_input_pixel_by_pixel():
    """With ``full_res_channels`` a refinement at full resolution, on the un-patchified
    features beside the stem's input, is added to the patch read-out. With the features' path
    and the read-out zeroed, an output pixel depends on input pixels within 2 of it (two 3x3
    convs), not on 2x2 patch blocks; the model starts at v = 0; patch size 1 is refused."""
    x, t, tokens, mask, style = _inputs()
    one_level = {**ONE_LEVEL, "cross_attention_scales": (2,), "self_attention_scales": (2,)}
    model = _model(full_res_channels=8, patch_size=2, **one_level)
    variables = model.init(jax.random.key(0), x, t, tokens, mask, style)
    unet = variables["params"]["unet"]
    assert unet["conv_out"]["kernel"].shape == (3, 3, 16, 3 * 4)
    assert unet["to_full_res"]["kernel"].shape == (3, 3, 16, 8 * 4)
    assert unet["full_res_conv"]["kernel"].shape == (3, 3, 8 + 3, 8)
    assert unet["full_res_out"]["kernel"].shape == (3, 3, 8, 3)
    out, _ = model.apply(variables, x, t, tokens, mask, style)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, 0.0)

    shaken = _perturb(variables)
    for name in ("to_full_res", "conv_out"):
        layer = shaken["params"]["unet"][name]
        layer.update({k: jnp.zeros_like(v) for k, v in layer.items()})
    pixel = lambda x_in: model.apply(shaken, x_in, t, tokens, mask, style)[0][0, 7, 8].sum()
    reach = np.abs(np.asarray(jax.grad(pixel)(x))[0]).sum(-1) > 0
    rows, cols = np.nonzero(reach)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (5, 9, 6, 10)

    with pytest.raises(ValueError, match=r"full_res_channels > 0 needs config\.model\.patch_size"):
        _model(full_res_channels=8).init(jax.random.key(0), x, t, tokens, mask, style)


def test_runs_saved_before_self_conditioning_existed_still_build():
    """`mathart.sample` / `mathart.evaluate` load runs with ``defaults=get_config``: a run
    saved before ``diffusion.self_condition`` existed gets today's default (off)."""
    from common.config import fill_missing
    from configs.mathart import get_config
    from mathart.models import build_model

    old = get_config("smoke")
    del old.diffusion["self_condition"], old.diffusion["self_condition_prob"]
    config, filled = fill_missing(old, get_config("smoke"))
    assert sorted(filled) == ["diffusion.self_condition", "diffusion.self_condition_prob"]
    assert build_model(config, num_families=0).self_condition is False


def test_a_self_conditioning_share_outside_0_1_is_refused():
    from configs.mathart import get_config
    from mathart.task import MathArtTask

    config = get_config("smoke")
    config.diffusion.self_condition = True
    config.diffusion.self_condition_prob = 1.5
    with pytest.raises(ValueError, match="self_condition_prob must be in"):
        MathArtTask(config)


def test_an_unknown_mean_network_or_shared_numbers_without_values_are_refused_at_once():
    from configs.mathart import get_config
    from mathart.task import MathArtTask

    config = get_config("smoke")
    config.model.regression_net = "mlp"
    with pytest.raises(ValueError, match="regression_net 'mlp' unknown; choose one of: unet"):
        MathArtTask(config)
    config = get_config("smoke")
    config.data.number_tokens = "shared"
    with pytest.raises(ValueError, match="needs its value"):
        MathArtTask(config)


def test_self_conditioned_training_sees_its_own_estimate_without_a_gradient_through_it(
    monkeypatch,
):
    """The task's self-conditioned pass equals one pass given the model's first-pass estimate
    (clipped) as a constant, in value and gradient; the gradient differs when the estimate is
    not held constant, so the check would see a missing stop_gradient. The coin is traced, as
    in the training step (`lax.cond`); a False coin gives the zero input."""
    from configs.mathart import get_config
    from mathart import diffusion
    from mathart.task import MathArtTask

    config = get_config("smoke")
    config.diffusion.self_condition = True
    # One U-Net level: what is checked is the task's two passes, not the U-Net, and each
    # program below compiles in half the time of the two-level smoke model's.
    config.model.channel_mult, config.model.cross_attention_scales = (1,), (1,)
    task = MathArtTask(config)
    batch = task.synthetic_batch(4, np.random.default_rng(0))
    # Everything below is jitted: run eagerly, each of the U-Net's primitives would be compiled
    # on its own (over a thousand programs, two minutes from an empty compilation cache).
    params = _perturb(jax.jit(task.init_variables)(jax.random.key(0), batch)["params"], seed=3)
    t = jnp.array([0, 5, 10, 19])
    noise = jax.random.normal(jax.random.key(1), batch["image"].shape)
    none = jnp.zeros((4,), bool)
    x0 = batch["image"].astype(jnp.float32) / 127.5 - 1.0
    x_t = diffusion.q_sample(task.schedule, x0, t, noise)
    t_frac = (t.astype(jnp.float32) + 1.0) / task.schedule.num_timesteps
    tokens = batch["tokens"]

    @jax.jit
    def first_estimate(p):
        out, _ = task.model.apply(
            {"params": p}, x_t, t_frac, tokens, tokens != 0, batch["style"], none
        )
        x0_hat, _ = diffusion.predict_x0_eps(task.schedule, x_t, t, out, "v")
        return jnp.clip(x0_hat, -1.0, 1.0)

    def loss(p, self_cond):
        return task._terms(p, {}, batch, t, noise, none, none, self_cond)["loss"].mean()

    def loss_given(p, estimate_of):
        with monkeypatch.context() as m:  # the task's estimate replaced by estimate_of(p)
            m.setattr(task, "_self_condition_input", lambda *_: estimate_of(p))
            return loss(p, True)

    # An estimate passed in as an argument is a constant to the gradient.
    given = jax.jit(jax.value_and_grad(lambda p, e: loss_given(p, lambda _: e)))
    with_coin = jax.jit(jax.value_and_grad(loss))
    value, grad = with_coin(params, jnp.array(True))
    ref_value, ref_grad = given(params, first_estimate(params))
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    leaky_grad = jax.jit(jax.grad(lambda p: loss_given(p, first_estimate)))(params)
    assert any(
        not np.allclose(a, b, rtol=1e-3, atol=1e-6)
        for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(leaky_grad))
    )
    zero_value, _ = given(params, jnp.zeros_like(x_t))
    np.testing.assert_allclose(with_coin(params, jnp.array(False))[0], zero_value, rtol=1e-5)
    assert abs(float(zero_value) - float(value)) > 1e-6


@pytest.mark.parametrize(
    "profile,changes",
    [
        ("smoke", {}),
        ("tiny32_cpu", {}),
        ("smoke", {"diffusion.self_condition": True}),
        ("smoke", {"model.regression": True, "model.regression_channels": 8}),
        ("tiny32_cpu", {"model.regression": True, "model.regression_net": "field"}),
    ],
)
def test_analytic_flops_match_xla(profile, changes):
    """`forward_flops` (MFU in common.bench) against XLA's count of one forward pass of the
    denoiser a profile builds (XLA also counts norms, activations and softmax, which the
    analytic count leaves out)."""
    from configs.mathart import get_config
    from mathart.input_pipeline import STYLE_DIM
    from mathart.models import build_model, forward_flops

    config = get_config(profile)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    model = build_model(config, num_families=0, dtype=jnp.float32)
    r, length = config.data.image_size, config.model.max_formula_tokens
    x = jnp.zeros((1, r, r, 3))
    t = jnp.ones((1,))
    tokens = jnp.ones((1, length), jnp.int32)
    style = jnp.zeros((1, STYLE_DIM))
    drop = jnp.zeros((1,), bool)
    x0 = x if config.diffusion.self_condition else None
    args = (x, t, tokens, tokens != 0, style, drop, x0)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))
    fwd = jax.jit(lambda p: model.apply(p, *args))
    xla = fwd.lower(params).cost_analysis()["flops"]
    ratio = forward_flops(config) / xla
    assert 0.9 < ratio < 1.02, ratio


def test_pixel_coordinates_are_centred_and_symmetric():
    from mathart.models.denoiser import pixel_coordinates

    grid = np.asarray(pixel_coordinates(4, 4))
    np.testing.assert_allclose(grid[0, :, 0], [-0.75, -0.25, 0.25, 0.75])  # x, left to right
    np.testing.assert_allclose(grid[:, 0, 1], [0.75, 0.25, -0.25, -0.75])  # y, top row up
    np.testing.assert_allclose(grid[..., 2], np.hypot(grid[..., 0], grid[..., 1]), rtol=1e-6)


def test_regression_mean_is_trained_by_its_mse_alone_and_the_denoiser_sees_the_residual():
    """``model.regression`` (regression first, diffusion on the residual): the loss is the
    plain terms on the residual image - mean plus regression_weight x MSE(mean, image); the
    regression U-Net's gradient comes from its MSE alone (the diffusion terms see the mean as
    a constant), and the denoiser is asked for the v of the residual, given the mean."""
    from configs.mathart import get_config
    from mathart import diffusion
    from mathart.task import MathArtTask

    config = get_config("smoke")
    config.model.regression, config.model.regression_channels = True, 8
    config.model.channel_mult, config.model.cross_attention_scales = (1,), (1,)
    task = MathArtTask(config)
    batch = task.synthetic_batch(4, np.random.default_rng(0))
    params = _perturb(jax.jit(task.init_variables)(jax.random.key(0), batch)["params"], seed=5)
    assert params["mean_unet"]["conv_in"]["kernel"].shape == (3, 3, 3, 8)  # x, y, r
    assert params["unet"]["conv_in"]["kernel"].shape == (3, 3, 6, 16)  # x_t and the mean
    t = jnp.array([0, 5, 10, 19])
    noise = jax.random.normal(jax.random.key(1), batch["image"].shape)
    none = jnp.zeros((4,), bool)

    @jax.jit
    def reference(p):
        """The terms written out from the model's entry points."""
        x0 = batch["image"].astype(jnp.float32) / 127.5 - 1.0
        v = {"params": p}
        tokens = batch["tokens"]
        cond, formula, _ = task.model.apply(
            v, tokens, tokens != 0, batch["style"], none, method=MathArtDenoiser.training_conditions
        )
        mean = task.model.apply(v, formula, x0.shape, method=MathArtDenoiser.regression_mean)
        residual = x0 - mean
        x_t = diffusion.q_sample(task.schedule, residual, t, noise)
        t_frac = (t + 1.0) / task.schedule.num_timesteps
        out = task.model.apply(v, x_t, t_frac, cond, mean, method=MathArtDenoiser.denoise)
        target = diffusion.training_target(task.schedule, residual, noise, t, "v")
        errors = jnp.mean((mean - x0) ** 2, (1, 2, 3)), jnp.mean((out - target) ** 2, (1, 2, 3))
        return *errors, mean

    terms_of = jax.jit(lambda p: task._terms(p, {}, batch, t, noise, none, none))
    terms = terms_of(params)
    regression_mse, mse, mean = reference(params)
    np.testing.assert_allclose(terms["regression_mse"], regression_mse, rtol=1e-5)
    np.testing.assert_allclose(terms["mse"], mse, rtol=1e-5)
    w = config.loss.regression_weight
    grad = jax.jit(jax.grad(lambda p: terms_of(p)["loss"].mean()))(params)
    grad_mse = jax.jit(jax.grad(lambda p: w * terms_of(p)["regression_mse"].mean()))(params)
    for a, b in zip(jax.tree.leaves(grad["mean_unet"]), jax.tree.leaves(grad_mse["mean_unet"])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
    assert all(not np.any(g) for g in jax.tree.leaves(grad_mse["unet"]))
    assert any(np.any(g) for g in jax.tree.leaves(grad["unet"]))

    # Sampling: the mean from the formula and style, then the residual chain; the image
    # (mean + residual) stays in [-1, 1], and mean_only is the mean the loss above trained.
    from mathart.generate import build_generator

    def generator(**kw):
        return build_generator(task.model, task.schedule, image_size=16, num_steps=2, **kw)

    mean_only = generator(mean_only=True)(params, batch["tokens"], batch["style"], None)
    np.testing.assert_allclose(mean_only, jnp.clip(mean, -1.0, 1.0), rtol=1e-5, atol=1e-6)
    images = generator(guidance_scale=2.0)(
        params, batch["tokens"], batch["style"], jax.random.key(0)
    )
    assert images.shape == mean.shape and float(jnp.abs(images).max()) <= 1.0
    assert float(jnp.abs(images - mean_only).max()) > 1e-3
    with pytest.raises(ValueError, match="mean_only needs a model with a regression mean"):
        build_generator(_model(), task.schedule, image_size=16, num_steps=2, mean_only=True)
    # Temperature 0: DDIM at eta 0 from x_T = 0, the same image whatever the key.
    cold = generator(guidance_scale=2.0, temperature=0.0)
    first = cold(params, batch["tokens"], batch["style"], jax.random.key(0))
    np.testing.assert_array_equal(
        first, cold(params, batch["tokens"], batch["style"], jax.random.key(7))
    )
    assert float(jnp.abs(first - images).max()) > 1e-3
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generator(temperature=-1.0)


def test_regression_and_self_conditioning_together_are_refused():
    x, t, tokens, mask, style = _inputs()
    with pytest.raises(ValueError, match="turn one of them off"):
        _model(regression=True, self_condition=True, **ONE_LEVEL).init(
            jax.random.key(0), x, t, tokens, mask, style
        )


def test_output_modulation_starts_as_the_plain_norm_and_then_moves_the_image_mean():
    """``output_modulation``: zero-initialised, so a model with it is the model without it
    (same other params, exactly); with weights it changes the output."""
    x, t, tokens, mask, style = _inputs()
    kw = dict(base_channels=16, norm_groups=16, **ONE_LEVEL)
    plain, modulated = _model(**kw), _model(output_modulation=True, **kw)
    v = modulated.init(jax.random.key(0), x, t, tokens, mask, style)
    out_mod = v["params"]["unet"]["out_modulation"]
    assert not np.any(out_mod["kernel"]) and not np.any(out_mod["bias"])
    base = _perturb({"params": {k: p for k, p in v["params"].items()}}, seed=3)
    without = {"params": dict(base["params"])}
    without["params"]["unet"] = {
        k: p for k, p in base["params"]["unet"].items() if k != "out_modulation"
    }
    with_zero = {"params": dict(base["params"])}
    with_zero["params"]["unet"] = {**base["params"]["unet"], "out_modulation": out_mod}
    np.testing.assert_array_equal(
        plain.apply(without, x, t, tokens, mask, style)[0],
        modulated.apply(with_zero, x, t, tokens, mask, style)[0],
    )
    moved = modulated.apply(base, x, t, tokens, mask, style)[0]
    assert float(jnp.abs(moved - plain.apply(without, x, t, tokens, mask, style)[0]).max()) > 1e-3


def test_number_features_are_exact_and_zero_where_there_is_no_number():
    from mathart.models.encoder import number_features

    got = np.asarray(number_features(jnp.array([[0.5, jnp.nan, -3.0]]), 3))
    assert got.shape == (1, 3, 2 * 3 + 2)
    periods = np.array([1 / 16, 1 / 8, 1 / 4])
    for v, row in ((0.5, got[0, 0]), (-3.0, got[0, 2])):
        angles = 2 * np.pi * v / periods
        want = [1.0, np.sign(v) * np.log1p(abs(v)), *np.sin(angles), *np.cos(angles)]
        np.testing.assert_allclose(row, want, atol=2e-6)
    np.testing.assert_array_equal(got[0, 1], 0.0)


def test_encoder_reads_number_values_and_is_the_plain_encoder_without_numbers():
    from mathart.models.encoder import FormulaEncoder

    kw = dict(vocab_size=50, max_len=L, width=32, num_layers=1, num_heads=4, mlp_dim=64)
    plain, valued = FormulaEncoder(**kw), FormulaEncoder(number_features=4, **kw)
    _, _, tokens, mask, _ = _inputs()
    none = jnp.full(tokens.shape, jnp.nan)
    numbers = none.at[0, 1].set(2.6).at[1, 3].set(-0.5)
    params = valued.init(jax.random.key(0), tokens, mask, numbers)["params"]
    apply = jax.jit(valued.apply)
    # No number in the text: exactly the encoder without the option (same params otherwise).
    without = {k: v for k, v in params.items() if k != "number_in"}
    for a, b in zip(
        apply({"params": params}, tokens, mask, none),
        plain.apply({"params": without}, tokens, mask),
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The value, not only the id, changes the encoding: 2.6 vs 2.65 at the same token.
    base, _ = apply({"params": params}, tokens, mask, numbers)
    moved, _ = apply({"params": params}, tokens, mask, numbers.at[0, 1].set(2.65))
    assert float(jnp.abs(moved[0] - base[0]).max()) > 1e-4
    np.testing.assert_allclose(moved[1], base[1], atol=1e-6)  # other rows untouched
    # NaN marks "no number" without leaking NaN into the gradient.
    grads = jax.grad(lambda p: apply({"params": p}, tokens, mask, numbers)[1].sum())(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["number_in"]["kernel"]).sum()) > 0
    with pytest.raises(ValueError, match="number_features=4"):
        valued.apply({"params": params}, tokens, mask)


def test_field_fourier_features_are_exact():
    from mathart.models.field import fourier_features

    c = jnp.array([[0.25, -0.5, 1.0]])
    got = np.asarray(fourier_features(c, 2))
    angles = np.pi * np.array([[0.25, 0.25 * 2], [-0.5, -0.5 * 2], [1.0, 2.0]]).reshape(-1)
    np.testing.assert_allclose(
        got[0], [0.25, -0.5, 1.0, *np.sin(angles), *np.cos(angles)], atol=1e-6
    )


def test_field_draws_each_pixel_from_its_own_position_and_the_formula():
    """The neural-field mean is pointwise: moving a pixel's coordinates moves its value and
    nothing else; the FiLM projection starts at zero (the formula acts only through the token
    attention at first) and, once trained away from zero, the pooled formula changes the image.
    Its analytic FLOPs match XLA's count."""
    from mathart.models.denoiser import pixel_coordinates
    from mathart.models.field import ConditionalField, field_flops

    field = ConditionalField(width=32, depth=2, frequencies=3, num_heads=4)
    b, size, length, d = 2, 8, 5, 16
    coords = jnp.broadcast_to(pixel_coordinates(size, size), (b, size, size, 3))
    pooled = jax.random.normal(jax.random.key(0), (b, d))
    tokens = jax.random.normal(jax.random.key(1), (b, length, d))
    mask = jnp.array([[True] * 5, [True, True, True, False, False]])
    params = field.init(jax.random.key(2), coords, pooled, tokens, mask)["params"]
    np.testing.assert_array_equal(params["film"]["kernel"], 0.0)
    apply = jax.jit(field.apply)
    out = apply({"params": params}, coords, pooled, tokens, mask)
    assert out.shape == (b, size, size, 3) and out.dtype == jnp.float32
    # Pointwise: the image of flipped coordinates is the flipped image.
    flipped = apply({"params": params}, coords[:, :, ::-1], pooled, tokens, mask)
    np.testing.assert_allclose(flipped, out[:, :, ::-1], atol=1e-5)
    # Padding tokens are invisible.
    junk = tokens.at[1, 3:].set(9.0)
    np.testing.assert_allclose(
        apply({"params": params}, coords, pooled, junk, mask), out, atol=1e-5
    )
    # FiLM at zero: the pooled vector does nothing yet; away from zero it does.
    np.testing.assert_allclose(
        apply({"params": params}, coords, pooled * 3.0, tokens, mask), out, atol=1e-6
    )
    moved = dict(
        params, film={"kernel": params["film"]["kernel"] + 0.1, "bias": params["film"]["bias"]}
    )
    a = apply({"params": moved}, coords, pooled, tokens, mask)
    c = apply({"params": moved}, coords, pooled * 3.0, tokens, mask)
    assert float(jnp.abs(a - c).max()) > 1e-3
    for cross in (True, False):
        one = ConditionalField(width=32, depth=2, frequencies=3, cross_attention=cross)
        args = (coords[:1], pooled[:1], tokens[:1], mask[:1])
        shapes = jax.eval_shape(functools.partial(one.init, jax.random.key(0), *args))
        fwd = jax.jit(one.apply)
        xla = fwd.lower(shapes, *args).cost_analysis()["flops"]
        kw = dict(width=32, depth=2, frequencies=3, cross_attention=cross, ctx=length, d=d)
        ratio = field_flops(pixels=size * size, **kw) / xla
        assert 0.85 < ratio < 1.02, (cross, ratio)


def test_the_model_draws_its_mean_with_the_field_and_names_an_unknown_net():
    x, t, tokens, mask, style = _inputs()
    model = _model(
        regression=True, regression_net="field", field_width=32, field_depth=1, **ONE_LEVEL
    )
    variables = model.init(jax.random.key(0), x, t, tokens, mask, style)
    assert "mean_field" in variables["params"] and "mean_unet" not in variables["params"]
    cond, _ = model.apply(variables, tokens, mask, style, method=MathArtDenoiser.conditions)
    mean = model.apply(variables, cond, x.shape, method=MathArtDenoiser.regression_mean)
    assert mean.shape == x.shape and bool(jnp.isfinite(mean).all())
    with pytest.raises(
        ValueError, match="regression_net 'mlp' unknown; choose one of: unet, field"
    ):
        _model(regression=True, regression_net="mlp").init(
            jax.random.key(0), x, t, tokens, mask, style
        )
