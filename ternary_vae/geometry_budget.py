"""The geometry budget behind ternary_vae/README.md's feasibility argument: can coverage
100 %, Hierarchy_B <= -0.830 and richness >= 0.006 hold together inside a ball of Euclidean
radius 0.95?

    python -m ternary_vae.geometry_budget

Prints the largest hyperbolic radius, the richness that non-overlapping levels leave room for
at the reference's and at our level spacing, and worked examples (Spearman and richness of
radii drawn around each spacing's targets). The closed forms these rest on (the hierarchy
ceiling, ties, richness, dist_corr against scipy, the ball's radius) are tested in
tests/ternary_vae/.
"""

import sys

import numpy as np

from ternary_vae import hyperbolic, metrics, ternary

V = ternary.all_operations()["valuation"]


def geometry_budget() -> list[str]:
    """Numbers behind the feasibility argument (README, "Can the three targets hold together?")."""
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
    return lines


def main() -> int:
    print("geometry budget:")
    for line in geometry_budget():
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
