"""Self-check of the ternary VAE's data, valuations, geometry and metrics (no training).

    python -m ternary_vae.validate

Every check compares an implementation against an independent computation: a closed form,
scipy, or a hand-worked example. Prints one line per check and exits non-zero if any fails.
It also prints the geometry budget behind the README's feasibility argument: whether
coverage 100 %, Hierarchy_B <= -0.830 and richness >= 0.006 can hold together at
max_radius 0.95.
"""

import math
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from scipy.spatial.distance import pdist

from ternary_vae import hyperbolic, losses, metrics, ternary
from ternary_vae.model import BallProjection

_results: list[tuple[str, bool, str]] = []


def check(name: str) -> Callable:
    def wrap(fn: Callable[[], str]) -> Callable:
        try:
            detail = fn() or ""
            _results.append((name, True, detail))
        except Exception as e:  # a failed check is reported, never raised
            _results.append((name, False, f"{type(e).__name__}: {e}"))
        return fn

    return wrap


OPS = ternary.all_operations()
V = OPS["valuation"]


@check("data: 19,683 rows, float32, index order (little-endian base 3, digit - 1)")
def _():
    x = OPS["trits"]
    assert x.shape == (3**9, 9) and x.dtype == np.float32
    powers = 3 ** np.arange(9)
    assert np.array_equal(((x + 1) * powers).sum(1), np.arange(3**9))
    assert np.array_equal(x[0], -np.ones(9)) and np.array_equal(x[-1], np.ones(9))
    assert np.array_equal(x[5], [1, 0, -1, -1, -1, -1, -1, -1, -1])
    return "row 0 = (-1,...,-1), row 5 = (1,0,-1,...), row 19682 = (1,...,1)"


@check("valuation: v3(0) = 9, v3 = number of leading -1 trits, level sizes 13122..1")
def _():
    brute = np.array([9] + [next(k for k in range(10) if i % 3 ** (k + 1)) for i in range(1, 3**9)])
    assert np.array_equal(V, brute)
    leading = np.argmax(OPS["trits"] != -1, axis=1)
    leading[0] = 9
    assert np.array_equal(V, leading)
    sizes = np.bincount(V, minlength=10)
    assert sizes.tolist() == [13122, 4374, 1458, 486, 162, 54, 18, 6, 2, 1]
    diffs = np.arange(-3000, 3000)
    assert np.array_equal(
        np.asarray(ternary.valuation_jnp(jnp.asarray(diffs))), ternary.valuation(np.abs(diffs))
    )
    return f"sizes {sizes.tolist()}"


@check("hierarchy ceiling: closed form = Spearman of distinct, separated radii = scipy")
def _():
    t = ternary.level_sizes().astype(float)
    n = t.sum()
    closed = -math.sqrt(1 - (t**3 - t).sum() / (n**3 - n))
    r = (9 - V) + np.random.default_rng(0).uniform(0, 0.5, V.size)
    ours, ref = metrics.hierarchy(V, r), stats.spearmanr(V, r)[0]
    assert abs(ours - closed) < 1e-12 and abs(ref - closed) < 1e-12
    assert abs(closed - (-0.8320502954)) < 1e-10 and abs(closed + 3 / math.sqrt(13)) < 2e-9
    return f"{closed:.10f} (limit -3/sqrt(13) = {-3 / math.sqrt(13):.10f})"


@check("hierarchy with ties: -1 when constant per level; -0.9919 / -0.8368 mixed cases")
def _():
    rng = np.random.default_rng(1)
    assert abs(metrics.hierarchy(V, -V.astype(float)) + 1) < 1e-12
    r = (9 - V) + rng.uniform(0, 0.5, V.size)
    r[V == 0] = 9.25
    a = metrics.hierarchy(V, r)
    r2 = (9 - V) + rng.uniform(0, 0.5, V.size)
    for v in range(1, 10):
        r2[v == V] = 9 - v + 0.25
    b = metrics.hierarchy(V, r2)
    assert abs(a + 0.9919) < 5e-5 and abs(b + 0.8368) < 5e-5
    return f"{a:.4f}, {b:.4f}"


@check("richness: mean over 10 levels of population variance (hand example)")
def _():
    r = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 4.0])
    v = np.array([0, 0, 0, 1, 1, 9])
    got = metrics.richness(r, v)
    assert abs(got - (2 / 3 + 1) / 10) < 1e-15
    return f"{got:.6f} = (2/3 + 1)/10"


@check("dist_corr: equals scipy on the same seeded 1,000-sample")
def _():
    z = np.random.default_rng(2).normal(size=(V.size, 16)) + V[:, None] * 0.05
    idx = np.random.default_rng(0).choice(V.size, 1000, replace=False)
    ref = stats.spearmanr(pdist(z[idx]), pdist(V[idx, None].astype(float), "cityblock"))[0]
    got = metrics.dist_corr(z, V)
    assert abs(got - ref) < 1e-12
    return f"{got:.6f}"


@check("Q: max 2.248 at the ceiling; Q_enhanced <= -0.31 at richness 0.006 (target 2.0)")
def _():
    qmax = metrics.q_score(1.0, metrics.hierarchy_ceiling())
    qe = metrics.q_enhanced(np.arange(5.0), np.arange(5.0), metrics.hierarchy_ceiling(), 0.006)
    assert abs(qmax - 2.2481) < 1e-4 and qe < -0.30
    return f"Q_max {qmax:.4f}; best Q_enhanced at richness 0.006: {qe:.4f}"


@check("separation: gaps, adjacent overlap and discordant pairs (hand example)")
def _():
    s = metrics.separation(np.array([3.0, 2.0, 2.5, 1.0, 0.5]), np.array([0, 0, 1, 1, 2]))
    assert abs(s["min_gap"] - 0.75) < 1e-12
    assert abs(s["overlap_adjacent"] - 1 / 6) < 1e-12 and abs(s["discordant"] - 1 / 8) < 1e-12
    return str({k: round(v, 4) for k, v in s.items()})


@check("geometry: 2 artanh|z|, distance, log/exp maps; max radius 3.664 at 0.95")
def _():
    z = jnp.array([[0.3, -0.4], [0.6, 0.0]])
    assert np.allclose(hyperbolic.hyperbolic_radius(z), 2 * np.arctanh([0.5, 0.6]), rtol=1e-6)
    assert np.allclose(hyperbolic.distance(jnp.zeros_like(z), z), 2 * np.arctanh([0.5, 0.6]))
    assert np.allclose(hyperbolic.exp_map_zero(hyperbolic.log_map_zero(z)), z, atol=1e-6)
    r_max = hyperbolic.max_hyperbolic_radius(0.95)
    assert abs(r_max - 3.6636) < 1e-4
    return f"r_max(0.95) = {r_max:.4f}, r_max(0.99) = {hyperbolic.max_hyperbolic_radius(0.99):.4f}"


@check("projection: every output inside the ball (|z| <= 0.95 up to float32 rounding)")
def _():
    proj = BallProjection(hidden_dim=16, max_radius=0.95)
    z = jax.random.normal(jax.random.key(0), (4096, 16)) * 100.0
    params = proj.init(jax.random.key(1), z, train=False)
    params["params"]["radius_out"]["bias"] = jnp.full((1,), 60.0)
    norm = np.asarray(jnp.linalg.norm(proj.apply(params, z, train=False), axis=-1))
    assert np.all(np.isfinite(norm)) and norm.max() <= 0.95 * (1 + 1e-6)
    return f"max |z| = {norm.max():.7f} with the radius head saturated"


@check("losses: level statistics match numpy")
def _():
    rng = np.random.default_rng(3)
    r = rng.normal(size=2000).astype(np.float32)
    v = rng.integers(0, 10, 2000)
    n, mean, var = losses.level_stats(jnp.asarray(r), jnp.asarray(v), jnp.ones(2000))
    for level in range(10):
        m = r[v == level]
        assert n[level] == m.size and abs(mean[level] - m.mean()) < 1e-5
        assert abs(var[level] - m.var(ddof=1)) < 1e-5
    return "counts, means, unbiased variances"


def geometry_budget() -> list[str]:
    """Numbers behind the feasibility argument (README, "Can the three targets hold together?")."""
    sizes = ternary.level_sizes()
    r_max = hyperbolic.max_hyperbolic_radius(0.95)
    lines = [f"max hyperbolic radius at |z| <= 0.95: {r_max:.4f}"]
    # Non-overlapping levels: level v confined to an interval of width w_v, sum w_v <= r_max.
    # Var <= w^2/4 (two-point) and w^2/12 (uniform); equal widths r_max/10:
    w = r_max / 10
    lines.append(
        f"equal bands of width {w:.3f}: richness <= {9 * w * w / 4 / 10:.4f} (two-point), "
        f"{9 * w * w / 12 / 10:.4f} (uniform) -> the ball has room for richness 0.006"
    )
    for inner, outer, label in ((0.1, 0.9, "reference targets 0.1..0.9"), (0.3, 3.3, "ours")):
        s = (outer - inner) / 9
        lines.append(
            f"{label}: level spacing {s:.4f}; uniform non-overlapping levels give richness <= "
            f"{9 * s * s / 12 / 10:.5f}"
        )
    rng = np.random.default_rng(0)
    tau = 3.3 - V / 9 * 3.0
    for h in (0.15, 0.16):
        r = tau + rng.uniform(-h, h, V.size)
        lines.append(
            f"example (ours, uniform +-{h}): H = {metrics.hierarchy(V, r):.5f}, richness = "
            f"{metrics.richness(r, V):.5f}, max radius {r.max():.3f} < {r_max:.3f}"
        )
    tau_ref = 0.9 - V / 9 * 0.8
    for sd in (0.03, 0.087):
        r = tau_ref + rng.normal(0, sd, V.size)
        lines.append(
            f"reference targets + Gaussian sd {sd}: H = {metrics.hierarchy(V, r):.4f}, "
            f"richness = {metrics.richness(r, V):.5f}"
        )
    del sizes
    return lines


def main() -> int:
    width = max(len(name) for name, _, _ in _results)
    for name, ok, detail in _results:
        print(f"{'PASS' if ok else 'FAIL'}  {name:{width}s}  {detail}")
    print("\ngeometry budget:")
    for line in geometry_budget():
        print(f"  {line}")
    failed = sum(not ok for _, ok, _ in _results)
    print(f"\n{len(_results) - failed}/{len(_results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
