"""Metrics against closed forms and hand computations."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import pdist

from ternary_vae import metrics, ternary

V = ternary.all_operations()["valuation"]


def test_ceiling_closed_form_matches_distinct_separated_radii():
    t = ternary.level_sizes().astype(float)
    n = t.sum()
    closed = -math.sqrt(1 - ((t**3 - t).sum()) / (n**3 - n))
    assert metrics.hierarchy_ceiling() == pytest.approx(closed, abs=1e-15)
    assert closed == pytest.approx(-0.8320502954, abs=1e-10)
    assert abs(closed + 3 / math.sqrt(13)) < 2e-9  # the N -> inf limit
    r = (9 - V) + np.random.default_rng(0).uniform(0, 0.5, V.size)  # distinct, separated
    h = metrics.hierarchy(V, r)
    assert h == pytest.approx(closed, abs=1e-12)
    assert h == pytest.approx(stats.spearmanr(V, r)[0], abs=1e-12)


def test_hierarchy_ties_and_mixed_cases():
    assert metrics.hierarchy(V, -V.astype(float)) == pytest.approx(-1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    # Level 0 collapsed to one radius, the rest distinct and separated: beyond the ceiling.
    r = (9 - V) + rng.uniform(0, 0.5, V.size)
    r[V == 0] = 9.25
    assert metrics.hierarchy(V, r) == pytest.approx(-0.9919, abs=5e-5)
    assert metrics.hierarchy(V, np.ones(V.size)) == 0.0  # constant: finite, not nan


def test_richness_is_mean_of_population_variances_over_ten_levels():
    v = np.array([0, 0, 0, 1, 1, 9])
    r = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 4.0])
    # level 0: var(1,2,3) = 2/3; level 1: var(5,7) = 1; level 9: one member -> 0; /10
    assert metrics.richness(r, v) == pytest.approx((2 / 3 + 1.0) / 10)


def test_dist_corr_matches_scipy_on_the_same_sample():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(V.size, 4)) + V[:, None] * 0.1
    got = metrics.dist_corr(z, V, num_samples=300, seed=5)
    idx = np.random.default_rng(5).choice(V.size, 300, replace=False)
    want = stats.spearmanr(pdist(z[idx]), pdist(V[idx, None].astype(float), "cityblock"))[0]
    assert got == pytest.approx(want, abs=1e-12)
    assert got == metrics.dist_corr(z, V, num_samples=300, seed=5)  # seeded


def test_q_scores_and_selection():
    assert metrics.q_score(0.9, -0.8) == pytest.approx(0.9 + 1.2)
    assert metrics.q_score(1.0, metrics.hierarchy_ceiling()) == pytest.approx(2.248, abs=1e-3)
    ra = np.linspace(0, 1, 50)
    # perfect A/B agreement, hierarchy at the ceiling, richness 0.006: far below target 2.0.
    q = metrics.q_enhanced(ra, 2 * ra, metrics.hierarchy_ceiling(), 0.006)
    assert q == pytest.approx(1 + 1.5 * 0.8320502954 + 0.5 * math.log(0.006 + 1e-8), abs=1e-9)
    assert q < -0.3
    assert metrics.selection_score(2.0, 1.0, 0.9999) == 2.0
    low = metrics.selection_score(2.0, 0.5, 0.9999)
    assert math.isfinite(low) and low < -2.0
    assert metrics.selection_score(2.0, 0.9, 0.9999) > low


def test_separation_by_hand():
    v = np.array([0, 0, 1, 1, 2])
    r = np.array([3.0, 2.0, 2.5, 1.0, 0.5])
    s = metrics.separation(r, v, margin=0.01)
    # means 2.5, 1.75, 0.5 -> gaps 0.75, 1.25
    assert s["min_gap"] == pytest.approx(0.75)
    assert s["violations"] == 0
    # pairs (level 0, level 1): (3,2.5) ok, (3,1) ok, (2,2.5) bad, (2,1) ok -> 1/4;
    # (1, 2): both fine -> adjacent 1/6; all pairs: 0-2 fine -> discordant 1/8.
    assert s["overlap_adjacent"] == pytest.approx(1 / 6)
    assert s["discordant"] == pytest.approx(1 / 8)


def test_comprehensive_on_synthetic_outputs():
    ops = ternary.all_operations()
    rng = np.random.default_rng(4)
    r = 3.0 - V * 0.3 + rng.uniform(-0.1, 0.1, V.size)
    norm = np.tanh(r / 2)
    d = rng.normal(size=(V.size, 16))
    z = d / np.linalg.norm(d, axis=1, keepdims=True) * norm[:, None]
    correct = np.ones(V.size, bool)
    correct[7] = False
    out = metrics.comprehensive(
        dict(
            valuation=V,
            index=ops["index"],
            correct=correct,
            radius_a=r,
            radius_b=r,
            z_a=z,
            z_b=z,
        )
    )
    assert out["coverage"] == pytest.approx(1 - 1 / V.size)
    assert out["hierarchy_b"] == pytest.approx(metrics.hierarchy_ceiling(), abs=1e-12)
    assert out["r_v9_b"] == pytest.approx(r[0])
    assert out["r_v0_b"] == pytest.approx(r[V == 0].mean())
    assert out["separation_b/discordant"] == 0.0
    assert out["select"] == pytest.approx(out["q_b"])  # 19682/19683 = 0.99995 >= 0.9999
    assert all(math.isfinite(x) for x in out.values())
