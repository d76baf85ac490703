"""Evaluation metrics of the ternary VAE, computed on host over all 19,683 operations.

Definitions follow the reference's `core/metrics.py` (see ternary_vae/README.md), on the
deterministic path: radii come from the encoder means mu (no sampling, no dropout), so a
checkpoint always gets the same numbers. Hyperbolic radius r = 2*artanh(|z|) (c = 1).

- coverage: fraction of operations whose 9 trits are all decoded correctly from decoder(mu_A).
- hierarchy: Spearman rho(v3(i), r(i)) with average ranks for ties (scipy). Negative is right.
  Ceiling for distinct radii and perfectly separated levels: `hierarchy_ceiling()` = -0.83205.
- richness: (1/10) sum_v population variance of r within level v (v = 9 contributes 0).
- dist_corr: Spearman(|z_i - z_j|_2, |v_i - v_j|) over all pairs of a seeded 1,000-sample.
- Q = dist_corr + 1.5 |hierarchy|; Q_enhanced as the 5.12.5 script writes it (inconsistent:
  it cannot reach its own target 2.0 at richness 0.006, see `q_enhanced`).
- r_v0: mean radius of level 0; r_v9: radius of operation 0 (the only v = 9 point).
- separation: level-mean gaps, violations of mu_{v+1} <= mu_v - margin, and overlap rates.

Used by `ternary_vae.task.summarize_eval`, `ternary_vae.analyze` and `ternary_vae.geometry_budget`.
"""

import itertools
import math

import numpy as np
from scipy.spatial.distance import pdist

from common.stats import average_ranks, spearman
from ternary_vae.ternary import NUM_LEVELS, level_sizes

SELECT_INVALID_OFFSET = -3.0  # select = coverage - 3 < -2 <= any Q when coverage is too low


def hierarchy_ceiling(sizes: np.ndarray | None = None) -> float:
    """Most negative Spearman rho for distinct radii: -sqrt(1 - sum(t^3 - t)/(N^3 - N)).

    With no ties the radius ranks are a permutation; the best one orders the levels, and
    rho = sd(level ranks)/sd(1..N). For t_v = 13122..1 this is -0.8320502954 (-3/sqrt(13) as
    N -> inf). Radii tied within levels can go beyond it (constant per level gives -1).
    """
    t = np.asarray(level_sizes() if sizes is None else sizes, dtype=np.float64)
    n = t.sum()
    return -math.sqrt(1.0 - float((t**3 - t).sum()) / (n**3 - n))


def hierarchy(valuation: np.ndarray, radius: np.ndarray) -> float:
    return spearman(valuation, radius)


def richness(radius: np.ndarray, valuation: np.ndarray) -> float:
    """Mean over the 10 levels of the population variance (ddof=0); empty levels count 0."""
    radius = np.asarray(radius, np.float64)
    total = 0.0
    for v in range(NUM_LEVELS):
        members = radius[valuation == v]
        if members.size > 1:
            total += float(members.var())
    return total / NUM_LEVELS


def level_means(radius: np.ndarray, valuation: np.ndarray) -> np.ndarray:
    """Mean radius per level [10] (nan for an empty level)."""
    radius = np.asarray(radius, np.float64)
    return np.array(
        [radius[valuation == v].mean() if np.any(valuation == v) else np.nan for v in range(10)]
    )


def dist_corr(z: np.ndarray, valuation: np.ndarray, *, num_samples: int = 1000, seed: int = 0):
    """Spearman(|z_i - z_j|_2, |v_i - v_j|) over the upper triangle of a seeded sample."""
    n = len(z)
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=min(num_samples, n), replace=False)
    d_z = pdist(np.asarray(z, np.float64)[idx])
    d_v = pdist(np.asarray(valuation, np.float64)[idx, None], metric="cityblock")
    if np.ptp(d_z) == 0 or np.ptp(d_v) == 0:
        return 0.0
    # |v_i - v_j| takes at most 10 integer values: average ranks by counting, not sorting.
    counts = np.bincount(d_v.astype(np.int64))
    below = np.cumsum(counts) - counts
    rank_v = (below + (counts + 1) / 2.0)[d_v.astype(np.int64)]
    rank_z = average_ranks(d_z)
    rank_v -= rank_v.mean()
    rank_z -= rank_z.mean()
    return float(
        np.dot(rank_z, rank_v) / math.sqrt(np.dot(rank_z, rank_z) * np.dot(rank_v, rank_v))
    )


def q_score(dist_corr_value: float, hierarchy_value: float) -> float:
    """Q = dist_corr + 1.5 |hierarchy| (max 1 + 1.5 * 0.83205 = 2.248 for distinct radii)."""
    return dist_corr_value + 1.5 * abs(hierarchy_value)


def q_enhanced(radius_a, radius_b, hierarchy_b: float, richness_b: float) -> float:
    """|Pearson(r_A, r_B)| + 1.5 |H_B| + 0.5 ln(richness_B + 1e-8), as train_v5_12_5.py writes it.

    Inconsistent with its own target 2.0: at richness 0.006 the log term is -2.558, so
    Q_enhanced <= 1 + 1.248 - 2.558 = -0.31. Reported for comparison only, never selected on.
    """
    ra, rb = np.asarray(radius_a, np.float64), np.asarray(radius_b, np.float64)
    corr = 0.0 if np.ptp(ra) == 0 or np.ptp(rb) == 0 else float(np.corrcoef(ra, rb)[0, 1])
    return abs(corr) + 1.5 * abs(hierarchy_b) + 0.5 * math.log(richness_b + 1e-8)


def separation(radius: np.ndarray, valuation: np.ndarray, *, margin: float = 0.01) -> dict:
    """Level-mean gaps and overlap of consecutive (and all) level pairs.

    - min_gap = min_v (mu_v - mu_{v+1}); violations = #{v : mu_{v+1} > mu_v - margin}
    - overlap_adjacent: fraction of pairs (i in level v, j in level v+1) with r_i <= r_j
    - discordant: the same over all pairs of different levels (u < w): these are exactly the
      pairs that keep Spearman from its ceiling.
    """
    radius = np.asarray(radius, np.float64)
    mu = level_means(radius, valuation)
    present = [v for v in range(NUM_LEVELS) if np.any(valuation == v)]
    gaps = np.array([mu[u] - mu[w] for u, w in itertools.pairwise(present)])
    sorted_levels = {v: np.sort(radius[valuation == v]) for v in present}
    adj_bad = adj_all = all_bad = all_all = 0
    for a, u in enumerate(present):
        for w in present[a + 1 :]:
            # pairs (i in u, j in w) with r_i <= r_j: for each j, #(r_u <= r_j)
            bad = int(np.searchsorted(sorted_levels[u], sorted_levels[w], side="right").sum())
            total = sorted_levels[u].size * sorted_levels[w].size
            all_bad, all_all = all_bad + bad, all_all + total
            if w == u + 1:
                adj_bad, adj_all = adj_bad + bad, adj_all + total
    return {
        "min_gap": float(gaps.min()) if gaps.size else 0.0,
        "violations": float(np.sum(gaps < margin)),
        "overlap_adjacent": adj_bad / max(adj_all, 1),
        "discordant": all_bad / max(all_all, 1),
    }


def selection_score(q_b: float, coverage_value: float, min_coverage: float) -> float:
    """Checkpoint score: Q_B if coverage >= min_coverage, else coverage - 3 (< any valid Q_B).

    Always finite, and among invalid checkpoints higher coverage still ranks higher.
    """
    if coverage_value >= min_coverage:
        return float(q_b)
    return float(coverage_value + SELECT_INVALID_OFFSET)


def comprehensive(
    outputs: dict[str, np.ndarray],
    *,
    dist_corr_samples: int = 1000,
    dist_corr_seed: int = 0,
    min_coverage: float = 0.9999,
    separation_margin: float = 0.01,
) -> dict[str, float]:
    """All scalars from per-operation outputs (valid rows only).

    outputs: valuation [N] int, index [N] int, correct [N] bool, radius_a/radius_b [N],
    z_a/z_b [N, D]. Keys are flat, e.g. "hierarchy_b", "richness_a", "separation_b/min_gap".
    """
    v = np.asarray(outputs["valuation"]).astype(np.int64)
    index = np.asarray(outputs["index"]).astype(np.int64)
    out: dict[str, float] = {"coverage": float(np.mean(outputs["correct"]))}
    out["hierarchy_ceiling"] = hierarchy_ceiling(np.bincount(v, minlength=NUM_LEVELS))
    for side in ("a", "b"):
        r = np.asarray(outputs[f"radius_{side}"], np.float64)
        h = hierarchy(v, r)
        dc = dist_corr(outputs[f"z_{side}"], v, num_samples=dist_corr_samples, seed=dist_corr_seed)
        out[f"hierarchy_{side}"] = h
        out[f"richness_{side}"] = richness(r, v)
        out[f"dist_corr_{side}"] = dc
        out[f"q_{side}"] = q_score(dc, h)
        out[f"r_v0_{side}"] = float(r[v == 0].mean()) if np.any(v == 0) else float("nan")
        origin = r[index == 0]
        out[f"r_v9_{side}"] = float(origin[0]) if origin.size else float("nan")
        out[f"unique_radii_{side}"] = float(np.unique(r).size)
        for key, value in separation(r, v, margin=separation_margin).items():
            out[f"separation_{side}/{key}"] = value
    out["q_enhanced"] = q_enhanced(
        outputs["radius_a"], outputs["radius_b"], out["hierarchy_b"], out["richness_b"]
    )
    out["select"] = selection_score(out["q_b"], out["coverage"], min_coverage)
    return out
