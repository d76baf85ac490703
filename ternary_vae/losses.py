"""Loss terms of both stages, as pure float32 functions of radii, levels and logits.

Stage 0 (`vae_loss`): reconstruction CE summed over trits + beta * KL, per example.
Stage 1 (`ternary_vae.task` combines them with curriculum multipliers):

- `coverage_ce` + `profile_loss` -- the reference's RichHierarchyLoss, per batch:
  coverage CE; level-mean hierarchy (mu_v - tau_v)^2, richness floor
  relu(rho_min - Var(r|v)/Var(r0|v))^2 against the initial radii r0, separation
  relu(mu_{v'} - mu_v + m) over consecutive present levels v < v'.
- `radial_loss` -- per-sample radial target (RadialHierarchyLoss), here with an optional
  dead band of half-width `band` around each level's target, plus the pairwise margin term.
- `rank_loss` -- Spearman surrogate on random pairs of different levels (GlobalRankLoss).
- `geodesic_loss` -- SmoothL1 between ball distance and 3*exp(-v3(|i-j|)/3) (PAdicGeodesicLoss).
- `spread_loss` -- our addition: a floor on each level's within-level radius variance, the
  quantity the richness metric averages (the reference's floor is relative to a random init).

Every level statistic takes ``weight`` [B] (1 = counts, 0 = ignore) so padded rows never leak.
"""

import jax
import jax.numpy as jnp
import optax

from ternary_vae import hyperbolic
from ternary_vae.ternary import MAX_VALUATION, NUM_LEVELS, valuation_jnp


def level_targets(inner: float, outer: float) -> jnp.ndarray:
    """tau_v = outer - (v/9)(outer - inner), v = 0..9: float32 [10], hyperbolic units."""
    v = jnp.arange(NUM_LEVELS, dtype=jnp.float32)
    return outer - v / MAX_VALUATION * (outer - inner)


def level_stats(
    r: jnp.ndarray, levels: jnp.ndarray, weight: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Per-level count n_v, mean and unbiased variance of r: each float32 [10].

    r: [B] float32, levels: [B] int in 0..9, weight: [B] in {0, 1}. Levels with n_v < 2 get
    variance 0 (and mean 0 when empty); callers mask them with n_v.
    """
    onehot = jax.nn.one_hot(levels, NUM_LEVELS, dtype=jnp.float32) * weight[:, None]  # [B, 10]
    n = onehot.sum(0)
    mean = (onehot * r[:, None]).sum(0) / jnp.maximum(n, 1.0)
    sq = (onehot * (r[:, None] - mean) ** 2).sum(0)
    var = jnp.where(n > 1, sq / jnp.maximum(n - 1.0, 1.0), 0.0)
    return n, mean, var


def _consecutive_present(present: jnp.ndarray) -> jnp.ndarray:
    """[10, 10] mask of pairs (u < w) both present with no present level strictly between."""
    p = present.astype(jnp.int32)
    cs = jnp.cumsum(p)  # cs[k] = #present levels <= k
    u = jnp.arange(NUM_LEVELS)[:, None]
    w = jnp.arange(NUM_LEVELS)[None, :]
    between = (cs[None, :] - p[None, :]) - cs[:, None]  # #present k with u < k < w
    return (u < w) & present[:, None] & present[None, :] & (between == 0)


def coverage_ce(logits: jnp.ndarray, trits: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
    """Mean CE over (valid examples x 9 trits); target class = trit + 1. logits [B, 9, 3]."""
    labels = (jnp.rint(trits) + 1).astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return (ce.mean(-1) * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def vae_loss(
    logits: jnp.ndarray,
    trits: jnp.ndarray,
    mu: jnp.ndarray,
    logvar: jnp.ndarray,
    kl_weight: float | jnp.ndarray,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Stage 0: sum-over-trits CE + kl_weight * KL(q(z|x) || N(0, I)), averaged over the batch."""
    labels = (jnp.rint(trits) + 1).astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    recon = ce.sum(-1).mean()
    kl = (-0.5 * (1.0 + logvar - mu**2 - jnp.exp(logvar))).sum(-1).mean()
    correct = jnp.all(jnp.argmax(logits, -1) == labels, axis=-1).mean()
    return recon + kl_weight * kl, {"recon": recon, "kl": kl, "batch_coverage": correct}


def profile_loss(
    r: jnp.ndarray,
    levels: jnp.ndarray,
    weight: jnp.ndarray,
    *,
    targets: jnp.ndarray,
    reference_var: jnp.ndarray,
    min_ratio: float = 0.5,
    margin: float = 0.01,
) -> dict[str, jnp.ndarray]:
    """Hierarchy, richness and separation parts of RichHierarchyLoss (coverage CE is separate).

    reference_var: [10] within-level variance of the initial model's radii (the reference uses
    the batch variance of r0 on the same items; we use the population variance, 10 numbers,
    which is what that batch estimate estimates). Returns unweighted terms.
    """
    n, mean, var = level_stats(r, levels, weight)
    present = n > 0
    n_present = jnp.maximum(present.sum(), 1)
    hierarchy = jnp.where(present, (mean - targets) ** 2, 0.0).sum() / n_present
    ratio = var / (reference_var + 1e-8)
    richness = jnp.where(n > 1, jax.nn.relu(min_ratio - ratio) ** 2, 0.0).sum() / n_present
    pairs = _consecutive_present(present)  # u < w: level w must sit inside level u
    gaps = jax.nn.relu(mean[None, :] - mean[:, None] + margin)
    separation = jnp.where(pairs, gaps, 0.0).sum()
    return {"hierarchy": hierarchy, "richness": richness, "separation": separation}


def radial_loss(
    r: jnp.ndarray,
    levels: jnp.ndarray,
    weight: jnp.ndarray,
    rng: jax.Array,
    *,
    targets: jnp.ndarray,
    band: float = 0.0,
    outer_cap: float = 0.0,
    rarity_exponent: float = 0.4,
    margin_weight: float = 0.5,
    num_pairs: int = 1000,
) -> jnp.ndarray:
    """Per-sample radial loss: weighted squared distance to the level target outside a band,
    plus 0.5 * mean relu((v_i - v_j) * s/2 - (r_j - r_i)) over random pairs with v_i > v_j.

    band = 0 is the reference's point target; band > 0 leaves every radius within
    [tau_v - band, tau_v + band] free, so within-level spread (richness) costs nothing.
    outer_cap > 0 moves level 0's upper edge out to outer_cap: nothing lies beyond level 0.
    """
    t = targets[levels]
    upper = t + band
    if outer_cap > 0:
        upper = jnp.where(levels == 0, jnp.maximum(upper, outer_cap), upper)
    excess = jax.nn.relu(t - band - r) + jax.nn.relu(r - upper)
    w = (1.0 + jnp.exp(rarity_exponent * levels.astype(jnp.float32))) * weight
    primary = (excess**2 * w).sum() / jnp.maximum(weight.sum(), 1.0)

    spacing = (targets[0] - targets[-1]) / MAX_VALUATION
    i, j = _random_pairs(rng, r.shape[0], num_pairs)
    dv = (levels[i] - levels[j]).astype(jnp.float32)
    valid = (dv > 0) * weight[i] * weight[j]
    hinge = jax.nn.relu(dv * spacing * 0.5 - (r[j] - r[i]))
    margin = (hinge * valid).sum() / jnp.maximum(valid.sum(), 1.0)
    return primary + margin_weight * margin


def rank_loss(
    r: jnp.ndarray,
    levels: jnp.ndarray,
    weight: jnp.ndarray,
    rng: jax.Array,
    *,
    temperature: float = 0.1,
    num_pairs: int = 2000,
) -> jnp.ndarray:
    """Mean over random pairs with dv = v_i - v_j != 0 of |dv| sigmoid(-sign(dv)(r_j - r_i)/T)."""
    i, j = _random_pairs(rng, r.shape[0], num_pairs)
    dv = (levels[i] - levels[j]).astype(jnp.float32)
    valid = (dv != 0) * weight[i] * weight[j]
    terms = jnp.abs(dv) * jax.nn.sigmoid(-jnp.sign(dv) * (r[j] - r[i]) / temperature)
    return (terms * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def geodesic_loss(
    z: jnp.ndarray,
    index: jnp.ndarray,
    weight: jnp.ndarray,
    rng: jax.Array,
    *,
    curvature: float = 1.0,
    num_pairs: int = 2000,
) -> jnp.ndarray:
    """SmoothL1(d_c(z_i, z_j), 3 exp(-v3(|i - j|)/3)) over random pairs; i == j counts as v3 = 9."""
    i, j = _random_pairs(rng, z.shape[0], num_pairs)
    d = hyperbolic.distance(z[i], z[j], curvature)
    target = 3.0 * jnp.exp(-valuation_jnp(index[i] - index[j]).astype(jnp.float32) / 3.0)
    valid = weight[i] * weight[j]
    return (optax.huber_loss(d, target, delta=1.0) * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def spread_loss(
    r: jnp.ndarray, levels: jnp.ndarray, weight: jnp.ndarray, *, target_var: float
) -> jnp.ndarray:
    """mean over levels with >= 2 members of relu(1 - Var(r|v)/target_var)^2 (scale-free)."""
    n, _, var = level_stats(r, levels, weight)
    has = n > 1
    deficit = jax.nn.relu(1.0 - var / target_var) ** 2
    return jnp.where(has, deficit, 0.0).sum() / jnp.maximum(has.sum(), 1)


def _random_pairs(rng: jax.Array, n: int, num_pairs: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    ki, kj = jax.random.split(rng)
    return (
        jax.random.randint(ki, (num_pairs,), 0, n),
        jax.random.randint(kj, (num_pairs,), 0, n),
    )
