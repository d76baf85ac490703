"""Loss terms by hand, curriculum boundaries, homeostasis decisions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ternary_vae import losses
from ternary_vae.curriculum import Curriculum
from ternary_vae.homeostasis import Homeostasis, HomeostasisConfig


def test_level_stats_and_profile_terms_by_hand():
    r = jnp.array([3.0, 2.0, 1.0, 1.5, 0.2, 9.0])
    v = jnp.array([0, 0, 1, 1, 9, 5])
    w = jnp.array([1.0, 1, 1, 1, 1, 0])  # the last row is padding
    n, mean, var = losses.level_stats(r, v, w)
    np.testing.assert_allclose(n, [2, 2, 0, 0, 0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(np.asarray(mean)[[0, 1, 9]], [2.5, 1.25, 0.2])
    np.testing.assert_allclose(np.asarray(var)[[0, 1, 9]], [0.5, 0.125, 0.0])  # unbiased
    targets = losses.level_targets(0.2, 2.0)  # 2.0, 1.8, ..., 0.2
    ref = jnp.full((10,), 1.0)
    out = losses.profile_loss(r, v, w, targets=targets, reference_var=ref, margin=0.01)
    # hierarchy: mean over present levels {0, 1, 9} of (mu - tau)^2
    want_h = ((2.5 - 2.0) ** 2 + (1.25 - 1.8) ** 2 + 0.0) / 3
    assert float(out["hierarchy"]) == pytest.approx(want_h, rel=1e-5)
    # richness: relu(0.5 - var/1)^2 for levels with >= 2 members, / 3 present
    assert float(out["richness"]) == pytest.approx((0.0 + 0.375**2) / 3, rel=1e-5)
    # separation over consecutive present levels (0,1), (1,9): relu(mu_w - mu_u + 0.01)
    assert float(out["separation"]) == pytest.approx(0.0, abs=1e-7)
    rng = np.random.default_rng(3)  # and against numpy on 2,000 random radii
    r3, v3 = rng.normal(size=2000).astype(np.float32), rng.integers(0, 10, 2000)
    n3, mean3, var3 = losses.level_stats(jnp.asarray(r3), jnp.asarray(v3), jnp.ones(2000))
    for level in range(10):
        m = r3[v3 == level]
        assert n3[level] == m.size and float(mean3[level]) == pytest.approx(m.mean(), abs=1e-5)
        assert float(var3[level]) == pytest.approx(m.var(ddof=1), abs=1e-5)
    r2 = jnp.array([1.0, 1.0, 2.0, 2.0, 3.0, 0.0])
    out2 = losses.profile_loss(r2, v, w, targets=targets, reference_var=ref, margin=0.01)
    assert float(out2["separation"]) == pytest.approx((2 - 1 + 0.01) + (3 - 2 + 0.01), rel=1e-5)


def test_radial_band_and_rank_and_geodesic():
    targets = losses.level_targets(0.3, 3.0)
    v = jnp.array([0, 1, 2] * 100)
    r = targets[v] + 0.05  # inside a 0.1 band
    w = jnp.ones(300)
    key = jax.random.key(0)
    kw = dict(targets=targets, rarity_exponent=0.4, margin_weight=0.5, num_pairs=500)
    assert float(losses.radial_loss(r, v, w, key, band=0.1, **kw)) == pytest.approx(0.0, abs=1e-6)
    point = float(losses.radial_loss(r, v, w, key, band=0.0, **kw))
    want = float(jnp.mean(0.05**2 * (1 + jnp.exp(0.4 * v))))  # margin term is 0 here
    assert point == pytest.approx(want, rel=1e-4)
    # rank: perfectly ordered with gaps >> T -> ~0; reversed -> ~mean |dv|
    good = float(losses.rank_loss(r, v, w, key, temperature=0.01, num_pairs=4000))
    bad = float(losses.rank_loss(-r, v, w, key, temperature=0.01, num_pairs=4000))
    assert good < 1e-6 and bad == pytest.approx(4 / 3, rel=0.05)
    # geodesic: identical points at identical indices -> target 3 exp(-3) vs distance 0
    z = jnp.zeros((4, 2))
    idx = jnp.zeros(4, jnp.int32)
    g = float(losses.geodesic_loss(z, idx, jnp.ones(4), key, num_pairs=10))
    t = 3 * np.exp(-3.0)
    assert g == pytest.approx(0.5 * t**2, rel=1e-5)


def test_spread_loss_floor():
    v = jnp.array([0] * 4 + [1] * 4)
    w = jnp.ones(8)
    wide = jnp.array([0.0, 1.0, 0.0, 1.0, 5.0, 6.0, 5.0, 6.0])  # unbiased var 1/3
    assert float(losses.spread_loss(wide, v, w, target_var=0.3)) == 0.0
    flat = jnp.zeros(8)
    assert float(losses.spread_loss(flat, v, w, target_var=0.3)) == pytest.approx(1.0)


def test_vae_loss_by_hand():
    logits = jnp.zeros((2, 9, 3))
    x = jnp.zeros((2, 9))
    mu, logvar = jnp.ones((2, 16)), jnp.zeros((2, 16))
    loss, mets = losses.vae_loss(logits, x, mu, logvar, 0.5)
    assert float(mets["recon"]) == pytest.approx(9 * np.log(3), rel=1e-6)
    assert float(mets["kl"]) == pytest.approx(16 * 0.5, rel=1e-6)
    assert float(loss) == pytest.approx(9 * np.log(3) + 4.0, rel=1e-6)


def test_curriculum_boundaries():
    c = Curriculum()
    m = lambda e: {k: float(v) for k, v in c.multipliers(e, 120.0).items()}
    assert m(0)["hierarchy"] == 0.0 and m(29.9)["hierarchy"] == 0.0
    assert m(30)["geodesic"] == 1.0 and m(29.9)["geodesic"] == 0.0
    assert m(55)["hierarchy"] == pytest.approx(0.5)
    assert m(80)["hierarchy"] == 1.0 and m(99.9)["richness"] == 1.0
    assert m(100)["richness"] == 1.5 and m(119)["hierarchy"] == 1.0
    assert [c.phase(e, 120.0) for e in (0, 40, 90, 110)] == [
        "coverage_first",
        "hierarchy_ramp",
        "full",
        "richness_preserve",
    ]
    off = Curriculum(enabled=False, geodesic_start_epoch=30.0)
    assert float(off.multipliers(0, 120.0)["hierarchy"]) == 1.0


def _feed(h, evals, **fixed):
    out = []
    for e, kw in enumerate(evals):
        out.append(h.update(epoch=float(e), **{**fixed, **kw}))
    return out


def test_homeostasis_freezes_b_on_plateau_and_unfreezes_on_drop():
    cfg = HomeostasisConfig(start_epoch=0, hysteresis_epochs=1, window=2, patience=2)
    h = Homeostasis(cfg, encoder_a_frozen=True, encoder_b_frozen=False)
    flat = [dict(h_b=-0.8)] * 6
    changes = _feed(h, flat, coverage=0.999, h_a=-0.5, q=1.0)
    # window full after 3 evals (history of 3), plateau counts at evals 2, 3 -> freeze at eval 3
    assert any("froze encoder_b" in c for c in changes[3])
    assert h.lr_scales()["encoder_b"] == 0.0
    state = h.state_dict()
    # |H_B| drops by more than 0.01 -> unfreeze at the configured rate
    msg = h.update(epoch=10.0, coverage=0.999, h_a=-0.5, h_b=-0.7, q=0.9)
    assert any("unfroze encoder_b" in c for c in msg)
    assert h.lr_scales()["encoder_b"] == cfg.encoder_b_lr_scale
    # state round trip restores the frozen snapshot
    h2 = Homeostasis(cfg)
    h2.load_state_dict(state)
    assert h2.lr_scales()["encoder_b"] == 0.0 and h2.state_dict() == state


def test_homeostasis_encoder_a_and_q_gated_annealing():
    cfg = HomeostasisConfig(
        start_epoch=0, hysteresis_epochs=1, window=2, patience=2, annealing_step=0.003
    )
    h = Homeostasis(cfg, encoder_a_frozen=True, encoder_b_frozen=True)
    # coverage 1.0 and |H_A| stalled for `patience` evals -> unfreeze A (cycle starts, Q=1.0)
    changes = _feed(h, [dict(h_a=-0.7)] * 5, coverage=1.0, h_b=-0.8, q=1.0)
    assert any("unfroze encoder_a" in c for day in changes for c in day)
    assert h.lr_scales()["encoder_a"] == cfg.encoder_a_unfreeze_lr_scale
    # coverage falls below 0.995 with Q higher than at the unfreeze -> freeze + relax by step
    msg = h.update(epoch=20.0, coverage=0.99, h_a=-0.7, h_b=-0.8, q=1.2)
    assert any("froze encoder_a" in c for c in msg)
    assert any("relaxed" in c for c in msg)
    assert h.state.freeze_threshold == pytest.approx(0.992)
    assert h.state.unfreeze_threshold == pytest.approx(0.997)
    assert h.lr_scales()["encoder_a"] == 0.0
    # nothing happens before start_epoch
    late = Homeostasis(HomeostasisConfig(start_epoch=100), encoder_a_frozen=False)
    assert late.update(epoch=1.0, coverage=0.5, h_a=0, h_b=0, q=0) == []
