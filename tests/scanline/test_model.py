"""Model contracts: shapes, read-out positions, and the causal mask (the seed's bug, fixed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.scanline as cfgmod
from scanline import model as model_lib

T, L, K = 24, 32, 4


def _model(name, **over):
    c = cfgmod.get_config("smoke").model
    c.name = name
    c.tokenizer = "cnn" if name == "sequential" else c.tokenizer
    c.lrcn_window, c.lrcn_stride = 8, 3
    for k, v in over.items():
        c[k] = v
    m = model_lib.build_model(c, K, jnp.float32)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, T, L))
    params = m.init({"params": jax.random.PRNGKey(1)}, x, train=False)["params"]
    f = jax.jit(lambda p, x: m.apply({"params": p}, x, train=False))
    return c, params, f, x


def test_causal_mask_is_lower_triangular_allowed():
    np.testing.assert_array_equal(model_lib.causal_mask(4)[0, 0], np.tril(np.ones((4, 4), bool)))
    w = model_lib.causal_mask(5, window=2)[0, 0]
    np.testing.assert_array_equal(w[4], [False, False, False, True, True])


@pytest.mark.parametrize("window", [0, 5])
def test_sequential_prediction_at_i_ignores_lines_after_i(window):
    c, params, f, x = _model("sequential", window=window)
    base = f(params, x)
    assert base.shape == (2, T, K) and base.dtype == jnp.float32
    np.testing.assert_array_equal(model_lib.lines_seen(c, T), np.arange(1, T + 1))
    for j in (0, 7, T - 1):
        changed = f(params, x.at[:, j].add(3.0 * jax.random.normal(jax.random.PRNGKey(j), (2, L))))
        # Positions before j never see line j (the original's inverted mask failed this) ...
        np.testing.assert_allclose(changed[:, :j], base[:, :j], rtol=0, atol=1e-6)
        # ... position j and later do (within the window, if any).
        assert np.abs(np.asarray(changed[:, j] - base[:, j])).max() > 1e-4
        if window:
            # Windowed attention per layer: the receptive field grows by W - 1 lines per layer.
            after = j + c.num_layers * (window - 1) + 1
            np.testing.assert_allclose(changed[:, after:], base[:, after:], rtol=0, atol=1e-6)


def test_lrcn_windows_and_causality():
    c, params, f, x = _model("lrcn")
    seen = model_lib.lines_seen(c, T)
    np.testing.assert_array_equal(seen, [8, 11, 14, 17, 20, 23, 24])  # last window ends at T
    base = f(params, x)
    assert base.shape == (2, len(seen), K)
    j = 15
    changed = f(params, x.at[:, j].add(5.0))
    before = seen <= j  # windows that ended before line j
    np.testing.assert_allclose(changed[:, before], base[:, before], rtol=0, atol=1e-6)
    assert np.abs(np.asarray(changed[:, -1] - base[:, -1])).max() > 1e-5


def test_vit_reads_cls_after_all_lines():
    c, params, f, x = _model("vit")
    base = f(params, x)
    assert base.shape == (2, 1, K)
    assert model_lib.lines_seen(c, T).tolist() == [T]
    assert np.abs(np.asarray(f(params, x.at[:, -1].add(3.0)) - base)).max() > 1e-5


def test_unknown_model_and_bad_heads():
    c = cfgmod.get_config("smoke").model
    c.name = "cnn"
    with pytest.raises(ValueError, match=r"unknown config\.model\.name 'cnn'"):
        model_lib.build_model(c, K, jnp.float32)
    c.name, c.num_heads = "vit", 3
    with pytest.raises(ValueError, match="not divisible"):
        model_lib.build_model(c, K, jnp.float32)


@pytest.mark.parametrize("name", ["vit", "sequential", "lrcn"])
def test_analytic_flops_match_xla(name):
    """forward_macs (used for MFU by common.bench) against XLA's count of the forward pass
    (XLA adds norms, activations and softmax, which the analytic count leaves out)."""
    c, params, _, x = _model(name)
    f = jax.jit(
        lambda p, x: model_lib.build_model(c, K, jnp.float32).apply({"params": p}, x, train=False)
    )
    xla = f.lower(params, x[:1]).cost_analysis()["flops"]
    ratio = 2 * model_lib.forward_macs(c, T, L, K) / xla
    assert 0.85 < ratio < 1.05, ratio
