"""ViT model: parameter parity with timm, shapes/dtypes, scan == loop, patch embedding == conv,
and the analytic FLOP count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from vit.model import EncoderBlock, VisionTransformer, forward_macs_per_example

TINY = dict(embedding_dim=32, num_layers=3, num_heads=2, mlp_size=64, num_classes=10)


def n_params(model: VisionTransformer) -> int:
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    return parallel.tree_size(shapes)


def timm_param_count(d: int, layers: int, mlp: int, patch: int = 4, classes: int = 10) -> int:
    """Hand count of timm's VisionTransformer(class_token=True, qkv_bias=True)."""
    tokens = (32 // patch) ** 2 + 1
    embed = patch * patch * 3 * d + d  # conv patch embedding (kernel + bias)
    block = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * mlp + mlp) + (mlp * d + d)
    return d + tokens * d + embed + layers * block + 2 * d + d * classes + classes


@pytest.mark.parametrize(
    "d,layers,heads,mlp,expected",
    [
        (192, 12, 3, 768, 5_362_762),  # timm 1.0.31's ViT-Ti/4 at 32 px, counted there
        (384, 6, 6, 1536, None),
        (192, 9, 12, 384, None),
        (384, 7, 12, 384, None),
    ],
)
def test_parameter_count_matches_timm(d, layers, heads, mlp, expected):
    model = VisionTransformer(embedding_dim=d, num_layers=layers, num_heads=heads, mlp_size=mlp)
    count = n_params(model)
    assert count == timm_param_count(d, layers, mlp)
    if expected is not None:
        assert count == expected
    assert n_params(model.clone(scan_layers=True)) == count


def test_gap_drops_cls_token_and_its_position():
    cls = n_params(VisionTransformer(**TINY))
    gap = n_params(VisionTransformer(**TINY, pool="gap"))
    assert cls - gap == 2 * TINY["embedding_dim"]


@pytest.fixture(scope="module")
def tiny_vars():
    model = VisionTransformer(**TINY)
    images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    variables = jax.jit(lambda k: model.init(k, images, train=False))(jax.random.key(0))
    return model, variables, images


def apply(model, variables, images, train=False, seed=0):
    """Jitted forward (eager Flax dispatch is slow on CPU)."""
    fn = jax.jit(lambda v, x, k: model.apply(v, x, train=train, rngs={"dropout": k}))
    return fn(variables, images, jax.random.key(seed))


def test_shapes_dtypes_and_dropout(tiny_vars):
    model, variables, images = tiny_vars
    logits = apply(model, variables, images)
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    # Deterministic at eval; dropout makes train mode rng-dependent.
    np.testing.assert_array_equal(logits, apply(model, variables, images, seed=5))
    a = apply(model, variables, images, train=True, seed=1)
    b = apply(model, variables, images, train=True, seed=2)
    assert not np.allclose(a, b)
    # bf16 compute: params stay f32, logits come back f32 and close to the f32 ones.
    bf16 = apply(model.clone(dtype=jnp.bfloat16), variables, images)
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(bf16, logits, atol=0.1)


def test_scan_layers_equals_python_loop(tiny_vars):
    model, variables, images = tiny_vars
    p = variables["params"]
    blocks = [p[f"block{i}"] for i in range(TINY["num_layers"])]
    scanned = {k: v for k, v in p.items() if not k.startswith("block")}
    scanned["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
    out = apply(model.clone(scan_layers=True), {"params": scanned}, images)
    np.testing.assert_allclose(out, apply(model, variables, images), atol=1e-5)


def test_patch_embedding_is_the_strided_conv(tiny_vars):
    model, variables, images = tiny_vars
    kernel = variables["params"]["patch_embed"]["kernel"]  # [p*p*C, D]
    p, d = 4, TINY["embedding_dim"]
    dense = model.patchify(images) @ kernel  # [B, 64, D]
    conv = jax.lax.conv_general_dilated(
        images,
        kernel.reshape(p, p, 3, d),
        window_strides=(p, p),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(dense, conv.reshape(4, 64, d), atol=1e-5)


def test_drop_path_rate_zero_is_identity_and_positive_rate_drops_whole_examples():
    block = EncoderBlock(
        num_heads=2,
        mlp_size=16,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        use_drop_path=True,
        train=True,
    )
    x = jax.random.normal(jax.random.key(0), (64, 5, 8))
    v = jax.jit(lambda k: block.init(k, x, jnp.float32(0.0)))(jax.random.key(1))

    def run(rate, train):
        b = block if train else block.clone(train=False)
        return b.apply(v, x, rate, rngs={"dropout": jax.random.key(2)})[0]

    run = jax.jit(run, static_argnums=1)
    np.testing.assert_allclose(run(0.0, True), run(0.0, False), atol=1e-6)
    # rate ~1: (almost) every residual branch is dropped, so the block is the identity.
    dropped = run(0.999999, True)
    assert np.mean(np.all(np.isclose(dropped, x), axis=(1, 2))) > 0.9


def test_analytic_macs():
    macs = forward_macs_per_example(
        image_size=32,
        channels=3,
        patch_size=4,
        embedding_dim=192,
        num_layers=12,
        mlp_size=768,
        num_classes=10,
    )
    n, d, m = 65, 192, 768
    blocks = 12 * (4 * n * d * d + 2 * n * d * m + 2 * n * n * d)
    assert macs == blocks + 64 * 48 * 192 + 192 * 10
    assert abs(macs / 1e9 - 0.365) < 0.001  # 0.365 GMAC for D192 L12 at 65 tokens
