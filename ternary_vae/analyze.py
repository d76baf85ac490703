"""Comprehensive metrics and figures for a trained run (best and latest checkpoints).

    python -m ternary_vae.analyze WORKDIR [--out DIR]

For each of the best (by val/select) and latest checkpoints: every metric of
`ternary_vae.metrics` on all operations (deterministic path), a box plot of hyperbolic radius
per valuation level, and a 2-D view of the ball (directions projected on their two principal
axes, Euclidean norm kept) coloured by valuation. Also prints what homeostasis did (its event
log is part of every checkpoint). Writes WORKDIR/analysis/{metrics.json, *.png}.
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from common.cli import handles_user_errors
from common.evaluate import open_run
from common.metrics import unmasked_rows
from ternary_vae import input_pipeline, metrics

KEYS = (
    "coverage",
    "hierarchy_b",
    "hierarchy_ceiling",
    "richness_b",
    "dist_corr_b",
    "q_b",
    "r_v0_b",
    "r_v9_b",
    "separation_b/min_gap",
    "separation_b/discordant",
    "hierarchy_a",
    "richness_a",
    "q_enhanced",
)


def radius_boxplot(out: dict, path: str, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, side in zip(axes, ("a", "b")):
        data = [out[f"radius_{side}"][out["valuation"] == v] for v in range(10)]
        ax.boxplot(data, positions=range(10), widths=0.6, showfliers=True, flierprops={"ms": 2})
        ax.set_xlabel("3-adic valuation v3(i)")
        ax.set_title(f"encoder {side.upper()}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hyperbolic radius 2 artanh|z|")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ball_view(z: np.ndarray, valuation: np.ndarray, path: str, title: str, max_radius: float):
    """Directions on their 2 principal axes, rescaled to each point's Euclidean norm."""
    norm = np.linalg.norm(z, axis=1)
    unit = z / np.maximum(norm, 1e-12)[:, None]
    centred = unit - unit.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = unit @ vt[:2].T
    xy = xy / np.maximum(np.linalg.norm(xy, axis=1), 1e-12)[:, None] * norm[:, None]
    fig, ax = plt.subplots(figsize=(6.4, 6))
    order = np.argsort(valuation)  # draw the big v=0 shell first, rare levels on top
    sc = ax.scatter(
        xy[order, 0], xy[order, 1], c=valuation[order], cmap="viridis", s=3, vmin=0, vmax=9
    )
    ax.add_patch(plt.Circle((0, 0), max_radius, fill=False, ls="--", color="grey"))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="black"))
    ax.set_aspect("equal")
    ax.set_xlim(-1.02, 1.02)
    ax.set_ylim(-1.02, 1.02)
    fig.colorbar(sc, ax=ax, label="v3(i)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analyze(workdir: str, out_dir: str | None = None) -> dict:
    out_dir = out_dir or os.path.join(workdir, "analysis")
    os.makedirs(out_dir, exist_ok=True)
    report: dict = {}
    for which in ("best", "latest"):
        opened = open_run(workdir, which=which)
        run = opened.run
        computed = opened.compute(input_pipeline.EVAL_SPLIT)
        out = unmasked_rows(computed["outputs"])  # per operation, in index order
        # The loop's figures, from the task's own summary of the same outputs.
        scalars = dict(opened.task.summarize_eval(input_pipeline.EVAL_SPLIT, computed).scalars)
        scalars["level_means_b"] = metrics.level_means(out["radius_b"], out["valuation"]).tolist()
        scalars["step"] = run.step
        events = run.meta.get("task_state", {}).get("homeostasis", {}).get("events", [])
        report[which] = {"metrics": scalars, "homeostasis_events": events}
        tag = f"{which} (step {run.step})"
        radius_boxplot(out, os.path.join(out_dir, f"radius_by_valuation_{which}.png"), tag)
        ball_view(
            out["z_b"],
            out["valuation"],
            os.path.join(out_dir, f"ball_b_{which}.png"),
            f"encoder B, {tag}",
            run.config.model.max_radius,
        )
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(report, f, indent=2)

    print(f"{'metric':28s} {'best':>14s} {'latest':>14s}")
    for key in ("step", *KEYS):
        row = [report[w]["metrics"].get(key, float("nan")) for w in ("best", "latest")]
        print(f"{key:28s} " + " ".join(f"{v:14.6g}" for v in row))
    print("(metrics on deterministic radii: encoder means, no sampling, no dropout;")
    print(" the hierarchy ceiling holds for distinct radii, see README)")
    for event in report["latest"]["homeostasis_events"]:
        print(f"homeostasis: {event}")
    print(f"figures and metrics.json in {out_dir}")
    return report


@handles_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", help="a ternary_vae stage-1 (or stage-0) run directory")
    parser.add_argument("--out", default=None, help="output folder (default WORKDIR/analysis)")
    parser.add_argument("--verbose", action="store_true", help="tracebacks for errors")
    args = parser.parse_args(argv)
    analyze(args.workdir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
