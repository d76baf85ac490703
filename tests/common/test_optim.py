"""Weight-decay masks, learning-rate groups and the optimizer chain."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import optim
from common.config import ConfigError, base_config

PARAMS = {
    "embed": {"embedding": jnp.ones((5, 4))},
    "pos_embedding": jnp.ones((1, 3, 4)),
    "block": {
        "Dense_0": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones((4,))},
        "LayerNorm_0": {"scale": jnp.ones((4,)), "bias": jnp.zeros((4,))},
    },
    "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones((2,))},
}


def test_decay_mask_only_kernels():
    mask = optim.decay_mask(PARAMS)
    flat = {optim.path_str(p): v for p, v in jax.tree_util.tree_leaves_with_path(mask)}
    assert flat == {
        "embed/embedding": False,
        "pos_embedding": False,
        "block/Dense_0/kernel": True,
        "block/Dense_0/bias": False,
        "block/LayerNorm_0/scale": False,
        "block/LayerNorm_0/bias": False,
        "head/kernel": True,
        "head/bias": False,
    }


def test_adamw_decays_kernels_only():
    c = base_config()
    c.learning_rate, c.optim.weight_decay = 0.1, 0.5
    tx = optim.make_optimizer(c, optax.constant_schedule(0.1), PARAMS)
    zero_grads = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = tx.update(zero_grads, tx.init(PARAMS), PARAMS)
    # With zero gradients the only update is decoupled decay: -lr * wd * param on kernels.
    np.testing.assert_allclose(updates["head"]["kernel"], -0.1 * 0.5 * np.ones((4, 2)), rtol=1e-6)
    np.testing.assert_array_equal(updates["head"]["bias"], 0.0)
    np.testing.assert_array_equal(updates["embed"]["embedding"], 0.0)
    np.testing.assert_array_equal(updates["block"]["LayerNorm_0"]["scale"], 0.0)


def test_groups_first_match_wins_and_default():
    groups = optim.group_assignment(PARAMS, {"head": r"^head/", "blocks": r"^(block|head)/"})
    assert groups["head"]["kernel"] == "head"
    assert groups["block"]["Dense_0"]["kernel"] == "blocks"
    assert groups["embed"]["embedding"] == optim.DEFAULT_GROUP


def test_group_scales_multiply_updates_and_zero_freezes():
    groups = optim.group_assignment(PARAMS, {"head": r"^head/"})
    updates = jax.tree.map(jnp.ones_like, PARAMS)
    controls = {"lr_scale/head": jnp.float32(0.0), "lr_scale/default": jnp.float32(0.25)}
    scaled = optim.scale_updates_by_group(updates, groups, controls)
    np.testing.assert_array_equal(scaled["head"]["kernel"], 0.0)
    np.testing.assert_array_equal(scaled["block"]["Dense_0"]["kernel"], 0.25)


def test_lr_scales_from_config_reject_unknown_groups():
    c = base_config()
    c.optim.lr_scales = {"encoder_a": 0.0}
    assert optim.initial_lr_scales(c, {"encoder_a": "a", "encoder_b": "b"}) == {
        "lr_scale/encoder_a": 0.0,
        "lr_scale/encoder_b": 1.0,
        "lr_scale/default": 1.0,
    }
    c.optim.lr_scales = {"encodr_a": 0.0}
    with pytest.raises(ConfigError, match=r"unknown groups \['encodr_a'\].*encoder_a, default"):
        optim.initial_lr_scales(c, {"encoder_a": "a"})


def test_grad_clip_chain_clips_global_norm():
    c = base_config()
    c.optim.name, c.optim.grad_clip = "sgd", 1.0
    c.optim.b1 = 0.0
    params = {"w": jnp.zeros((2,))}
    tx = optim.make_optimizer(c, optax.constant_schedule(1.0), params)
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
